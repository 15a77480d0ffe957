"""Cost of simulating: the engine's wall time against the raw batched compute it must do anyway.

For each peer count, run the quick-start device mix (no baselines, one history row at
the end) and record the batch sizes the engine reached; then, in the same process,
time the same vmapped gradient evaluations at the same batch sizes with nothing
around them. The ratio (simulation / raw compute) is the pure cost of simulating.

Two network settings: "home" is the quick-start scenario itself (home access links in
seven regions: peers mostly wait on the network, so few computations overlap), and
"datacenter" puts the same devices on NVLink in one place (compute-bound: many
computations overlap and batch together).

    python benchmarks/bench_engine.py [--peers 64 256] [--repeats 5] [--samples-per-peer 320]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.func import functional_call, grad_and_value, vmap

from p2psim.build import build_run
from p2psim.engine import World
from p2psim.scenario import load_scenario

QUICKSTART = "experiments/scenarios/quickstart.toml"


def scenario_for(peers: int, samples_per_peer: int, network: str = "home"):
    """The quick-start scenario scaled to `peers` peers, same device (and link and region) shares."""
    base = load_scenario(QUICKSTART)
    scale = {k: v / base.peers.count for k, v in base.peers.devices.items()}
    overrides = {
        "peers.count": peers,
        "peers.devices": scale,
        "peers.links": {k: v / base.peers.count for k, v in base.peers.links.items()},
        "peers.regions": {k: v / base.peers.count for k, v in base.peers.regions.items()},
        "stop.samples": peers * samples_per_peer,
        "metrics.eval_interval_s": 1e9,
        "baselines": [],
    }
    if network == "datacenter":
        overrides.update({"peers.links": {"nvlink": 1.0}, "peers.regions": {}})
    return base.with_overrides(overrides)


def raw_compute_s(setup, batch_sizes: list[int]) -> float:
    """Wall time of the same gradient evaluations, batch by batch, with nothing around them."""
    task = setup.task
    batch = setup.scenario.data.batch_size

    def loss_of(flat, x, y):
        return task.loss(functional_call(task.model, task.unflatten(flat), (x,)), y)

    gradients = vmap(grad_and_value(loss_of))
    rows = task.initial_params.unsqueeze(0).repeat(max(batch_sizes), 1)
    x = task.x_train[: batch].unsqueeze(0).repeat(max(batch_sizes), 1, 1)
    y = task.y_train[: batch].unsqueeze(0).repeat(max(batch_sizes), 1)
    start = time.perf_counter()
    for k in batch_sizes:
        index = torch.arange(k)
        gradients(rows.index_select(0, index), x.index_select(0, index), y.index_select(0, index))
    return time.perf_counter() - start


def measure(peers: int, samples_per_peer: int, network: str = "home") -> dict[str, float]:
    """One simulation and its raw-compute replay; threads fixed to the scenario's (1)."""
    setup = build_run(scenario_for(peers, samples_per_peer, network))
    torch.set_num_threads(setup.scenario.engine.threads)
    world = World(setup)
    start = time.perf_counter()
    outcome = world.run()
    simulate_s = time.perf_counter() - start
    raw_s = raw_compute_s(setup, world.batch_sizes)
    return {
        "simulate_s": simulate_s,
        "raw_s": raw_s,
        "ratio": simulate_s / raw_s,
        "mean_batch": outcome.info["mean_gradient_batch"],
        "steps": outcome.info["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--network", nargs="+", default=["home", "datacenter"], choices=["home", "datacenter"])
    parser.add_argument("--samples-per-peer", type=int, default=320)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    measure(16, 40)  # warm-up: torch imports and compiles its vmap machinery on first use
    print(f"{'network':>10} {'peers':>6} {'steps':>7} {'mean batch':>10} {'simulate s':>11} {'raw compute s':>14} {'ratio':>6}  (median of {args.repeats})")
    for network in args.network:
        for peers in args.peers:
            runs = [measure(peers, args.samples_per_peer, network) for _ in range(args.repeats)]
            ratio = statistics.median(r["ratio"] for r in runs)
            median = min(runs, key=lambda r: abs(r["ratio"] - ratio))
            print(
                f"{network:>10} {peers:>6} {median['steps']:>7} {median['mean_batch']:>10.2f} {median['simulate_s']:>11.2f} "
                f"{median['raw_s']:>14.2f} {ratio:>6.2f}"
            )


if __name__ == "__main__":
    main()
