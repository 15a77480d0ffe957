"""The per-message path's cost before and after a change: push-gossip events and the AD-PSGD scale run, two trees at once.

    mkdir /tmp/before && git archive bbefc06 | tar -x -C /tmp/before
    python benchmarks/bench_message_path.py --before /tmp/before --repeats 5 scale 10000 2
    python benchmarks/bench_message_path.py --before /tmp/before --repeats 5 events 1024 1.0

Each measurement is a fresh process that imports p2psim from its tree, runs a warm-up (events:
a tenth of the simulated time; scale: the same scenario at a tenth of the peers, at least 64)
and then the timed run, in the process's CPU seconds (`time.process_time`) with one torch
thread. The two trees' processes start together, so the load other sessions put on a shared
machine falls on both alike, and which one starts first alternates. `digest` hashes the
history, the per-peer rows and the final parameters: equal digests mean the same results.
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


def measure(tree: str, benchmark: str, peers: int, amount: float) -> dict:
    """One timed run in this process, p2psim imported from `tree` (the child's side)."""
    warnings.simplefilter("ignore")
    sys.path[:0] = [tree, f"{tree}/benchmarks"]
    import run_all
    import torch

    from p2psim.build import build_run
    from p2psim.engine import World

    torch.set_num_threads(1)

    def run(scenario):
        world = World(build_run(scenario))
        torch.set_num_threads(1)
        cpu = time.process_time()
        outcome = world.run()
        return time.process_time() - cpu, world, outcome

    if benchmark == "events":  # amount: simulated seconds
        scenario = _events_scenario(run_all, peers, amount)
        run(scenario.with_overrides({"stop.sim_time_s": amount / 10}))
    else:  # scale; amount: steps a peer
        scenario = run_all.scale_scenario(peers, int(amount), "cpu", "deferred")
        run(run_all.scale_scenario(max(64, peers // 10), int(amount), "cpu", "deferred"))
    cpu, world, outcome = run(scenario)
    digest = hashlib.sha256()
    digest.update(json.dumps(outcome.history, sort_keys=True, default=str).encode())
    digest.update(json.dumps(outcome.peers, sort_keys=True, default=str).encode())
    digest.update(world.params.numpy().tobytes())
    events = run_all._events(world)
    return {"cpu_s": cpu, "events": events, "steps": outcome.info["steps"], "digest": digest.hexdigest()[:12]}


def _events_scenario(run_all, peers: int, sim_time_s: float):
    """`run_all.events_row`'s scenario: push gossip of a 6-parameter model over a random 4-regular graph of fibre links."""
    from p2psim.algorithms.base import IMPLEMENTATIONS, register_algorithm
    from p2psim.scenario import Scenario

    if run_all.PushGossip.name not in IMPLEMENTATIONS:
        register_algorithm(run_all.PushGossip)
    return Scenario.from_dict({
        "name": "events", "seed": 0,
        "task": {"name": "logistic", "n_samples": 4 * peers, "n_features": 2, "n_classes": 2},
        "peers": {"count": peers, "devices": {"h100_sxm": 1.0}, "links": {"fibre": 1.0}},
        "topology": {"kind": "random_regular", "degree": 4},
        "algorithm": {"name": run_all.PushGossip.name, "lr": 0.1},
        "stop": {"sim_time_s": sim_time_s},
        "metrics": {"eval_interval_s": 1e9, "sample_peers": 64},
    })


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a tree of the commit to compare against")
    parser.add_argument("--after", default=str(ROOT), help="the tree measured after (default: this one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("benchmark", choices=["events", "scale"])
    parser.add_argument("peers", type=int)
    parser.add_argument("amount", type=float, help="events: simulated seconds; scale: steps a peer")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.benchmark, args.peers, args.amount)))
        return
    trees = [("before", args.before), ("after", args.after)]
    rows: dict[str, list[dict]] = {name: [] for name, _ in trees}
    loads = [os.getloadavg()[0]]
    for repeat in range(args.repeats):
        order = trees if repeat % 2 == 0 else trees[::-1]
        command = [args.benchmark, str(args.peers), str(args.amount)]
        running = [
            (name, subprocess.Popen(
                [sys.executable, __file__, "--before", args.before, "--child", tree, *command], stdout=subprocess.PIPE,
                text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": tree},
            ))
            for name, tree in order
        ]
        for name, process in running:
            stdout, _ = process.communicate()
            if process.returncode:
                raise SystemExit(f"{name} failed (exit {process.returncode})")
            rows[name].append(json.loads(stdout.strip().splitlines()[-1]))
        loads.append(os.getloadavg()[0])
    print(f"{args.benchmark} {args.peers} {args.amount:g}: CPU seconds, medians of {args.repeats}; "
          f"1-min load average during: {' '.join(f'{x:.1f}' for x in loads)}")
    medians = {name: statistics.median(r["cpu_s"] for r in measured) for name, measured in rows.items()}
    for name, measured in rows.items():
        runs = " ".join(f"{r['cpu_s']:.3f}" for r in measured)
        per_cpu_s = statistics.median(r["events"] / r["cpu_s"] for r in measured)
        digests = sorted({r["digest"] for r in measured})
        print(f"  {name:6s} cpu_s={medians[name]:.3f} ({runs}) events={measured[0]['events']} steps={measured[0]['steps']} "
              f"events/cpu_s={per_cpu_s:.0f} digests={digests}")
    ratios = " ".join(f"{a['cpu_s'] / b['cpu_s']:.3f}" for a, b in zip(rows["after"], rows["before"]))
    print(f"  after/before {medians['after'] / medians['before']:.3f} (medians); each repeat: {ratios}")


if __name__ == "__main__":
    main()
