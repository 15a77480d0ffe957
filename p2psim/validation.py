"""Checks that need the catalogues, the task or the graph: run before anything simulates.

Each failure is one `ScenarioError` naming the field, the bad value and what is allowed
(DESIGN decision 9).
"""

from __future__ import annotations

import networkx as nx

from .algorithms import IMPLEMENTATIONS
from .build import build_task, check_fits, link_catalogue
from .config import ScenarioError
from .hardware import load_devices
from .links import load_regions
from .scenario import Scenario
from .seeding import stream
from .topology import build_topology

__all__ = ["validate_scenario"]


def _known(names, allowed, field: str, what: str) -> None:
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

    task = build_task(scenario.task, scenario.seed)
    if scenario.data.partition != "iid" and task.n_classes is None:
        raise ScenarioError(
            "data.partition",
            f"{scenario.data.partition!r} splits by label and needs a classification task; "
            f"task {scenario.task.name!r} is a regression (allowed: iid)",
        )
    if peers.count > len(task.y_train):
        raise ScenarioError("peers.count", f"{peers.count} peers but only {len(task.y_train)} training samples")

    topology = scenario.topology
    try:
        graph = build_topology(topology.kind, peers.count, seed=stream(scenario.seed, "topology"), **topology.params())
    except (ValueError, nx.NetworkXError) as error:
        raise ScenarioError("topology", str(error)) from None
    if IMPLEMENTATIONS[scenario.algorithm.name].needs_connected_graph and not nx.is_connected(graph):
        components = nx.number_connected_components(graph)
        raise ScenarioError(
            "topology",
            f"the {topology.kind} graph over {peers.count} peers is disconnected ({components} components); "
            f"algorithm {scenario.algorithm.name!r} needs a connected graph",
        )
    check_fits(scenario)
