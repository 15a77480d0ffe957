"""The spectral gap of the matrix an algorithm actually mixes with, and what the number means.

A run reports the gap of its own algorithm's mixing (issue: a gap of a matrix the
algorithm never uses misleads): D-PSGD's W, or for randomized pairwise gossip the
expected matrix E[W] at the pair rates the run observed (Boyd, Ghosh, Prabhakar, Shah,
"Randomized gossip algorithms", IEEE Trans. Inf. Theory 2006: the mean squared
distance to consensus contracts by lambda_2(E[W]) per exchange in expectation).
Dense eigenvalues cost O(n^3): above `MAX_DENSE_PEERS` a symmetric matrix is kept sparse
and its gap found by Lanczos (`topology.spectral_gap_sparse`, within its stated tolerance,
or not computed where Lanczos does not converge, saying so); a non-symmetric one gets no
gap above that size, and the report says so rather than printing an estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing import Any

import numpy as np

from .topology import SPARSE_GAP_TOL, spectral_gap, spectral_gap_sparse

__all__ = [
    "MAX_DENSE_PEERS",
    "MixingReport",
    "matrix_report",
    "pairwise_gossip_matrix",
    "pairwise_gossip_report",
    "sparse_pairwise_gossip_matrix",
]

MAX_DENSE_PEERS = 2048  # eigvalsh of a 2048 x 2048 matrix: about a second on one core


@dataclass(frozen=True)
class MixingReport:
    """The reported spectral gap (None where not computed), its definition and the matrix it belongs to."""

    spectral_gap: float | None
    definition: str
    matrix: str

    def as_facts(self) -> dict[str, object]:
        """The manifest's fields for this report."""
        return {"spectral_gap": self.spectral_gap, "spectral_gap_definition": self.definition, "mixing_matrix": self.matrix}


RESOLVABLE_GAP = 10 * SPARSE_GAP_TOL  # a smaller Lanczos gap would carry over 10 % error
LANCZOS = f"by Lanczos (scipy eigsh), within {SPARSE_GAP_TOL:g}"


def _sparse_report(W: Any, definition: str, matrix: str) -> MixingReport:
    """The gap of a large sparse symmetric W by Lanczos; None, saying why, where it cannot be resolved."""
    gap = spectral_gap_sparse(W)
    if gap is None or gap < RESOLVABLE_GAP:
        return MixingReport(
            None, f"not computed: at {W.shape[0]} peers the gap is below {RESOLVABLE_GAP:g} (10x the Lanczos tolerance)", matrix
        )
    return MixingReport(gap, f"{definition}, {LANCZOS}", matrix)


def matrix_report(W: Any, matrix: str) -> MixingReport:
    """Gap 1 - max(|lambda_2|, |lambda_n|) of a symmetric doubly stochastic W used every round (dense or scipy sparse)."""
    definition = "1 - max(|lambda_2|, |lambda_n|) of W (Xiao & Boyd 2004)"
    if isinstance(W, np.ndarray) and W.shape[0] <= MAX_DENSE_PEERS:
        return MixingReport(spectral_gap(W), definition, matrix)
    from scipy import sparse

    return _sparse_report(sparse.csr_array(W), definition, matrix)


def pairwise_gossip_matrix(n: int, pair_counts: Mapping[tuple[int, int], int]) -> np.ndarray:
    """E[W] of one pairwise average, at the observed frequency of each unordered pair.

    W_ij = I - (e_i - e_j)(e_i - e_j)^T / 2 averages rows i and j.

    >>> pairwise_gossip_matrix(2, {(0, 1): 3}).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    total = sum(pair_counts.values())
    expected = np.eye(n)
    if total == 0:
        return expected
    for (i, j), count in pair_counts.items():
        p = count / total / 2
        expected[i, i] -= p
        expected[j, j] -= p
        expected[i, j] += p
        expected[j, i] += p
    return expected


def sparse_pairwise_gossip_matrix(n: int, pair_counts: Mapping[tuple[int, int], int]) -> Any:
    """`pairwise_gossip_matrix` as a scipy CSR array: O(n + pairs) memory.

    >>> sparse_pairwise_gossip_matrix(2, {(0, 1): 3}).toarray().tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    from scipy import sparse

    total = sum(pair_counts.values())
    pairs = np.array(list(pair_counts), dtype=np.int64).reshape(-1, 2)
    p = np.array(list(pair_counts.values()), dtype=np.float64) / max(total, 1) / 2
    i, j = pairs[:, 0], pairs[:, 1]
    diagonal = 1.0 - np.bincount(np.concatenate([i, j]), weights=np.concatenate([p, p]), minlength=n)
    nodes = np.arange(n)
    rows, cols = np.concatenate([i, j, nodes]), np.concatenate([j, i, nodes])
    return sparse.csr_array((np.concatenate([p, p, diagonal]), (rows, cols)), shape=(n, n))


def pairwise_gossip_report(n: int, pair_counts: Mapping[tuple[int, int], int]) -> MixingReport:
    """Gap 1 - lambda_2(E[W]) of randomized pairwise gossip at the observed pair rates (Boyd et al. 2006).

    E[W]'s eigenvalues lie in [0, 1] (each pair moves at most half of a row), so 1 - lambda_2
    is also 1 - max|lambda| beyond the consensus direction, which Lanczos finds above
    `MAX_DENSE_PEERS`.
    """
    matrix = f"E[W] of one pairwise average at the observed rates of {len(pair_counts)} pairs"
    definition = "1 - lambda_2 of E[W] (Boyd et al. 2006), per exchange"
    if n == 1:
        return MixingReport(1.0, "a single peer is at consensus", matrix)
    if n > MAX_DENSE_PEERS:
        return _sparse_report(sparse_pairwise_gossip_matrix(n, pair_counts), definition, matrix)
    eigenvalues = np.linalg.eigvalsh(pairwise_gossip_matrix(n, pair_counts))
    return MixingReport(float(1.0 - eigenvalues[-2]), definition, matrix)
