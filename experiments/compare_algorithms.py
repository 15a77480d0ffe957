"""Every algorithm on the quick-start world and on a data-centre world, over seeds: curves and a table.

    python experiments/compare_algorithms.py                 # 5 seeds, both worlds, 2 worker processes
    python experiments/compare_algorithms.py --smoke         # 1 seed, a tiny sample budget (the tests run this)

Writes to `results/compare_algorithms/` (or `--out`): `runs/<world>-<algorithm>-<seed>.csv` as
each run finishes (a restarted comparison skips those, so an interrupted one loses nothing
finished; jobs go seed by seed, so complete seeds come first), `history.csv` (every recorded
tick of every run), `table.csv` and `table.md` (time, bytes and samples to the target accuracy, median
and range over seeds, with the centralized baselines) and `figure.pdf` / `figure.png`
(accuracy against simulated time and against bytes sent, consensus distance against time;
one thin line per seed, never averaged across runs; lines join recorded ticks only, the t = 0
record is a dot). "To target" is the first recorded tick
at which the evaluated model's held-out accuracy reaches the target: its resolution is the
recording interval, and a run that never reaches it is counted as such, not extrapolated.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "experiments" / "scenarios" / "quickstart.toml"

WORLDS: dict[str, dict] = {
    # The quick start as it is: 32 unequal peers on home links in seven regions (ResNet-50 timings).
    "home": {},
    # The same job on 32 H100s on InfiniBand in one place.
    "datacenter": {"peers.devices": {"h100_sxm": 32}, "peers.links": {"infiniband": 32}, "peers.regions": {}},
}

# Each algorithm's [algorithm] table; the learning rates suit the digits MLP of the quick start. Server
# methods serve from peer 0, whichever device and home link the quick-start mix places there.
SETTINGS: dict[str, dict] = {
    "adpsgd": {"name": "adpsgd", "lr": 0.5},
    "adpsgd_idealised": {"name": "adpsgd_idealised", "lr": 0.5},
    "dpsgd": {"name": "dpsgd", "lr": 0.5},
    "atc_dsgd": {"name": "atc_dsgd", "lr": 0.5},
    "choco": {"name": "choco", "lr": 0.5, "gamma": 1.0},  # uncompressed here: ATC D-SGD (see experiments/compression.py)
    "clipped_gossip": {"name": "clipped_gossip", "lr": 0.5, "tau": 1.0},  # tau: the most a neighbour moves a row
    "sgp": {"name": "sgp", "lr": 0.5},
    "sgp_exponential": {"name": "sgp", "lr": 0.5, "graph": "exponential_one_peer"},
    "gossip": {"name": "gossip", "lr": 0.5, "mode": "push_pull", "period": 10},
    "moshpit": {"name": "moshpit", "lr": 0.5, "group_size": 2},
    "sync_ps": {"name": "sync_ps", "lr": 0.5},
    "async_ps": {"name": "async_ps", "lr": 0.5, "staleness_aware": True},
    "easgd": {"name": "easgd", "lr": 0.5, "tau": 4},
    "fedavg": {"name": "fedavg", "lr": 0.5, "local_steps": 8},
    "diloco": {"name": "diloco", "lr": 0.003, "local_steps": 8, "optimizer": {"name": "adamw"}},
    "diloco_async": {"name": "diloco_async", "lr": 0.003, "local_steps": 8, "optimizer": {"name": "adamw"}},
    "diloco_ring": {"name": "diloco_ring", "lr": 0.003, "local_steps": 8, "optimizer": {"name": "adamw"}},
}

BASELINES_WITH = "adpsgd"  # the baselines depend only on the world, seed and budget: run them once


def scenario_for(world: str, algorithm: str, seed: int, smoke: bool):
    """The quick-start scenario in `world`, run by `algorithm` with `seed`."""
    import p2psim

    overrides = {**WORLDS[world], "seed": seed, "algorithm": SETTINGS[algorithm], "name": f"{world}-{algorithm}"}
    if world == "datacenter":
        overrides["metrics.eval_interval_s"] = 0.05
    if smoke:
        overrides["stop.samples"] = 2048
    return p2psim.load_scenario(QUICKSTART, overrides)


def run_one(job: tuple[str, str, int, bool, Path]) -> Path:
    """One run's history, with its world, algorithm and seed as columns, written to its own CSV."""
    import p2psim

    world, algorithm, seed, smoke, path = job
    if path.exists():
        return path
    result = p2psim.run(scenario_for(world, algorithm, seed, smoke), baselines=algorithm == BASELINES_WITH)
    history = result.history.copy()
    history["algorithm"] = history["run"].where(history["run"] != "p2p", algorithm)
    history["world"], history["seed"] = world, seed
    history["status"] = history["run"].map(lambda run: result.manifest["runs"][run]["status"])
    partial = path.with_suffix(".partial")
    history.drop(columns="run").to_csv(partial, index=False)
    partial.rename(path)  # a killed run leaves no CSV that looks finished
    return path


def first_reaching(rows: pd.DataFrame, target: float) -> pd.Series | None:
    """The first recorded tick with accuracy >= target, or None."""
    reached = rows[rows["accuracy"] >= target]
    return None if reached.empty else reached.iloc[0]


def summary_table(history: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per world and algorithm: seeds that reached the target; median and range of time, bytes, samples to it."""
    rows = []
    for (world, algorithm), runs in history.groupby(["world", "algorithm"], sort=False):
        hits = [first_reaching(seed_rows, target) for _, seed_rows in runs.groupby("seed")]
        reached = pd.DataFrame([hit for hit in hits if hit is not None])
        finals = runs.groupby("seed").tail(1)
        row = {
            "world": world,
            "algorithm": algorithm,
            "seeds": len(hits),
            "reached": len(reached),
            "diverged": int((finals["status"] == "diverged").sum()),
            "final_accuracy_median": finals["accuracy"].median(),
        }
        for column, name, unit in (("time_s", "time", 1.0), ("bytes_sent", "GB", 1e9), ("samples", "samples", 1.0)):
            values = reached[column] / unit if len(reached) else pd.Series(dtype=float)
            row[f"{name}_median"] = values.median() if len(values) else float("nan")
            row[f"{name}_min"] = values.min() if len(values) else float("nan")
            row[f"{name}_max"] = values.max() if len(values) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, target: float) -> str:
    """The table as Markdown: median [min, max] over the seeds that reached the target."""

    def cell(row: pd.Series, name: str, fmt: str) -> str:
        if row["reached"] == 0:
            return "not reached"
        values = [format(row[f"{name}_{k}"], fmt) for k in ("median", "min", "max")]
        return f"{values[0]} [{values[1]}, {values[2]}]"

    lines = [
        f"| world | algorithm | reached {target:.0%} | time to target [s] | GB to target | samples to target | final accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        reached = f"{row['reached']}/{row['seeds']}" + (f" ({row['diverged']} diverged)" if row["diverged"] else "")
        lines.append(
            f"| {row['world']} | {row['algorithm']} | {reached} | {cell(row, 'time', '.4g')} | "
            f"{cell(row, 'GB', '.4g')} | {cell(row, 'samples', '.0f')} | {row['final_accuracy_median']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def draw(history: pd.DataFrame, path: Path) -> None:
    """Accuracy vs time, accuracy vs bytes, consensus vs time; one row per world, one line per run and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(dict.fromkeys(history["world"]))
    algorithms = list(dict.fromkeys(history["algorithm"]))
    colours = {name: plt.cm.tab20(i % 20) for i, name in enumerate(algorithms)}
    figure, axes = plt.subplots(len(worlds), 3, figsize=(16, 4.6 * len(worlds)), squeeze=False, constrained_layout=True)
    for row, world in enumerate(worlds):
        left, middle, right = axes[row]
        for (algorithm, seed), rows in history[history["world"] == world].groupby(["algorithm", "seed"], sort=False):
            baseline = algorithm not in SETTINGS
            style = {"color": colours[algorithm], "linewidth": 0.9, "linestyle": "--" if baseline else "-"}
            label = algorithm if seed == history["seed"].min() else None
            start, later = rows[rows["time_s"] == 0], rows[rows["time_s"] > 0]
            # the t = 0 record is a lone dot: no line is drawn across the gap to the first recorded tick
            lone = {"marker": "o"} if len(later) == 1 else {}  # a run recorded once after t = 0 (it ended first)
            left.plot(later["time_s"], later["accuracy"], label=label, **style, **lone)
            left.plot(start["time_s"], start["accuracy"], marker=".", linestyle="none", color=style["color"])
            middle.plot(later["bytes_sent"] / 1e9, later["accuracy"], **style, **lone)
            positive = rows[rows["consensus_distance"] > 0]
            if not baseline and len(positive):
                right.plot(positive["time_s"], positive["consensus_distance"], **style)
        left.set_xscale("symlog", linthresh=1.0)
        left.set_xlabel("simulated time [s] (symlog)")
        left.set_ylabel(f"{world}: accuracy of the evaluated model")
        middle.set_xscale("symlog", linthresh=0.1)
        middle.set_xlabel("bytes sent by all peers [GB] (symlog)")
        right.set_xscale("symlog", linthresh=1.0)
        right.set_yscale("log")
        right.set_xlabel("simulated time [s] (symlog)")
        right.set_ylabel("consensus distance (mean ||x_i - mean x||^2)")
        for axis in (left, middle, right):
            axis.grid(alpha=0.3)
        left.legend(fontsize=7, ncol=2)
    figure.suptitle("Every algorithm on the quick-start task; dashed: centralized baselines; one line per seed", fontsize=10)
    figure.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None, "Producer": None, "Creator": None})
    figure.savefig(path.with_suffix(".png"), dpi=90, metadata={"Software": None})
    plt.close(figure)


def main(argv: list[str] | None = None) -> Path:
    """Run the comparison and write its table and figure; returns the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--smoke", action="store_true", help="one seed, 2048 samples: a check that everything runs")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "compare_algorithms")
    parser.add_argument("--algorithms", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args(argv)
    seeds = 1 if args.smoke else args.seeds
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    jobs = [
        (world, algorithm, seed, args.smoke, runs / f"{world}-{algorithm}-{seed}.csv")
        for seed in range(seeds)
        for world in WORLDS
        for algorithm in args.algorithms
    ]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            paths = list(pool.map(run_one, jobs))
    else:
        paths = [run_one(job) for job in jobs]
    history = pd.concat([pd.read_csv(path) for path in paths], ignore_index=True)
    target = scenario_for("home", BASELINES_WITH, 0, args.smoke).metrics.target_accuracy
    history.to_csv(args.out / "history.csv", index=False)
    table = summary_table(history, target)
    table.to_csv(args.out / "table.csv", index=False)
    command = "python experiments/compare_algorithms.py" + (" --smoke" if args.smoke else f" --seeds {seeds}")
    if args.algorithms != list(SETTINGS):
        command += " --algorithms " + " ".join(args.algorithms)
    (args.out / "table.md").write_text(f"Regenerate: `{command}`\n\n" + markdown(table, target))
    draw(history, args.out / "figure")
    return args.out


if __name__ == "__main__":
    print(main())
