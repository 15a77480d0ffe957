"""The per-step path's cost before and after a change: FedAvg (benchmark 2) and the scale world, two trees, interleaved.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_step_path.py --before /tmp/before fedavg
    python benchmarks/bench_step_path.py --before /tmp/before scale 10000

Each measurement is a fresh process that imports p2psim from its tree. `fedavg`: run_all's
FedAvg job (100 clients, 20 rounds) through p2psim once to warm up, then timed, then the
hand-written vmap floor timed in the same process. `scale N`: run_all's scale world (AD-PSGD,
N peers, 2 steps each, deferred) built, then its run timed. Times are the run's alone (not the
build's), in the process's CPU seconds (`time.process_time`, which others' load on a shared
machine inflates less than the wall) and wall seconds; the floor's CPU seconds are its whole
call's. The trees alternate (before, after, before, ...) and the table gives medians and every
run. `digest` hashes the history, the per-peer rows and the final parameters: equal digests mean
the same results.
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
    from p2psim.scenario import Scenario

    worlds: list = []

    class Recorded(World):
        """A World that remembers itself, for the digest."""

        def run(self):
            worlds.append(self)
            start = time.process_time()
            self.outcome = super().run()
            self.cpu_s = time.process_time() - start
            return self.outcome

    run_all.World = Recorded

    if args[0] == "fedavg":
        job = run_all.FedAvgJob()
        run_all.fedavg_p2psim(job, "cpu")
        row = run_all.fedavg_p2psim(job, "cpu")
        cpu = worlds[-1].cpu_s  # the run's, as run_all's wall_s: not the build's
        task = build_run(Scenario.from_dict({
            "name": "t", "task": {"name": "digits_mlp", "hidden": [job.hidden]},
            "peers": {"count": 2, "devices": {"h100_sxm": 2}, "links": {"nvlink": 2}},
            "algorithm": {"name": "adpsgd", "lr": 0.1}, "stop": {"steps": 1}, "metrics": {"eval_interval_s": 1.0}})).task
        run_all.fedavg_vmap_loop(run_all.FedAvgJob(clients=4, rounds=1), task)
        floor_cpu = time.process_time()
        floor = run_all.fedavg_vmap_loop(job, task)
        floor_cpu = time.process_time() - floor_cpu
        return {"cpu_s": cpu, "wall_s": row["wall_s"], "floor_cpu_s": floor_cpu, "floor_wall_s": floor["wall_s"],
                "x_floor_cpu": cpu / floor_cpu, "accuracy": row["accuracy"], "digest": digest(worlds[-1], worlds[-1].outcome)}
    peers = int(args[1])
    world = Recorded(build_run(run_all.scale_scenario(peers, 2, "cpu", "deferred")))
    torch.set_num_threads(1)
    wall = time.perf_counter()
    world.run()
    return {"cpu_s": world.cpu_s, "wall_s": time.perf_counter() - wall, "digest": digest(world, world.outcome)}


def main(argv: list[str] | None = None) -> None:
    compare_in_turn(__file__, measure, "fedavg | scale PEERS", argv, every_run=True)


if __name__ == "__main__":
    main()
