"""Churn: availability from theory, what leaving does to computations and messages, timeouts, stalls, energy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import simpy

from p2psim.algorithms import ALGORITHMS, Algorithm, AlgorithmConfig, register_algorithm
from p2psim.availability import build_availability
from p2psim.build import build_run
from p2psim.churn_spec import ChurnClass, ChurnSpec, DurationSpec
from p2psim.config import ScenarioError
from p2psim.energy import interval_energy_kwh
from p2psim.engine import World
from p2psim.network import Network
from p2psim.scenario import Scenario
from p2psim.testing import round_number_scenario

LOG: list[tuple] = []


@dataclass(frozen=True)
class ProbeConfig(AlgorithmConfig):
    """No options."""


class Probe(Algorithm):
    """Each gradient is applied locally and announced to every other peer in a 1000-byte message; all is logged."""

    name = "churn_probe"
    config_class = ProbeConfig

    def on_gradient(self, job):
        world = self.world
        LOG.append(("gradient", job.peer, world.now))
        world.apply_gradient(job.peer, world.consume(job))
        for other in range(world.n_peers):
            if other != job.peer:
                world.send(job.peer, other, 1000.0, "note", world.now)
                LOG.append(("sent", job.peer, world.now))
        world.compute(job.peer)

    def on_message(self, message):
        LOG.append(("arrived", message.dst, self.world.now, message.src, message.payload))


@dataclass(frozen=True)
class PingConfig(AlgorithmConfig):
    """No options."""


class Ping(Algorithm):
    """Peer 0 computes one gradient and sends one model-sized message to peer 1; then nobody does anything."""

    name = "churn_ping"
    config_class = PingConfig

    def start(self):
        self.world.compute(0)

    def on_gradient(self, job):
        self.world.consume(job)
        self.world.send(0, 1, 1000.0, "ping", self.world.now)

    def on_message(self, message):
        LOG.append(("arrived", message.dst, self.world.now, message.src, message.payload))

    def on_rejoin(self, peer):
        """Nobody does anything but the one ping."""


for _cls in (Probe, Ping):
    if _cls.name not in ALGORITHMS:
        register_algorithm(_cls)


def trace_file(tmp_path, intervals: list[tuple[float, float]]) -> str:
    """A one-host trace CSV of online intervals."""
    path = tmp_path / "trace.csv"
    path.write_text("host,start_s,end_s\n" + "".join(f"h,{a},{b}\n" for a, b in intervals))
    return str(path)


def two_peers(tmp_path, intervals, algorithm="churn_probe", **churn) -> dict:
    """Peer 0 (an H100, 1 s a step) always online; peer 1 (an H100 PCIe) online during `intervals` only.

    Messages are 1000 B (+ 50 ms latency): 1 ms on the 1e6 B/s test link.
    """
    data = round_number_scenario(
        {"h100_sxm": 1, "h100_pcie": 1},
        {"algorithm.name": algorithm, "workload.params": 1e3, "stop.sim_time_s": 40.0, "metrics.eval_interval_s": 5.0},
    )
    data["peers"]["links"] = {"test_link": 2}
    data["churn"] = {"classes": [{"peers": "h100_pcie", "trace": trace_file(tmp_path, intervals)}], **churn}
    return data


def run_world(data: dict) -> World:
    LOG.clear()
    world = World(build_run(Scenario.from_dict(data)))
    world.outcome = world.run()
    return world


# ----- availability from theory -------------------------------------------------------------------


@pytest.mark.parametrize(
    "session, downtime",
    [
        (DurationSpec("exponential", mean_s=30.0), DurationSpec("exponential", mean_s=10.0)),
        (DurationSpec("weibull", median_s=900.0, shape=0.5), DurationSpec("lognormal", median_s=600.0, sigma=1.0)),
    ],
)
def test_online_fraction_equals_mean_session_over_mean_cycle(session, downtime):
    # In equilibrium each peer is online at any instant with p = E[S] / (E[S] + E[D]); over n
    # independent peers the share online is Binomial(n, p) / n: within 4 sigma = 4 sqrt(p(1-p)/n).
    n = 4000
    spec = ChurnSpec(classes=(ChurnClass(session=session, downtime=downtime),))
    availability = build_availability(spec, ["d"] * n, ["l"] * n, [None] * n, seed=11)
    p = session.mean() / (session.mean() + downtime.mean())
    bound = 4 * math.sqrt(p * (1 - p) / n)
    for t in (0.0, 7 * session.mean()):
        online = []
        for peer in availability.peers:
            state, toggles = peer.initially_online(), peer.toggles()
            for change in toggles:
                if change > t:
                    break
                state = not state
            online.append(state)
        assert abs(np.mean(online) - p) < bound, (t, np.mean(online), p)


def test_distribution_means_are_the_closed_forms():
    # Weibull: lambda Gamma(1 + 1/k), median lambda ln2^(1/k); log-normal: exp(mu + sigma^2/2), median exp(mu).
    assert DurationSpec("weibull", median_s=900.0, shape=0.5).mean() == pytest.approx(900.0 / math.log(2) ** 2 * 2)
    assert DurationSpec("lognormal", median_s=100.0, sigma=1.0).mean() == pytest.approx(100.0 * math.exp(0.5))
    assert DurationSpec("exponential", median_s=math.log(2)).mean() == pytest.approx(1.0)


def test_a_trace_repeats_and_merges_touching_intervals(tmp_path):
    spec = ChurnSpec(classes=(ChurnClass(trace=trace_file(tmp_path, [(0, 5), (5, 8), (12, 20)])),))
    (peer,) = build_availability(spec, ["d"], ["l"], [None], seed=0).peers
    toggles = peer.toggles()
    assert peer.initially_online()
    # online [0, 8), [12, 20 + 0) ... the span is 20: the repeat's [0, 5) touches [12, 20)
    assert [next(toggles) for _ in range(5)] == [8.0, 12.0, 28.0, 32.0, 48.0]


def test_a_diurnal_window_keeps_a_peer_online_only_between_its_local_hours():
    # sessions of mean 1e12 s: the window alone decides; t = 0 is energy.start_utc, midnight UTC
    data = round_number_scenario({"h100_sxm": 2}, {"algorithm.name": "churn_ping", "stop.sim_time_s": 1e6, "metrics.eval_interval_s": 3600.0})
    forever = {"distribution": "exponential", "mean_s": 1e12}
    data["churn"] = {"classes": [{"session": forever, "downtime": forever | {"mean_s": 1.0}, "online_hours": [23.0, 7.0]}]}
    world = World(build_run(Scenario.from_dict(data)))
    world.churn.check = lambda: None  # the churn schedule alone: no algorithm runs, so no stall is looked for
    world.churn.start()
    seen = []
    for hour in (0.5, 6.9, 7.1, 22.9, 23.1, 30.9, 31.1):
        world.env.timeout(hour * 3600).callbacks.append(lambda _e, h=hour: seen.append((h, bool(world.churn.online[0]))))
    world.env.run(until=32 * 3600)
    assert seen == [(0.5, True), (6.9, True), (7.1, False), (22.9, False), (23.1, True), (30.9, True), (31.1, False)]


# ----- what leaving means ----------------------------------------------------------------------------


def test_an_offline_peer_computes_and_sends_nothing_and_messages_to_it_are_dropped(tmp_path):
    world = run_world(two_peers(tmp_path, [(0, 5), (20, 1000)]))
    gradients_1 = [t for kind, peer, t, *_ in LOG if kind == "gradient" and peer == 1]
    sent_1 = [t for kind, peer, t, *_ in LOG if kind == "sent" and peer == 1]
    to_1 = [(t, sent_at) for kind, peer, t, *rest in LOG if kind == "arrived" and peer == 1 for sent_at in [rest[1]]]
    assert gradients_1 and not [t for t in gradients_1 if 5 < t <= 20]
    assert sent_1 and not [t for t in sent_1 if 5 <= t < 20]
    assert not [t for t, _ in to_1 if 5 <= t < 20]  # nothing arrives while it is away
    assert not [s for _, s in to_1 if 5 <= s < 20]  # and what was sent meanwhile never arrives (dropped)
    sent_0_meanwhile = [t for kind, peer, t, *_ in LOG if kind == "sent" and peer == 0 and 5 <= t < 20]
    info = world.outcome.info
    assert info["churn_messages_dropped"] == len(sent_0_meanwhile) > 0
    assert info["churn_lost_computations"] == 1  # peer 1 was computing at t = 5
    offline = {row["peer"]: row["offline_fraction"] for row in world.outcome.peers}
    assert offline == {0: 0.0, 1: pytest.approx(15 / 40)}
    assert [row["peers_online"] for row in world.outcome.history] == [2, 1, 1, 1, 2, 2, 2, 2, 2]  # a change at a record instant comes first


def test_messages_to_an_offline_peer_are_held_and_delivered_at_its_return(tmp_path):
    run_world(two_peers(tmp_path, [(0, 5), (20.5, 1000)], offline_messages="hold"))
    sent_0_meanwhile = [t for kind, peer, t, *_ in LOG if kind == "sent" and peer == 0 and 5 <= t < 20.5]
    held = [(t, s) for kind, peer, t, *rest in LOG if kind == "arrived" and peer == 1 for s in [rest[1]] if 5 <= s < 20.5]
    assert [s for _, s in held] == sent_0_meanwhile
    # all sent at its return, t = 20.5, sharing peer 0's uplink: k x 1000 B at 1e6 B/s, plus 50 ms
    assert all(t == pytest.approx(20.55 + len(held) * 0.001) for t, _ in held)


def test_a_transfer_cut_by_a_departure_never_arrives_and_only_its_sent_bytes_count():
    env = simpy.Environment()
    network = Network(env, [1e6, 1e6, 1e6], [1e6, 1e6, 1e6], lambda i, j: 0.0)
    arrived = []
    cut = network.send(0, 1, 4e6, lambda: arrived.append(("cut", env.now)))
    network.send(0, 2, 4e6, lambda: arrived.append(("kept", env.now)))
    env.timeout(1.0).callbacks.append(lambda _e: network.cancel(cut))
    env.run()
    # both share peer 0's uplink at 0.5e6 B/s until t = 1; then the survivor has 3.5e6 B left at 1e6 B/s
    assert arrived == [("kept", pytest.approx(4.5))]
    assert network.bytes_sent[0] == pytest.approx(0.5e6 + 4e6)
    assert network.bytes_received.tolist() == [0.0, 0.0, 4e6]


def test_a_peer_leaving_mid_transfer_cuts_it_in_the_engine(tmp_path):
    # Peer 0's first message (t = 1) is 4e6 B: 4 s on the link; peer 1 leaves at t = 3, mid-transfer.
    data = two_peers(tmp_path, [(0, 3), (30, 1000)], algorithm="churn_ping")
    data["algorithm"] = {"name": "churn_ping", "lr": 0.05}
    world = World(build_run(Scenario.from_dict(data)))
    world.algorithm.on_gradient = lambda job: world.send(0, 1, 4e6, "ping", world.now)
    LOG.clear()
    outcome = world.run()
    assert LOG == []
    assert outcome.info["churn_messages_cut"] == 1
    assert world.network.bytes_sent[0] == pytest.approx(2e6)  # from t = 1 to t = 3 at 1e6 B/s


def test_a_returning_peer_fetches_a_neighbour_model_paying_the_transfer(tmp_path):
    world = run_world(two_peers(tmp_path, [(0, 5), (20.5, 1000)], rejoin="fetch"))
    assert world.outcome.info["churn_fetches"] == 1
    # the fetch (1e3 params x 4 B = 4000 B, 4 ms + 50 ms) delays peer 1's first computation after t = 20.5
    first_back = min(t for kind, peer, t, *_ in LOG if kind == "gradient" and peer == 1 and t > 20)
    step_1 = float(world.setup.step_time_s[1])
    assert first_back == pytest.approx(20.554 + step_1)


# ----- timeouts and stalls ---------------------------------------------------------------------------

TIMEOUT_CASES = {
    "sync_ps": {}, "async_ps": {}, "easgd": {}, "fedavg": {}, "diloco_async": {"algorithm.local_steps": 2},
    "allreduce": {}, "dpsgd": {"topology.kind": "ring"}, "atc_dsgd": {"topology.kind": "ring"},
    "sgp": {"topology.kind": "ring"}, "moshpit": {"algorithm.group_size": 2}, "adpsgd": {}, "gossip": {},
}


@pytest.mark.parametrize("name", sorted(TIMEOUT_CASES))
def test_a_crashed_peer_does_not_stop_the_others(name):
    # Peer 2 crashes at t = 3; everyone else keeps training, waits ending after timeout_s = 2 s.
    data = round_number_scenario(
        {"h100_sxm": 4},
        {"algorithm.name": name, "workload.params": 1e3, "stop.sim_time_s": 40.0, "metrics.eval_interval_s": 10.0},
        TIMEOUT_CASES[name],
    )
    data["churn"] = {"crashes": [[2, 3.0]], "timeout_s": 2.0}
    world = run_world(data)
    assert world.outcome.info["status"] == "finished", world.outcome.info.get("stop_reason")
    samples = [row["samples"] for row in world.outcome.history]
    assert samples[-1] > samples[1] > 0  # progress after the crash (the t = 10 record is after it)
    assert world.outcome.info["churn_crashes"] == 1


def test_a_crashed_server_stalls_the_run_when_and_why():
    data = round_number_scenario(
        {"h100_sxm": 3}, {"algorithm.name": "async_ps", "workload.params": 1e3, "stop.sim_time_s": 40.0}
    )
    data["churn"] = {"crashes": [[0, 3.0]]}
    info = run_world(data).outcome.info
    assert info["status"] == "stalled" and info["stalled_at_s"] == 3.0 and info["sim_time_s"] == 3.0
    assert "peer 0" in info["stop_reason"] and "crashed" in info["stop_reason"]


def test_a_run_with_only_undeliverable_held_messages_is_stalled(tmp_path):
    # Peer 0's one message (sent at t = 1) is held for peer 1, who is away from t = 0.5 until after the stop.
    data = two_peers(tmp_path, [(0, 0.5), (1000, 2000)], algorithm="churn_ping", offline_messages="hold")
    info = run_world(data).outcome.info
    assert LOG == []
    assert info["status"] == "stalled" and info["stalled_at_s"] == pytest.approx(1.0)
    assert "1 message(s) held" in info["stop_reason"] and info["sim_time_s"] == 5.0  # the first record after it


def test_a_held_message_to_a_peer_that_returns_before_the_stop_is_delivered_then(tmp_path):
    data = two_peers(tmp_path, [(0, 0.5), (30, 2000)], algorithm="churn_ping", offline_messages="hold")
    info = run_world(data).outcome.info
    assert [(kind, peer, round(t, 6)) for kind, peer, t, *_ in LOG] == [("arrived", 1, 30.051)]
    # no stall while it waits; after it, nothing is left to do: stalled since the arrival, seen at the next record
    assert info["status"] == "stalled" and info["stalled_at_s"] == pytest.approx(30.051) and info["sim_time_s"] == 35.0


# ----- energy and validation --------------------------------------------------------------------------


def test_offline_time_draws_no_power():
    # one interval of 3600 s: peer 0 computes half of it and is offline the other half; peer 1 idles throughout
    kwh = interval_energy_kwh(
        np.array([3600.0]), np.array([[0.5, 0.0]]), np.array([100.0, 100.0]), np.array([300.0, 300.0]),
        np.array([1.0, 1.0]), offline=np.array([[0.5, 0.0]]),
    )
    assert kwh.tolist() == [[pytest.approx(0.15), pytest.approx(0.1)]]


@pytest.mark.parametrize(
    "churn, field",
    [
        ({"classes": [{"session": {"distribution": "gamma", "mean_s": 1.0}, "downtime": {"distribution": "exponential", "mean_s": 1.0}}]},
         "churn.classes[0].session.distribution"),
        ({"classes": [{"session": {"distribution": "weibull", "mean_s": 1.0}, "downtime": {"distribution": "exponential", "mean_s": 1.0}}]},
         "churn.classes[0].session.shape"),
        ({"classes": [{"session": {"distribution": "exponential", "mean_s": 1.0, "median_s": 1.0},
                       "downtime": {"distribution": "exponential", "mean_s": 1.0}}]}, "churn.classes[0].session.mean_s"),
        ({"classes": [{"peers": "nobody", "profile": "volunteer"}]}, "churn.classes[0].peers"),
        ({"classes": [{"profile": "nope"}]}, "churn.classes[0].profile"),
        ({"crashes": [[9, 1.0]]}, "churn.crashes[0]"),
        ({"offline_messages": "bounce"}, "churn.offline_messages"),
        ({"timeout_s": 0.0}, "churn.timeout_s"),
    ],
)
def test_bad_churn_settings_name_their_field(churn, field):
    data = round_number_scenario({"h100_sxm": 2}, {"algorithm.name": "gossip"})
    data["churn"] = churn
    with pytest.raises(ScenarioError) as error:
        Scenario.from_dict(data)
    assert error.value.field == field


def test_a_churn_scenario_round_trips_through_toml():
    data = round_number_scenario({"h100_sxm": 2}, {"algorithm.name": "gossip"})
    data["churn"] = {"classes": [{"profile": "phone_night", "phase_spread_h": 3.0}], "rejoin": "fetch"}
    scenario = Scenario.from_dict(data)
    again = Scenario.from_dict(scenario.to_dict())
    assert again == scenario and again.hash() == scenario.hash()
