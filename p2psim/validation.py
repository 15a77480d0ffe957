"""Checks that need the catalogues, the task or the graph: run before anything simulates.

`validate_scenario` builds every piece of a run that can fail (the task's data, its
partition among peers, the graph), so that a scenario it accepts also builds. Each
failure is one `ScenarioError` naming the field, the bad value and what is allowed
(DESIGN decision 9).
"""

from __future__ import annotations

from collections.abc import Container, Iterable

import networkx as nx

from .algorithms import IMPLEMENTATIONS
from .build import (
    build_graph,
    build_task,
    bytes_per_element,
    link_catalogue,
    peer_partitions,
)
from .config import ScenarioError
from .hardware import activation_bytes_per_sample, load_devices, training_memory_bytes
from .links import load_regions
from .scenario import Scenario
from .tasks import TaskData

__all__ = ["check_fits", "validate_scenario"]


def _known(names: Iterable[str], allowed: Container[str], field: str, what: str) -> None:
    for name in names:
        if name not in allowed:
            raise ScenarioError(field, f"unknown {what} {name!r} (allowed: {', '.join(allowed)})")


def validate_scenario(scenario: Scenario) -> None:
    """Raise `ScenarioError` for the first problem found in `scenario`; return None if it can run."""
    devices = load_devices()
    links = link_catalogue(scenario)
    peers = scenario.peers
    _known(peers.devices, devices, "peers.devices", "device")
    _known(peers.utilisation, peers.devices, "peers.utilisation", "device (not in peers.devices)")
    _known(peers.links, links, "peers.links", "link")
    _known(peers.regions, load_regions(), "peers.regions", "region")
    _known([scenario.algorithm.name], IMPLEMENTATIONS, "algorithm.name", "algorithm")
    names = [b.name for b in scenario.baselines]
    for i, baseline in enumerate(scenario.baselines):
        _known([baseline.device], devices, f"baselines[{i}].device", "device")
        _known([baseline.link], links, f"baselines[{i}].link", "link")
        if names.count(baseline.name) > 1:
            raise ScenarioError(f"baselines[{i}].name", f"{baseline.name!r} is used twice")

    task = _built_task(scenario)
    if scenario.data.partition != "iid" and task.n_classes is None:
        raise ScenarioError(
            "data.partition",
            f"{scenario.data.partition!r} splits by label and needs a classification task; "
            f"task {scenario.task.name!r} is a regression (allowed: iid)",
        )
    if peers.count > len(task.y_train):
        raise ScenarioError("peers.count", f"{peers.count} peers but only {len(task.y_train)} training samples")
    _check_partition(scenario, task)
    _check_topology(scenario)
    check_fits(scenario)


def _built_task(scenario: Scenario) -> TaskData:
    """The task's data, or a `ScenarioError` on field "task" saying why it cannot be built."""
    try:
        return build_task(scenario.task, scenario.seed)
    except ScenarioError as error:
        raise error.within("task") from None
    except (ValueError, OSError) as error:
        raise ScenarioError("task", f"task {scenario.task.name!r} cannot be built: {error}") from None


def _check_partition(scenario: Scenario, task: TaskData) -> None:
    """Split the training set as `build.build_run` does, so that a split that cannot be made fails here."""
    data, n = scenario.data, scenario.peers.count
    if data.partition == "k_labels" and data.labels_per_peer > task.n_classes:
        raise ScenarioError(
            "data.labels_per_peer",
            f"must be <= {task.n_classes} (the number of labels of task {scenario.task.name!r}), "
            f"got {data.labels_per_peer!r}",
        )
    try:
        peer_partitions(scenario, task)
    except ValueError as error:
        raise ScenarioError(
            "data", f"the training set cannot be split {data.partition!r} among {n} peers: {error}"
        ) from None


def _check_topology(scenario: Scenario) -> None:
    """Build the graph as `build.build_run` does; a disconnected one fails if the algorithm needs it connected."""
    topology, n = scenario.topology, scenario.peers.count
    field = "topology.path" if topology.kind == "edge_list" else "topology"  # there, the file is what is wrong
    try:
        graph = build_graph(scenario)
    except OSError as error:
        raise ScenarioError(field, f"cannot read edge list {topology.path!r}: {error.strerror or error}") from None
    except (ValueError, nx.NetworkXError) as error:
        raise ScenarioError(field, str(error)) from None
    if IMPLEMENTATIONS[scenario.algorithm.name].needs_connected_graph and not nx.is_connected(graph):
        components = nx.number_connected_components(graph)
        raise ScenarioError(
            "topology",
            f"the {topology.kind} graph over {n} peers is disconnected ({components} components); "
            f"algorithm {scenario.algorithm.name!r} needs a connected graph",
        )


def check_fits(scenario: Scenario) -> None:
    """A model that does not fit a device's memory is an error that says so (DESIGN decision 2).

    A peer needs its weights, their gradient and one received model copy
    (3 x params x bytes per element) plus the activations of its whole local batch.
    A centralized baseline whose per-device batch's activations do not fit accumulates
    gradients over micro-batches instead: the same FLOPs, so the same modelled step
    time. A baseline therefore fails only if the three parameter-sized tensors plus
    one sample's activations do not fit.
    """
    task = build_task(scenario.task, scenario.seed)
    if scenario.workload is not None:
        n_params, activations = scenario.workload.params, scenario.workload.activation_bytes_per_sample
    else:
        n_params = task.n_params
        x = task.x_train[:1]
        activations = activation_bytes_per_sample(task.model, task.unflatten(task.initial_params.clone()), x)
    element = bytes_per_element(scenario.peers.precision)
    catalogue = load_devices()
    batch = scenario.data.batch_size
    uses = [("peers.devices", name, batch, f"batch {batch} x activations") for name in scenario.peers.devices]
    for i, baseline in enumerate(scenario.baselines):
        uses.append(
            (f"baselines[{i}].device", baseline.device, 1,
             "one sample's activations: a baseline accumulates gradients over micro-batches")
        )
    for field, name, samples, what in uses:
        device = catalogue[name]
        need = training_memory_bytes(n_params, element, samples, activations)
        if need > device.memory_gb * 1e9:
            raise ScenarioError(
                field,
                f"the model does not fit device {name!r}: training needs {need / 1e9:.3g} GB "
                f"({n_params:.3g} params x {element} B x 3 + {what}), the device has {device.memory_gb:g} GB",
            )
