"""Message loss, link failures and partitions: what is lost, when, and how often, against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from p2psim.config import ScenarioError
from p2psim.faults import CutSpec, FaultsSpec, LinkFaults, resolve_faults
from p2psim.network import Network
from p2psim.scenario import Scenario
from p2psim.testing import round_number_scenario, simulate

B = 1e6  # bytes/s on every link


def network(n, faults, latency_s=1.0, seed=0):
    """Environment, a network of `n` peers (links of `B` bytes/s, one-way latency `latency_s`, `faults`), a log."""
    env = simpy.Environment()
    return env, Network(env, [B] * n, [B] * n, lambda src, dst: latency_s, seed=seed, faults=faults), []


def send_at(env, net, log, at_s, src, dst, nbytes=0.0):
    """Send at `at_s`; log (event, sent, src, dst, time) when it arrives or is lost."""

    def go(_event=None):
        net.send(
            src, dst, nbytes,
            lambda: log.append(("arrived", at_s, src, dst, env.now)),
            lambda: log.append(("lost", at_s, src, dst, env.now)),
        )

    env.timeout(at_s).callbacks.append(go)


def test_a_dropped_message_never_arrives_and_its_bytes_count_as_sent_only():
    faults = resolve_faults(FaultsSpec(cuts=(CutSpec(start_s=0.0, end_s=100.0, peers=(1,)),)), ["x"] * 3, [None] * 3)
    env, net, log = network(3, faults, latency_s=0.5)
    send_at(env, net, log, 0.0, 0, 1, nbytes=2e6)  # across the cut
    send_at(env, net, log, 0.0, 0, 2, nbytes=2e6)  # not across it
    env.run()
    # Both share peer 0's uplink (B/2 each): serialised at 4 s, then 0.5 s of latency; the first is lost on arrival.
    assert sorted(log) == [("arrived", 0.0, 0, 2, 4.5), ("lost", 0.0, 0, 1, 4.5)]
    assert net.messages_lost == 1 and net.messages_sent == 2
    assert net.bytes_sent.tolist() == [4e6, 0.0, 0.0]
    assert net.bytes_received.tolist() == [0.0, 0.0, 2e6]


def test_a_partition_loses_exactly_the_messages_across_it_that_meet_its_interval():
    # peers 0, 1 in region a, 2, 3 in region b; b is cut off during [10, 20); every message takes 1 s.
    spec = FaultsSpec(cuts=(CutSpec(start_s=10.0, end_s=20.0, regions=("b",)),))
    faults = resolve_faults(spec, ["x"] * 4, ["a", "a", "b", "b"])
    env, net, log = network(4, faults)
    times = np.arange(0.0, 30.0, 0.5)
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    for t in times:
        for src, dst in pairs:
            send_at(env, net, log, float(t), src, dst)
    env.run()
    lost = {(sent, src, dst) for event, sent, src, dst, _ in log if event == "lost"}
    # Lost iff across (one end in b) and its flight [sent, sent + 1] meets [10, 20): sent in [9, 20).
    expected = {
        (float(t), src, dst) for t in times for src, dst in pairs if (src >= 2) != (dst >= 2) and 9.0 <= t < 20.0
    }
    assert lost == expected
    assert len(log) == len(times) * len(pairs)  # every other message arrived
    assert net.messages_lost == len(expected) == 22 * 8


def test_a_failed_edge_loses_its_own_path_only_in_both_directions():
    faults = resolve_faults(FaultsSpec(cuts=(CutSpec(start_s=0.0, end_s=5.0, edges=((2, 0),)),)), ["x"] * 3, [None] * 3)
    env, net, log = network(3, faults)
    for src, dst in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)]:
        send_at(env, net, log, 0.0, src, dst)
    env.run()
    assert sorted((src, dst) for event, _, src, dst, _ in log if event == "lost") == [(0, 2), (2, 0)]


def test_loss_chance_combines_the_path_and_both_access_links():
    spec = FaultsSpec(loss_probability=0.1, link_loss={"dsl": 0.2, "mobile": 0.5})
    faults = resolve_faults(spec, ["dsl", "mobile", "fibre"], [None] * 3)
    assert faults.loss_chance(0, 1) == pytest.approx(1 - 0.9 * 0.8 * 0.5)
    assert faults.loss_chance(0, 2) == pytest.approx(1 - 0.9 * 0.8)
    assert faults.loss_chance(2, 2) == pytest.approx(0.1)


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_loss_probability_gives_a_binomial_count(p):
    n = 4000
    faults = LinkFaults(loss_probability=p, peer_loss=np.zeros(2))
    env, net, log = network(2, faults, seed=11)
    for k in range(n):
        send_at(env, net, log, float(k), k % 2, 1 - k % 2)
    env.run()
    # Binomial(n, p): the count lies within 4 standard deviations of n p (a false alarm has odds below 1e-4).
    assert abs(net.messages_lost - n * p) <= 4 * math.sqrt(n * p * (1 - p))
    assert sum(event == "lost" for event, *_ in log) == net.messages_lost


def test_without_faults_nothing_is_drawn_or_lost():
    env, net, log = network(2, None)
    send_at(env, net, log, 0.0, 0, 1)
    env.run()
    assert [event for event, *_ in log] == ["arrived"] and net.messages_lost == 0


def test_a_run_with_loss_hands_the_algorithm_only_what_arrived_and_records_the_loss():
    from p2psim.build import build_run
    from p2psim.engine import World

    clean = simulate(round_number_scenario({"h100_sxm": 4}, {"stop.sim_time_s": 40.0}))
    data = round_number_scenario({"h100_sxm": 4}, {"stop.sim_time_s": 40.0, "faults": {"loss_probability": 0.5}})
    world = World(build_run(Scenario.from_dict(data)))
    received = []
    on_message = world.algorithm.on_message
    world.algorithm.on_message = lambda message: (received.append(message), on_message(message))
    outcome = world.run()
    net = world.network
    assert net.messages_lost > 0
    assert len(received) == net.messages_sent - net.messages_lost - world._in_flight
    assert outcome.info["messages_lost"] == net.messages_lost
    assert world.history[-1]["messages_lost"] == net.messages_lost and "messages_lost" not in clean.history[-1]
    assert world.pool.in_use <= world._in_flight  # a lost message's payload row went back to the pool


@pytest.mark.parametrize(
    "faults, field",
    [
        ({"loss_probability": 1.0}, "faults.loss_probability"),
        ({"link_loss": {"dsl": 0.1}}, "faults.link_loss.dsl"),
        ({"cuts": [{"start_s": 5.0, "end_s": 5.0, "peers": [0]}]}, "faults.cuts[0].end_s"),
        ({"cuts": [{"start_s": 0.0, "end_s": 5.0}]}, "faults.cuts[0]"),
        ({"cuts": [{"start_s": 0.0, "end_s": 5.0, "regions": ["eu_west"]}]}, "faults.cuts[0].regions"),
        ({"cuts": [{"start_s": 0.0, "end_s": 5.0, "peers": [9]}]}, "faults.cuts[0].peers[0]"),
        ({"cuts": [{"start_s": 0.0, "end_s": 5.0, "edges": [[1, 1]]}]}, "faults.cuts[0].edges[0]"),
        ({"cuts": [{"start_s": 0.0, "end_s": 5.0, "edges": [[0, 7]]}]}, "faults.cuts[0].edges[0]"),
        ({"loss": 0.1}, "faults.loss"),
    ],
)
def test_bad_faults_name_their_field(faults, field):
    with pytest.raises(ScenarioError) as error:
        Scenario.from_dict(round_number_scenario({"h100_sxm": 4}, {"faults": faults}))
    assert error.value.field == field


def test_the_readme_example_validates_on_the_quick_start():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    example = tomllib.loads(readme.split("### Faults and stragglers", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0])
    data = tomllib.loads((root / "experiments" / "scenarios" / "quickstart.toml").read_text())
    data["peers"].update(example.pop("peers"))
    scenario = Scenario.from_dict({**data, **example})
    assert scenario.faults.cuts[0].regions == ("oceania",) and scenario.stragglers.throttle[0].period_s == 86400.0
