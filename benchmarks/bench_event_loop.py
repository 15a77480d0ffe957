"""The event loop's cost before and after a change: run_all's events and floor benchmarks, two trees, interleaved.

    git worktree add /tmp/before 7166edf
    python benchmarks/bench_event_loop.py --before /tmp/before --repeats 3 events 1024 0.3
    python benchmarks/bench_event_loop.py --before /tmp/before floor 256 datacenter deferred adpsgd 5

Each measurement is a fresh process that imports p2psim from its tree, runs the scenario once
to warm up (events: a tenth of the simulated time; floor: the whole run, reported as cold) and
then once timed, in wall seconds and in the process's CPU seconds (`time.process_time`, which
other sessions' load on a shared machine inflates less than the wall). The trees alternate
(before, after, before, after, ...) and the table gives medians. `digest` hashes the history,
the per-peer rows and the final parameters: equal digests mean the same results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(tree: str, args: list[str]) -> dict:
    """One measurement in this process, with p2psim imported from `tree` (the child's side)."""
    warnings.simplefilter("ignore")
    sys.path[:0] = [tree, f"{tree}/benchmarks"]
    import run_all
    import torch
    from p2psim.algorithms.base import IMPLEMENTATIONS, register_algorithm
    from p2psim.build import build_run
    from p2psim.engine import World
    from p2psim.scenario import Scenario

    torch.set_num_threads(1)

    def run(scenario):
        world = World(build_run(scenario))
        torch.set_num_threads(1)
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = world.run()
        return time.perf_counter() - wall, time.process_time() - cpu, world, outcome

    def digest(world, outcome) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(outcome.history, sort_keys=True, default=str).encode())
        h.update(json.dumps(outcome.peers, sort_keys=True, default=str).encode())
        h.update(world.params.numpy().tobytes())
        return h.hexdigest()[:12]

    if args[0] == "events":
        peers, sim_time_s = int(args[1]), float(args[2])
        if run_all.PushGossip.name not in IMPLEMENTATIONS:
            register_algorithm(run_all.PushGossip)
        scenario = Scenario.from_dict({
            "name": "events", "seed": 0,
            "task": {"name": "logistic", "n_samples": 4 * peers, "n_features": 2, "n_classes": 2},
            "peers": {"count": peers, "devices": {"h100_sxm": 1.0}, "links": {"fibre": 1.0}},
            "topology": {"kind": "random_regular", "degree": 4},
            "algorithm": {"name": run_all.PushGossip.name, "lr": 0.1},
            "stop": {"sim_time_s": sim_time_s},
            "metrics": {"eval_interval_s": 1e9, "sample_peers": 64},
        })
        run(scenario.with_overrides({"stop.sim_time_s": sim_time_s / 10}))
        wall, cpu, world, outcome = run(scenario)
        return {"wall_s": wall, "cpu_s": cpu, "events": run_all._events(world), "messages": outcome.info["messages"],
                "digest": digest(world, outcome)}
    peers, world_kind, numerics, algorithm, steps = int(args[1]), args[2], args[3], args[4], int(args[5])
    scenario = run_all.world_scenario(peers, world_kind, "digits", algorithm, steps, "cpu", numerics)
    cold_wall, cold_cpu, _, _ = run(scenario)
    wall, cpu, world, outcome = run(scenario)
    start = time.process_time()
    floor = run_all.batched_floor_s(world.setup.task, outcome.info["gradients_computed"], peers, scenario.data.batch_size)
    return {"cold_wall_s": cold_wall, "cold_cpu_s": cold_cpu, "wall_s": wall, "cpu_s": cpu, "floor_s": floor,
            "floor_cpu_s": time.process_time() - start, "digest": digest(world, outcome),
            "events": run_all._events(world), "gradients": outcome.info["gradients_computed"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a worktree of the commit to compare against")
    parser.add_argument("--after", default=str(ROOT), help="the tree measured after (default: this one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("benchmark", nargs="+", help="events PEERS SIM_TIME_S | floor PEERS WORLD NUMERICS ALGORITHM STEPS")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.benchmark)))
        return
    trees = {"before": args.before, "after": args.after}
    rows: dict[str, list[dict]] = {name: [] for name in trees}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for name, tree in trees.items():
            done = subprocess.run([sys.executable, __file__, "--before", args.before, "--child", tree, *args.benchmark],
                                  capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            rows[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        loads.append(os.getloadavg()[0])
    print(f"{' '.join(args.benchmark)}: medians of {args.repeats}; 1-min load average during: {' '.join(f'{x:.1f}' for x in loads)}")
    for name, measured in rows.items():
        medians = {k: statistics.median(r[k] for r in measured) for k, v in measured[0].items() if isinstance(v, float)}
        same = {k: v for k, v in measured[0].items() if not isinstance(v, float)}
        steady = all(r["digest"] == measured[0]["digest"] for r in measured)
        print(f"  {name:6s} " + " ".join(f"{k}={v:.4g}" for k, v in medians.items()), same, "" if steady else "(digest varies)")


if __name__ == "__main__":
    main()
