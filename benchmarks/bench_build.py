"""Building a large world: the build's pieces issue 12 replaced, against what they replaced, in one process.

Each pair runs alternately (before, after, before, after, ...) `--repeats` times; the figures are
medians of this process's CPU seconds (`time.process_time`): the work done, whatever the
neighbours on a shared machine do. Both sides of a pair give the same result (asserted here;
tests/test_topology.py, test_seeding.py and test_partition.py test it). Then the whole build of
the scale benchmark's world (benchmarks/run_all.py, part 4) by stage, once.

    python benchmarks/bench_build.py [--peers 100000] [--graph-peers 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import networkx as nx
import numpy as np
from run_all import scale_scenario

from p2psim.build import build_run
from p2psim.engine import World
from p2psim.partition import partition_iid
from p2psim.seeding import stream, streams
from p2psim.topology import _graph, random_regular


def cpu_s(make: Callable[[], object]) -> tuple[float, object]:
    """CPU seconds of `make()`, and what it made."""
    start = time.process_time()
    made = make()
    return time.process_time() - start, made


def pair(name: str, before: Callable[[], object], after: Callable[[], object], same: Callable[[object, object], bool],
         repeats: int) -> dict:
    """Medians of `before` and `after` run alternately, after checking they make the same thing."""
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(repeats):
        seconds, old = cpu_s(before)
        times["before"].append(seconds)
        seconds, new = cpu_s(after)
        times["after"].append(seconds)
        assert same(old, new), f"{name}: the two sides differ"
    before_s, after_s = statistics.median(times["before"]), statistics.median(times["after"])
    return {"piece": name, "before_s": before_s, "after_s": after_s, "ratio": before_s / after_s}


def graph_pair(n: int, repeats: int) -> dict:
    """A random 4-regular graph: networkx's generator (a numpy call per bit draw) against p2psim's."""
    return pair(
        f"random 4-regular graph, {n:,} peers",
        lambda: _graph(n, nx.random_regular_graph(4, n, seed=np.random.default_rng(stream(0, "topology"))).edges),
        lambda: random_regular(n, 4, seed=stream(0, "topology")),
        lambda old, new: list(old.edges) == list(new.edges),
        repeats,
    )


def generators_pair(n: int, repeats: int) -> dict:
    """Per-peer batch generators: one SeedSequence each against one vectorised hash."""
    return pair(
        f"batch generators, {n:,} peers",
        lambda: [stream(0, "batches", i) for i in range(n)],
        lambda: streams(0, "batches", n),
        lambda old, new: [g.integers(2**62) for g in old[::997]] == [g.integers(2**62) for g in new[::997]],
        repeats,
    )


def shards_pair(n: int, repeats: int) -> dict:
    """IID shards of 16 samples a peer: one sort per peer against two 2-D sorts."""
    return pair(
        f"IID shards, {n:,} peers",
        lambda: [np.sort(part) for part in np.array_split(stream(0, "partition").permutation(16 * n), n)],
        lambda: partition_iid(16 * n, n, stream(0, "partition")),
        lambda old, new: all(np.array_equal(a, b) for a, b in zip(old, new, strict=True)),
        repeats,
    )


def build_stages(n: int) -> dict:
    """CPU seconds of the scale world's build by stage: validation (which builds the graph), build_run, World."""
    World(build_run(scale_scenario(16, 1, "cpu", "deferred")))  # imports and first calls are not the build's
    validate_s, scenario = cpu_s(lambda: scale_scenario(n, 50, "cpu", "deferred"))
    build_s, setup = cpu_s(lambda: build_run(scenario))
    world_s, _ = cpu_s(lambda: World(setup))
    return {"peers": n, "validate_s": validate_s, "build_run_s": build_s, "world_s": world_s,
            "total_s": validate_s + build_s + world_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=100_000)
    parser.add_argument("--graph-peers", type=int, default=10_000, help="networkx's generator takes ~1.5 min at 100,000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [graph_pair(args.graph_peers, args.repeats), generators_pair(args.peers, args.repeats),
            shards_pair(args.peers, args.repeats)]
    print("| piece | before [CPU s] | after [CPU s] | ratio |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['piece']} | {row['before_s']:.3g} | {row['after_s']:.3g} | {row['ratio']:.3g} |")
    stages = build_stages(args.peers)
    print("\n| peers | validate [CPU s] | build_run [CPU s] | World [CPU s] | total [CPU s] |\n|---|---|---|---|---|")
    print(f"| {stages['peers']:,} | {stages['validate_s']:.3g} | {stages['build_run_s']:.3g} | {stages['world_s']:.3g} "
          f"| {stages['total_s']:.3g} |")


if __name__ == "__main__":
    main()
