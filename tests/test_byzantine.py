"""Byzantine peers: who they are, what they send, that metrics leave them out, and robust aggregation in a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from p2psim import Scenario, ScenarioError
from p2psim.adversary import AdversarySpec, byzantine_peers
from p2psim.attacks import Adversary, alie_z
from p2psim.testing import quadratic_world, round_number_scenario


def _sync_ps(workers: int, aggregation: dict | None = None, adversary: dict | None = None, rounds: int = 40) -> dict:
    """sync_ps on `workers` H100 workers and a server, small messages, stopped after `rounds` rounds."""
    changes = {
        "algorithm": {"name": "sync_ps", "lr": 0.1, **({"aggregation": aggregation} if aggregation else {})},
        "workload.params": 1000,
        "task.n_features": 1,
        "stop": {"steps": workers * rounds},
        "metrics": {"eval_interval_samples": 10**6},
    }
    if adversary is not None:
        changes["adversary"] = adversary
    return round_number_scenario({"h100_sxm": workers + 1}, changes)


def _run_quadratic(data: dict):
    """Every peer's gradient is exactly w - 1 (f_i(w) = (w - 1)^2 / 2); returns the finished world."""
    world = quadratic_world(data, np.ones(data["peers"]["devices"]["h100_sxm"]))
    world.outcome = world.run()
    return world


def test_choice_is_a_seeded_floor_of_the_fraction_among_learners():
    learners = list(range(1, 11))
    chosen = byzantine_peers(AdversarySpec(fraction=0.3), learners, seed=5)
    assert len(chosen) == 3 and set(chosen) <= set(learners) and chosen == sorted(chosen)
    assert chosen == byzantine_peers(AdversarySpec(fraction=0.3), learners, seed=5)
    assert len(byzantine_peers(AdversarySpec(fraction=0.39), learners, seed=5)) == 3  # rounded down
    assert byzantine_peers(None, learners, seed=5) == []


@pytest.mark.parametrize(
    "adversary, algorithm, message",
    [
        ({"peers": [0, 2]}, "sync_ps", "adversary.peers: peers \\[0\\] do not train .* learners 1..4; a server is trusted"),
        ({"peers": [1, 2, 3, 4]}, "sync_ps", "adversary.peers: names every one of the 4 learners"),
        ({"peers": [1, 1]}, "sync_ps", "adversary.peers: lists a peer twice"),
        ({"fraction": 0.2, "attack": "lie"}, "sync_ps", "adversary.attack: unknown attack 'lie' \\(allowed: sign_flip"),
        ({"fraction": 0.2, "peers": [1]}, "sync_ps", "adversary: needs exactly one of fraction, peers"),
        ({"fraction": 1.0}, "sync_ps", "adversary.fraction: must be in \\[0, 1\\), got 1.0"),
        ({"fraction": 0.5}, "allreduce", "adversary: algorithm 'allreduce' combines rows without sending them"),
    ],
)
def test_bad_adversaries_fail_before_the_run_naming_the_field(adversary, algorithm, message):
    data = _sync_ps(4, adversary=adversary)
    data["algorithm"]["name"] = algorithm
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_dict(data)


def test_aggregation_needs_enough_gradients_per_round():
    with pytest.raises(ScenarioError, match="algorithm.aggregation: krum scores k - f - 2 >= 1 neighbours and needs k >= f \\+ 3 = 5"):
        Scenario.from_dict(_sync_ps(4, aggregation={"rule": "krum", "f": 2}))


def test_attacks_by_hand():
    row = torch.tensor([1.0, -2.0])

    def sent(attack: str, **options) -> torch.Tensor:
        adversary = Adversary(AdversarySpec(attack=attack, peers=(2,), **options), [2], 4, 3, seed=0)
        return adversary.outgoing(2, "gradient", row)

    assert sent("sign_flip").tolist() == [-1.0, 2.0]
    assert sent("scaled", scale=3.0).tolist() == [3.0, -6.0]
    assert sent("ipm", epsilon=0.5).tolist() == [-0.5, 1.0]  # no honest row has left yet: its own stands for the mean
    noise = Adversary(AdversarySpec(attack="gaussian", peers=(1,), sigma=2.0), [1], 2, 2, 0).outgoing(1, "g", torch.zeros(20000))
    assert noise.std().item() == pytest.approx(2.0, rel=0.03) and abs(noise.mean().item()) < 0.05


def test_alie_and_ipm_read_honest_rows_only_once_sent():
    spec = AdversarySpec(attack="alie", peers=(3,), z=1.5)
    adversary = Adversary(spec, [3], 4, 4, seed=0)
    assert adversary.outgoing(0, "gradient", torch.tensor([1.0])).item() == 1.0  # honest rows pass unchanged
    adversary.outgoing(1, "gradient", torch.tensor([3.0]))
    adversary.outgoing(0, "model", torch.tensor([100.0]))  # another kind: not mixed into the gradients' statistics
    assert adversary.outgoing(3, "gradient", torch.tensor([0.0])).item() == pytest.approx(2.0 - 1.5 * 1.0)  # mu 2, sigma 1
    adversary.outgoing(2, "gradient", torch.tensor([8.0]))  # sent after the attacker's row: could not have shaped it
    assert adversary.outgoing(3, "gradient", torch.tensor([0.0])).item() == pytest.approx(4.0 - 1.5 * math.sqrt(26 / 3))
    assert adversary.rows_corrupted == 2


def test_alie_default_z_is_baruch_et_al_z_max():
    assert alie_z(10, 2) == pytest.approx(0.2533, abs=1e-4)  # s = 6 - 2 = 4: Phi^-1(6/10)
    spec = AdversarySpec(attack="alie", fraction=0.2)
    assert Adversary(spec, [1, 2], 11, 10, 0).z == alie_z(10, 2)


def test_replay_resends_the_first_row_of_each_kind():
    adversary = Adversary(AdversarySpec(attack="replay", peers=(1,)), [1], 2, 2, 0)
    assert adversary.outgoing(1, "model", torch.tensor([1.0])).item() == 1.0
    assert adversary.outgoing(1, "model", torch.tensor([5.0])).item() == 1.0
    assert adversary.outgoing(1, "reply", torch.tensor([7.0])).item() == 7.0


def test_a_sign_flipper_slows_the_mean_by_the_closed_form():
    """3 workers, gradients w - 1, one sends -(w - 1): the mean is (w - 1)/3, so w_R = 1 - (1 - lr/3)^R."""
    rounds, lr = 12, 0.1
    world = _run_quadratic(_sync_ps(3, adversary={"peers": [2], "attack": "sign_flip"}, rounds=rounds))
    assert world.params[0].item() == pytest.approx(1 - (1 - lr / 3) ** rounds, rel=1e-5)
    assert world.outcome.info["byzantine_peers"] == [2] and world.outcome.info["byzantine_rows_sent"] == rounds
    assert [row["byzantine"] for row in world.outcome.peers] == [False, False, True, False]


@pytest.mark.parametrize(
    "aggregation, holds, breaks",
    [
        ({"rule": "median"}, [1, 2, 3], [1, 2, 3, 4]),  # f < k/2 of k = 7
        ({"rule": "krum", "f": 2}, [1, 2], None),  # k > 2f + 2
        ({"rule": "krum", "f": 3}, None, [1, 2, 3]),  # 7 = 2f + 1: the three clones score 0 and come first
        ({"rule": "trimmed_mean", "f": 3}, [1, 2, 3], None),
        ({"rule": "mean"}, None, [1]),
    ],
)
def test_in_a_run_a_rule_holds_to_its_fraction_and_breaks_beyond(aggregation, holds, breaks):
    """7 workers on the quadratic; attackers send -10 x their gradient. Holding: the very trajectory of no attack."""
    clean = _run_quadratic(_sync_ps(7, aggregation))
    assert clean.params[0].item() == pytest.approx(1 - 0.9**40, rel=1e-5)
    if holds is not None:
        attacked = _run_quadratic(_sync_ps(7, aggregation, {"peers": holds, "attack": "scaled", "scale": -10.0}))
        assert attacked.params[0].item() == clean.params[0].item()
    if breaks is not None:
        attacked = _run_quadratic(_sync_ps(7, aggregation, {"peers": breaks, "attack": "scaled", "scale": -10.0}))
        assert attacked.status == "diverged" or attacked.params[0].item() < 0  # moved away from 1, beyond the start


def test_gossip_metrics_describe_the_honest_peers_only():
    data = round_number_scenario(
        {"h100_sxm": 6},
        {"algorithm": {"name": "gossip", "lr": 0.05}, "adversary": {"peers": [4], "attack": "gaussian", "sigma": 100.0},
         "workload.params": 1000, "task.n_features": 1, "stop": {"steps": 60}, "metrics": {"eval_interval_samples": 10**6}},
    )
    world = _run_quadratic(data)
    honest = torch.tensor([0, 1, 2, 3, 5])
    assert torch.equal(world.algorithm.evaluated_model(), world.params[honest].mean(dim=0))
    assert world.outcome.info["byzantine_rows_sent"] > 0
    assert "honest peers only" in world.outcome.info["evaluated_peers"]


def _async_ps(aggregation: dict, adversary: dict | None = None, buffers: int = 7) -> dict:
    """async_ps with BASGD buffers on 7 workers, as `_sync_ps` otherwise."""
    data = _sync_ps(7, adversary=adversary)
    data["algorithm"] = {"name": "async_ps", "lr": 0.1, "buffers": buffers, "aggregation": aggregation}
    return data


def test_basgd_buffers_hold_async_ps_while_attackers_spoil_a_minority_of_buffers():
    """7 buffers, one per worker: 3 attackers (-10 x gradient) spoil 3, the median of 7 holds; the mean breaks with 1.

    From w = 0 to the optimum 1 in 280 gradients: 0.9915 without attackers, 0.9852 with three (the median
    then picks among stale honest gradients, not the one the clean run picks).
    """
    clean = _run_quadratic(_async_ps({"rule": "median"}))
    attacked = _run_quadratic(_async_ps({"rule": "median"}, {"peers": [1, 2, 3], "attack": "scaled", "scale": -10.0}))
    assert abs(clean.params[0].item() - 1) < 0.01 and abs(attacked.params[0].item() - 1) < 0.02
    broken = _run_quadratic(_async_ps({"rule": "mean"}, {"peers": [1], "attack": "scaled", "scale": -10.0}))
    assert broken.status == "diverged" or broken.params[0].item() < 0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"buffers": 0}, "algorithm.buffers: must be > 0 for aggregation.rule = 'median'"),
        ({"buffers": 8}, "algorithm.buffers: must be in \\[0, 7\\] \\(a buffer per worker at most\\), got 8"),
        ({"staleness_aware": True}, "algorithm.buffers: steps with buffer aggregates, not per gradient"),
    ],
)
def test_basgd_settings_are_validated(changes, message):
    data = _async_ps({"rule": "median"})
    data["algorithm"].update(changes)
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_dict(data)
