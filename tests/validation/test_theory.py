"""Results from theory that the simulator must reproduce, end to end through the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from p2psim import Scenario, run
from p2psim.algorithms import ADPSGD, register_algorithm
from p2psim.build import build_run
from p2psim.engine import World
from p2psim.metrics import consensus_distance
from p2psim.scenario import set_dotted


def scenario(peers: int, **changes) -> dict:
    """Equal H100s on fast links: a least-squares task whose timings come from its own model."""
    data = {
        "seed": 0,
        "task": {"name": "least_squares", "n_samples": 1000, "n_features": 10},
        "data": {"batch_size": 8},
        "peers": {"devices": {"h100_sxm": peers}, "links": {"fibre": peers}, "jitter": 0.3},
        "topology": {"kind": "complete"},
        "algorithm": {"name": "adpsgd", "lr": 0.05},
        "stop": {"sim_time_s": 5.0},
        "metrics": {"eval_interval_s": 1.0},
    }
    for dotted, value in changes.items():
        set_dotted(data, dotted, value)
    return data


class _CountedGossip(ADPSGD):
    """AD-PSGD's exchanges without gradient steps, from random rows; notes V after `LIMIT` averages."""

    name = "validation_counted_gossip"
    config_class = type("CountedGossipConfig", (ADPSGD.config_class,), {})
    LIMIT = 48

    def start(self):
        generator = torch.Generator().manual_seed(1234)
        self.world.params.copy_(torch.randn(self.world.params.shape, generator=generator))
        self.initial = consensus_distance(self.world.params)[0]
        self.averages = 0
        self.final = math.nan
        super().start()

    def _apply(self, job):
        self.world.consume(job)  # no gradient step: pure gossip
        self.averages += 1
        if self.averages == self.LIMIT:
            self.final = consensus_distance(self.world.params)[0]


register_algorithm(_CountedGossip)


def test_randomized_gossip_on_the_complete_graph_contracts_at_the_closed_form_rate():
    """Boyd, Ghosh, Prabhakar, Shah, "Randomized gossip algorithms", IEEE ToIT 2006.

    On K_n, averaging a uniformly random pair removes |x_i - x_j|^2 / 2 from
    V = sum_i |x_i - mean|^2, and E|x_i - x_j|^2 = 2 V / (n - 1) over pairs, so
    E[V after m averages] = V_0 (1 - 1/(n-1))^m exactly, whatever the timing.
    """
    n, seeds = 12, 40
    ratios = []
    for seed in range(seeds):
        # Memoryless steps and near-instant exchanges (NVLink, a 10-parameter model): the next
        # peer to finish is uniform over all peers, as the theorem's Poisson clocks assume.
        data = scenario(
            n,
            seed=seed,
            **{
                "algorithm.name": "validation_counted_gossip",
                "peers.step_time_distribution": "exponential",
                "peers.jitter": 0.0,
                "peers.links": {"nvlink": n},
                "stop": {"steps": _CountedGossip.LIMIT + 2 * n},  # enough gradients for LIMIT averages
            },
        )
        world = World(build_run(Scenario.from_dict(data)))
        world.run()
        assert world.algorithm.averages >= _CountedGossip.LIMIT
        ratios.append(world.algorithm.final / world.algorithm.initial)
    expected = (1 - 1 / (n - 1)) ** _CountedGossip.LIMIT
    standard_error = np.std(ratios, ddof=1) / math.sqrt(seeds)
    assert abs(np.mean(ratios) - expected) < 4 * standard_error + 1e-3 * expected


def test_adpsgd_on_one_peer_is_plain_sgd_which_is_the_one_device_baseline():
    """With no neighbour there is nothing to average: AD-PSGD reduces to SGD, step for step."""
    alone = run(Scenario.from_dict(scenario(1, **{"stop": {"steps": 40}})), baselines=False)
    central = run(Scenario.from_dict(scenario(1, **{"stop": {"steps": 40}, "algorithm.name": "allreduce"})), baselines=False)
    assert alone.history.equals(central.history)


def test_adpsgd_reaches_the_exact_optimum_in_the_interpolation_regime():
    """Noise-free least squares: constant-step SGD converges linearly to the exact minimiser
    (Ma, Bassily, Belkin, ICML 2018), and gossip drives every peer to it (consensus -> 0)."""
    data = scenario(8, **{"task.noise": 0.0, "topology.kind": "ring", "stop.sim_time_s": 30.0})
    result = run(Scenario.from_dict(data), baselines=False)
    last = result.run_history().iloc[-1]
    first = result.run_history().iloc[0]
    assert first["suboptimality"] > 1e-2
    assert last["suboptimality"] < 1e-6 * first["suboptimality"]  # down to float32 resolution
    assert last["consensus_distance"] < 1e-9


@pytest.mark.parametrize("count", [2, 4, 8])
def test_a_data_parallel_cluster_does_the_same_work_faster(count):
    """K devices each on 1/K of the global batch: compute time per step drops by K, and the
    all-reduce adds 2(K-1)(L + S/(K B)); samples per step are the same."""
    base = scenario(1, **{"algorithm.name": "allreduce", "peers.jitter": 0.0, "stop": {"steps": 1}})
    base["data"]["batch_size"] = 64
    base["workload"] = {"name": "timing", "flops_per_sample": 1e12, "params": 1e6}
    one = build_run(Scenario.from_dict(base))
    base["peers"] = {"devices": {"h100_sxm": count}, "links": {"infiniband": count}, "jitter": 0.0}
    base["data"]["batch_size"] = 64 // count
    base["stop"] = {"steps": count}  # gradients count as steps when applied: after the all-reduce
    cluster = build_run(Scenario.from_dict(base))
    overhead = 1e-3
    compute_one = one.step_time_s[0] - overhead
    assert cluster.step_time_s[0] - overhead == pytest.approx(compute_one / count)
    world = World(cluster)
    world.run()
    latency = cluster.latency_s(0, 1)
    allreduce = 2 * (count - 1) * (latency + cluster.model_bytes / count / cluster.uplink_bytes_per_s[0])
    assert world.now == pytest.approx(compute_one / count + overhead + allreduce, rel=1e-9)
