"""Partitions: disjoint, complete, non-empty, deterministic, and skewed as each kind promises."""

import numpy as np
import pytest

from p2psim.partition import (
    PARTITIONS,
    make_partition,
    partition_dirichlet,
    partition_iid,
    partition_k_labels,
)
from p2psim.seeding import stream

LABELS = np.repeat(np.arange(10), 100)  # 10 balanced classes, 1000 samples


def rng(seed: int = 0) -> np.random.Generator:
    return stream(seed, "partition")


def assert_well_formed(parts, n_peers):
    assert len(parts) == n_peers
    for part in parts:
        assert part.dtype == np.int64
        assert len(part) >= 1
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
    together = np.concatenate(parts)
    assert len(np.unique(together)) == len(together)  # disjoint


def covers_all(parts, n_samples):
    return np.array_equal(np.sort(np.concatenate(parts)), np.arange(n_samples))


def label_histograms(parts):
    return np.stack([np.bincount(LABELS[p], minlength=10) for p in parts])


@pytest.mark.parametrize("n_samples, n_peers", [(1000, 7), (10, 10), (5, 1)])
def test_iid_is_complete_and_balanced(n_samples, n_peers):
    parts = partition_iid(n_samples, n_peers, rng())
    assert_well_formed(parts, n_peers)
    assert covers_all(parts, n_samples)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_iid_is_shuffled():
    parts = partition_iid(1000, 4, rng())
    assert not np.array_equal(parts[0], np.arange(250))


@pytest.mark.parametrize("n_samples, n_peers", [(1000, 7), (12, 3), (10, 10), (5, 1)])
def test_iid_deals_the_permutation_as_array_split(n_samples, n_peers):
    # the blocked sort gives the shards of dealing one permutation with np.array_split, longer shards first
    expected = [np.sort(part) for part in np.array_split(rng().permutation(n_samples), n_peers)]
    parts = partition_iid(n_samples, n_peers, rng())
    assert [p.tolist() for p in parts] == [e.tolist() for e in expected]


@pytest.mark.parametrize("alpha", [0.05, 1.0, 100.0])
def test_dirichlet_is_complete(alpha):
    parts = partition_dirichlet(LABELS, 20, alpha, rng())
    assert_well_formed(parts, 20)
    assert covers_all(parts, len(LABELS))


def test_dirichlet_skew_follows_alpha():
    # Share of a peer's samples in its most frequent label: 0.1 when IID, 1 when one label.
    # Over seeds 0..49 it spans 0.103-0.109 at alpha=1000 and 0.60-0.88 at alpha=0.05.
    def dominance(alpha):
        hist = label_histograms(partition_dirichlet(LABELS, 10, alpha, rng()))
        return np.mean(hist.max(1) / hist.sum(1))

    assert dominance(1000.0) < 0.15
    assert dominance(0.05) > 0.5


def test_dirichlet_gives_every_peer_a_sample_even_when_draws_leave_some_empty():
    # 200 peers and 1000 samples with alpha tiny: many draws leave peers empty.
    parts = partition_dirichlet(LABELS, 200, 0.01, rng())
    assert_well_formed(parts, 200)
    assert covers_all(parts, len(LABELS))


@pytest.mark.parametrize("n_peers, k", [(10, 2), (5, 2), (30, 3), (4, 10), (20, 1)])
def test_k_labels_gives_exactly_k_labels(n_peers, k):
    parts = partition_k_labels(LABELS, n_peers, k, rng())
    assert_well_formed(parts, n_peers)
    assert all(len(np.unique(LABELS[p])) == k for p in parts)
    assert covers_all(parts, len(LABELS))  # n_peers * k >= 10: every label held


def test_k_labels_shares_each_label_evenly_among_holders():
    hist = label_histograms(partition_k_labels(LABELS, 10, 2, rng()))
    # Round robin over 10 labels with k=2: each label has exactly two holders, 50 each.
    assert set(hist[hist > 0].tolist()) == {50}


def test_k_labels_leaves_out_labels_nobody_holds():
    parts = partition_k_labels(LABELS, 3, 2, rng())
    assert_well_formed(parts, 3)
    held = np.unique(LABELS[np.concatenate(parts)])
    assert len(held) == 6 and sum(len(p) for p in parts) == 600


def test_k_labels_rejects_k_above_the_label_count():
    with pytest.raises(ValueError, match="k must be in"):
        partition_k_labels(LABELS, 5, 11, rng())


@pytest.mark.parametrize("kind", PARTITIONS)
def test_same_seed_same_partition_different_seed_different(kind):
    def make(seed):
        return make_partition(kind, LABELS, len(LABELS), 8, rng(seed), alpha=0.5, k=2)

    a, b, c = make(1), make(1), make(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_too_few_samples_for_the_peers_fails():
    with pytest.raises(ValueError, match="at least one"):
        partition_iid(3, 4, rng())


def test_make_partition_rejects_unknown_kind_listing_allowed():
    with pytest.raises(ValueError, match="iid, dirichlet, k_labels"):
        make_partition("shards", LABELS, len(LABELS), 4, rng())


@pytest.mark.parametrize("kind", ["dirichlet", "k_labels"])
def test_label_partitions_need_a_classification_task(kind):
    with pytest.raises(ValueError, match="needs a classification task"):
        make_partition(kind, None, 100, 4, rng(), alpha=1.0, k=2)


def test_iid_works_without_labels_for_regression():
    parts = make_partition("iid", None, 100, 4, rng())
    assert covers_all(parts, 100)


@pytest.mark.parametrize("kind, missing", [("dirichlet", "alpha"), ("k_labels", "k")])
def test_missing_parameter_is_named(kind, missing):
    with pytest.raises(ValueError, match=f"needs {missing}"):
        make_partition(kind, LABELS, len(LABELS), 4, rng())
