"""Message delivery times against hand-computed processor-sharing and max-min schedules."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from p2psim.maxmin import max_min_rates
from p2psim.netmodel import SHARING_RULES, NetworkModel, TcpSpec, VariabilitySpec
from p2psim.network import Network

BIG = 1e12  # bytes/s: a link that is never the bottleneck


def make(up, down, latency_s=0.0, **model):
    """Environment, network (options of `NetworkModel` as keywords) and an arrival log of (time, label)."""
    env = simpy.Environment()
    latency = latency_s if callable(latency_s) else (lambda src, dst: latency_s)
    return env, Network(env, up, down, latency, NetworkModel(**model)), []


def send(env, net, log, src, dst, nbytes, label, at_s=0.0):
    """Send at virtual time ``at_s``, logging (arrival time, label)."""

    def go(_event=None):
        net.send(src, dst, nbytes, lambda: log.append((env.now, label)))

    if at_s == 0.0:
        go()
    else:
        env.timeout(at_s).callbacks.append(go)


def arrival(log, label):
    (time,) = [t for t, name in log if name == label]
    return time


def test_lone_message_arrives_after_latency_plus_size_over_bandwidth():
    S, L, B = 3.0e6, 0.035, 1.25e6
    env, net, log = make([B, BIG], [BIG, BIG], L)
    send(env, net, log, 0, 1, S, "m")
    env.run()
    assert log == [(pytest.approx(L + S / B, rel=1e-12), "m")]


@pytest.mark.parametrize("up, down", [(1e6, 4e5), (4e5, 1e6), (7e5, 7e5)])
def test_bottleneck_is_min_of_uplink_and_downlink(up, down):
    S, L = 2.0e6, 0.1
    env, net, log = make([up, BIG], [BIG, down], L)
    send(env, net, log, 0, 1, S, "m")
    env.run()
    assert arrival(log, "m") == pytest.approx(L + S / min(up, down), rel=1e-12)


@pytest.mark.parametrize("sharing", SHARING_RULES)
@pytest.mark.parametrize("k", [1, 2, 3, 7, 20])
def test_k_messages_share_one_uplink(k, sharing):
    S, L, B = 1.0e6, 0.02, 1.0e7
    env, net, log = make([B] + [BIG] * k, [BIG] * (k + 1), L, sharing=sharing)
    for dst in range(1, k + 1):
        send(env, net, log, 0, dst, S, dst)
    env.run()
    assert [label for _, label in log] == list(range(1, k + 1))
    for time, _ in log:
        assert time == pytest.approx(L + k * S / B, rel=1e-12)


@pytest.mark.parametrize("sharing", SHARING_RULES)
def test_second_message_starting_halfway_through_the_first(sharing):
    # Message a runs alone at B until S/(2B), when half of it is left; b joins and both get
    # B/2, so a ends S/B later, at 3S/(2B), when b has S/2 left; alone again, b ends at 2S/B.
    S, L, B = 8.0e6, 0.05, 2.0e6
    env, net, log = make([B, BIG, BIG], [BIG, BIG, BIG], L, sharing=sharing)
    send(env, net, log, 0, 1, S, "a")
    send(env, net, log, 0, 2, S, "b", at_s=S / (2 * B))
    env.run()
    assert arrival(log, "a") == pytest.approx(L + 3 * S / (2 * B), rel=1e-12)
    assert arrival(log, "b") == pytest.approx(L + 2 * S / B, rel=1e-12)


@pytest.mark.parametrize("sharing", SHARING_RULES)
def test_two_senders_share_a_downlink(sharing):
    # Both get D/2 until a (S bytes) ends at 2S/D; b (2S bytes) then has S left at D: ends at 3S/D.
    S, D = 1.0e6, 5.0e5
    latency = lambda src, dst: 0.01 * (src + 1)  # noqa: E731
    env, net, log = make([BIG, BIG, BIG], [BIG, BIG, D], latency, sharing=sharing)
    send(env, net, log, 0, 2, S, "a")
    send(env, net, log, 1, 2, 2 * S, "b")
    env.run()
    assert arrival(log, "a") == pytest.approx(0.01 + 2 * S / D, rel=1e-12)
    assert arrival(log, "b") == pytest.approx(0.02 + 3 * S / D, rel=1e-12)


def test_equal_share_leaves_unused_capacity_unused():
    # a is held to 2 B/s by its receiver; b keeps its equal share 10/2 = 5 B/s of the uplink, not 8.
    env, net, log = make([10.0, BIG, BIG], [BIG, 2.0, 100.0], sharing="equal_share")
    send(env, net, log, 0, 1, 10.0, "a")
    send(env, net, log, 0, 2, 10.0, "b")
    env.run()
    assert arrival(log, "b") == pytest.approx(2.0, rel=1e-12)
    assert arrival(log, "a") == pytest.approx(5.0, rel=1e-12)


def test_max_min_gives_the_fast_receiver_what_the_slow_one_cannot_use():
    # The uplink of 10 B/s carries a (its receiver takes 2 B/s) and b (its receiver takes 100):
    # max-min gives a its 2 and b the other 8, so b's 10 bytes end at 1.25 s; a, alone on the
    # uplink but still held to 2 B/s by its receiver, ends at 5 s. Equal share: 2 s and 5 s.
    env, net, log = make([10.0, BIG, BIG], [BIG, 2.0, 100.0])
    send(env, net, log, 0, 1, 10.0, "a")
    send(env, net, log, 0, 2, 10.0, "b")
    env.run()
    assert arrival(log, "b") == pytest.approx(1.25, rel=1e-12)
    assert arrival(log, "a") == pytest.approx(5.0, rel=1e-12)


def test_three_flows_with_three_different_bottlenecks():
    # Peer 0's uplink (12 B/s) sends to peers 1, 2, 3, whose downlinks take 2, 3 and 100 B/s.
    # Progressive filling: a stops at 2 (downlink 1 full), b at 3 (downlink 2 full), c gets the
    # uplink's remaining 12 - 2 - 3 = 7. a (2 B) ends at 1 s: c gets 12 - 3 = 9. b (6 B) ends
    # at 2 s, when c (28 B) has 28 - 7 - 9 = 12 B left: alone at 12 B/s, it ends at 3 s.
    env, net, log = make([12.0, BIG, BIG, BIG], [BIG, 2.0, 3.0, 100.0])
    send(env, net, log, 0, 1, 2.0, "a")
    send(env, net, log, 0, 2, 6.0, "b")
    send(env, net, log, 0, 3, 28.0, "c")
    assert not any(flow.rate_bytes_per_s for flow in net._flows_on[0].values() if flow.flow_id > 0)  # shared out once:
    net.settle()  # by the event queued after this instant's others, or by a reader of rates
    rates = sorted(round(flow.rate_bytes_per_s, 12) for flow in net._flows_on[0].values())
    assert rates == [2.0, 3.0, 7.0]
    env.run()
    assert [label for _, label in log] == ["a", "b", "c"]
    assert [t for t, _ in log] == pytest.approx([1.0, 2.0, 3.0], rel=1e-12)


def test_a_flow_joining_and_leaving_moves_the_others_rates():
    # a (40 B, 0 -> 1) runs alone on the 10 B/s uplink until 1 s (30 B left). b (4 B, 0 -> 2,
    # receiver 2 B/s) joins: max-min gives b 2 and a 8, so b ends at 3 s; a has sent 16 more,
    # 14 left, which it sends alone at 10 B/s: it ends at 4.4 s.
    env, net, log = make([10.0, BIG, BIG], [BIG, BIG, 2.0])
    send(env, net, log, 0, 1, 40.0, "a")
    send(env, net, log, 0, 2, 4.0, "b", at_s=1.0)
    env.run()
    assert arrival(log, "b") == pytest.approx(3.0, rel=1e-12)
    assert arrival(log, "a") == pytest.approx(4.4, rel=1e-12)


def _refilled_sets(net):
    """The sizes of the flow sets `net` refills, one per reshare, as a list that grows as it runs."""
    sizes = []
    refilled = net._refilled_rates

    def counted(*args):
        flows, rates = refilled(*args)
        sizes.append(len(flows))
        return flows, rates

    net._refilled_rates = counted
    return sizes


def test_max_min_reshares_only_the_flows_that_changed():
    # Two busy pairs that share no link: a flow starting or ending in one reshares only its own.
    env, net, log = make([1.0] * 4, [1.0] * 4)
    sizes = _refilled_sets(net)
    send(env, net, log, 0, 1, 100.0, "first pair")
    send(env, net, log, 2, 3, 100.0, "second pair")
    send(env, net, log, 0, 1, 1.0, "joins the first pair")
    env.run(until=5.0)
    # a start on free links needs no search; the join, then the end of the short flow: never the other pair's flow
    assert sizes == [2, 1]


def test_a_receiver_link_with_room_couples_no_senders():
    # Senders 0 and 1 (uplinks 1 B/s) both send to 2 (downlink BIG, never full). Sender 0's next
    # message, to 3, reshares sender 0's two flows only: sender 1's flow shares a link with them,
    # but one with room to spare, so its rate cannot change.
    env, net, log = make([1.0, 1.0, BIG, BIG], [BIG] * 4)
    sizes = _refilled_sets(net)
    send(env, net, log, 0, 2, 100.0, "a")
    send(env, net, log, 1, 2, 100.0, "b")
    net.settle()
    send(env, net, log, 0, 3, 1.0, "c")
    net.settle()
    assert sizes[-1] == 2
    assert sorted(flow.rate_bytes_per_s for flow in net._flows_on[4 + 2].values()) == [0.5, 1.0]


def _slow_pair_beside_sender_0():
    # a: 0 -> 1 and c: 3 -> 1 share downlink 1 (0.2 B/s): 0.1 each. b: 0 -> 2 takes the rest of uplink 0 (1 B/s): 0.9.
    env, net, log = make([1.0, BIG, BIG, BIG, BIG], [BIG, 0.2, BIG, BIG, BIG])
    sizes = _refilled_sets(net)
    send(env, net, log, 0, 1, 100.0, "a")
    send(env, net, log, 3, 1, 100.0, "c")
    return env, net, log, sizes


def test_a_flow_leaving_refills_none_of_the_flows_slower_than_it():
    # b (0.9 B/s) ends at 1/0.9 s. a shares its full uplink but, slower than b, keeps its rate, and
    # so does c, coupled to a through their full downlink: nothing is refilled.
    env, net, log, sizes = _slow_pair_beside_sender_0()
    send(env, net, log, 0, 2, 1.0, "b")
    env.run(until=5.0)
    assert arrival(log, "b") == pytest.approx(1 / 0.9, rel=1e-12)
    assert sizes == [3, 0]
    assert [f.rate_bytes_per_s for f in net._flows_on[5 + 1].values()] == [0.1, 0.1]


def test_a_joining_flow_refills_only_the_flows_faster_than_the_level_it_fills_its_links_at():
    # d joins uplink 0 at t = 1: filling meets a's 0.1 first, then fills the uplink at 0.45, so a
    # (and c behind it) keep their rates; b and d are refilled, 0.45 each.
    env, net, log, sizes = _slow_pair_beside_sender_0()
    send(env, net, log, 0, 2, 100.0, "b")
    send(env, net, log, 0, 4, 100.0, "d", at_s=1.0)
    env.run(until=2.0)
    assert sizes == [3, 2]
    rates = {flow.dst: flow.rate_bytes_per_s for flow in net._flows_on[0].values()}
    assert rates == {1: 0.1, 2: 0.45, 4: 0.45}


def _component_rates(net):
    """Every flow's max-min rate by filling its whole connected component: the reference the shortcut must equal."""
    flows = {flow.flow_id: flow for on in net._flows_on for flow in on.values()}
    parent = {}

    def root(link):
        while parent.setdefault(link, link) != link:
            link = parent[link]
        return link

    for flow in flows.values():
        parent[root(flow.up)] = root(flow.down)
    groups = {}
    for flow_id in sorted(flows):
        groups.setdefault(root(flows[flow_id].up), []).append(flows[flow_id])
    rates = {}
    for group in groups.values():
        for flow, rate in zip(group, max_min_rates([(f.up, f.down) for f in group], net._capacity, [f.bound for f in group])):
            rates[flow.flow_id] = rate
    return {flow_id: flows[flow_id].rate_bytes_per_s for flow_id in rates}, rates


def _check_every_reshare(net):
    """Make every reshare of `net` check its rates against the whole components' filling (within 1e-12); the flow counts checked."""
    checked = []
    settle = net.settle

    def settle_and_check():
        settle()
        have, want = _component_rates(net)
        assert have.keys() == want.keys()
        assert [have[k] for k in have] == pytest.approx([want[k] for k in have], rel=1e-12, abs=0)
        checked.append(len(have))

    net.settle = settle_and_check
    return checked


@pytest.mark.parametrize("seed", [*range(12), 83, 135, 211])
def test_the_local_repair_gives_the_whole_components_max_min_rates(seed):
    # Random senders and receivers over links of a few capacities (ties included), messages starting
    # and ending at random times: after every reshare each flow's rate equals the full filling's
    # within 1e-12 (2,000 seeds pass; 12 run here). Seeds 83, 135 and 211 meet rates equal in exact
    # arithmetic a few ulps apart, where a flow a hair slower than one that left must be refilled.
    rng = np.random.default_rng(seed)
    n = 12
    levels = [1.0, 2.0, 3.0, 10.0, BIG]
    env, net, log = make(list(rng.choice(levels, n)), list(rng.choice(levels, n)))
    checked = _check_every_reshare(net)
    for k in range(60):
        src, dst = rng.choice(n, 2, replace=False)
        send(env, net, log, int(src), int(dst), float(rng.uniform(0.5, 20.0)), k, at_s=float(rng.uniform(0.0, 10.0)))
    env.run()
    assert len(log) == 60 and max(checked) >= 5


@pytest.mark.parametrize("seed", range(4))
def test_the_local_repair_keeps_max_min_rates_through_rounds_of_fan_out(seed):
    # DPSGD's pattern on home-like links: 40 peers, each sending to 4 others at once at random
    # times, uplinks slower than downlinks but not always: the repair must match the full filling.
    rng = np.random.default_rng(100 + seed)
    n = 40
    env, net, log = make(list(rng.choice([1.0, 2.5, 5.0, 20.0], n)), list(rng.choice([4.0, 10.0, 20.0, 100.0], n)))
    checked = _check_every_reshare(net)
    for k in range(120):
        src, at_s = int(rng.integers(n)), float(rng.uniform(0.0, 20.0))
        for dst in rng.choice([p for p in range(n) if p != src], 4, replace=False):
            send(env, net, log, src, int(dst), 10.0, (k, int(dst)), at_s=at_s)
    env.run()
    assert len(log) == 480 and max(checked) >= 40


class _CheckedNetwork(Network):
    """After every reshare, each flow's rate must equal a max-min recomputation over all flows in flight."""

    def settle(self):
        super().settle()
        flows = sorted({f.flow_id: f for on_link in self._flows_on for f in on_link.values()}.items())
        if flows:
            paths = [(f.up, f.down) for _, f in flows]
            expected = max_min_rates(paths, self._capacity, [f.bound for _, f in flows])
            assert [f.rate_bytes_per_s for _, f in flows] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "model",
    [
        NetworkModel(),
        NetworkModel(tcp=TcpSpec(max_window_bytes=1e5)),  # window-limited flows: bounds change every RTT
        NetworkModel(tcp=TcpSpec(), variability=VariabilitySpec(sigma=0.5, period_s=0.1)),
    ],
    ids=["plain", "tcp", "tcp+variability"],
)
def test_incremental_max_min_equals_the_full_recomputation_under_random_traffic(model):
    rng = np.random.default_rng(7)
    n = 10
    env = simpy.Environment()
    up, down = rng.uniform(1e5, 1e6, size=n).tolist(), rng.uniform(1e5, 1e6, size=n).tolist()
    net, log = _CheckedNetwork(env, up, down, lambda src, dst: 0.002 * (1 + (src + dst) % 5), model), []
    for m in range(150):
        src, dst = rng.choice(n, size=2, replace=False)
        send(env, net, log, int(src), int(dst), float(rng.uniform(1e4, 5e5)), m, at_s=float(rng.uniform(0, 2)))
    env.run()
    assert len(log) == 150


@pytest.mark.parametrize("sharing", SHARING_RULES)
def test_uplink_is_work_conserving_while_busy(sharing):
    # Receivers never limit, so the uplink drains at B from the first send to the last byte.
    rng = np.random.default_rng(0)
    B, L, n = 1.0e6, 0.003, 30
    sizes = rng.uniform(1e5, 1e6, size=n)
    starts = np.sort(rng.uniform(0.0, 0.05, size=n))
    starts[0] = 0.0
    env, net, log = make([B] + [BIG] * n, [BIG] * (n + 1), L, sharing=sharing)
    for i, (size, start) in enumerate(zip(sizes, starts)):
        send(env, net, log, 0, i + 1, float(size), i, at_s=float(start))
    env.run()
    assert len(log) == n
    assert max(t for t, _ in log) == pytest.approx(L + sizes.sum() / B, rel=1e-12)


def test_zero_byte_message_arrives_after_latency_even_on_a_busy_link():
    L = 0.25
    env, net, log = make([1.0, BIG], [BIG, BIG], L)
    send(env, net, log, 0, 1, 100.0, "big")
    send(env, net, log, 0, 1, 0, "empty")
    env.run()
    assert arrival(log, "empty") == pytest.approx(L, abs=1e-12)
    assert arrival(log, "big") == pytest.approx(L + 100.0, rel=1e-12)


def test_byte_counters():
    env, net, log = make([100.0, 100.0, 100.0], [100.0, 100.0, 100.0], 1.0)
    send(env, net, log, 0, 1, 50.0, "a")
    send(env, net, log, 0, 2, 30.0, "b")
    send(env, net, log, 2, 1, 20.0, "c")
    assert net.messages_sent == 3
    np.testing.assert_array_equal(net.bytes_sent, [80.0, 0.0, 20.0])
    np.testing.assert_array_equal(net.bytes_received, [0.0, 0.0, 0.0])
    env.run(until=1.5)  # c is serialised at 0.4 s and arrives at 1.4 s; a and b are still on the uplink
    np.testing.assert_array_equal(net.bytes_received, [0.0, 20.0, 0.0])
    env.run()
    np.testing.assert_array_equal(net.bytes_received, [0.0, 70.0, 30.0])
    assert net.bytes_sent.dtype == np.float64


def test_delivery_callback_may_send_onwards():
    # Relay 0 -> 1 -> 2: the second hop starts when the first arrives.
    S, L, B = 1.0e3, 0.5, 1.0e3
    env, net, log = make([B, B, B], [B, B, B], L)

    def relay():
        log.append((env.now, "hop1"))
        net.send(1, 2, S, lambda: log.append((env.now, "hop2")))

    net.send(0, 1, S, relay)
    env.run()
    assert log == [(pytest.approx(L + S / B), "hop1"), (pytest.approx(2 * (L + S / B), rel=1e-12), "hop2")]


def random_traffic(sharing):
    """Many overlapping messages among 12 peers, with simultaneous arrivals; returns the log."""
    rng = np.random.default_rng(42)
    n = 12
    env, net, log = make([1e6] * n, [1e6] * n, lambda src, dst: 0.001 * ((src + dst) % 3), sharing=sharing)
    for m in range(200):
        src, dst = rng.choice(n, size=2, replace=False)
        size = float(rng.choice([0.0, 2.5e5, 5e5, 1e6]))
        send(env, net, log, int(src), int(dst), size, m, at_s=float(rng.choice([0.0, 0.25, 0.5, 1.0])))
    env.run()
    return log


@pytest.mark.parametrize("sharing", SHARING_RULES)
def test_simultaneous_arrivals_come_in_a_deterministic_order(sharing):
    first, second = random_traffic(sharing), random_traffic(sharing)
    assert len(first) == 200
    assert first == second
    times = [t for t, _ in first]
    assert times == sorted(times)
    assert len(set(times)) < len(times)  # the scenario does produce ties


@pytest.mark.parametrize(
    "src, dst, nbytes, match",
    [
        (0, 0, 1.0, "itself"),
        (0, 5, 1.0, "dst=5"),
        (-1, 1, 1.0, "src=-1"),
        (0, 1, -1.0, "nbytes"),
        (0, 1, float("nan"), "nbytes"),
    ],
)
def test_send_errors(src, dst, nbytes, match):
    env, net, _ = make([1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=match):
        net.send(src, dst, nbytes, lambda: None)


@pytest.mark.parametrize(
    "up, down, match",
    [
        ([1.0, 1.0], [1.0], "downlink_bytes_per_s has 1"),
        ([1.0, 0.0], [1.0, 1.0], r"uplink_bytes_per_s\[1\]"),
        ([1.0, 1.0], [float("inf"), 1.0], r"downlink_bytes_per_s\[0\]"),
    ],
)
def test_constructor_errors(up, down, match):
    with pytest.raises(ValueError, match=match):
        Network(simpy.Environment(), up, down, lambda src, dst: 0.0)


def test_negative_latency_is_rejected():
    env, net, _ = make([1.0, 1.0], [1.0, 1.0], -0.5)
    with pytest.raises(ValueError, match=r"latency_s\(0, 1\)"):
        net.send(0, 1, 1.0, lambda: None)


@pytest.mark.parametrize("sharing", SHARING_RULES)
def test_a_broadcast_at_one_instant_is_shared_out_once_and_arrives_when_the_uplink_has_sent_it_all(sharing):
    # A server (uplink 100 B/s) sends 10 B to each of n clients at t = 0 (latency 0.5 s): the n flows
    # share the uplink equally, so every message arrives at 0.5 + n 10 / 100 s. The starts of one
    # instant are shared out once: n rate settings (plus the first flow's, alone when it started),
    # not one reshare of all flows per start (n (n + 1) / 2).
    n = 40
    env, net, log = make([100.0] + [BIG] * n, [BIG] * (n + 1), 0.5, sharing=sharing)
    rates_set = []
    set_rate = net._set_rate
    net._set_rate = lambda flow, rate: rates_set.append(rate) or set_rate(flow, rate)
    for client in range(1, n + 1):
        send(env, net, log, 0, client, 10.0, client)
    env.run()
    assert [t for t, _ in log] == pytest.approx([0.5 + n * 10.0 / 100.0] * n, rel=1e-12)
    assert len(rates_set) <= n + 1
