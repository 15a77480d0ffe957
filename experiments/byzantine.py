"""Held-out accuracy against the Byzantine fraction, per aggregation rule: a server's rules and gossip's.

    python experiments/byzantine.py            # 2 seeds, every rule, attack and fraction (about 25 minutes on 2 cores)
    python experiments/byzantine.py --smoke    # 1 seed, fractions 0 and 0.3, one attack, 2 rounds (the tests run this)

The world: logistic regression (2000 samples, 20 features, 4 classes: chance is 25 %), IID shards,
10 learners, 150 rounds (1500 gradients, stop.steps), lr 0.1, batch 16. Byzantine peers are a
fraction of the learners, drawn by the seed; each rule is told the true count f (an oracle f, as
the papers' experiments do). Two panels per attack:
- server: `sync_ps` with one trusted server and 10 workers, each `[algorithm.aggregation]` rule
  (centered_clip: tau = 1, 3 iterations from the previous aggregate);
- gossip: 10 peers on a complete graph, `atc_dsgd` (plain weighted average) against
  `clipped_gossip` (tau = 0.1).
Attacks (`p2psim.attacks`): scaled (-10 x the honest row: a loud sign flip), alie (Baruch et al.'s
default z from n = 10 and f), ipm (epsilon = 0.1).
The accuracy is that of the evaluated model at the run's end: the server's model, or the mean of
the honest peers' models (never the attackers'). A run whose loss passed 1000x its initial loss
is "diverged": drawn as a cross on the 25 % chance line, left out of the lines, which join the
mean over seeds of the finished runs only where every seed finished.

Writes `results/byzantine/byzantine.csv` (one row per run) and `byzantine.pdf` / `byzantine.png`.
"""

from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "byzantine"

LEARNERS = 10
ROUNDS = 150
FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4)
ATTACKS = ("scaled", "alie", "ipm")
SERVER_RULES = ("mean", "median", "trimmed_mean", "krum", "multi_krum", "centered_clip")
GOSSIP_RULES = ("atc_dsgd", "clipped_gossip")
CHANCE = 0.25  # 4 balanced classes


def scenario(setting: str, rule: str, attack: str, fraction: float, seed: int, rounds: int) -> dict:
    """The scenario dict of one run: `setting` is "server" (rule: an aggregation rule) or "gossip" (rule: an algorithm)."""
    f = math.floor(fraction * LEARNERS + 1e-9)
    if setting == "server":
        aggregation = {"rule": rule}
        if rule in ("trimmed_mean", "krum", "multi_krum"):
            aggregation["f"] = f
        if rule == "centered_clip":
            aggregation.update(tau=1.0, iterations=3)
        algorithm = {"name": "sync_ps", "lr": 0.1, "aggregation": aggregation}
        peers = LEARNERS + 1
    else:
        algorithm = {"name": rule, "lr": 0.1, **({"tau": 0.1} if rule == "clipped_gossip" else {})}
        peers = LEARNERS
    data = {
        "name": f"byzantine-{setting}-{rule}-{attack}-{fraction}-{seed}",
        "seed": seed,
        "task": {"name": "logistic", "n_samples": 2000},
        "data": {"batch_size": 16},
        "peers": {"devices": {"h100_sxm": peers}, "links": {"fibre": peers}},
        "topology": {"kind": "complete"},
        "algorithm": algorithm,
        "stop": {"steps": LEARNERS * rounds},
        "metrics": {"eval_interval_samples": 10**9},  # records at the start and the end only
    }
    if f > 0:
        data["adversary"] = {"fraction": fraction, "attack": attack}
    return data


def run_one(job: tuple[str, str, str, float, int], rounds: int) -> dict:
    """Run one (setting, rule, attack, fraction, seed); its final record and status."""
    import torch

    from p2psim.build import build_run
    from p2psim.engine import simulate
    from p2psim.scenario import Scenario

    setting, rule, attack, fraction, seed = job
    torch.set_num_threads(1)
    setup = build_run(Scenario.from_dict(scenario(setting, rule, attack, fraction, seed, rounds)))
    outcome = simulate(setup)
    last = outcome.history[-1]
    status = outcome.info["status"]
    return {
        "setting": setting,
        "rule": rule,
        "attack": attack,
        "fraction": fraction,
        "byzantine": len(setup.byzantine),
        "seed": seed,
        "status": status,
        "steps": outcome.info["steps"],
        "accuracy": last["accuracy"] if status == "finished" else math.nan,
        "loss": last["loss"] if status == "finished" else math.nan,
    }


def plan(seeds: int, fractions: tuple[float, ...], attacks: tuple[str, ...] = ATTACKS) -> list[tuple[str, str, str, float, int]]:
    """Every (setting, rule, attack, fraction, seed); a fraction of 0 runs once per rule, not per attack."""
    jobs = []
    for setting, rules in (("server", SERVER_RULES), ("gossip", GOSSIP_RULES)):
        for rule in rules:
            for seed in range(seeds):
                for fraction in fractions:
                    for attack in attacks if fraction > 0 else attacks[:1]:
                        jobs.append((setting, rule, attack, fraction, seed))
    return jobs


def table(rows: list[dict], attacks: tuple[str, ...] = ATTACKS) -> pd.DataFrame:
    """One row per run; fraction-0 runs copied under every attack (no attacker: the attack is moot)."""
    frame = pd.DataFrame(rows)
    clean = frame[frame["fraction"] == 0]
    copies = [clean.assign(attack=attack) for attack in attacks[1:]]
    return pd.concat([frame, *copies], ignore_index=True).sort_values(["setting", "rule", "attack", "fraction", "seed"])


def figure(frame: pd.DataFrame, out: Path, attacks: tuple[str, ...] = ATTACKS) -> None:
    """Accuracy against the Byzantine fraction: one panel per (setting, attack), one line per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [("server", SERVER_RULES), ("gossip", GOSSIP_RULES)]
    fig, axes = plt.subplots(2, len(attacks), figsize=(4 * len(attacks), 7), sharey=True, squeeze=False)
    for row, (setting, rules) in enumerate(settings):
        for col, attack in enumerate(attacks):
            ax = axes[row][col]
            for rule in rules:
                runs = frame[(frame["setting"] == setting) & (frame["rule"] == rule) & (frame["attack"] == attack)]
                by_fraction = runs.groupby("fraction")
                finished = by_fraction.filter(lambda g: (g["status"] == "finished").all())
                mean = finished.groupby("fraction")["accuracy"].mean()
                (line,) = ax.plot(mean.index, mean.values, marker="o", label=rule)
                diverged = runs[runs["status"] != "finished"]
                if len(diverged):
                    ax.plot(diverged["fraction"], [CHANCE] * len(diverged), "x", color=line.get_color(), markersize=9)
            ax.axhline(CHANCE, color="grey", linewidth=0.5, linestyle=":")
            ax.set_title(f"{setting}: {attack}")
            ax.set_xlabel("Byzantine fraction of the 10 learners")
            if col == 0:
                ax.set_ylabel("held-out accuracy at the end (honest model)")
            if col == len(attacks) - 1:
                ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Logistic regression, {int(frame['steps'].max()) // LEARNERS} rounds; x: diverged (drawn at chance, 25 %); lines: mean of finished seeds")
    fig.tight_layout()
    fig.savefig(out / "byzantine.pdf", metadata={"CreationDate": None})
    fig.savefig(out / "byzantine.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    """Run every job (serially: small runs), write the table and the figure; return the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 seed, fractions 0 and 0.3, one attack, 2 rounds")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="processes (1: in this one)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    seeds, fractions, rounds = (1, (0.0, 0.3), 2) if args.smoke else (args.seeds, FRACTIONS, ROUNDS)
    attacks = ATTACKS[:1] if args.smoke else ATTACKS
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = plan(seeds, fractions, attacks)
    if args.workers == 1:
        rows = [run_one(job, rounds) for job in jobs]
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(run_one, jobs, [rounds] * len(jobs)))
    frame = table(rows, attacks)
    frame.to_csv(args.out / "byzantine.csv", index=False)
    figure(frame, args.out, attacks)
    return args.out


if __name__ == "__main__":
    main()
