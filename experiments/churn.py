"""Time to accuracy and final consensus distance as churn grows, per algorithm (issue 8).

    python experiments/churn.py            # 3 churn levels x 4 algorithms, 1 seed (~12 min on a shared core)
    python experiments/churn.py --smoke    # 2 levels x 2 algorithms, a few simulated minutes

A smaller quick start (16 slower consumer devices on home fibre and cable in three regions,
digits MLP with the timings and message sizes of GPT-2 small on 1024-token samples:
124e6 parameters, 6 x 124e6 x 1024 = 7.6e11 training FLOPs a sample, Kaplan et al. 2020) trains for `SAMPLES` samples (at most
`HOURS` simulated hours) under churn of growing strength: every peer alternates exponential
sessions of mean `SESSION_S` and downtimes chosen so
that a share `offline` of the peers is away at any instant, E[D] = E[S] offline / (1 - offline);
messages to offline peers are dropped, returning peers keep their old model, waits time out after
`TIMEOUT_S`. Server methods serve from peer 0, which churns like any other (a server that is
away stops the job until it is back: that is part of what is measured).

Writes `results/churn/`: `history.csv` (every recorded tick of every run), `table.csv` (per run:
the first recorded time the evaluated model reaches `TARGET` accuracy, or empty if never; the
final consensus distance; status and the churn counts) and `figure.pdf` / `figure.png`.
"To target" has the recording interval as its resolution and is never extrapolated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "churn"

HOURS = 3.0  # cap on simulated time; runs end at SAMPLES first unless churn slows them that much
SAMPLES = 20000
TARGET = 0.75
SESSION_S = 1800.0  # mean session 30 min, between the 7-23 min P2P medians (C1) and volunteers' hours (C2)
TIMEOUT_S = 600.0  # above a model's transfer on these links (248 MB on a cable uplink takes minutes)
LEVELS = (0.0, 0.2, 0.4)  # share of peers offline at any instant
ALGORITHMS: dict[str, dict] = {
    "gossip": {"name": "gossip", "lr": 0.5, "mode": "push_pull", "period": 10},
    "dpsgd": {"name": "dpsgd", "lr": 0.5},
    "async_ps": {"name": "async_ps", "lr": 0.5, "staleness_aware": True},
    "fedavg": {"name": "fedavg", "lr": 0.5, "local_steps": 8},
}


def scenario_dict(algorithm: str, offline: float, hours: float = HOURS) -> dict:
    """The world of this experiment with `algorithm` under churn that keeps a share `offline` of peers away."""
    data = {
        "name": f"churn-{algorithm}-{offline:g}",
        "seed": 0,
        "task": {"name": "digits_mlp", "hidden": [64]},
        "data": {"batch_size": 32, "partition": "dirichlet", "alpha": 1.0},
        "workload": {"name": "GPT-2 small, 1024-token samples", "params": 124e6, "flops_per_sample": 7.6e11},
        "peers": {
            "precision": "fp16",
            "step_overhead_s": 0.005,
            "devices": {"rtx_3060": 4, "t4": 4, "rx_580": 4, "apple_m2": 4},
            "links": {"fibre": 8, "cable": 8},
            "regions": {"us_east": 6, "eu_west": 6, "eu_central": 4},
        },
        "topology": {"kind": "random_regular", "degree": 4},
        "algorithm": ALGORITHMS[algorithm],
        "stop": {"sim_time_s": hours * 3600.0, "samples": SAMPLES},
        "metrics": {"eval_interval_s": 30.0, "target_accuracy": TARGET},
    }
    if offline > 0:
        down = SESSION_S * offline / (1.0 - offline)
        data["churn"] = {
            "classes": [
                {
                    "session": {"distribution": "exponential", "mean_s": SESSION_S},
                    "downtime": {"distribution": "exponential", "mean_s": down},
                }
            ],
            "timeout_s": TIMEOUT_S,
        }
    return data


def run_grid(levels: tuple[float, ...], algorithms: list[str], hours: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (algorithm, level) run: the long history and the one-row-per-run table."""
    import p2psim
    from p2psim.result import MAIN_RUN
    from p2psim.scenario import Scenario

    histories, rows = [], []
    for algorithm in algorithms:
        for offline in levels:
            result = p2psim.run(Scenario.from_dict(scenario_dict(algorithm, offline, hours)), baselines=False)
            history = result.history.assign(algorithm=algorithm, offline=offline)
            histories.append(history)
            info = result.manifest["runs"][MAIN_RUN]
            reached = history[history["accuracy"] >= TARGET]
            rows.append(
                {
                    "algorithm": algorithm,
                    "offline": offline,
                    "time_to_target_h": float(reached["time_s"].iloc[0]) / 3600 if len(reached) else None,
                    "final_accuracy": float(history["accuracy"].iloc[-1]),
                    "final_consensus_distance": float(history["consensus_distance"].iloc[-1]),
                    "mean_peers_online": float(history["peers_online"].mean()) if "peers_online" in history else 16.0,
                    "status": info.get("status"),
                    **{k: v for k, v in info.items() if k.startswith("churn_")},
                }
            )
    return pd.concat(histories, ignore_index=True), pd.DataFrame(rows)


def draw(table: pd.DataFrame, path: Path) -> None:
    """Time to target and final consensus distance against the share of peers offline, one line per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for algorithm, rows in table.groupby("algorithm", sort=False):
        left.plot(rows["offline"], rows["time_to_target_h"], marker="o", label=algorithm)
        right.plot(rows["offline"], rows["final_consensus_distance"], marker="o", label=algorithm)
    left.set(xlabel="share of peers offline", ylabel=f"simulated time to {TARGET:.0%} accuracy [h]")
    right.set(xlabel="share of peers offline", ylabel="final consensus distance", yscale="symlog")
    left.set_title("missing point: target not reached", fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    for suffix in (".pdf", ".png"):
        fig.savefig(path.with_suffix(suffix), metadata={"CreationDate": None} if suffix == ".pdf" else None)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 levels x 2 algorithms, 10 simulated minutes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    levels, algorithms, hours = (LEVELS, list(ALGORITHMS), HOURS) if not args.smoke else ((0.0, 0.3), ["gossip", "fedavg"], 1 / 6)
    history, table = run_grid(levels, algorithms, hours)
    args.out.mkdir(parents=True, exist_ok=True)
    history.to_csv(args.out / "history.csv", index=False)
    table.to_csv(args.out / "table.csv", index=False)
    draw(table, args.out / "figure")
    return args.out


if __name__ == "__main__":
    main()
