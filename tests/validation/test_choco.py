"""CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019) against its theory: exact gossip without compression, consensus with top-k."""

from __future__ import annotations

import torch

from p2psim.build import build_graph, build_run
from p2psim.engine import World
from p2psim.metrics import consensus_distance
from p2psim.scenario import Scenario
from p2psim.testing import quadratic, round_number_scenario, simulate
from p2psim.topology import mixing_matrix


def ring(algorithm: str, **overrides) -> dict:
    """Six H100s on a ring, least squares, 1 s a step; models of 1e3 parameters (4 kB) on the wire."""
    defaults = {"workload.params": 1e3, "topology.kind": "ring", "algorithm.name": algorithm, "stop": {"steps": 60}}
    return round_number_scenario({"h100_sxm": 6}, defaults, overrides)


def test_choco_without_compression_and_gamma_one_is_adapt_then_combine_dsgd():
    """x̂_j = x_j^{t+1/2} exactly when Q is the identity, so x_i + sum_j W_ij (x̂_j - x̂_i) = sum_j W_ij x_j^{t+1/2}."""
    choco, atc = simulate(ring("choco", **{"algorithm.gamma": 1.0})), simulate(ring("atc_dsgd"))
    assert [r["time_s"] for r in choco.history] == [r["time_s"] for r in atc.history]
    assert [r["bytes_sent"] for r in choco.history] == [r["bytes_sent"] for r in atc.history]
    assert choco.steps == atc.steps == 60
    assert torch.allclose(choco.params, atc.params, atol=1e-6)
    assert not torch.equal(choco.params[0], choco.params[1])  # the peers differ: the equivalence is not vacuous


def test_choco_with_gamma_mixes_with_one_minus_gamma_identity_plus_gamma_w():
    """One round by hand on two peers of a complete graph (W = 1/2 everywhere): x_i <- x_i + gamma/2 (x_j - x_i), plus the step."""
    world = World(quadratic(build_run(Scenario.from_dict(round_number_scenario(
        {"h100_sxm": 2}, **{"algorithm.name": "choco", "algorithm.gamma": 0.25, "algorithm.lr": 0.1, "stop": {"sim_time_s": 5.5}})))))
    start = torch.stack([torch.full((5,), 1.0), torch.full((5,), -3.0)])
    world.params.copy_(start)
    world.run()
    # gradient at 1 s: a (a sum(x)) per coordinate, a = 0.5 over 5 features; messages arrive at 5.05 s, the next step is at 6.05 s
    half = start * (1 - 0.1 * 0.25 * 5)
    expected = half + 0.25 * 0.5 * (half.flip(0) - half)
    assert torch.allclose(world.params, expected, atol=1e-6)


def test_choco_with_top_k_follows_the_papers_recurrence_round_by_round_and_reaches_consensus():
    """60 rounds on a ring of 6, top-k of 4 of 20 values, gamma 0.4: the engine's rows equal Algorithm 2 written as
    matrices (x̂ <- x̂ + topk(x - lr g - x̂), x <- x - lr g + gamma (W - I) x̂), and consensus falls by 1e-6."""
    data = ring("choco", **{"algorithm.gamma": 0.4, "algorithm.lr": 0.01, "stop": {"sim_time_s": 60.5 * 1.050925},
                            "network.compression": {"kind": "top_k", "ratio": 0.2}})
    data["task"]["n_features"] = 20
    world = World(quadratic(build_run(Scenario.from_dict(data))))  # gradient a (a sum x) per coordinate, a = 0.5
    start = torch.randn(6, 20, generator=torch.Generator().manual_seed(0))
    world.params.copy_(start)
    world.run()  # a round: 1 s step, then 925 B (200 of 1e3 values, a 125 B bitmap) in 50.925 ms; 60 rounds by 63.06 s

    W = torch.tensor(mixing_matrix(build_graph(Scenario.from_dict(data)), "metropolis"), dtype=torch.float32)
    x, public = start.clone(), torch.zeros(6, 20)
    for _ in range(60):
        x = x - 0.01 * 0.25 * x.sum(dim=1, keepdim=True)
        difference = x - public
        kept = difference.abs().topk(4, dim=1).indices
        public = public + torch.zeros_like(difference).scatter_(1, kept, difference.gather(1, kept))
        x = x + 0.4 * (W @ public - public)
    assert world.steps == 6 * 60
    assert torch.allclose(world.params, x, atol=1e-5)
    assert consensus_distance(world.params)[0] < 1e-6 * consensus_distance(start)[0]
    assert world.network.bytes_sent.sum() == 60 * 6 * 2 * (200 * 4 + 125)  # 2 neighbours each
