"""Eager against deferred numerics: the simulator's time over the batched floor, and where the time goes.

Times are this process's CPU seconds (`time.process_time`, one torch thread): on a shared,
loaded machine they measure the work done where wall time measures the neighbours too.
The batched floor is the time of the same number of gradients of the same model and
batch size evaluated as n-row vmapped calls (n = the peer count), measured in the same
process: what the run's numerics would cost with nothing around them, batched as well as
the peer count allows. `--profile` adds cProfile's top functions by own time for each run.
Worlds: "home" (the quick start's home links in seven regions) and "datacenter" (the same
devices on NVLink in one place), both from benchmarks/bench_engine.py.

    python benchmarks/bench_numerics.py [--peers 256 1024] [--steps-per-peer 20] [--profile 12]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import platform
import pstats
import time

import torch
from bench_engine import scenario_for
from torch.func import functional_call, grad_and_value, vmap

from p2psim.build import build_run
from p2psim.engine import World


def batched_floor_s(setup, gradients_computed: int) -> float:
    """Wall time of `gradients_computed` gradients as n-row vmapped calls (the last call holds the rest)."""
    task, n, batch = setup.task, setup.n_peers, setup.scenario.data.batch_size

    def loss_of(flat, x, y):
        return task.loss(functional_call(task.model, task.unflatten(flat), (x,)), y)

    gradients = vmap(grad_and_value(loss_of))
    rows = task.initial_params.unsqueeze(0).repeat(n, 1)
    index = torch.randint(len(task.x_train), (n, batch), generator=torch.Generator().manual_seed(0))
    x, y = task.x_train[index], task.y_train[index]
    sizes = [n] * (gradients_computed // n) + ([gradients_computed % n] if gradients_computed % n else [])
    start = time.process_time()
    for k in sizes:
        gradients(rows[:k], x[:k], y[:k])
    return time.process_time() - start


def measure(peers: int, steps_per_peer: int, network: str, numerics: str, profile: int) -> dict:
    """One run (one torch thread) and its batched floor; cProfile's top `profile` rows if asked."""
    base = scenario_for(peers, 1, network)
    scenario = base.with_overrides(
        {"stop.samples": peers * steps_per_peer * base.data.batch_size, "engine.numerics": numerics}
    )
    setup = build_run(scenario)
    torch.set_num_threads(scenario.engine.threads)
    world = World(setup)
    profiler = cProfile.Profile(time.process_time) if profile else None
    start = time.process_time()
    if profiler:
        profiler.enable()
    outcome = world.run()
    if profiler:
        profiler.disable()
    cpu_s = time.process_time() - start
    floor_s = batched_floor_s(setup, outcome.info["gradients_computed"])
    top = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
        top = out.getvalue()
    return {
        "cpu_s": cpu_s,
        "floor_s": floor_s,
        "ratio": cpu_s / floor_s if floor_s > 0 else math.nan,
        "mean_batch": outcome.info["mean_gradient_batch"],
        "gradients": outcome.info["gradients_computed"],
        "numerics": outcome.info["numerics"],
        "profile": top,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--network", nargs="+", default=["home", "datacenter"], choices=["home", "datacenter"])
    parser.add_argument("--numerics", nargs="+", default=["eager", "deferred"], choices=["eager", "deferred"])
    parser.add_argument("--steps-per-peer", type=int, default=20)
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N functions by own time")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    measure(16, 2, "home", "eager", 0)  # warm-up: torch compiles its vmap machinery on first use
    print(f"{'network':>10} {'peers':>6} {'numerics':>9} {'gradients':>9} {'mean batch':>10} {'cpu s':>8} {'floor s':>8} {'ratio':>6}")
    for network in args.network:
        for peers in args.peers:
            for numerics in args.numerics:
                r = measure(peers, args.steps_per_peer, network, numerics, args.profile)
                print(
                    f"{network:>10} {peers:>6} {r['numerics']:>9} {r['gradients']:>9} {r['mean_batch']:>10.1f} "
                    f"{r['cpu_s']:>8.2f} {r['floor_s']:>8.3f} {r['ratio']:>6.1f}",
                    flush=True,
                )
                if r["profile"]:
                    print(r["profile"], flush=True)


if __name__ == "__main__":
    main()
