"""The sparse spectral gap (Lanczos) agrees with the dense one and the closed forms, and never builds an n x n array."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2psim.mixing import matrix_report, pairwise_gossip_matrix, sparse_pairwise_gossip_matrix
from p2psim.topology import (
    SPARSE_GAP_TOL,
    hypercube,
    mixing_matrix,
    random_regular,
    ring,
    sparse_mixing_matrix,
    spectral_gap,
    spectral_gap_sparse,
    torus,
)


@pytest.mark.parametrize("rule", ["metropolis", "uniform"])
@pytest.mark.parametrize("graph", [ring(9), torus(16), hypercube(16), random_regular(40, 3, seed=1)], ids=["ring", "torus", "hypercube", "regular"])
def test_the_sparse_mixing_matrix_is_the_dense_one(graph, rule):
    np.testing.assert_allclose(sparse_mixing_matrix(graph, rule).toarray(), mixing_matrix(graph, rule), rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [5, 12, 64, 200])
def test_lanczos_gap_of_a_ring_is_the_closed_form(n):
    """Metropolis weights 1/3 on a ring: eigenvalues (1 + 2 cos(2 pi k / n)) / 3, so the gap is 2/3 (1 - cos(2 pi / n))."""
    expected = 2 / 3 * (1 - math.cos(2 * math.pi / n))
    assert spectral_gap_sparse(sparse_mixing_matrix(ring(n))) == pytest.approx(expected, abs=SPARSE_GAP_TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_lanczos_gap_equals_the_dense_gap_on_random_graphs(seed):
    graph = random_regular(120, 4, seed=seed)
    dense = spectral_gap(mixing_matrix(graph))
    assert spectral_gap_sparse(sparse_mixing_matrix(graph)) == pytest.approx(dense, abs=SPARSE_GAP_TOL)


def test_lanczos_finds_a_negative_extreme_eigenvalue():
    """A 4-cycle with uniform weight 1/2 on edges, 0 on the diagonal: spectrum {1, 0, 0, -1}, gap 0 (periodic)."""
    graph = ring(4)
    W = sparse_mixing_matrix(graph, "uniform") * 1.5
    W.setdiag(0.0)
    assert spectral_gap_sparse(W) == pytest.approx(0.0, abs=SPARSE_GAP_TOL)


def test_the_sparse_pairwise_gossip_matrix_is_the_dense_one():
    counts = {(0, 1): 3, (1, 2): 1, (0, 4): 2, (3, 4): 5}
    np.testing.assert_allclose(sparse_pairwise_gossip_matrix(5, counts).toarray(), pairwise_gossip_matrix(5, counts), atol=1e-15)


def test_a_sparse_matrix_report_at_any_size_uses_lanczos_and_says_so():
    report = matrix_report(sparse_mixing_matrix(ring(64)), "Metropolis W")
    assert report.spectral_gap == pytest.approx(2 / 3 * (1 - math.cos(2 * math.pi / 64)), abs=SPARSE_GAP_TOL)
    assert "Lanczos" in report.definition


@pytest.mark.slow
def test_a_100000_peer_random_regular_graph_gets_its_gap_without_a_dense_matrix():
    """W holds 5 n numbers (n + 2 x 2n edges), not n^2 = 10^10; the gap of a random 4-regular graph is near 1 - (1 + 2 sqrt 3) / 5."""
    W = sparse_mixing_matrix(random_regular(100_000, 4, seed=0))
    assert W.nnz == 5 * 100_000
    gap = spectral_gap_sparse(W)
    assert gap == pytest.approx(1 - (1 + 2 * math.sqrt(3)) / 5, abs=0.01)  # Alon-Boppana / Friedman: lambda_2(A) -> 2 sqrt(d - 1)
