"""budget.first_message_lower_s stays a lower bound under TCP, overhead, variability and explicit edge latencies."""

from __future__ import annotations

import pytest
import simpy

from p2psim.budget import first_message_lower_s, model_cost
from p2psim.build import link_catalogue
from p2psim.netmodel import NetworkModel, TcpSpec, VariabilitySpec
from p2psim.network import Network
from p2psim.scenario import Scenario
from p2psim.testing import round_number_scenario

# round_number_scenario: 1e6 fp32 parameters = 4e6 bytes, links of 1e6 bytes/s each way, 50 ms one way.
MODEL_BYTES, RATE, LATENCY_S = 4e6, 1e6, 0.05


def bound(**changes) -> float:
    scenario = Scenario.from_dict(round_number_scenario({"h100_sxm": 2}, changes))
    return first_message_lower_s(scenario, model_cost(scenario), link_catalogue(scenario))[0]


def lone_arrival_s(model: NetworkModel, seed: int = 0) -> float:
    """When a lone model message arrives over the scenario's link, as the network runs it."""
    env = simpy.Environment()
    net = Network(env, [RATE] * 2, [RATE] * 2, lambda src, dst: LATENCY_S, model, seed)
    arrived = []
    net.send(0, 1, MODEL_BYTES, lambda: arrived.append(env.now))
    env.run()
    return arrived[0]


def test_without_options_the_bound_is_latency_plus_size_over_rate():
    assert bound() == pytest.approx(LATENCY_S + MODEL_BYTES / RATE, rel=1e-12)


def test_with_tcp_and_overhead_the_bound_is_the_lone_message_time_itself():
    changes = {"network.tcp": {}, "network.message_overhead_bytes": 1000.0}
    expected = lone_arrival_s(NetworkModel(tcp=TcpSpec(), message_overhead_bytes=1000.0))
    assert bound(**changes) == pytest.approx(expected, rel=1e-9)
    assert bound(**changes) > bound() + 0.3  # goodput and slow start over a 100 ms RTT: 0.32 s the old bound missed


def test_with_variability_the_bound_is_the_latency_alone_and_holds():
    variability = {"sigma": 1.0, "period_s": 100.0}  # one factor per link for the whole transfer
    arrivals = [lone_arrival_s(NetworkModel(variability=VariabilitySpec(**variability)), seed) for seed in range(40)]
    assert bound(**{"network.variability": variability}) == LATENCY_S
    assert min(arrivals) < LATENCY_S + MODEL_BYTES / RATE  # a lucky link beats the constant-capacity time
    assert min(arrivals) >= LATENCY_S


def test_explicit_edge_latencies_below_the_access_latency_lower_the_bound():
    edges = {"topology": {"kind": "edges", "edges": [[0, 1, 2.0]]}}  # 2 ms, below the 50 ms of the access links
    assert bound(**edges) == pytest.approx(0.002 + MODEL_BYTES / RATE, rel=1e-12)
