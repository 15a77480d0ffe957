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

import time

from ab import compare_in_turn, digest, import_tree


def measure(tree: str, args: list[str]) -> dict:
    """One measurement in this process, with p2psim imported from `tree` (the child's side)."""
    run_all = import_tree(tree)
    import torch

    from p2psim.build import build_run
    from p2psim.engine import World

    def run(scenario):
        world = World(build_run(scenario))
        torch.set_num_threads(1)
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = world.run()
        return time.perf_counter() - wall, time.process_time() - cpu, world, outcome

    if args[0] == "events":
        peers, sim_time_s = int(args[1]), float(args[2])
        scenario = run_all.events_scenario(peers, sim_time_s)
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
    compare_in_turn(__file__, measure, "events PEERS SIM_TIME_S | floor PEERS WORLD NUMERICS ALGORITHM STEPS", argv)


if __name__ == "__main__":
    main()
