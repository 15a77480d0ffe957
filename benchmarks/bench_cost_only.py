"""Cost of a cost-only run (engine.numerics = "none"): host seconds per simulated event, up to 10,000+ peers.

Without numerics a run's cost is its events: local steps, messages, records. Two worlds:
"gossip" is the quick-start scenario (home links in seven regions, AD-PSGD on a random
4-regular graph, timings of ResNet-50) scaled to N peers, stopped after 20 local steps per
peer; "diloco" is one server and N - 1 RX 580 workers on home links with DiLoCo (H = 20
inner steps) timing the 1.1B language model (512-token samples, optimizer state offloaded
to host memory so that it fits 8 GB), stopped after two rounds.

    python benchmarks/bench_cost_only.py [--peers 1000 10000] [--worlds gossip diloco]
"""

from __future__ import annotations

import argparse
import platform
import time

from p2psim import run
from p2psim.scenario import load_scenario

QUICKSTART = "experiments/scenarios/quickstart.toml"
STEPS_PER_PEER = int(__import__("os").environ.get("STEPS_PER_PEER", 20))
INNER_STEPS = 20


def gossip_world(peers: int):
    """The quick-start scenario at `peers` peers (same device, link and region shares), cost-only."""
    base = load_scenario(QUICKSTART)
    share = lambda mix: {k: v / base.peers.count for k, v in mix.items()}  # noqa: E731
    return load_scenario(QUICKSTART, {
        "peers.count": peers,
        "peers.devices": share(base.peers.devices),
        "peers.links": share(base.peers.links),
        "peers.regions": share(base.peers.regions),
        "engine.numerics": "none",
        "metrics.target_accuracy": None,
        "stop": {"steps": STEPS_PER_PEER * peers},
        "metrics.eval_interval_s": 3600.0,
        "baselines": [],
    })


def diloco_world(peers: int):
    """One server (an H100 on fibre) and `peers` - 1 RX 580 workers on the global fixed-line median, DiLoCo, 1.1B."""
    return load_scenario(QUICKSTART, {
        "peers.count": peers,
        "peers.devices": {"h100_sxm": 1, "rx_580": peers - 1},
        "peers.links": {"fibre": 1, "fixed_global": peers - 1},
        "peers.regions": {},
        "peers.precision": "fp16",
        "peers.offload": "optimizer",  # master weights and optimizer state in host memory: 1.1B fits 8 GB
        "workload": {"name": "llama_1b", "tokens_per_sample": 512},
        "data.batch_size": 1,
        "topology": {"kind": "ring"},
        "algorithm": {"name": "diloco", "lr": 0.1, "local_steps": INNER_STEPS},
        "engine.numerics": "none",
        "metrics.target_accuracy": None,
        "stop": {"steps": 2 * INNER_STEPS * (peers - 1)},
        "metrics.eval_interval_s": 36000.0,
        "baselines": [],
    })


WORLDS = {"gossip": gossip_world, "diloco": diloco_world}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| world | peers | local steps | messages | simulated | host wall | events/s | build+validate |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for world in args.worlds:
        for peers in args.peers:
            start = time.perf_counter()
            scenario = WORLDS[world](peers)
            result = run(scenario, baselines=False)
            total = time.perf_counter() - start
            facts = result.manifest["runs"]["p2p"]
            events = facts["gradients_computed"] + facts["messages"]
            print(
                f"| {world} | {peers} | {facts['gradients_computed']} | {facts['messages']} | "
                f"{facts['sim_time_s'] / 3600:.3g} h | {facts['wall_s']:.1f} s | {events / facts['wall_s']:.3g} | "
                f"{total - facts['wall_s']:.1f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
