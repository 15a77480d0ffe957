"""How a training set is split among peers: IID, Dirichlet label skew, or k labels per peer.

Every partition is a list with one sorted int64 index array per peer; the arrays are
disjoint and none is empty.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = [
    "PARTITIONS",
    "make_partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_k_labels",
]

PARTITIONS = ("iid", "dirichlet", "k_labels")


def _check_enough(n_samples: int, n_peers: int) -> None:
    if n_peers < 1:
        raise ValueError(f"n_peers must be >= 1, got {n_peers}")
    if n_samples < n_peers:
        raise ValueError(f"{n_samples} samples cannot give each of {n_peers} peers at least one")


def _finish(parts: list[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(np.asarray(part, dtype=np.int64)) for part in parts]


def partition_iid(n_samples: int, n_peers: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle the samples and deal them out; sizes differ by at most one.

    >>> [len(p) for p in partition_iid(10, 3, np.random.default_rng(0))]
    [4, 3, 3]
    """
    _check_enough(n_samples, n_peers)
    order = rng.permutation(n_samples).astype(np.int64, copy=False)
    # np.array_split's deal (the first n_samples % n_peers peers one longer), sorted in two 2-D blocks: rows are views
    size, longer = divmod(n_samples, n_peers)
    cut = longer * (size + 1)
    return [*np.sort(order[:cut].reshape(longer, size + 1), axis=1), *np.sort(order[cut:].reshape(-1, size), axis=1)]


def partition_dirichlet(
    labels: np.ndarray, n_peers: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Label skew of Hsu et al. 2019 (arXiv:1909.06335): each class split by shares ~ Dir(alpha).

    Small alpha gives each peer few classes; large alpha approaches IID. A peer left
    empty by the draw takes one random sample from the largest peer (lowest index on
    ties), repeatedly, so every peer holds at least one sample; when no peer is
    empty the partition is exactly the Dirichlet one.
    """
    labels = np.asarray(labels)
    _check_enough(len(labels), n_peers)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    parts: list[list[int]] = [[] for _ in range(n_peers)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        proportions = rng.dirichlet(np.full(n_peers, alpha))
        cuts = (np.cumsum(proportions) * len(members)).astype(np.int64)[:-1]
        for part, share in zip(parts, np.split(members, cuts)):
            part.extend(share.tolist())
    # largest first, lowest index on ties; entries whose size has changed since are skipped (O(n log n))
    sizes = [(-len(part), peer) for peer, part in enumerate(parts)]
    heapq.heapify(sizes)
    for empty in [peer for peer, part in enumerate(parts) if not part]:
        while -sizes[0][0] != len(parts[sizes[0][1]]):
            heapq.heappop(sizes)
        donor = heapq.heappop(sizes)[1]
        parts[empty].append(parts[donor].pop(int(rng.integers(len(parts[donor])))))
        heapq.heappush(sizes, (-len(parts[donor]), donor))
        heapq.heappush(sizes, (-1, empty))
    return _finish(parts)


def partition_k_labels(
    labels: np.ndarray, n_peers: int, k: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Each peer holds exactly k labels: the pathological non-IID split of McMahan et al. 2017.

    Peer i holds labels order[(i*k + j) % n_classes] for j < k, for a seeded permutation
    `order` of the labels, so every label is held when n_peers * k >= n_classes (samples
    of labels nobody holds are left out). Each label's samples are shuffled and dealt
    to its holders in near-equal shares.

    >>> labels = np.repeat(np.arange(4), 5)
    >>> parts = partition_k_labels(labels, 4, 2, np.random.default_rng(0))
    >>> [len(set(labels[p])) for p in parts]
    [2, 2, 2, 2]
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    _check_enough(len(labels), n_peers)
    if not 1 <= k <= len(classes):
        raise ValueError(f"k must be in [1, {len(classes)}] (the number of labels), got {k}")
    order = classes[rng.permutation(len(classes))]
    held = [order[(peer * k + np.arange(k)) % len(classes)] for peer in range(n_peers)]
    parts: list[list[int]] = [[] for _ in range(n_peers)]
    for label in classes:
        holders = [peer for peer in range(n_peers) if label in held[peer]]
        if not holders:
            continue
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < len(holders):
            raise ValueError(
                f"label {label} has {len(members)} samples for {len(holders)} peers holding it"
            )
        for peer, share in zip(holders, np.array_split(members, len(holders))):
            parts[peer].extend(share.tolist())
    return _finish(parts)


def make_partition(
    kind: str,
    labels: np.ndarray | None,
    n_samples: int,
    n_peers: int,
    rng: np.random.Generator,
    alpha: float | None = None,
    k: int | None = None,
) -> list[np.ndarray]:
    """Split `n_samples` training samples among `n_peers` peers by the partition `kind`."""
    if kind not in PARTITIONS:
        raise ValueError(f"unknown partition {kind!r}; allowed: {', '.join(PARTITIONS)}")
    if kind == "iid":
        return partition_iid(n_samples, n_peers, rng)
    if labels is None:
        raise ValueError(f"partition {kind!r} splits by label and needs a classification task")
    labels = np.asarray(labels)
    if len(labels) != n_samples:
        raise ValueError(f"partition {kind!r}: {len(labels)} labels for {n_samples} samples")
    if kind == "dirichlet":
        if alpha is None:
            raise ValueError("partition 'dirichlet' needs alpha")
        return partition_dirichlet(labels, n_peers, alpha, rng)
    if k is None:
        raise ValueError("partition 'k_labels' needs k")
    return partition_k_labels(labels, n_peers, k, rng)
