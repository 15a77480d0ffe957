"""Cost of simulating under churn: `bench_engine.py`'s ratio (wall / raw batched compute) with churn on and off.

Home network (max-min sharing, the default), AD-PSGD on the quick-start mix scaled to each peer
count; churn: every peer alternates exponential sessions of mean 60 s and downtimes of mean 20 s
(a quarter of the peers away at any instant), timeouts of 30 s. The raw compute replays the
same batch sizes, so the ratio is the cost of simulating, churn's bookkeeping included.

    PYTHONPATH=.:benchmarks python benchmarks/bench_churn.py [--peers 256 4096] [--samples-per-peer 320 20]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bench_engine import QUICKSTART, raw_compute_s, scenario_for
from p2psim.build import build_run
from p2psim.engine import World
from p2psim.scenario import load_scenario

CHURN = {
    "classes": [{"session": {"distribution": "exponential", "mean_s": 60.0},
                 "downtime": {"distribution": "exponential", "mean_s": 20.0}}],
    "timeout_s": 30.0,
}


# digits has 1,797 samples, fewer than 4,096 peers: at that scale the task is logistic regression on generated data
LOGISTIC = {"task": {"name": "logistic", "n_samples": 400000, "n_features": 20, "n_classes": 4}}


def measure(peers: int, samples_per_peer: int, churn: bool, task: str = "digits") -> dict[str, float]:
    """One simulation with or without churn, and the raw compute of its gradient batches."""
    if task == "logistic":  # the quick start's mix and links, as bench_engine.scenario_for, on generated data
        base = load_scenario(QUICKSTART)
        share = {name: {k: v / base.peers.count for k, v in getattr(base.peers, name).items()} for name in ("devices", "links", "regions")}
        scenario = base.with_overrides({
            **LOGISTIC, "peers.count": peers, **{f"peers.{name}": mix for name, mix in share.items()},
            "stop.samples": peers * samples_per_peer, "metrics.eval_interval_s": 1e9, "baselines": [],
        })
    else:
        scenario = scenario_for(peers, samples_per_peer)
    if churn:
        scenario = scenario.with_overrides({"churn": CHURN})
    setup = build_run(scenario)
    torch.set_num_threads(1)
    world = World(setup)
    start = time.perf_counter()
    outcome = world.run()
    simulate_s = time.perf_counter() - start
    raw_s = raw_compute_s(setup, world.batch_sizes)
    return {
        "simulate_s": simulate_s, "raw_s": raw_s, "ratio": simulate_s / raw_s,
        "steps": outcome.info["steps"], "sim_time_s": outcome.info["sim_time_s"],
        "departures": outcome.info.get("churn_departures", 0), "mean_batch": outcome.info["mean_gradient_batch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--samples-per-peer", type=int, nargs="+", default=[320, 20])
    parser.add_argument("--task", choices=["digits", "logistic"], default="digits", help="logistic: generated data, for 4096 peers")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    measure(16, 40, False)  # warm-up
    print(f"{'task':>8} {'peers':>6} {'churn':>6} {'steps':>7} {'sim s':>8} {'departures':>10} {'mean batch':>10} {'simulate s':>11} {'raw s':>8} {'ratio':>6}")
    for peers, per_peer in zip(args.peers, args.samples_per_peer):
        for churn in (False, True):
            r = measure(peers, per_peer, churn, args.task)
            print(f"{args.task:>8} {peers:>6} {str(churn):>6} {r['steps']:>7} {r['sim_time_s']:>8.1f} {r['departures']:>10} {r['mean_batch']:>10.2f} "
                  f"{r['simulate_s']:>11.2f} {r['raw_s']:>8.2f} {r['ratio']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
