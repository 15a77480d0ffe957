"""The spectral gap of the matrix an algorithm actually mixes with, and what the number means.

A run reports the gap of its own algorithm's mixing (issue: a gap of a matrix the
algorithm never uses misleads): D-PSGD's W, or for randomized pairwise gossip the
expected matrix E[W] at the pair rates the run observed (Boyd, Ghosh, Prabhakar, Shah,
"Randomized gossip algorithms", IEEE Trans. Inf. Theory 2006: the mean squared
distance to consensus contracts by lambda_2(E[W]) per exchange in expectation).
Dense eigenvalues cost O(n^3): above `MAX_DENSE_PEERS` no gap is computed, and the
report says so rather than printing an estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .topology import spectral_gap

__all__ = ["MAX_DENSE_PEERS", "MixingReport", "matrix_report", "pairwise_gossip_matrix", "pairwise_gossip_report"]

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


def _too_large(n: int, matrix: str) -> MixingReport | None:
    if n > MAX_DENSE_PEERS:
        return MixingReport(None, f"not computed: {n} peers > {MAX_DENSE_PEERS} (dense eigenvalues)", matrix)
    return None


def matrix_report(W: np.ndarray, matrix: str) -> MixingReport:
    """Gap 1 - max(|lambda_2|, |lambda_n|) of a symmetric doubly stochastic W used every round."""
    return _too_large(W.shape[0], matrix) or MixingReport(
        spectral_gap(W), "1 - max(|lambda_2|, |lambda_n|) of W (Xiao & Boyd 2004)", matrix
    )


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


def pairwise_gossip_report(n: int, pair_counts: Mapping[tuple[int, int], int]) -> MixingReport:
    """Gap 1 - lambda_2(E[W]) of randomized pairwise gossip at the observed pair rates (Boyd et al. 2006)."""
    matrix = f"E[W] of one pairwise average at the observed rates of {len(pair_counts)} pairs"
    if n == 1:
        return MixingReport(1.0, "a single peer is at consensus", matrix)
    too_large = _too_large(n, matrix)
    if too_large is not None:
        return too_large
    eigenvalues = np.linalg.eigvalsh(pairwise_gossip_matrix(n, pair_counts))
    return MixingReport(float(1.0 - eigenvalues[-2]), "1 - lambda_2 of E[W] (Boyd et al. 2006), per exchange", matrix)
