"""Cost-only reproductions of three published wall-clock figures: SGP, OpenDiLoCo and INTELLECT-1.

Each runs p2psim with `engine.numerics = "none"` (no numerics: time, traffic, utilisation)
and writes a CSV to results/costonly/, next to the published figure. Every input that is not
a catalogue entry or a published fact is named in ASSUMPTIONS and in the CSV.

- SGP (Assran et al. 2019, arXiv:1811.10792, abstract): ResNet-50 on ImageNet, 32 nodes of
  8 V100 over 10 Gbit/s Ethernet, 90 epochs: SGP about 1.6 h, all-reduce SGD over 5 h.
  Both algorithms run 20 and 30 iterations; the difference gives the steady time per
  iteration, times the 14,076 iterations of 90 epochs at a global batch of 8,192.
- OpenDiLoCo (Jaghouar, Ong, Hagemann 2024, arXiv:2407.07852, abstract): 90-95 % compute
  utilisation training a 1.1B model across two continents and three countries.
- INTELLECT-1 (Jaghouar et al. 2024, arXiv:2412.01152, abstract and release post): 83 %
  utilisation across three continents, 96 % within the United States, 10B model, 100 inner
  steps, int8 all-reduce of the outer gradients.
  Utilisation, as those reports define it, is the time a worker computes over the wall time
  (the rest is the all-reduce): here each run stops at the end of its third all-reduce, and
  the utilisation is the workers' computing fraction over that span (peers.csv).
  The links between nodes are not published as a single figure, so the utilisation is swept
  over the nodes' WAN bandwidth; the bandwidth at which the published figure is matched is
  reported.

    python experiments/costonly_reproductions.py [--only sgp opendiloco intellect1] [--out results/costonly]
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import pandas as pd

from p2psim import Scenario, ScenarioError, run
from p2psim.build import build_run
from p2psim.engine import World
from p2psim.scenario import WorkloadSpec

IMAGENET_TRAIN = 1_281_167  # ImageNet-1k training images (Russakovsky et al. 2015)
SGP_NODES, SGP_BATCH_PER_NODE, SGP_EPOCHS = 32, 256, 90  # SGP paper: 32 nodes, global batch 8,192 (32 images per GPU)
SGP_ITERATIONS = math.ceil(SGP_EPOCHS * IMAGENET_TRAIN / (SGP_NODES * SGP_BATCH_PER_NODE))
SGP_JITTERS = (0.0, 0.3)  # sigma of a mean-one log-normal factor on each node's step: 0.3 illustrates stragglers
BANDWIDTHS_MBPS = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
INTELLECT1_MFU = 0.388  # INTELLECT-1 reports 36.2-41.4 % model FLOPS utilisation: the midpoint

ASSUMPTIONS = {
    "sgp": "fp32 training (2018 PyTorch); 10 Gbit/s each way per node, 25 us access latency at each end; "
           "a node is one peer of 8 V100s (devices.toml v100_node_8x) at the catalogue's utilisation; "
           "SGP synchronous (tau = 0) on the time-varying 1-peer exponential graph; jitter 0.3 is an illustration "
           "of step-time variation between nodes, not a measured figure",
    "opendiloco": "4 workers of 8 H100s (canada_central, eu_north, us_east, us_west); H = 500 inner steps; "
                  "64 sequences of 2,048 tokens per worker and step; bf16 compute at the catalogue's utilisation; "
                  "fp16 all-reduce of the pseudo-gradients (2 B/param) over a ring; WAN bandwidth swept",
    "intellect1": "nodes of 8 H100s at 38.8 % MFU (the report's 36.2-41.4 %); 8 sequences of 8,192 tokens per node "
                  "and step, activation checkpointing; H = 100; int8 ring all-reduce (1 B/param); US: 4 nodes in us_east, us_central, us_west; "
                  "global: 14 nodes in the US, Canada, Europe and India; WAN bandwidth swept",
}


def scenario(name: str, devices: dict, regions: dict, link_mbps: float, workload: dict, algorithm: dict,
             batch: int, stop: dict, precision: str, latency_ms: float = 0.0, utilisation: dict | None = None,
             peers: dict | None = None) -> Scenario:
    """A cost-only scenario: every peer on one link profile `wan` of `link_mbps` each way."""
    count = sum(devices.values())
    return Scenario.from_dict({
        "name": name,
        "task": {"name": "least_squares", "n_samples": 64, "n_features": 2},  # never built: no numerics
        "workload": workload,
        "data": {"batch_size": batch},
        "peers": {"devices": devices, "links": {"wan": count}, "regions": regions, "precision": precision,
                  "utilisation": utilisation or {}, "step_overhead_s": 0.0, **(peers or {})},
        "network": {"links": [{"name": "wan", "up_mbps": link_mbps, "down_mbps": link_mbps, "latency_ms": latency_ms}]},
        "topology": {"kind": "complete"},
        "algorithm": algorithm,
        "engine": {"numerics": "none"},
        "stop": stop,
        "metrics": {"eval_interval_s": 1e6},
    })


def sgp() -> pd.DataFrame:
    """Hours for 90 epochs with SGP and with all-reduce SGD, from the steady time per iteration."""
    rows = []
    for jitter, (label, algorithm) in itertools.product(SGP_JITTERS, (
            ("SGP", {"name": "sgp", "lr": 0.1, "graph": "exponential_one_peer"}),
            ("AllReduce SGD", {"name": "allreduce", "lr": 0.1}))):
        times = {}
        for iterations in (20, 30):
            s = scenario(f"sgp-{algorithm['name']}", {"v100_node_8x": SGP_NODES}, {}, 1e4, {"name": "resnet50"},
                         algorithm, SGP_BATCH_PER_NODE, {"steps": SGP_NODES * iterations}, "fp32", latency_ms=0.025,
                         peers={"jitter": jitter})
            times[iterations] = run(s, baselines=False).manifest["runs"]["p2p"]["sim_time_s"]
        per_iteration = (times[30] - times[20]) / 10
        step = build_run(s).step_time_s[0]
        rows.append({
            "algorithm": label, "jitter": jitter, "nodes": SGP_NODES, "iterations": SGP_ITERATIONS,
            "compute_s_per_iteration": step, "simulated_s_per_iteration": per_iteration,
            "hours_90_epochs": per_iteration * SGP_ITERATIONS / 3600,
            "published_hours": 1.6 if label == "SGP" else "> 5",
            "assumptions": ASSUMPTIONS["sgp"],
        })
    return pd.DataFrame(rows)


def utilisation_of(s: Scenario, rounds: int = 3) -> tuple[float, float, float]:
    """(computing fraction of the workers, compute seconds per round, seconds per round) over `rounds` rounds."""
    world = World(build_run(s))
    world.run()
    ends = world.algorithm.round_ends[:rounds]
    stopped = s.with_overrides({"stop": {"sim_time_s": ends[-1]}})  # stop at the end of the last all-reduce
    result = run(stopped, baselines=False)
    step = float(result.peers["step_time_s"].mean())
    return float(result.peers["computing_fraction"].mean()), step * s.algorithm.local_steps, ends[-1] / rounds


def diloco_sweep(name: str, devices: dict, regions: dict, workload: dict, local_steps: int, bytes_per_param: float,
                 batch: int, published: str, utilisation: dict | None = None, peers: dict | None = None) -> list[dict]:
    rows = []
    n = sum(devices.values())
    for mbps in BANDWIDTHS_MBPS:
        algorithm = {"name": "diloco_ring", "lr": 1e-3, "local_steps": local_steps,
                     "outer_bytes_per_param": bytes_per_param}
        s = scenario(name, devices, regions, mbps, workload, algorithm, batch,
                     {"steps": 4 * local_steps * n}, "bf16", utilisation=utilisation, peers=peers)
        used, compute_s, round_s = utilisation_of(s)
        rows.append({"run": name, "nodes": n, "wan_mbps": mbps, "compute_s_per_round": compute_s,
                     "round_s": round_s, "utilisation": used, "published_utilisation": published})
    return rows


def matched_bandwidth(rows: pd.DataFrame, target: float) -> float:
    """The WAN bandwidth at which the utilisation reaches `target` (log-linear interpolation between swept points)."""
    below = rows[rows["utilisation"] < target]
    above = rows[rows["utilisation"] >= target]
    if below.empty or above.empty:
        return math.nan
    lo, hi = below.iloc[-1], above.iloc[0]
    share = (target - lo["utilisation"]) / (hi["utilisation"] - lo["utilisation"])
    return float(math.exp(math.log(lo["wan_mbps"]) + share * (math.log(hi["wan_mbps"]) - math.log(lo["wan_mbps"]))))


def opendiloco() -> pd.DataFrame:
    regions = {"canada_central": 1, "eu_north": 1, "us_east": 1, "us_west": 1}
    rows = diloco_sweep("opendiloco-1.1b", {"h100_node_8x": 4}, regions, {"name": "llama_1b"}, 500, 2.0, 64, "0.90-0.95")
    table = pd.DataFrame(rows).assign(assumptions=ASSUMPTIONS["opendiloco"])
    table["bandwidth_for_published_mbps"] = [matched_bandwidth(table, 0.90), *[math.nan] * (len(table) - 1)]
    return table


def intellect1() -> pd.DataFrame:
    mfu = {"h100_node_8x": INTELLECT1_MFU}
    us = {"us_east": 2, "us_central": 1, "us_west": 1}
    world = {"us_east": 3, "us_central": 2, "us_west": 1, "canada_central": 2, "eu_west": 2, "eu_central": 2,
             "eu_north": 1, "asia_south": 1}
    tables = []
    for name, regions, published in (("intellect1-us", us, 0.96), ("intellect1-global", world, 0.83)):
        rows = diloco_sweep(name, {"h100_node_8x": sum(regions.values())}, regions, {"name": "intellect1_10b"},
                            100, 1.0, 8, str(published), mfu, {"activation_checkpointing": True})
        table = pd.DataFrame(rows)
        table["bandwidth_for_published_mbps"] = [matched_bandwidth(table, published), *[math.nan] * (len(table) - 1)]
        tables.append(table)
    return pd.concat(tables, ignore_index=True).assign(assumptions=ASSUMPTIONS["intellect1"])


QUESTION_TOKENS = 10e9
SWARM_WORKERS, CLUSTER_GPUS = 1000, 64
SWARM_PEERS = {"offload": "optimizer", "activation_checkpointing": True}  # what lets 1.1B fit an 8 GB RX 580
INNER = {"name": "diloco", "lr": 4e-4, "local_steps": 100, "optimizer": {"name": "adamw"}}


def swarm(workload: dict, rounds: int) -> Scenario:
    """1,000 RX 580 workers on the global fixed-line median and a DiLoCo server on one 400 Gbit/s link (not computing)."""
    links = {"datacenter_ethernet": 1, "fixed_global": SWARM_WORKERS}
    data = {
        "name": "swarm", "task": {"name": "least_squares", "n_samples": 64, "n_features": 2}, "workload": workload,
        "data": {"batch_size": 1},
        "peers": {"devices": {"rx_580": SWARM_WORKERS + 1}, "links": links, "precision": "fp16", **SWARM_PEERS},
        "topology": {"kind": "ring"}, "algorithm": INNER, "engine": {"numerics": "none"},
        "stop": {"steps": rounds * INNER["local_steps"] * SWARM_WORKERS}, "metrics": {"eval_interval_s": 1e6},
    }
    placed = build_run(Scenario.from_dict(data)).link_names  # the server is the peer the placement put on the fast link
    data["algorithm"] = {**INNER, "server": placed.index("datacenter_ethernet")}
    return Scenario.from_dict(data)


def cluster(workload: dict, steps: int) -> Scenario:
    """64 H100s on InfiniBand, synchronous all-reduce SGD; optimizer state offloaded (stands in for ZeRO sharding)."""
    return scenario("cluster", {"h100_sxm": CLUSTER_GPUS}, {}, 4e5, workload, {"name": "allreduce", "lr": 1e-4}, 1,
                    {"steps": CLUSTER_GPUS * steps}, "bf16", latency_ms=0.00075, peers={"offload": "optimizer"})


def extrapolated(build, short: int, long: int, per_unit_tokens: float, what: str) -> dict:
    """Simulate `short` and `long` units (rounds or steps); steady seconds and kWh per unit, scaled to the tokens."""
    results = {n: run(build(n), baselines=False) for n in (short, long)}
    time_s = {n: r.manifest["runs"]["p2p"]["sim_time_s"] for n, r in results.items()}
    kwh = {n: float(r.history["energy_kwh"].iloc[-1]) for n, r in results.items()}
    units = QUESTION_TOKENS / per_unit_tokens
    per_unit_s, per_unit_kwh = (time_s[long] - time_s[short]) / (long - short), (kwh[long] - kwh[short]) / (long - short)
    return {"simulated": f"{short} and {long} {what}", "units_for_10B_tokens": units, "s_per_unit": per_unit_s,
            "days": units * per_unit_s / 86400, "kwh": units * per_unit_kwh,
            "utilisation": float(results[long].peers.query("steps > 0")["computing_fraction"].mean())}


def question(progress: Path | None = None) -> pd.DataFrame:
    """10B tokens of a 7B model: 1,000 RX 580s on home broadband with DiLoCo against 64 H100s on InfiniBand.

    With `progress`, the rows so far are written there after each one (the swarm takes the longest).
    """
    rows = []
    try:
        swarm({"name": "llama2_7b"}, 1)
    except ScenarioError as error:
        rows.append({"setup": "7B on 1,000 RX 580s, DiLoCo", "result": f"does not fit: {error}"})
    for label, workload in (("7B", {"name": "llama2_7b"}), ("1.1B", {"name": "llama_1b"})):
        tokens = WorkloadSpec(**workload).tokens_per_sample
        rows.append({"setup": f"{label} on {CLUSTER_GPUS} H100s, InfiniBand, all-reduce", "result": "ok",
                     **extrapolated(lambda n, w=workload: cluster(w, n), 1, 2, CLUSTER_GPUS * tokens, "steps")})
        if progress is not None:
            pd.DataFrame(rows).to_csv(progress, index=False)
    tokens = WorkloadSpec(name="llama_1b").tokens_per_sample
    per_round = SWARM_WORKERS * INNER["local_steps"] * tokens
    rows.append({"setup": "1.1B on 1,000 RX 580s, home broadband, DiLoCo (H = 100)", "result": "ok",
                 **extrapolated(lambda n: swarm({"name": "llama_1b"}, n), 1, 2, per_round, "rounds")})
    return pd.DataFrame(rows)


REPRODUCTIONS = {"sgp": sgp, "opendiloco": opendiloco, "intellect1": intellect1, "question": question}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(REPRODUCTIONS), default=list(REPRODUCTIONS))
    parser.add_argument("--out", type=Path, default=Path("results/costonly"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        table = question(args.out / "question.csv") if name == "question" else REPRODUCTIONS[name]()
        table.to_csv(args.out / f"{name}.csv", index=False)
        print(table.drop(columns="assumptions", errors="ignore").to_string(index=False), flush=True)
    return args.out


if __name__ == "__main__":
    main()
