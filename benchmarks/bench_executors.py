"""Runs per minute for a sweep of the quick start at smoke size: serial, local pool, Ray and Dask.

    python benchmarks/bench_executors.py [--runs 200] [--workers 2]

Each executor runs the same sweep (the quick start at 8 peers and 512 samples, no baselines, one run
per seed, seeds 0..runs-1) into its own fresh folder, timed from the call to `p2psim.sweep` to the
table it returns, so worker start-up (Ray's and Dask's clusters included) is counted. "serial" is one
in-process thread. Overhead per run = (wall x workers - serial wall) / runs: the seconds of worker
time each run costs beyond its own compute. All tables must be equal, or the benchmark says so.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import p2psim
from p2psim.scenario import load_scenario
from p2psim.sweep import SweepSpec

ROOT = Path(__file__).resolve().parent.parent
SMOKE = {"peers.count": 8, "stop.samples": 512, "metrics.eval_interval_s": 600.0}


def measure(runs: int, workers: int) -> list[dict]:
    """One row per executor: wall seconds, runs per minute, overhead per run; the tables are compared."""
    base = load_scenario(ROOT / "experiments" / "scenarios" / "quickstart.toml")
    spec = SweepSpec(base=base, name="bench", fixed=SMOKE, seeds=tuple(range(runs)), baselines=False)
    rows, tables = [], {}
    for name, executor, count in (("serial", ThreadPoolExecutor(1), 1), ("local pool", "local", workers),
                                  ("ray", "ray", workers), ("dask", "dask", workers)):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            tables[name] = p2psim.sweep(spec, out=out, executor=executor, workers=count)
            wall = time.perf_counter() - start
        rows.append({"executor": name, "workers": count, "wall_s": wall, "runs_per_min": 60 * runs / wall})
    serial = rows[0]["wall_s"]
    for row in rows:
        row["overhead_s_per_run"] = (row["wall_s"] * row["workers"] - serial) / runs
    first = tables["serial"].drop(columns=["wall_s"], errors="ignore")
    for name, table in tables.items():
        same = table.drop(columns=["wall_s"], errors="ignore").equals(first)
        next(r for r in rows if r["executor"] == name)["same_table"] = same
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    print("| executor | workers | wall [s] | runs/min | overhead per run [s] | same table |")
    print("|---|---|---|---|---|---|")
    for r in measure(arguments.runs, arguments.workers):
        print(f"| {r['executor']} | {r['workers']} | {r['wall_s']:.1f} | {r['runs_per_min']:.1f} | "
              f"{r['overhead_s_per_run']:+.3f} | {r['same_table']} |", flush=True)
