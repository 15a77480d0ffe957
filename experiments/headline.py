"""The README's headline numbers: the quick start over 5 seeds, each figure as mean and 95 % interval.

    python experiments/headline.py [--smoke]

Runs experiments/scenarios/quickstart.toml with seeds 0-4 (graph, placement, data and batches change
with the seed), baselines included, as a sweep under results/sweeps/quickstart_seeds (finished runs are
kept), and writes results/headline/headline.csv (one row per run and seed) and headline.md (mean and
half-width of the 95 % Student-t interval over the seeds). Time to the target is marked `*`: the
digits MLP's samples to it times the declared workload's (ResNet-50's) cost per sample, an assumption.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import p2psim
from p2psim.figures import interval95, to_target
from p2psim.scenario import load_scenario
from p2psim.sweep import SweepSpec

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (0, 1, 2, 3, 4)
SMOKE = {"peers.count": 8, "stop.samples": 2048, "metrics.eval_interval_s": 600.0}
MEASURES = {  # column: (what it is, unit scale, format)
    "accuracy": ("held-out accuracy at the end (equal samples)", 1.0, "{:.3f}"),
    "consensus_distance": ("consensus distance at the end", 1.0, "{:.3f}"),
    "s_per_sample": ("simulated seconds per sample", 1.0, "{:.3g}"),
    "mb_per_sample": ("MB sent per sample", 1e-6, "{:.3g}"),
    "time_to_target_h": ("hours to the target accuracy*", 1.0, "{:.3g}"),
}


def per_seed(smoke: bool = False, out: Path | None = None) -> pd.DataFrame:
    """One row per run (p2p and each baseline) and seed: the headline measures at the run's last record."""
    base = load_scenario(ROOT / "experiments" / "scenarios" / "quickstart.toml")
    spec = SweepSpec(base=base, name="quickstart_seeds", seeds=SEEDS[:2] if smoke else SEEDS, fixed=SMOKE if smoke else {})
    table = p2psim.sweep(spec, out=out or ROOT / "results" / "sweeps" / spec.name, executor="local", workers=2)
    last = table.groupby(["run", "seed"], sort=False).last().reset_index()
    reached = to_target(table, base.metrics.target_accuracy, ["run", "seed"], ("time_s",))
    rows = last.merge(reached.rename(columns={"time_s": "time_to_target_s"}), on=["run", "seed"])
    rows["s_per_sample"] = rows["time_s"] / rows["samples"]
    rows["mb_per_sample"] = rows["bytes_sent"] / rows["samples"]
    rows["time_to_target_h"] = rows["time_to_target_s"] / 3600.0
    return rows[["run", "seed", "samples", *MEASURES]]


def summary(rows: pd.DataFrame) -> str:
    """A markdown table: per run and measure, mean ± 95 % half-width (n seeds that have a value)."""
    lines = ["| run | " + " | ".join(label for label, _, _ in MEASURES.values()) + " |",
             "|---|" + "---|" * len(MEASURES)]
    for run, group in rows.groupby("run", sort=False):
        cells = []
        for column, (_, scale, fmt) in MEASURES.items():
            values = group[column].dropna() * scale
            if values.empty:
                cells.append("—")
                continue
            half = interval95(values)
            cells.append(f"{fmt.format(values.mean())} ± {fmt.format(half)} (n={len(values)})" if len(values) > 1
                         else f"{fmt.format(values.mean())} (n=1)")
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(smoke: bool = False, out_dir: Path = ROOT / "results" / "headline", runs: Path | None = None) -> str:
    """Run or reuse the sweep, write headline.csv and headline.md into `out_dir`; return the markdown."""
    rows = per_seed(smoke, runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out_dir / "headline.csv", index=False)
    text = summary(rows)
    (out_dir / "headline.md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="8 peers, 2048 samples, 2 seeds (seconds)")
    arguments = parser.parse_args()
    print(main(arguments.smoke))
