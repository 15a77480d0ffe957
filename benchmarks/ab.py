"""Before/after measurements of two source trees, shared by the bench_* scripts: children, digests, medians.

Each measurement runs in a fresh process that imports p2psim (and run_all) from its tree, so
two commits are compared in one session on the same machine. The tree's run_all must define
the scenario a benchmark names (`events_scenario` for `events`: run_all has it from the commit that added this file on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_tree(tree: str):
    """Import p2psim and benchmarks/run_all from `tree` (in a child); its run_all module, torch on one thread."""
    warnings.simplefilter("ignore")
    sys.path[:0] = [tree, f"{tree}/benchmarks"]
    import run_all
    import torch

    torch.set_num_threads(1)
    return run_all


def digest(world, outcome) -> str:
    """A hash of the history, the per-peer rows and the final parameters: equal digests, the same results."""
    h = hashlib.sha256()
    h.update(json.dumps(outcome.history, sort_keys=True, default=str).encode())
    h.update(json.dumps(outcome.peers, sort_keys=True, default=str).encode())
    h.update(world.params.cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def child(script: str, tree: str, args: list[str]) -> subprocess.Popen:
    """Start `script --child tree args...` on one thread; its last stdout line is its JSON row."""
    return subprocess.Popen([sys.executable, script, "--before", tree, "--child", tree, *args], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": tree})


def row_of(name: str, process: subprocess.Popen) -> dict:
    """The child's JSON row, once it has finished; a failed child stops the comparison."""
    stdout, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"{name} failed (exit {process.returncode})")
    return json.loads(stdout.strip().splitlines()[-1])


def in_turn(script: str, trees: dict[str, str], repeats: int, args: list[str]) -> tuple[dict[str, list[dict]], list[float]]:
    """Each tree's rows, measured one process at a time, the trees alternating; the 1-min load before and after each round."""
    rows: dict[str, list[dict]] = {name: [] for name in trees}
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for name, tree in trees.items():
            rows[name].append(row_of(name, child(script, tree, args)))
        loads.append(os.getloadavg()[0])
    return rows, loads


def print_medians(title: str, rows: dict[str, list[dict]], loads: list[float], every_run: bool = False) -> None:
    """Each tree's medians of its float figures, its other values, and whether its digest held."""
    repeats = len(next(iter(rows.values())))
    print(f"{title}: medians of {repeats}; 1-min load average during: {' '.join(f'{x:.1f}' for x in loads)}")
    for name, measured in rows.items():
        medians = {k: statistics.median(r[k] for r in measured) for k, v in measured[0].items() if isinstance(v, float)}
        same = {k: v for k, v in measured[0].items() if not isinstance(v, float)}
        steady = all(r["digest"] == measured[0]["digest"] for r in measured)
        print(f"  {name:6s} " + " ".join(f"{k}={v:.4g}" for k, v in medians.items()), same, "" if steady else "(digest varies)")
        if every_run:
            print("         runs: " + "; ".join(" ".join(f"{k}={v:.4g}" for k, v in r.items() if isinstance(v, float)) for r in measured))


def parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """The options every before/after script takes: the two trees, the repeats, and the child's tree (internal)."""
    options = argparse.ArgumentParser(description=description)
    options.add_argument("--before", required=True, help="a tree of the commit to compare against (a git worktree)")
    options.add_argument("--after", default=str(ROOT), help="the tree measured after (default: this one)")
    options.add_argument("--repeats", type=int, default=repeats)
    options.add_argument("--child", help=argparse.SUPPRESS)
    return options


def compare_in_turn(script: str, measure, usage: str, argv: list[str] | None, every_run: bool = False) -> None:
    """A script's main: as the child, print `measure(tree, args)` as JSON; else measure both trees in turn and print medians."""
    options = parser(sys.modules[measure.__module__].__doc__.splitlines()[0], repeats=3)
    options.add_argument("benchmark", nargs="+", help=usage)
    args = options.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.benchmark)))
        return
    rows, loads = in_turn(script, {"before": args.before, "after": args.after}, args.repeats, args.benchmark)
    print_medians(" ".join(args.benchmark), rows, loads, every_run)
