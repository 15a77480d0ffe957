"""The reported spectral gap is the one of the matrix the algorithm mixes with."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from p2psim.mixing import MAX_DENSE_PEERS, matrix_report, pairwise_gossip_matrix, pairwise_gossip_report
from p2psim.topology import mixing_matrix, ring


@pytest.mark.parametrize("n", [4, 7, 12])
def test_uniform_pairwise_gossip_on_a_ring_has_gap_laplacian_lambda2_over_2m(n):
    """E[W] = I - L / (2m) for uniform rates over m edges (Boyd et al. 2006); ring: lambda_2(L) = 2 - 2 cos(2 pi / n)."""
    counts = {(min(i, (i + 1) % n), max(i, (i + 1) % n)): 5 for i in range(n)}
    report = pairwise_gossip_report(n, counts)
    assert report.spectral_gap == pytest.approx((2 - 2 * math.cos(2 * math.pi / n)) / (2 * n), abs=1e-12)


def test_pairwise_gossip_matrix_is_doubly_stochastic_and_weights_pairs_by_their_observed_rate():
    W = pairwise_gossip_matrix(3, {(0, 1): 3, (1, 2): 1})
    np.testing.assert_allclose(W.sum(axis=0), 1.0)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    assert W[0, 1] == pytest.approx(3 / 4 / 2) and W[1, 2] == pytest.approx(1 / 4 / 2) and W[0, 2] == 0


def test_complete_graph_uniform_gossip_gap_is_one_over_n_minus_one():
    n = 6
    counts = {edge: 1 for edge in nx.complete_graph(n).edges}
    # L = n I - J on the complete graph: lambda_2 = n, m = n (n - 1) / 2, so gap = n / (n (n - 1)) = 1 / (n - 1).
    assert pairwise_gossip_report(n, counts).spectral_gap == pytest.approx(1 / (n - 1))


def test_a_matrix_used_every_round_reports_its_own_gap_and_definition():
    report = matrix_report(mixing_matrix(ring(4)), "Metropolis W")
    assert report.spectral_gap == pytest.approx(2 / 3 * (1 - math.cos(2 * math.pi / 4)))
    assert "lambda_n" in report.definition


def test_above_the_dense_limit_the_gap_comes_from_lanczos_and_matches_the_closed_form():
    """Uniform pairwise gossip on a star: L = star Laplacian, lambda_2(L) = 1 over m = n - 1 edges, gap 1 / (2 (n - 1))."""
    n = MAX_DENSE_PEERS + 1
    report = pairwise_gossip_report(n, {(0, leaf): 1 for leaf in range(1, n)})
    assert report.spectral_gap == pytest.approx(1 / (2 * (n - 1)), abs=1e-6) and "Lanczos" in report.definition


def test_a_gap_lanczos_cannot_resolve_is_not_computed_and_the_report_says_why():
    n = MAX_DENSE_PEERS + 1  # a ring's gap (2 - 2 cos(2 pi / n)) / (2n) ~ 2e-9 is far below the tolerance
    report = pairwise_gossip_report(n, {(i, (i + 1) % n): 1 for i in range(n)})
    assert report.spectral_gap is None and "not computed" in report.definition and "Lanczos tolerance" in report.definition
