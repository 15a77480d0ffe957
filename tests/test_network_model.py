"""TCP, per-message overhead and bandwidth variability in message delivery, against closed forms; option errors."""

import math

import numpy as np
import pytest
import simpy

from p2psim.build import build_run
from p2psim.config import ScenarioError, parse_dataclass
from p2psim.engine import World
from p2psim.netmodel import NetworkModel, TcpSpec, VariabilitySpec, loss_limited_rate
from p2psim.network import Network
from p2psim.scenario import NetworkSpec, Scenario
from p2psim.seeding import stream

BIG = 1e15  # bytes/s: a link that is never the bottleneck


def one_message(up, nbytes, latency_s, model, down=BIG, seed=0):
    """Arrival time of one message from peer 0 to peer 1, and the network."""
    env = simpy.Environment()
    net = Network(env, [up, BIG], [BIG, down], lambda src, dst: latency_s, model, seed)
    log = []
    net.send(0, 1, nbytes, lambda: log.append(env.now))
    env.run()
    (arrival,) = log
    return arrival, net


def slow_start_arrival(nbytes, rate_limit, rtt_s, initial_window, ceiling):
    """By hand: round k sends at min(initial_window 2^k / RTT, ceiling, rate_limit) for one RTT."""
    t, left, k = 0.0, nbytes, 0
    while True:
        rate = min(initial_window * 2**k / rtt_s, ceiling, rate_limit)
        if rate * rtt_s >= left:
            return t + left / rate
        left -= rate * rtt_s
        t += rtt_s
        k += 1


def test_the_issue_example_slow_start_doubles_an_intercontinental_transfer():
    # 51 MB (ResNet-50 in fp16) over 275.3 Mbit/s at 200 ms RTT, window unbounded: the window
    # of 10 x 1460 B doubles for 9 RTTs (1.8 s, 7.46 MB) before it exceeds the link's rate.
    S, B, L = 51e6, 275.3e6 / 8, 0.1
    tcp = TcpSpec(bandwidth_factor=1.0, max_window_bytes=2.0**30)
    arrival, _ = one_message(B, S, L, NetworkModel(tcp=tcp))
    expected = L + 9 * 2 * L + (S - 14600 * (2**9 - 1)) / B
    assert arrival == pytest.approx(expected, rel=1e-12)
    assert arrival == pytest.approx(L + slow_start_arrival(S, B, 2 * L, 14600, math.inf), rel=1e-12)
    without, _ = one_message(B, S, L, NetworkModel())
    assert without == pytest.approx(L + S / B, rel=1e-12)
    assert arrival / without == pytest.approx(2.0, abs=0.01)  # "about 2x optimistic" without TCP


@pytest.mark.parametrize("nbytes", [1e3, 14600.0, 1e5, 3e6, 2e8])
def test_slow_start_then_the_default_window_caps_the_rate(nbytes):
    # Default TCP: 4 MiB window (rate <= 4 MiB / RTT, 21 MB/s at 200 ms), goodput 0.97 of the link.
    B, L = 1e8, 0.1
    arrival, _ = one_message(B, nbytes, L, NetworkModel(tcp=TcpSpec()))
    expected = L + slow_start_arrival(nbytes, 0.97 * B, 2 * L, 14600, 4194304 / (2 * L))
    assert arrival == pytest.approx(expected, rel=1e-12)


def test_loss_limited_rate_is_mathis_formula():
    # Mathis et al. 1997: MSS / (RTT sqrt(2p/3)); 1460 B, 100 ms, 1 %: 178,813 B/s.
    assert loss_limited_rate(1460, 0.1, 0.01) == pytest.approx(1460 / (0.1 * math.sqrt(2 * 0.01 / 3)), rel=1e-15)
    assert loss_limited_rate(1460, 0.1, 0.0) == math.inf
    S, B, L, p = 1e6, 1e8, 0.05, 1e-3
    tcp = TcpSpec(slow_start=False, loss_rate=p, bandwidth_factor=1.0)
    arrival, _ = one_message(B, S, L, NetworkModel(tcp=tcp))
    assert arrival == pytest.approx(L + S / loss_limited_rate(1460, 2 * L, p), rel=1e-12)


def test_lv08_multiplies_latency_by_13_01_and_bandwidth_by_0_97():
    S, B, L = 1e6, 1e7, 0.004  # window 4 MiB / 8 ms = 524 MB/s: not limiting
    arrival, _ = one_message(B, S, L, NetworkModel(tcp=TcpSpec.lv08()))
    assert arrival == pytest.approx(13.01 * L + S / (0.97 * B), rel=1e-12)


def test_tcp_flows_share_max_min_within_their_bounds():
    # Two flows from peer 0 (uplink 10 MB/s); slow start off; b's window caps it at 2 MB/s, a takes the rest.
    B, L = 1e7, 0.05
    tcp = TcpSpec(slow_start=False, bandwidth_factor=1.0, max_window_bytes=2e5)  # 2e5 B / 0.1 s = 2 MB/s
    env = simpy.Environment()
    latency = lambda src, dst: L if dst == 2 else 0.0  # noqa: E731 - only b has a round trip, hence a window cap
    net = Network(env, [B, BIG, BIG], [BIG, BIG, BIG], latency, NetworkModel(tcp=tcp))
    log = []
    net.send(0, 1, 8e6, lambda: log.append(("a", env.now)))
    net.send(0, 2, 4e6, lambda: log.append(("b", env.now)))
    env.run()
    # b: 4e6 at 2e6 -> 2 s + L. a: 8e6 B/s for 2 s = 16e6 > 8e6, so a ends at 1 s.
    assert dict(log) == pytest.approx({"a": 1.0, "b": 2.0 + L}, rel=1e-12)


def test_message_overhead_adds_bytes_on_the_wire_and_to_the_counters():
    S, H, B, L = 1000.0, 66.0, 100.0, 0.5
    arrival, net = one_message(B, S, L, NetworkModel(message_overhead_bytes=H))
    assert arrival == pytest.approx(L + (S + H) / B, rel=1e-12)
    assert net.bytes_sent[0] == S + H and net.bytes_received[1] == S + H
    empty, _ = one_message(B, 0.0, L, NetworkModel(message_overhead_bytes=H))
    assert empty == pytest.approx(L + H / B, rel=1e-12)


def test_variability_factors_are_piecewise_constant_mean_one_log_normal():
    # A lone flow over a varying uplink: in period k it runs at B x exp(sigma z_k - sigma^2 / 2),
    # z_k the k-th draw of the uplink's own stream.
    S, B, T, sigma, seed = 50.0, 10.0, 1.0, 0.5, 3
    model = NetworkModel(variability=VariabilitySpec(sigma=sigma, period_s=T))
    arrival, _ = one_message(B, S, 0.0, model, seed=seed)
    z = stream(seed, "uplink_capacity", 0).standard_normal(100)
    factors = np.exp(sigma * z - sigma**2 / 2)
    t, left, k = 0.0, S, 0
    while B * factors[k] * T < left:
        left -= B * factors[k] * T
        t += T
        k += 1
    assert k >= 2  # the message does cross period boundaries
    assert arrival == pytest.approx(t + left / (B * factors[k]), rel=1e-12)
    many = np.exp(sigma * stream(1, "x").standard_normal(200_000) - sigma**2 / 2)
    assert many.mean() == pytest.approx(1.0, abs=4 * many.std() / math.sqrt(many.size))


def test_variability_is_seeded_and_sigma_zero_changes_nothing():
    model = NetworkModel(variability=VariabilitySpec(sigma=0.8, period_s=0.3))
    first, _ = one_message(10.0, 40.0, 0.1, model, seed=1)
    again, _ = one_message(10.0, 40.0, 0.1, model, seed=1)
    other, _ = one_message(10.0, 40.0, 0.1, model, seed=2)
    assert first == again != other
    flat, _ = one_message(10.0, 40.0, 0.1, NetworkModel(variability=VariabilitySpec(sigma=0.0, period_s=0.3)))
    assert flat == pytest.approx(0.1 + 4.0, rel=1e-12)


def test_a_factor_does_not_depend_on_when_the_link_was_busy():
    # The same message sent at 2.5 s on an idle network sees period 2's factor whether or not
    # an earlier message kept the link busy in periods 0 and 1.
    model = NetworkModel(variability=VariabilitySpec(sigma=0.7, period_s=1.0))

    def arrival_of_late_message(early: bool) -> float:
        env = simpy.Environment()
        net = Network(env, [10.0, BIG], [BIG, BIG], lambda src, dst: 0.0, model, 5)
        log = []
        if early:
            net.send(0, 1, 5.0, lambda: None)
        env.timeout(2.5).callbacks.append(lambda _e: net.send(0, 1, 1.0, lambda: log.append(env.now)))
        env.run()
        return log[0]

    assert arrival_of_late_message(True) == arrival_of_late_message(False)


@pytest.mark.parametrize(
    "data, field, match",
    [
        ({"sharing": "fair"}, "network.sharing", "allowed: max_min, equal_share"),
        ({"tcp": {"loss_rate": 1.0}}, "network.tcp.loss_rate", r"\[0, 1\)"),
        ({"tcp": {"bandwidth_factor": 0.0}}, "network.tcp.bandwidth_factor", r"\(0, 1\]"),
        ({"tcp": {"latency_factor": 13.01}}, "network.tcp.latency_factor", "slow_start = false"),
        ({"tcp": {"max_window_bytes": 1000.0}}, "network.tcp.max_window_bytes", "14600"),
        ({"tcp": {"mss_bytes": 0}}, "network.tcp.mss_bytes", r"\[1, 65495\]"),
        ({"tcp": {"slow_start": "yes"}}, "network.tcp.slow_start", "true or false"),
        ({"tcp": {"window": 5}}, "network.tcp.window", "unknown key"),
        ({"variability": {"sigma": 0.2}}, "network.variability.period_s", "is required"),
        ({"variability": {"sigma": 3.0, "period_s": 1.0}}, "network.variability.sigma", r"\[0, 2\]"),
        ({"variability": {"sigma": 0.2, "period_s": 0.0}}, "network.variability.period_s", r"\(0, 1e6\]"),
        ({"message_overhead_bytes": -1.0}, "network.message_overhead_bytes", r"\[0, 1e9\]"),
    ],
)
def test_bad_options_name_the_field_and_the_allowed_values(data, field, match):
    with pytest.raises(ScenarioError, match=match) as error:
        parse_dataclass(NetworkSpec, data, "network")
    assert error.value.field == field


def test_options_round_trip_through_a_scenario_table():
    spec = parse_dataclass(
        NetworkSpec,
        {"sharing": "equal_share", "tcp": {}, "message_overhead_bytes": 66, "variability": {"sigma": 0.3, "period_s": 60}},
    )
    assert spec.tcp == TcpSpec() and spec.variability == VariabilitySpec(0.3, 60.0)
    assert NetworkSpec().sharing == "max_min" and NetworkSpec().tcp is None and NetworkSpec().variability is None
    assert TcpSpec.lv08() == TcpSpec(slow_start=False, latency_factor=13.01, bandwidth_factor=0.97)


def scenario(**network) -> Scenario:
    """Two H100 peers on 1e6 B/s links with 25 ms access latency, exchanging 4 MB models (AD-PSGD)."""
    return Scenario.from_dict(
        {
            "seed": 3,
            "task": {"name": "least_squares", "n_samples": 400, "n_features": 5},
            "data": {"batch_size": 4},
            "workload": {"name": "round numbers", "flops_per_sample": 8.375e12, "params": 1e6},
            "peers": {"devices": {"h100_sxm": 2}, "links": {"test_link": 2}, "step_overhead_s": 0.0},
            "network": {"links": [{"name": "test_link", "up_mbps": 8.0, "down_mbps": 8.0, "latency_ms": 25.0}], **network},
            "topology": {"kind": "complete"},
            "algorithm": {"name": "adpsgd", "lr": 0.05},
            "stop": {"sim_time_s": 40.0},
            "metrics": {"eval_interval_s": 10.0},
        }
    )


def test_the_engine_runs_with_the_scenarios_network_options():
    plain = scenario()
    options = scenario(tcp={}, message_overhead_bytes=100.0, variability={"sigma": 0.5, "period_s": 2.0})
    assert World(build_run(plain)).network.model == plain.network
    world = World(build_run(options))
    assert world.network.model.tcp == TcpSpec() and world.network.model.message_overhead_bytes == 100.0
    world.run()
    net = world.network
    assert net.messages_sent > 0
    assert net.bytes_sent.sum() == pytest.approx(net.messages_sent * (4e6 + 100.0), rel=1e-12)
    with pytest.raises(ScenarioError, match="network.sharing: unknown sharing rule 'fair'"):
        scenario(sharing="fair")


def test_fixed_regional_puts_each_peer_on_its_own_regions_fixed_line():
    from p2psim.links import load_link_profiles

    base = scenario().to_dict()
    base["peers"].update(
        count=6, devices={"h100_sxm": 6}, links={"fixed_regional": 6}, regions={"eu_central": 2, "asia_southeast": 3, "oceania": 1}
    )
    setup = build_run(Scenario.from_dict(base))
    profiles = load_link_profiles()
    assert setup.link_names == [f"fixed_{region}" for region in setup.regions]
    for up, region in zip(setup.uplink_bytes_per_s, setup.regions):
        assert up == profiles[f"fixed_{region}"].up_mbps * 1e6 / 8
    del base["peers"]["regions"]
    colocated = build_run(Scenario.from_dict(base))
    assert colocated.link_names == ["fixed_regional"] * 6
    assert colocated.uplink_bytes_per_s[0] == profiles["fixed_global"].up_mbps * 1e6 / 8
