"""The quick start under three network models: equal shares (the core's old rule), max-min fair sharing, and max-min + TCP.

    python experiments/network_model.py            # 3 seeds x 3 models, the quick start's 150k samples (~3 min on 2 cores)
    python experiments/network_model.py --smoke    # 1 seed, 2048 samples (the tests run this)

Writes to `results/network_model/` (or `--out`): `history.csv` (every recorded tick of every run,
with its model and seed), `table.csv` and `table.md` (per model, median and range over seeds: the
simulated time the 150k samples take, time to the target accuracy at the recording interval's
resolution, bytes sent, messages, final accuracy) and `figure.pdf` / `figure.png` (accuracy
against simulated time, one line per run; lines join recorded ticks only). Only the network model
changes between runs; the peers, graph, data, seed and algorithm (AD-PSGD) are the quick start's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "experiments" / "scenarios" / "quickstart.toml"

# network overrides of each model; TcpSpec's defaults: slow start from 10 segments, 4 MiB window, LV08's 0.97 goodput
MODELS: dict[str, dict] = {
    "equal_share": {"network.sharing": "equal_share"},
    "max_min": {"network.sharing": "max_min"},
    "max_min_tcp": {"network.sharing": "max_min", "network.tcp": {}},
}


def scenario_for(model: str, seed: int, smoke: bool):
    """The quick start under `model`, with `seed`."""
    import p2psim

    overrides = {**MODELS[model], "seed": seed, "name": f"network-{model}"}
    if smoke:
        overrides["stop.samples"] = 2048
    return p2psim.load_scenario(QUICKSTART, overrides)


def run_one(model: str, seed: int, smoke: bool) -> pd.DataFrame:
    """One run's history (peer-to-peer run only), with its model, seed, status and message counts as columns."""
    import p2psim

    result = p2psim.run(scenario_for(model, seed, smoke), baselines=False)
    history = result.run_history().drop(columns="run")
    facts = result.manifest["runs"]["p2p"]
    history["model"], history["seed"], history["status"] = model, seed, facts["status"]
    history["messages"] = facts["messages"]
    return history


def summary_table(history: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per model: median, min and max over seeds of the end time, time to target, GB, messages and final accuracy."""
    rows = []
    for model, runs in history.groupby("model", sort=False):
        per_seed = []
        for _, rows_of_seed in runs.groupby("seed"):
            last = rows_of_seed.iloc[-1]
            reached = rows_of_seed[rows_of_seed["accuracy"] >= target]
            per_seed.append({
                "end_h": last["time_s"] / 3600,
                "to_target_h": reached["time_s"].iloc[0] / 3600 if len(reached) else float("nan"),
                "GB": last["bytes_sent"] / 1e9,
                "messages": last["messages"],
                "final_accuracy": last["accuracy"],
            })
        seeds = pd.DataFrame(per_seed)
        row = {"model": model, "seeds": len(seeds), "reached": int(seeds["to_target_h"].notna().sum())}
        for column in seeds:
            row[f"{column}_median"] = seeds[column].median()
            row[f"{column}_min"] = seeds[column].min()
            row[f"{column}_max"] = seeds[column].max()
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, target: float, command: str) -> str:
    """The table as Markdown: median [min, max] over seeds."""

    def cell(row: pd.Series, name: str, fmt: str) -> str:
        if pd.isna(row[f"{name}_median"]):
            return "not reached"
        values = [format(row[f"{name}_{k}"], fmt) for k in ("median", "min", "max")]
        return values[0] if row["seeds"] == 1 else f"{values[0]} [{values[1]}, {values[2]}]"

    lines = [
        f"Regenerate: `{command}`. Median [min, max] over seeds (to target: over the seeds that reached it, "
        "at the recording interval's resolution).",
        "",
        f"| network model | seeds reaching {target:.0%} | simulated time of the run [h] | to {target:.0%} [h] | "
        "sent [GB] | messages | final accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        lines.append(
            f"| {row['model']} | {row['reached']}/{row['seeds']} | {cell(row, 'end_h', '.3g')} | "
            f"{cell(row, 'to_target_h', '.3g')} | {cell(row, 'GB', '.4g')} | {cell(row, 'messages', '.0f')} | "
            f"{cell(row, 'final_accuracy', '.3f')} |"
        )
    return "\n".join(lines) + "\n"


def draw(history: pd.DataFrame, path: Path) -> None:
    """Accuracy against simulated time, one line per model and seed (t = 0 a lone dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {model: plt.cm.tab10(i) for i, model in enumerate(MODELS)}
    figure, axis = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for (model, seed), rows in history.groupby(["model", "seed"], sort=False):
        later, start = rows[rows["time_s"] > 0], rows[rows["time_s"] == 0]
        label = model if seed == history["seed"].min() else None
        axis.plot(later["time_s"] / 3600, later["accuracy"], color=colours[model], linewidth=1.0, label=label)
        axis.plot(start["time_s"], start["accuracy"], marker=".", linestyle="none", color=colours[model])
    axis.set_xlabel("simulated time [h]")
    axis.set_ylabel("accuracy of the evaluated model (held-out)")
    axis.grid(alpha=0.3)
    axis.legend(title="network model", fontsize=8)
    axis.set_title("Quick start (AD-PSGD, 32 peers, ResNet-50 timings) under three network models", fontsize=9)
    figure.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None, "Producer": None, "Creator": None})
    figure.savefig(path.with_suffix(".png"), dpi=100, metadata={"Software": None})
    plt.close(figure)


def main(argv: list[str] | None = None) -> Path:
    """Run every model and seed, then write the history, table and figure; returns the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one seed, 2048 samples: a check that everything runs")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "network_model")
    args = parser.parse_args(argv)
    seeds = 1 if args.smoke else args.seeds
    args.out.mkdir(parents=True, exist_ok=True)
    history = pd.concat([run_one(model, seed, args.smoke) for seed in range(seeds) for model in MODELS], ignore_index=True)
    history.to_csv(args.out / "history.csv", index=False)
    target = scenario_for("max_min", 0, args.smoke).metrics.target_accuracy
    table = summary_table(history, target)
    table.to_csv(args.out / "table.csv", index=False)
    command = "python experiments/network_model.py" + (" --smoke" if args.smoke else "")
    (args.out / "table.md").write_text(markdown(table, target, command))
    draw(history, args.out / "figure")
    return args.out


if __name__ == "__main__":
    print(main())
