"""Figure 1: simulated time, energy and CO2 to the target accuracy as the share of RX 580s in a home swarm grows.

    p2psim figures                                 # every figure, this one included
    python experiments/fig_rx580_share.py [--smoke] [--out DIR]

The swarm is experiments/sweeps/rx580_share.toml (the quick start's mix over 40 peers, 0 to 90 %
RX 580s, 5 seeds); the data centre is rx580_share_baselines.toml (its single-H100 and 8x H100
cluster baselines, same seeds and budget). Runs missing under results/sweeps/ are run first.
Writes `rx580_share.csv` (mean, sample standard deviation and 95 % interval half-width over
the seeds that reach the target, and how many did) and `rx580_share.pdf`. Timings stand for the quick start's declared
workload (ResNet-50) while the numerics are the digits MLP's: time, energy and CO2 to the target
are the MLP's samples to it times ResNet-50's cost per sample, an assumption the figure states.
`--smoke` (the tests): 10 peers, 1024 samples, 3 shares, 2 seeds, target 0.2, in a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import p2psim  # noqa: E402
from p2psim.figures import FIGURES_DIR, interval95, to_target  # noqa: E402
from p2psim.sweep import SweepSpec, load_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ROOT / "experiments" / "sweeps"
SHARE = "peers.devices.rx_580"
MEASURES = {"time_s": ("time to target [h]", 3600.0), "energy_kwh": ("energy to target [kWh]", 1.0),
            "co2_operational_g": ("operational CO2 to target [kg]", 1000.0)}
SMOKE = {"peers.count": 10, "stop.samples": 1024, "metrics.eval_interval_s": 600.0}
SMOKE_SHARES, SMOKE_SEEDS, SMOKE_TARGET = [0.0, 0.5, 0.9], (0, 1), 0.2


def sweeps(smoke: bool) -> tuple[SweepSpec, SweepSpec]:
    """The swarm's sweep and the baselines' sweep, shrunk at smoke size."""
    swarm, centre = load_sweep(SWEEPS / "rx580_share.toml"), load_sweep(SWEEPS / "rx580_share_baselines.toml")
    if smoke:
        swarm = dataclasses.replace(swarm, fixed={**swarm.fixed, **SMOKE}, grid={SHARE: SMOKE_SHARES}, seeds=SMOKE_SEEDS)
        centre = dataclasses.replace(centre, fixed={**centre.fixed, **SMOKE}, seeds=SMOKE_SEEDS)
    return swarm, centre


def table(smoke: bool = False, runs_dir: Path | None = None) -> pd.DataFrame:
    """The figure's data: per system (and share), mean and std over seeds of each measure to the target."""
    swarm, centre = sweeps(smoke)
    target = SMOKE_TARGET if smoke else swarm.base.metrics.target_accuracy
    runs_dir = runs_dir or ROOT / "results" / "sweeps"
    with ThreadPoolExecutor(1) if smoke else nullcontext("local") as executor:  # smoke: no worker start-up
        p2p = p2psim.sweep(swarm, out=runs_dir / swarm.name, executor=executor)
        dc = p2psim.sweep(centre, out=runs_dir / centre.name, executor=executor)
    p2p = to_target(p2p[p2p["run"] == "p2p"], target, [SHARE, "seed"]).rename(columns={SHARE: "rx580_share"})
    p2p.insert(0, "system", "home swarm")
    dc = to_target(dc[dc["run"] != "p2p"], target, ["run", "seed"]).rename(columns={"run": "system"})
    dc.insert(1, "rx580_share", float("nan"))
    runs = pd.concat([p2p, dc], ignore_index=True)
    grouped = runs.groupby(["system", "rx580_share"], dropna=False, sort=False)
    out = grouped["seed"].count().rename("seeds").to_frame()
    out["reached"] = grouped["time_s"].count()
    for measure in MEASURES:
        out[f"{measure}_mean"] = grouped[measure].mean()
        out[f"{measure}_std"] = grouped[measure].std()  # over the seeds that reached the target (ddof = 1)
        out[f"{measure}_ci95"] = grouped[measure].agg(interval95)  # half-width of the 95 % interval of the mean
    out.insert(0, "target_accuracy", target)
    return out.reset_index()


def draw(data: pd.DataFrame, path: Path) -> None:
    """Three panels against the share of RX 580s: the swarm with error bars, each baseline as a line."""
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    swarm = data[data["system"] == "home swarm"]
    for axis, (measure, (label, scale)) in zip(axes, MEASURES.items()):
        axis.errorbar(100 * swarm["rx580_share"], swarm[f"{measure}_mean"] / scale, yerr=swarm[f"{measure}_ci95"] / scale,
                      marker="o", capsize=3, label="home swarm (40 peers)")
        for number, (_, row) in enumerate(data[data["system"] != "home swarm"].iterrows()):
            axis.axhline(row[f"{measure}_mean"] / scale, color=f"C{number + 1}", linestyle="--", label=row["system"])
        axis.set_yscale("log")
        axis.set_xlabel("RX 580s in the swarm [%]")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    target = data["target_accuracy"].iloc[0]
    figure.suptitle(f"to accuracy {target:g}; mean and 95 % interval over seeds. Timings: ResNet-50 (declared workload); numerics: "
                    "digits MLP, so 'to target' = MLP samples to it x ResNet-50 cost per sample (assumption)", fontsize=8)
    figure.savefig(path, metadata={"Creator": None, "Producer": None, "CreationDate": None})
    plt.close(figure)


def make(out_dir: Path = FIGURES_DIR, smoke: bool = False) -> Path:
    """Run what is missing, write rx580_share.csv and rx580_share.pdf into `out_dir`; return the CSV's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        data = table(smoke, Path(scratch) if smoke else None)
    csv = out_dir / "rx580_share.csv"
    data.to_csv(csv, index=False)
    draw(data, out_dir / "rx580_share.pdf")
    return csv


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=FIGURES_DIR)
    arguments = parser.parse_args()
    print(make(arguments.out, arguments.smoke))
