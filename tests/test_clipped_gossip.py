"""ClippedGossip: one round by hand, atc_dsgd when nothing is clipped, and honest peers held against a lying neighbour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2psim.testing import quadratic_world, round_number_scenario


def _world(n: int, algorithm: dict, b: np.ndarray, seconds: float, adversary: dict | None = None, kind: str = "complete"):
    """n H100s (1 s steps), 1000-parameter messages (54 ms), f_i(x) = (x - b_i)^2 / 2; run for `seconds`."""
    changes = {
        "algorithm": algorithm,
        "task.n_features": 1,
        "workload.params": 1000,
        "topology": {"kind": kind},
        "stop": {"sim_time_s": seconds},
        "metrics": {"eval_interval_s": seconds},
    }
    if adversary is not None:
        changes["adversary"] = adversary
    world = quadratic_world(round_number_scenario({"h100_sxm": n}, changes), b)
    world.outcome = world.run()
    return world


def test_one_round_by_hand():
    """Complete graph of 3, W = 1/3 (Metropolis), lr 1: x^{1/2} = b = (0, 0, 10); tau 1 moves each row by 1/3 per neighbour."""
    world = _world(3, {"name": "clipped_gossip", "lr": 1.0, "tau": 1.0}, np.array([0.0, 0.0, 10.0]), 1.5)
    assert world.params.flatten().tolist() == pytest.approx([1 / 3, 1 / 3, 10 - 2 / 3])


def test_without_clipping_it_is_atc_dsgd():
    b = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    clipped = _world(6, {"name": "clipped_gossip", "lr": 0.1, "tau": 1e6}, b, 20.0, kind="ring")
    plain = _world(6, {"name": "atc_dsgd", "lr": 0.1}, b, 20.0, kind="ring")
    assert torch.allclose(clipped.params, plain.params, atol=1e-6)
    assert clipped.outcome.info["steps"] == plain.outcome.info["steps"] > 60


def test_honest_peers_hold_where_plain_gossip_breaks():
    """Complete graph of 8, one peer sends N(0, 100^2) models: atc_dsgd's honest mean ends far from 1; tau = 0.1 holds it."""
    b = np.ones(8)
    adversary = {"peers": [5], "attack": "gaussian", "sigma": 100.0}
    plain = _world(8, {"name": "atc_dsgd", "lr": 0.1}, b, 40.0, adversary)
    clipped = _world(8, {"name": "clipped_gossip", "lr": 0.1, "tau": 0.1}, b, 40.0, adversary)
    honest = [0, 1, 2, 3, 4, 6, 7]
    assert plain.outcome.info["status"] == "diverged" or (plain.params[honest] - 1).abs().max() > 1
    # each round the liar moves an honest row by at most W tau = 0.1/8, against a pull of lr (x - 1) = 0.1 (x - 1)
    assert (clipped.params[honest] - 1).abs().max().item() <= 0.125 + 1e-6
    assert clipped.outcome.info["status"] == "finished"
