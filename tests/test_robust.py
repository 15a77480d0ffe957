"""Robust aggregation rules on hand-computed inputs, and each rule's breakdown on either side of its paper's claim."""

from __future__ import annotations

import pytest
import torch

from p2psim.config import ScenarioError
from p2psim.robust import (
    Aggregation,
    aggregate,
    centered_clip,
    clip,
    clipped_gossip_step,
    coordinate_median,
    krum_scores,
    multi_krum,
    trimmed_mean,
)

# five points: a cluster of three near the origin and two far away (hand-computed Krum scores below)
POINTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0], [11.0, 10.0]])


def test_median_of_odd_and_even_counts():
    x = torch.tensor([[1.0, 9.0], [2.0, 0.0], [7.0, 4.0]])
    assert coordinate_median(x).tolist() == [2.0, 4.0]
    assert coordinate_median(torch.cat([x, torch.tensor([[3.0, 5.0]])])).tolist() == [2.5, 4.5]


def test_trimmed_mean_drops_f_per_side_per_coordinate():
    x = torch.tensor([[1.0, -50.0], [2.0, 0.0], [3.0, 1.0], [100.0, 2.0], [4.0, 3.0]])
    assert trimmed_mean(x, 1).tolist() == [3.0, 1.0]  # (2 + 3 + 4) / 3 and (0 + 1 + 2) / 3
    assert trimmed_mean(x, 0).tolist() == x.mean(dim=0).tolist()


def test_krum_scores_and_choice_by_hand():
    # k = 5, f = 1: each row sums its k - f - 2 = 2 smallest squared distances to the others
    assert krum_scores(POINTS, 1).tolist() == pytest.approx([2.0, 3.0, 3.0, 182.0, 201.0])
    assert multi_krum(POINTS, 1, 1).tolist() == [0.0, 0.0]  # Krum: the best-scoring row
    assert torch.allclose(multi_krum(POINTS, 1, 3), torch.tensor([1 / 3, 1 / 3]))  # the mean of rows 0, 1, 2


def test_centered_clip_one_step_and_fixed_point():
    x = torch.tensor([[0.0], [0.0], [10.0]])
    assert centered_clip(x, torch.zeros(1), 1.0, 1).item() == pytest.approx(1 / 3)  # (0 + 0 + clip(10)) / 3
    v = centered_clip(x, torch.zeros(1), 1.0, 200)
    assert v.item() == pytest.approx(0.5)  # 2 (0 - v) + 1 = 0
    assert clip(x - v, 1.0).sum().item() == pytest.approx(0.0, abs=1e-6)


def test_centered_clip_is_the_mean_when_every_input_is_within_tau():
    x = torch.tensor([[0.1, 0.2], [-0.3, 0.0], [0.2, -0.1]])
    assert torch.allclose(centered_clip(x, torch.zeros(2), 1.0, 1), x.mean(dim=0))


def test_clip_scales_to_tau_and_leaves_short_vectors():
    assert clip(torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]]), 1.0).tolist() == [
        pytest.approx([0.6, 0.8]), pytest.approx([0.3, 0.4]), [0.0, 0.0]
    ]


def test_clipped_gossip_step_by_hand():
    own, received, weights = torch.zeros(2), torch.tensor([[3.0, 4.0]]), torch.tensor([0.5])
    assert clipped_gossip_step(own, received, weights, 1.0).tolist() == pytest.approx([0.3, 0.4])
    assert clipped_gossip_step(own, received, weights, 5.0).tolist() == pytest.approx([1.5, 2.0])  # plain gossip


def _honest_and_byzantine(k: int, f: int, spread: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """k inputs: k - f honest rows g + spread i (distinct, as noisy gradients are), and f copies of -10 g."""
    g = torch.tensor([1.0, -2.0, 0.5])
    honest = g + spread * torch.arange(k - f, dtype=torch.float32).unsqueeze(1)
    return torch.cat([honest, (-10 * g).repeat(f, 1)]), g


@pytest.mark.parametrize(
    "rule, holds, breaks",
    [
        ("median", 3, 4),  # breakdown point 1/2: f < k/2 (Yin et al. 2018)
        ("trimmed_mean", 3, 4),  # f Byzantine at most the trimmed f, and k > 2f
        ("krum", 2, 3),  # k > 2f + 2 (Blanchard et al. 2017): 7 > 6 holds; at 7 = 2f + 1 the f clones score 0
        ("multi_krum", 2, 3),
    ],
)
def test_rules_hold_to_their_claimed_fraction_and_break_beyond(rule, holds, breaks):
    """k = 7 inputs; the rule is told the true f (m = 3 for Multi-Krum); trimmed_mean with f = 4 needs k > 8, so f = 3."""
    k = 7
    spec = Aggregation(rule, f=holds, m=3 if rule == "multi_krum" else None)
    x, g = _honest_and_byzantine(k, holds)
    assert (aggregate(x, spec) - g).abs().max() <= 0.06  # within the honest rows' spread (0.01 i, i < 7)
    x, g = _honest_and_byzantine(k, breaks)
    spec = Aggregation(rule, f=min(breaks, 3), m=3 if rule == "multi_krum" else None)
    assert torch.dot(aggregate(x, spec), g) < 0  # points uphill: descent with it ascends
    x, g = _honest_and_byzantine(k, 1)
    assert torch.dot(aggregate(x, Aggregation("mean")), g) < 0  # the mean breaks with a single attacker


def test_centered_clip_bias_is_f_tau_over_k_minus_f_below_half_and_unbounded_above():
    """At the fixed point (k - f) (g - v) = f tau u: the bias is f tau / (k - f) < tau while f < k / 2."""
    k, tau = 7, 0.1
    spec = Aggregation("centered_clip", tau=tau, iterations=500)
    x, g = _honest_and_byzantine(k, 3, spread=0.0)
    assert (aggregate(x, spec, g) - g).norm().item() == pytest.approx(3 * tau / 4, rel=1e-4)
    x, g = _honest_and_byzantine(k, 4)
    assert (aggregate(x, spec, g) - g).norm().item() > 10 * tau  # the attackers' clipped pull outweighs the honest one


def test_aggregation_is_validated_with_the_field_named():
    with pytest.raises(ScenarioError, match="rule: unknown rule 'mode' .allowed: mean, median"):
        Aggregation("mode")
    with pytest.raises(ScenarioError, match="m: is a parameter of rule 'multi_krum' only"):
        Aggregation("krum", m=2)
    with pytest.raises(ScenarioError, match="tau: must be in \\(0, 1e12\\]"):
        Aggregation("centered_clip", tau=0.0)
    with pytest.raises(ScenarioError, match="x: trimmed_mean drops f = 2 per side and needs more than 4 inputs, got 4"):
        Aggregation("trimmed_mean", f=2).check_inputs(4, "x")
    with pytest.raises(ScenarioError, match="x: krum scores k - f - 2 >= 1 neighbours and needs k >= f \\+ 3 = 5"):
        Aggregation("krum", f=2).check_inputs(4, "x")
    Aggregation("krum", f=2).check_inputs(5, "x")
