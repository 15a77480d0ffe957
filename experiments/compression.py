"""Accuracy against bytes sent, per compressor: CHOCO-SGD on the quick-start world, and gradient top-k at a parameter server.

    python experiments/compression.py            # every setting, one seed, one process after another
    python experiments/compression.py --smoke    # a tiny sample budget (the tests run this)

The quick start's 32 unequal peers on home links (ResNet-50 timings and message sizes, the
digits MLP doing the numerics), at fp32 precision so that "none" sends exact fp32 rows:
CHOCO-SGD (`choco`) with each compressor of `p2psim.compression` on the differences it sends
(gamma, its consensus step, set per compressor: 1 without loss, smaller with sparsifiers),
and synchronous parameter-server SGD (`sync_ps`) with top-1 % of each gradient, with and
without error feedback. Every run has the same sample budget; the history is recorded every
5,000 samples, so the curves compare accuracy at equal work.

Writes to `results/compression/` (or `--out`): `runs/<setting>.csv` as each run finishes
(a restarted experiment skips those), `history.csv` (every recorded tick), `table.csv` and
`table.md` (per setting: bytes per message, total bytes, simulated time and final accuracy,
first tick at 90 %) and `figure.pdf` / `figure.png` (accuracy against GB sent and against
simulated time; lines join recorded ticks only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "experiments" / "scenarios" / "quickstart.toml"
TARGET = 0.9

# setting -> ([algorithm] table, [network.compression] table or None)
SETTINGS: dict[str, tuple[dict, dict | None]] = {
    "choco none": ({"name": "choco", "lr": 0.5, "gamma": 1.0}, None),
    "choco fp16": ({"name": "choco", "lr": 0.5, "gamma": 1.0}, {"kind": "fp16"}),
    "choco bf16": ({"name": "choco", "lr": 0.5, "gamma": 1.0}, {"kind": "bf16"}),
    "choco int8": ({"name": "choco", "lr": 0.5, "gamma": 1.0}, {"kind": "int8"}),
    "choco top_k 10%": ({"name": "choco", "lr": 0.5, "gamma": 0.3}, {"kind": "top_k", "ratio": 0.1}),
    "choco top_k 1%": ({"name": "choco", "lr": 0.5, "gamma": 0.1}, {"kind": "top_k", "ratio": 0.01}),
    "choco random_k 10%": ({"name": "choco", "lr": 0.5, "gamma": 0.1}, {"kind": "random_k", "ratio": 0.1}),
    "sync_ps none": ({"name": "sync_ps", "lr": 0.5}, None),
    "sync_ps top_k 1%": ({"name": "sync_ps", "lr": 0.5}, {"kind": "top_k", "ratio": 0.01}),
    "sync_ps top_k 1% + EF": ({"name": "sync_ps", "lr": 0.5}, {"kind": "top_k", "ratio": 0.01, "error_feedback": True}),
}


def scenario_for(setting: str, smoke: bool):
    """The quick-start scenario at fp32, run by the setting's algorithm and compressor."""
    import p2psim

    algorithm, compression = SETTINGS[setting]
    overrides = {
        "name": f"compression-{setting.replace(' ', '_').replace('%', 'pct').replace('+', 'and')}",
        "algorithm": algorithm,
        "peers.precision": "fp32",
        "baselines": [],
        "metrics": {"eval_interval_samples": 512 if smoke else 5000, "target_accuracy": TARGET},
    }
    if compression is not None:
        overrides["network.compression"] = compression
    if smoke:
        overrides["stop.samples"] = 2048
    return p2psim.load_scenario(QUICKSTART, overrides)


def run_one(setting: str, smoke: bool, path: Path) -> Path:
    """One run's history, with its setting and status as columns, written to its own CSV."""
    import p2psim

    if path.exists():
        return path
    scenario = scenario_for(setting, smoke)
    result = p2psim.run(scenario, baselines=False)
    history = result.history.drop(columns="run")
    history["setting"] = setting
    history["status"] = result.manifest["runs"]["p2p"]["status"]
    partial = path.with_suffix(".partial")
    history.to_csv(partial, index=False)
    partial.rename(path)
    return path


def summary_table(history: pd.DataFrame) -> pd.DataFrame:
    """Per setting: final accuracy, GB sent, simulated hours, and the first recorded tick at the target."""
    rows = []
    for setting, runs in history.groupby("setting", sort=False):
        final = runs.iloc[-1]
        reached = runs[runs["accuracy"] >= TARGET]
        first = reached.iloc[0] if len(reached) else None
        rows.append({
            "setting": setting,
            "status": final["status"],
            "samples": int(final["samples"]),
            "final_accuracy": final["accuracy"],
            "GB_sent": final["bytes_sent"] / 1e9,
            "sim_hours": final["time_s"] / 3600,
            "GB_to_target": first["bytes_sent"] / 1e9 if first is not None else float("nan"),
            "hours_to_target": first["time_s"] / 3600 if first is not None else float("nan"),
            "final_consensus_distance": final["consensus_distance"],
        })
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown."""
    lines = [
        f"| setting | final accuracy | GB sent | simulated h | GB to {TARGET:.0%} | h to {TARGET:.0%} | consensus distance |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        to_gb = "not reached" if pd.isna(r["GB_to_target"]) else f"{r['GB_to_target']:.4g}"
        to_h = "not reached" if pd.isna(r["hours_to_target"]) else f"{r['hours_to_target']:.3g}"
        status = "" if r["status"] == "finished" else f" ({r['status']})"
        lines.append(f"| {r['setting']}{status} | {r['final_accuracy']:.3f} | {r['GB_sent']:.4g} | {r['sim_hours']:.3g} | "
                     f"{to_gb} | {to_h} | {r['final_consensus_distance']:.3g} |")
    return "\n".join(lines) + "\n"


def figure(history: pd.DataFrame, out: Path) -> None:
    """Accuracy against GB sent (log) and against simulated hours (log), one line per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for setting, runs in history.groupby("setting", sort=False):
        runs = runs[runs["samples"] > 0]  # t = 0 sends nothing: no point on a log axis
        style = "--" if setting.startswith("sync_ps") else "-"
        axes[0].plot(runs["bytes_sent"] / 1e9, runs["accuracy"], style, marker=".", label=setting)
        axes[1].plot(runs["time_s"] / 3600, runs["accuracy"], style, marker=".", label=setting)
    axes[0].set(xscale="log", xlabel="bytes sent, all peers [GB]", ylabel="held-out accuracy of the peers' average")
    axes[1].set(xscale="log", xlabel="simulated time [h]")
    for ax in axes:
        ax.axhline(TARGET, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Quick-start world (32 peers, ResNet-50 messages), equal sample budget, seed 0", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "figure.pdf", metadata={"CreationDate": None})
    fig.savefig(out / "figure.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run what is missing, then write the history, the table and the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a 2048-sample budget")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "compression")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), help="a subset of the settings")
    args = parser.parse_args(argv)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    paths = [run_one(s, args.smoke, runs / f"{s.replace(' ', '_').replace('%', 'pct').replace('+', 'and')}.csv")
             for s in args.settings]
    history = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    history.to_csv(args.out / "history.csv", index=False)
    table = summary_table(history)
    table.to_csv(args.out / "table.csv", index=False)
    (args.out / "table.md").write_text(markdown(table))
    figure(history, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
