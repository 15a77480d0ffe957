"""Start-up of the CLI: wall seconds of `python -m p2psim COMMAND` in a fresh interpreter, and what it loads.

    python benchmarks/bench_cli.py [--rounds 6] [--before /path/to/a/worktree]

Each command runs as a new process, as a user types it; one warm-up round (disk caches), then
the median of the other rounds. With `--before`, the same commands also run from that checkout
(a `git worktree` at an older commit), interleaved with this one, so both see the same load.
`python -c pass` is the interpreter's own start, the floor of every figure. The last column
lists which of torch, scikit-learn, simpy, pandas, networkx and numpy the command loaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (("--help",), ("devices",), ("grids",), ("validate", "experiments/scenarios/quickstart.toml"))
WATCHED = ("torch", "sklearn", "simpy", "pandas", "networkx", "numpy")
PROBE = (
    "import sys, runpy, contextlib, io\nsys.argv = ['p2psim', *sys.argv[1:]]\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
    "    try:\n        runpy.run_module('p2psim', run_name='__main__')\n    except SystemExit:\n        pass\n"
    f"print(','.join(m for m in {WATCHED!r} if m in sys.modules))"
)


def _seconds(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {cwd} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def measure(rounds: int, before: Path | None) -> list[dict]:
    """One row per command: median seconds here (and in `before`), and the watched modules it loaded here."""
    trees = {"after": ROOT, **({"before": before} if before else {})}
    times: dict[tuple[str, tuple[str, ...]], list[float]] = {(t, c): [] for t in trees for c in COMMANDS}
    floor = []
    for r in range(rounds):
        for command in COMMANDS:
            for tree, path in trees.items():
                seconds = _seconds([sys.executable, "-m", "p2psim", *command], path)
                if r > 0:
                    times[(tree, command)].append(seconds)
        seconds = _seconds([sys.executable, "-c", "pass"], ROOT)
        if r > 0:
            floor.append(seconds)
    rows = [{"command": "python -c pass", "after_s": statistics.median(floor), "loads": ""}]
    for command in COMMANDS:
        loaded = subprocess.run([sys.executable, "-c", PROBE, *command], cwd=ROOT, capture_output=True, text=True)
        row = {"command": "p2psim " + " ".join(command), "after_s": statistics.median(times[("after", command)]),
               "loads": loaded.stdout.strip().splitlines()[-1] if loaded.stdout.strip() else ""}
        if before:
            row["before_s"] = statistics.median(times[("before", command)])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds; the first is a warm-up (default 6)")
    parser.add_argument("--before", type=Path, help="another checkout to time the same commands in, interleaved")
    args = parser.parse_args()
    rows = measure(args.rounds, args.before)
    load = os.getloadavg()
    print(f"medians of {args.rounds - 1} after a warm-up; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| command | " + ("before [s] | " if args.before else "") + "after [s] | loads |")
    print("|---|" + ("---|" if args.before else "") + "---|---|")
    for row in rows:
        before = f"{row['before_s']:.2f} | " if "before_s" in row else ("| " if args.before else "")
        print(f"| `{row['command']}` | {before}{row['after_s']:.2f} | {row['loads'] or '-'} |")


if __name__ == "__main__":
    main()
