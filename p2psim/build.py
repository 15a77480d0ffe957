"""Turn a scenario into the concrete pieces of one run: data, peers, timings, graph, links.

Everything random here draws from a named stream of the scenario's seed, so the same
scenario builds the same world.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from .adversary import byzantine_peers
from .algorithms import IMPLEMENTATIONS
from .compute_device import resolve_device, task_on
from .availability import build_availability
from .faults import resolve_faults
from .hardware import load_devices
from .links import latency_function, load_link_profiles
from .partition import make_partition
from .scenario import LinkSpec, Scenario, TopologySpec, expand_mix
from .seeding import stream
from .stepmodel import device_step_s, scenario_work, timing_activation_bytes
from .stragglers import resolve_stragglers
from .tasks import Task, TaskData
from .topology import build_topology

if TYPE_CHECKING:
    from .engine import RunSetup

__all__ = [
    "build_graph",
    "build_run",
    "build_task",
    "bytes_per_element",
    "link_catalogue",
    "model_shape",
    "partitions_of",
    "peer_partitions",
]

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2}
COST_ONLY_SHARD = np.zeros(1, dtype=np.int64)  # cost-only: one placeholder index, so batches keep their size


def bytes_per_element(precision: str) -> int:
    """Bytes of one parameter on the wire and in memory at this precision."""
    return BYTES_PER_ELEMENT[precision]


@functools.lru_cache(maxsize=16)
def build_task(task: Task, seed: int) -> TaskData:
    """The task's data and initial parameters (cached: tasks are immutable and builds are pure)."""
    return task.build(seed)


def link_catalogue(scenario: Scenario) -> dict[str, LinkSpec]:
    """Link profiles by name: the catalogue's, then the scenario's own (which may shadow them)."""
    links = {
        name: LinkSpec(name, profile.up_mbps, profile.down_mbps, profile.latency_ms)
        for name, profile in load_link_profiles().items()
    }
    links.update({link.name: link for link in scenario.network.links})
    return links


def model_shape(scenario: Scenario) -> tuple[float, float]:
    """(parameter count, training FLOPs per local step) that timings and bytes stand for."""
    batch = scenario.data.batch_size
    if scenario.workload is not None:  # the task is not built: a cost-only run never needs its data
        return scenario.workload.params, scenario.workload.flops_per_sample * batch
    from .counting import count_training_flops  # imports torch: building a run needs it, validating does not

    task = build_task(scenario.task, scenario.seed)
    x = task.x_train[:batch]
    y = task.y_train[:batch]
    flops = count_training_flops(task.model, task.unflatten(task.initial_params.clone()), x, y, task.loss)
    return float(task.n_params), flops * batch / len(x)


def peer_partitions(scenario: Scenario, task: TaskData) -> list[np.ndarray]:
    """Each peer's training-sample indices, split as the scenario's `data` says among the peers that train.

    A peer that never computes (a server) holds no data, so no sample goes unused.
    """
    labels = task.y_train.cpu().numpy() if task.n_classes is not None else None
    return partitions_of(scenario, labels, len(task.y_train))


def partitions_of(scenario: Scenario, labels: np.ndarray | None, n_samples: int) -> list[np.ndarray]:
    """`peer_partitions` of `n_samples` training samples with these labels (None: no labels, IID only)."""
    data = scenario.data
    n = scenario.peers.count
    learners = IMPLEMENTATIONS[scenario.algorithm.name].learners(scenario.algorithm, n)
    shards = make_partition(
        data.partition, labels, n_samples, len(learners), stream(scenario.seed, "partition"),
        alpha=data.alpha, k=data.labels_per_peer,
    )
    partitions = [np.empty(0, dtype=np.int64) for _ in range(n)]
    for peer, shard in zip(learners, shards):
        partitions[peer] = shard
    return partitions


def build_graph(scenario: Scenario) -> nx.Graph:
    """The communication graph over the scenario's peers (cached: validation and the run share one build; read only)."""
    return _graph(scenario.topology, scenario.peers.count, scenario.seed)


@functools.lru_cache(maxsize=8)
def _graph(topology: TopologySpec, n: int, seed: int) -> nx.Graph:
    return build_topology(topology.kind, n, seed=stream(seed, "topology"), **topology.params())


def _placed(mix: dict, count: int, seed: int, index: int, field: str) -> list[str]:
    names = expand_mix(mix, count, field)
    order = stream(seed, "placement", index).permutation(count)
    return [names[i] for i in order]


def build_run(scenario: Scenario) -> RunSetup:
    """Resolve a (validated) scenario into a `RunSetup`."""
    from .engine import RunSetup  # the engine (simpy, torch) loads when a run is built, not when a scenario is checked

    peers = scenario.peers
    n = peers.count
    seed = scenario.seed
    task = None if scenario.engine.cost_only else build_task(scenario.task, seed)  # cost-only: no data, no model
    if task is not None:  # rows and data on the scenario's torch device; "cuda" without a GPU fails here
        task = task_on(task, resolve_device(scenario.engine.device))
    catalogue = load_devices()
    devices = [catalogue[name] for name in expand_mix(peers.devices, n, "peers.devices")]
    link_names = _placed(peers.links, n, seed, 0, "peers.links")
    mix_links = link_names  # as peers.links names them, before "fixed_regional" resolves per region
    regions: list[str | None] = _placed(peers.regions, n, seed, 1, "peers.regions") if peers.regions else [None] * n
    # "fixed_regional": each peer on its own region's fixed-line median (links.toml), the global one without a region
    link_names = [f"fixed_{r}" if name == "fixed_regional" and r else name for name, r in zip(link_names, regions)]

    partitions = peer_partitions(scenario, task) if task is not None else [COST_ONLY_SHARD] * n

    n_params, flops = model_shape(scenario)
    work = scenario_work(scenario, n_params, flops, timing_activation_bytes(scenario))
    models = {d.name: d for d in devices}  # a step's time depends on the device model only: computed once for each
    step_of = {name: device_step_s(scenario, d, work) for name, d in models.items()}
    step = np.array([step_of[d.name] for d in devices])

    graph = build_graph(scenario)

    links = link_catalogue(scenario)
    profiles = [links[name] for name in link_names]
    up = np.array([p.up_mbps * 1e6 / 8 for p in profiles])
    down = np.array([p.down_mbps * 1e6 / 8 for p in profiles])
    access_s = np.array([p.latency_ms / 1e3 for p in profiles])
    latency = latency_function(graph, regions, access_s)

    return RunSetup(
        scenario=scenario,
        task=task,
        partitions=partitions,
        devices=devices,
        link_names=link_names,
        regions=regions,
        step_time_s=step,
        flops_per_step=flops,
        model_bytes=n_params * bytes_per_element(peers.precision),
        graph=graph,
        uplink_bytes_per_s=up,
        downlink_bytes_per_s=down,
        latency_s=latency,
        algorithm_class=IMPLEMENTATIONS[scenario.algorithm.name],
        byzantine=byzantine_peers(
            scenario.adversary, IMPLEMENTATIONS[scenario.algorithm.name].learners(scenario.algorithm, n), seed
        ),
        faults=None if scenario.faults is None else resolve_faults(scenario.faults, mix_links, regions),
        stragglers=None if scenario.stragglers is None else resolve_stragglers(
            scenario.stragglers, [d.name for d in devices], seed
        ),
        availability=None if scenario.churn is None else build_availability(
            scenario.churn, [d.name for d in devices], mix_links, regions, seed
        ),
    )
