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

import json
import os
import statistics
import time

from ab import child, digest, import_tree, row_of
from ab import parser as ab_parser


def measure(tree: str, benchmark: str, peers: int, amount: float) -> dict:
    """One timed run in this process, p2psim imported from `tree` (the child's side)."""
    run_all = import_tree(tree)
    import torch

    from p2psim.build import build_run
    from p2psim.engine import World

    def run(scenario):
        world = World(build_run(scenario))
        torch.set_num_threads(1)
        cpu = time.process_time()
        outcome = world.run()
        return time.process_time() - cpu, world, outcome

    if benchmark == "events":  # amount: simulated seconds
        scenario = run_all.events_scenario(peers, amount)
        run(scenario.with_overrides({"stop.sim_time_s": amount / 10}))
    else:  # scale; amount: steps a peer
        scenario = run_all.scale_scenario(peers, int(amount), "cpu", "deferred")
        run(run_all.scale_scenario(max(64, peers // 10), int(amount), "cpu", "deferred"))
    cpu, world, outcome = run(scenario)
    return {"cpu_s": cpu, "events": run_all._events(world), "steps": outcome.info["steps"], "digest": digest(world, outcome)}


def main(argv: list[str] | None = None) -> None:
    parser = ab_parser(__doc__.splitlines()[0], repeats=5)
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
        running = [(name, child(__file__, tree, command)) for name, tree in order]
        for name, process in running:
            rows[name].append(row_of(name, process))
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
