"""The bill of the quick-start task: kWh, CO2 and cost to the target accuracy, data centre against swarm.

    python experiments/energy_bill.py            # 5 seeds (about 5 min on 2 free cores)
    python experiments/energy_bill.py --smoke    # 1 seed, a tiny sample budget (the tests run this)

Four cases on three US grid regions, the three with hourly profiles (EIA-930 2022): us_west
(Bonneville, mostly hydro), us_east (PJM) and us_central (MISO):
  (a) 8 H100s on InfiniBand in a data centre (the quick start's cluster baseline), in each region;
  (b) the quick start's 32 home GPUs (its device and link mix), spread over the three regions;
  (c) the same swarm, admitting only peers whose grid is below 200 gCO2/kWh;
  (d) the swarm of (b), starting at the least-CO2 hour within 24 h of the earliest start.
Every case runs the quick start's budget (150,000 samples) from 2024-06-03 00:00 UTC. Each
swarm is simulated once per seed and billed several ways (the dynamics do not depend on the
clock time or the grid), so (d) is (b)'s run billed at its best start, and (a) is one cluster
run billed in each region. "To target" is the first recorded tick at which the evaluated
model reaches the target accuracy; a seed that never reaches it is counted as such.
Writes `results/energy_bill/` (or `--out`): runs.csv (one row per case, region and seed),
table.csv, table.md, figure.pdf and figure.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "experiments" / "scenarios" / "quickstart.toml"
REGIONS = ("us_west", "us_east", "us_central")
SWARM_REGIONS = {"us_west": 11, "us_east": 11, "us_central": 10}
START_UTC = "2024-06-03T00:00:00Z"
CLEAN_GCO2_PER_KWH = 200.0
WINDOW_H = 24.0
CLUSTER = "8x H100 cluster"
MEASURES = ("energy_kwh", "co2_operational_g", "co2_embodied_g", "cost_usd")


def base_scenario(seed: int, smoke: bool):
    """The quick start with the swarm over the three regions and the clock's start."""
    import p2psim

    overrides = {"seed": seed, "peers.regions": SWARM_REGIONS, "energy.start_utc": START_UTC}
    if smoke:
        overrides["stop.samples"] = 4096
    return p2psim.load_scenario(QUICKSTART, overrides)


def at_target(history: pd.DataFrame, target: float) -> dict[str, float]:
    """Time, samples and the bill at the first tick reaching `target` (NaN if never), and at the end."""
    reached = history[history["accuracy"] >= target]
    row = reached.iloc[0] if len(reached) else None
    out = {f"{m}_to_target": float(row[m]) if row is not None else np.nan for m in (*MEASURES, "time_s", "samples")}
    out.update({f"{m}_total": float(history[m].iloc[-1]) for m in (*MEASURES, "time_s", "samples")})
    return out


def billed(setup, outcome, **energy) -> pd.DataFrame:
    """The run's history with its bill under the scenario's [energy] table changed by `energy`."""
    from p2psim.bill import bill_run

    scenario = setup.scenario
    spec = dataclasses.replace(scenario.energy, **energy)
    setup = dataclasses.replace(setup, scenario=dataclasses.replace(scenario, energy=spec))
    bill = bill_run(setup, outcome)
    return pd.DataFrame(outcome.history).assign(**bill.history), bill.facts


def run_seed(job: tuple[int, bool]) -> list[dict]:
    """All four cases for one seed, as rows."""
    import warnings

    from p2psim.admission import admit
    from p2psim.build import build_run
    from p2psim.engine import simulate
    from p2psim.runner import baseline_scenario

    warnings.simplefilter("ignore")
    seed, smoke = job
    scenario = base_scenario(seed, smoke)
    target = scenario.metrics.target_accuracy
    rows = []

    def add(case: str, region: str, history: pd.DataFrame, facts: dict, peers: int) -> None:
        rows.append({"case": case, "region": region, "seed": seed, "peers": peers, "wait_h": facts["wait_h"],
                     "start_utc": facts["start_utc"], **at_target(history, target)})

    swarm = build_run(scenario)
    outcome = simulate(swarm)
    history, facts = billed(swarm, outcome)
    add("(b) swarm", "+".join(REGIONS), history, facts, swarm.n_peers)
    history, facts = billed(swarm, outcome, start_window_h=WINDOW_H)
    add("(d) swarm, time-shifted", "+".join(REGIONS), history, facts, swarm.n_peers)

    samples = int(outcome.info["samples"])
    cluster_spec = next(b for b in scenario.baselines if b.name == CLUSTER)
    cluster = build_run(baseline_scenario(scenario, cluster_spec, samples))
    cluster_outcome = simulate(cluster)
    for region in REGIONS:
        history, facts = billed(cluster, cluster_outcome, grid=region)
        add("(a) 8x H100 data centre", region, history, facts, cluster.n_peers)

    clean_scenario = scenario.with_overrides({"energy.admission": "below_threshold", "energy.max_gco2_per_kwh": CLEAN_GCO2_PER_KWH})
    admitted, report = admit(clean_scenario)
    clean = build_run(admitted)
    clean_outcome = simulate(clean)
    history, facts = billed(clean, clean_outcome)
    add("(c) swarm, clean grids only", "+".join(r for r in REGIONS if r not in report["regions_dropped"]), history, facts, clean.n_peers)
    return rows


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds (of those reaching the target) per case and region."""
    out = []
    for (case, region), group in runs.groupby(["case", "region"], sort=True):
        row = {"case": case, "region": region, "peers": int(group["peers"].iloc[0]), "seeds": len(group),
               "reached": int(group["time_s_to_target"].notna().sum()), "mean_wait_h": group["wait_h"].mean()}
        for m in (*MEASURES, "time_s"):
            for kind in ("to_target", "total"):
                values = group[f"{m}_{kind}"].dropna()
                row[f"{m}_{kind}_mean"] = values.mean() if len(values) else np.nan
                row[f"{m}_{kind}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        per_sample = group["co2_operational_g_total"] / group["samples_total"]
        row["co2_operational_g_per_1k_samples_mean"] = 1000 * per_sample.mean()
        out.append(row)
    return pd.DataFrame(out)


def markdown(summary: pd.DataFrame, target: float) -> str:
    """The table as Markdown: mean ± std over seeds, to the target accuracy and per 1,000 samples."""

    def cell(row: pd.Series, name: str, scale: float, fmt: str) -> str:
        mean, std = row[f"{name}_mean"] * scale, row[f"{name}_std"] * scale
        if not np.isfinite(mean):
            return "not reached"
        return f"{mean:{fmt}}" + (f" ± {std:{fmt}}" if np.isfinite(std) else "")

    lines = [
        f"| case | grid region(s) | peers | reached {target:.0%} | time to target [h] | kWh to target | "
        "operational kg CO2 to target | embodied kg CO2 to target | cost to target [USD] | g CO2 per 1k samples | mean wait [h] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in summary.iterrows():
        lines.append(
            f"| {row['case']} | {row['region']} | {row['peers']} | {row['reached']}/{row['seeds']} | "
            f"{cell(row, 'time_s_to_target', 1 / 3600, '.3g')} | {cell(row, 'energy_kwh_to_target', 1, '.3g')} | "
            f"{cell(row, 'co2_operational_g_to_target', 1e-3, '.3g')} | {cell(row, 'co2_embodied_g_to_target', 1e-3, '.3g')} | "
            f"{cell(row, 'cost_usd_to_target', 1, '.3g')} | {row['co2_operational_g_per_1k_samples_mean']:.3g} | "
            f"{row['mean_wait_h']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def draw(summary: pd.DataFrame, path: Path) -> None:
    """Bars of kWh, kg CO2 and USD to the target per case and region, error bars one std over seeds (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{c}\n{r}" for c, r in zip(summary["case"], summary["region"])]
    panels = (("energy_kwh_to_target", 1.0, "energy to target [kWh]"),
              ("co2_operational_g_to_target", 1e-3, "operational CO2 to target [kg]"),
              ("cost_usd_to_target", 1.0, "cost to target [USD]"))
    figure, axes = plt.subplots(1, 3, figsize=(17, 5.5), constrained_layout=True)
    colours = [plt.cm.tab10(sorted(set(summary["case"])).index(c)) for c in summary["case"]]
    for axis, (name, scale, label) in zip(axes, panels):
        means = summary[f"{name}_mean"].to_numpy() * scale
        stds = np.nan_to_num(summary[f"{name}_std"].to_numpy() * scale)
        x = np.arange(len(labels))
        axis.bar(x, np.nan_to_num(means), yerr=stds, color=colours, capsize=3)
        axis.set_yscale("log")
        axis.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        axis.set_ylabel(label)
    figure.suptitle("Quick-start task to its target accuracy: mean over seeds, error bars one standard deviation")
    figure.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None})
    figure.savefig(path.with_suffix(".png"), dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> Path:
    """Run every seed, write the runs, the table and the figure; return the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="1 seed, 4096 samples")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(ROOT / "results" / "energy_bill"))
    args = parser.parse_args(argv)
    seeds = 1 if args.smoke else args.seeds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, args.smoke) for seed in range(seeds)]
    if args.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = [row for chunk in pool.map(run_seed, jobs) for row in chunk]
    else:
        rows = [row for job in jobs for row in run_seed(job)]
    runs = pd.DataFrame(rows)
    runs.to_csv(out / "runs.csv", index=False)
    summary = table(runs)
    summary.to_csv(out / "table.csv", index=False)
    target = base_scenario(0, args.smoke).metrics.target_accuracy
    (out / "table.md").write_text(markdown(summary, target))
    draw(summary, out / "figure")
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(main())
