"""Message delivery in virtual time: each message is a flow over its sender's uplink and receiver's downlink.

DESIGN decision 3: a message of S bytes from i to j arrives latency(i, j) + S / bandwidth
after it is sent, where a peer's access links are shared by its concurrent transfers.
How they are shared, and what TCP, headers and fluctuating capacity add, is the
`netmodel.NetworkModel` the network is built with.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from .faults import LinkFaults, LossDraws, lost
from .maxmin import max_min_rates
from .netmodel import NetworkModel, VariabilitySpec, loss_limited_rate
from .seeding import stream
from .timers import call_later

__all__ = ["Network"]

# Bytes left below this are float crumbs of rate x time products, not data: the flow is done.
# The relative part keeps the snap meaningful for multi-gigabyte messages.
_CRUMB_BYTES = 1e-6
_CRUMB_RELATIVE = 1e-12


@dataclass(slots=True, eq=False)
class _Flow:
    """A message in flight: bytes left to serialise, its current rate, when they were last accounted.

    ``up`` and ``down`` are the link indices it crosses; ``bound`` caps its rate alone (TCP
    window, loss-limited rate). ``token`` counts reschedules, so a completion timeout
    scheduled at an old rate is ignored.
    """

    flow_id: int
    src: int
    dst: int
    up: int
    down: int
    remaining_bytes: float
    crumb_bytes: float
    latency_s: float
    nbytes: float
    on_delivered: Callable[[], None]
    sent_s: float = 0.0
    on_lost: Callable[[], None] | None = None
    rate_bytes_per_s: float = 0.0
    updated_s: float = 0.0
    token: int = 0
    bound: float = math.inf
    ceiling: float = math.inf  # the bound once slow start is over
    window_bytes: float = 0.0
    rtt_s: float = 0.0
    in_flight: bool = True
    cancelled: bool = False  # cut by churn (`Network.cancel`): never delivered


class _Fluctuation:
    """Each link's capacity factor per period: mean-one log-normal, one draw per link per period, in order.

    A link's draws come from its own stream and are consumed one per period whether or
    not the link was busy, so a factor does not depend on when it is asked for.
    """

    def __init__(self, spec: VariabilitySpec, n_peers: int, seed: int):
        self.period_s = spec.period_s
        self._sigma = spec.sigma
        self._n_peers = n_peers
        self._seed = seed
        self._rngs: dict[int, np.random.Generator] = {}
        self._period = [-1] * (2 * n_peers)
        self._factor = [1.0] * (2 * n_peers)

    def factor(self, link: int, period: int) -> float:
        """The factor of `link` (uplinks 0..n-1, downlinks n..2n-1) in `period` (periods never go back)."""
        behind = period - self._period[link]
        if behind > 0:
            rng = self._rngs.get(link)
            if rng is None:
                peer, direction = link % self._n_peers, ("uplink", "downlink")[link // self._n_peers]
                rng = self._rngs[link] = stream(self._seed, f"{direction}_capacity", peer)
            z = float(rng.standard_normal()) if behind == 1 else float(rng.standard_normal(behind)[-1])
            self._factor[link] = math.exp(self._sigma * z - self._sigma**2 / 2)
            self._period[link] = period
        return self._factor[link]


class Network:
    """Flow-level model of messages over per-peer access links.

    A message of S bytes from ``src`` to ``dst`` (plus ``message_overhead_bytes``) is a flow
    over ``src``'s uplink and ``dst``'s downlink. With ``sharing = "max_min"`` (default) the
    flows in flight get max-min fair rates (progressive filling, `maxmin.max_min_rates`),
    recomputed when a flow starts or ends, or its bound or a capacity changes, for the flows
    the change moves only (`_refilled_rates`). With
    ``"equal_share"`` a flow's rate is ``min(uplink / flows on it, downlink / flows on it)``
    and capacity a flow leaves unused is not redistributed. When the last byte has been
    serialised the message propagates for ``latency_s(src, dst)`` (x TCP's latency factor),
    then ``on_delivered()`` is called. Without TCP or variability a lone message arrives
    after L + S / min(up, down); an empty one after L. Latency is not a link resource.
    ``bytes_sent`` and ``bytes_received`` count bytes on the wire, overhead included; a message
    lost to a fault (`faults.LinkFaults`) counts in ``bytes_sent`` and ``messages_lost`` only.
    """

    def __init__(
        self,
        env: simpy.Environment,
        uplink_bytes_per_s: Sequence[float],
        downlink_bytes_per_s: Sequence[float],
        latency_s: Callable[[int, int], float],
        model: NetworkModel | None = None,
        seed: int = 0,
        faults: LinkFaults | None = None,
    ) -> None:
        if len(uplink_bytes_per_s) != len(downlink_bytes_per_s):
            raise ValueError(
                f"uplink_bytes_per_s has {len(uplink_bytes_per_s)} peers, "
                f"downlink_bytes_per_s has {len(downlink_bytes_per_s)}"
            )
        for name, values in (("uplink_bytes_per_s", uplink_bytes_per_s), ("downlink_bytes_per_s", downlink_bytes_per_s)):
            for peer, value in enumerate(values):
                if not (math.isfinite(value) and value > 0):
                    raise ValueError(f"{name}[{peer}] must be finite and > 0, got {value}")
        self.env = env
        self.model = NetworkModel() if model is None else model
        self._overhead_bytes = self.model.message_overhead_bytes
        self.n_peers = len(uplink_bytes_per_s)
        tcp = self._tcp = self.model.tcp
        goodput = tcp.bandwidth_factor if tcp is not None else 1.0
        # Links 0..n-1 are uplinks, n..2n-1 downlinks; Python floats index faster than numpy scalars.
        self._base = [float(v) * goodput for v in uplink_bytes_per_s] + [float(v) * goodput for v in downlink_bytes_per_s]
        self._capacity = list(self._base)
        self._latency_s = latency_s
        self._latency_factor = tcp.latency_factor if tcp is not None else 1.0
        self._max_min = self.model.sharing == "max_min"
        # Flows on each link, keyed by flow id in start order (dicts keep insertion order).
        self._flows_on: list[dict[int, _Flow]] = [{} for _ in range(2 * self.n_peers)]
        self._dirty: dict[int, None] = {}  # links whose flows' rates may have changed at this instant (`settle`)
        self._joined: dict[int, _Flow] = {}  # flows started beside others at this instant (max-min, `settle`)
        # Flows below this rate keep it at `settle`: the lowest rate of the flows that left at this
        # instant, or 0 once anything else changed (`_refilled_rates`).
        self._kept_below = math.inf
        self._in_flight = 0
        variability = self.model.variability
        self._fluctuation = _Fluctuation(variability, self.n_peers, seed) if variability is not None else None
        self._period = 0
        self._boundary_pending = False
        self._flow_ids = itertools.count()
        self._sent = [0.0] * self.n_peers  # Python floats: one addition per message costs less than a numpy item's
        self._received = [0.0] * self.n_peers
        self.messages_sent = 0
        self.messages_lost = 0
        self._faults = faults
        self._loss_draws = LossDraws(stream(seed, "message_loss")) if faults is not None and faults.random_loss else None

    @property
    def bytes_sent(self) -> np.ndarray:
        """Bytes each peer has put on the wire, overhead included (a new array at each call)."""
        return np.array(self._sent, dtype=np.float64)

    @property
    def bytes_received(self) -> np.ndarray:
        """Bytes delivered to each peer, overhead included (a new array at each call)."""
        return np.array(self._received, dtype=np.float64)

    def send(
        self,
        src: int,
        dst: int,
        nbytes: float,
        on_delivered: Callable[[], None],
        on_lost: Callable[[], None] | None = None,
    ) -> _Flow:
        """Start sending ``nbytes`` from ``src`` to ``dst``; ``on_delivered()`` runs at arrival time.

        A message the network's faults lose (`faults.py`: lost at the receiver, after its full
        transfer) calls ``on_lost()`` at its arrival time instead, if given, and nothing else.
        """
        n = self.n_peers
        if not (0 <= src < n and 0 <= dst < n) or src == dst:
            self._refuse(src, dst)
        if not 0.0 <= nbytes < math.inf:  # NaN fails both
            raise ValueError(f"nbytes must be finite and >= 0, got {nbytes} (from {src} to {dst})")
        latency_s = float(self._latency_s(src, dst))
        if not 0.0 <= latency_s < math.inf:
            raise ValueError(f"latency_s({src}, {dst}) must be finite and >= 0, got {latency_s}")
        wire_bytes = float(nbytes) + self._overhead_bytes
        self._sent[src] += wire_bytes
        self.messages_sent += 1
        now = self.env.now
        up, down = src, n + dst
        crumb_bytes = _CRUMB_RELATIVE * wire_bytes
        flow = _Flow(
            next(self._flow_ids), src, dst, up, down, wire_bytes, crumb_bytes if crumb_bytes > _CRUMB_BYTES else _CRUMB_BYTES,
            latency_s * self._latency_factor, wire_bytes, on_delivered, now, on_lost, 0.0, now,
        )
        if wire_bytes <= flow.crumb_bytes:
            self._propagate(flow)
            return flow
        if self._tcp is not None:
            self._start_tcp(flow, 2.0 * latency_s)
        on_up, on_down = self._flows_on[up], self._flows_on[down]
        alone = not on_up and not on_down
        flow_id = flow.flow_id
        on_up[flow_id] = flow
        on_down[flow_id] = flow
        self._in_flight += 1
        if self._fluctuation is not None:
            self._track_period(flow)
        if alone:  # nobody to share with: its rate under either rule, without a search
            capacity = self._capacity
            self._set_rate(flow, min(capacity[up], capacity[down], flow.bound))
        else:
            self._join(flow)
        return flow

    def _refuse(self, src: int, dst: int) -> None:
        """Raise the error that a message from `src` to `dst` deserves (not two peers, or one to itself)."""
        for name, peer in (("src", src), ("dst", dst)):
            if not 0 <= peer < self.n_peers:
                raise ValueError(f"{name}={peer} is not a peer in 0..{self.n_peers - 1}")
        raise ValueError(f"peer {src} cannot send a message to itself")

    def serialising(self, flow: _Flow) -> bool:
        """Whether the flow's last byte has yet to leave its sender (it still holds its links)."""
        return flow.flow_id in self._flows_on[flow.up]

    def cancel(self, flow: _Flow) -> None:
        """Cut a message (an end left, p2psim.churn): it is never delivered, its links are freed now,
        and only the bytes that left count in ``bytes_sent``."""
        if flow.cancelled:
            return
        flow.cancelled = True
        if not self.serialising(flow):
            return  # propagating: all its bytes left; it will not arrive
        now = self.env.now
        left = flow.remaining_bytes - flow.rate_bytes_per_s * (now - flow.updated_s)
        self._sent[flow.src] -= max(left, 0.0)
        flow.in_flight = False
        flow.token += 1  # its scheduled completion is now stale
        self._in_flight -= 1
        del self._flows_on[flow.up][flow.flow_id]
        del self._flows_on[flow.down][flow.flow_id]
        self._leave(flow)

    def _start_tcp(self, flow: _Flow, rtt_s: float) -> None:
        """Bound the flow by its TCP window and loss-limited rate; in slow start, double the window every RTT."""
        tcp = self.model.tcp
        assert tcp is not None
        if rtt_s == 0.0:
            return  # no round trip: a window never limits
        flow.rtt_s = rtt_s
        flow.ceiling = min(tcp.max_window_bytes / rtt_s, loss_limited_rate(tcp.mss_bytes, rtt_s, tcp.loss_rate))
        flow.bound = flow.ceiling
        if tcp.slow_start:
            flow.window_bytes = float(tcp.initial_window_segments * tcp.mss_bytes)
            if flow.window_bytes / rtt_s < flow.ceiling:
                flow.bound = flow.window_bytes / rtt_s
                self._after(rtt_s, lambda: self._grow_window(flow))

    def _grow_window(self, flow: _Flow) -> None:
        """One RTT of slow start has passed: the window doubles, up to the ceiling."""
        if not flow.in_flight:
            return
        self.settle()  # its rate as shared out at this instant
        flow.window_bytes *= 2.0
        rate = flow.window_bytes / flow.rtt_s
        limited = flow.rate_bytes_per_s >= flow.bound  # by its window; else a larger window changes no rate
        if rate < flow.ceiling:
            flow.bound = rate
            self._after(flow.rtt_s, lambda: self._grow_window(flow))
        else:
            flow.bound = flow.ceiling
        if limited:
            self._reshare((flow.up, flow.down))

    def _track_period(self, flow: _Flow) -> None:
        """Give the flow's links their capacity in the current period; keep a period boundary scheduled."""
        fluctuation = self._fluctuation
        assert fluctuation is not None
        if not self._boundary_pending:
            self._period = max(self._period, int(self.env.now // fluctuation.period_s))
            self._boundary_pending = True
            self._after(max((self._period + 1) * fluctuation.period_s - self.env.now, 0.0), self._next_period)
        for link in (flow.up, flow.down):
            self._capacity[link] = self._base[link] * fluctuation.factor(link, self._period)

    def _next_period(self) -> None:
        """A period boundary: busy links take their new capacity, and every flow is reshared."""
        self._boundary_pending = False
        if not self._in_flight:
            return  # idle: the next send schedules the boundary after it
        fluctuation = self._fluctuation
        assert fluctuation is not None
        self._period += 1
        busy = [link for link, flows in enumerate(self._flows_on) if flows]
        for link in busy:
            self._capacity[link] = self._base[link] * fluctuation.factor(link, self._period)
        self._boundary_pending = True
        self._after(fluctuation.period_s, self._next_period)
        self._reshare(busy)

    def _after(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run `action` after `delay_s` of virtual time."""
        call_later(self.env, delay_s, lambda _timer: action())

    def _reshare(self, links: Iterable[int]) -> None:
        """Mark `links` for new rates: shared out once for every change of this instant (`settle`)."""
        self._settle_later()
        self._kept_below = 0.0
        self._dirty.update(dict.fromkeys(links))

    def _leave(self, flow: _Flow) -> None:
        """A flow left its links: mark them; flows slower than it keep their rates (`_refilled_rates`)."""
        self._settle_later()
        if flow.rate_bytes_per_s < self._kept_below:
            self._kept_below = flow.rate_bytes_per_s
        self._dirty[flow.up] = None
        self._dirty[flow.down] = None

    def _join(self, flow: _Flow) -> None:
        """A flow started beside others: under max-min only the links it fills are marked, at `settle`.

        Where capacities fluctuate, both are: the start may have given a link its period's capacity.
        """
        if not self._max_min or self._fluctuation is not None:
            self._reshare((flow.up, flow.down))
            return
        self._settle_later()
        self._joined[flow.flow_id] = flow

    def _settle_later(self) -> None:
        """Queue `settle` after the events waiting at this instant, unless a change of this instant queued it."""
        if not (self._dirty or self._joined):
            call_later(self.env, 0.0, lambda _timer: self.settle())

    def settle(self) -> None:
        """Give new rates to the flows whose rate may have changed with the links marked at this instant.

        No byte moves while the clock stands still, so the changes of one instant (a server's
        broadcast to 100 clients, their replies, flows ending together) are shared out once, by
        an event queued after those waiting at this instant: O(flows) rate updates and completion
        events where one reshare per change cost O(flows^2). Whoever reads rates before it runs
        calls this first. Under max-min, flows slower than the first level where filling would
        see the change keep their rates (Bertsekas & Gallager's filling freezes them as before):
        the slowest rate of the flows that left, the level at which a joined flow's link fills,
        a joined flow's bound; 0 where a capacity or a bound changed.
        """
        if not (self._dirty or self._joined):
            return
        links, self._dirty = list(self._dirty), {}
        kept_below, self._kept_below = self._kept_below, math.inf
        if self._max_min:
            starting, self._joined = {i: f for i, f in self._joined.items() if self.serialising(f)}, {}
            joined = list(starting.values())
            for link in {link for flow in joined for link in (flow.up, flow.down)}:
                kept_below = min(kept_below, self._filled_at(link, starting))
            for flow in joined:
                kept_below = min(kept_below, flow.bound)
            # Rates equal in exact arithmetic may differ by a few ulps: those within 1e-9 are refilled too.
            flows, rates = self._refilled_rates(links, joined, kept_below * (1.0 - 1e-9))
            for flow, rate in zip(flows, rates):
                if abs(rate - flow.rate_bytes_per_s) > 1e-13 * rate:  # a few ulps off the rate it has: no new schedule
                    self._set_rate(flow, rate)
            return
        seen: set[int] = set()
        for link in links:
            for flow_id, flow in self._flows_on[link].items():
                if flow_id not in seen:
                    seen.add(flow_id)
                    self._set_rate(flow, self._equal_share(flow))

    def _filled_at(self, link: int, starting: Container[int]) -> float:
        """The level at which progressive filling fills `link` now `starting` flows joined it, the others as they were.

        Its other flows slower than that keep their rates; the rest of the link is shared by those left.
        """
        flows = self._flows_on[link]
        room, left = self._capacity[link], len(flows)
        for rate in sorted(f.rate_bytes_per_s for flow_id, f in flows.items() if flow_id not in starting):
            if rate * left >= room:
                break
            room -= rate
            left -= 1
        return room / left

    def _equal_share(self, flow: _Flow) -> float:
        """The smaller of the flow's equal shares of its two links, within its own bound."""
        up, down = flow.up, flow.down
        return min(
            self._capacity[up] / len(self._flows_on[up]), self._capacity[down] / len(self._flows_on[down]), flow.bound
        )

    def _refilled_rates(
        self, links: Iterable[int], joined: Iterable[_Flow] = (), kept_below: float = 0.0
    ) -> tuple[list[_Flow], list[float]]:
        """The flows whose max-min rate changes with `links` and the `joined` flows, in start order, and their new rates.

        A local repair: refill a set of flows (at first the joined ones and those on `links` not
        slower than `kept_below`) by progressive filling over what the other flows leave of their
        links, then check the max-min condition (Bertsekas & Gallager, *Data Networks*, 6.5.2)
        on every flow of the links it touched: each is at its bound or has a full link on which
        no flow is faster. A flow that fails joins the set with the faster flows on its links,
        and the set is refilled. At worst the set grows to the whole component, whose filling
        passes; most changes settle after touching a few links, however large the network.
        """
        flows_on, capacity = self._flows_on, self._capacity
        chosen: dict[int, _Flow] = {flow.flow_id: flow for flow in joined}
        for link in links:
            for flow_id, flow in flows_on[link].items():
                if flow.rate_bytes_per_s >= kept_below:
                    chosen[flow_id] = flow
        touched = set(links)
        while chosen:
            ordered = [chosen[flow_id] for flow_id in sorted(chosen)]
            own = {link for flow in ordered for link in (flow.up, flow.down)}
            left = {}
            for link in own:
                room = capacity[link]
                for flow_id, flow in flows_on[link].items():
                    if flow_id not in chosen:
                        room -= flow.rate_bytes_per_s
                left[link] = room
            if len(ordered) == 1:  # alone in the set (most often): no filling to do
                flow = ordered[0]
                rates = [max(min(left[flow.up], left[flow.down], flow.bound), 0.0)]
            else:
                rates = max_min_rates([(f.up, f.down) for f in ordered], left, [f.bound for f in ordered])
            new = {flow.flow_id: rate for flow, rate in zip(ordered, rates)}
            touched |= own
            grown = len(chosen)
            for flow, rate, faster in self._unbottlenecked(touched, new, kept_below):
                chosen[flow.flow_id] = flow
                chosen.update(faster)
            if len(chosen) == grown:
                return ordered, rates
        return [], []

    def _unbottlenecked(
        self, links: set[int], new: dict[int, float], kept_below: float
    ) -> list[tuple[_Flow, float, dict[int, _Flow]]]:
        """The flows on `links` that fail max-min at `new` rates (the others at theirs), with their rates and the faster flows beside them.

        A flow passes at its bound, or with a link full within 1e-9 of its capacity on which no
        flow is faster than it by more than 1e-9, or, keeping its rate, beside a link that was not
        full (so not its bottleneck) and an end no change touched. Flows slower than `kept_below`
        are not listed as faster: they keep their rates (`settle`).
        """
        flows_on, capacity = self._flows_on, self._capacity
        seen: dict[int, tuple[bool, float, bool]] = {}  # link -> (full, fastest rate on it, full before)

        def state(link: int) -> tuple[bool, float, bool]:
            if link not in seen:
                used = before = top = 0.0
                for flow_id, flow in flows_on[link].items():
                    rate = flow.rate_bytes_per_s
                    before += rate
                    rate = new.get(flow_id, rate)
                    used += rate
                    if rate > top:
                        top = rate
                floor = capacity[link] * (1.0 - 1e-9)
                seen[link] = (used >= floor, top, before >= floor)
            return seen[link]

        failing = []
        checked: set[int] = set()
        for link in links:
            full, top, was_full = state(link)
            for flow_id, flow in flows_on[link].items():
                if flow_id in checked:
                    continue
                checked.add(flow_id)
                rate = new.get(flow_id, flow.rate_bytes_per_s)
                if rate >= flow.bound * (1.0 - 1e-9) or (full and rate >= top * (1.0 - 1e-9)):
                    continue
                end = flow.up if link == flow.down else flow.down
                if not was_full and flow_id not in new and end not in links:
                    continue
                end_full, end_top, _ = state(end)
                if end_full and rate >= end_top * (1.0 - 1e-9):
                    continue
                faster = {
                    other_id: other
                    for side in (flow.up, flow.down)
                    for other_id, other in flows_on[side].items()
                    if new.get(other_id, other.rate_bytes_per_s) > rate and (other_id in new or other.rate_bytes_per_s >= kept_below)
                }
                failing.append((flow, rate, faster))
        return failing

    def _set_rate(self, flow: _Flow, rate: float) -> None:
        """Account the flow's progress at its old rate, then reschedule its end at the new one."""
        if rate == flow.rate_bytes_per_s:
            return
        now = self.env.now
        flow.remaining_bytes -= flow.rate_bytes_per_s * (now - flow.updated_s)
        if flow.remaining_bytes <= flow.crumb_bytes:
            flow.remaining_bytes = 0.0
        flow.updated_s = now
        flow.rate_bytes_per_s = rate
        flow.token += 1  # the timeout scheduled at the old rate is now stale
        token = flow.token
        call_later(self.env, flow.remaining_bytes / rate, lambda _timer: self._serialised(flow, token))

    def _serialised(self, flow: _Flow, token: int) -> None:
        """The flow's last byte is on the wire: free its links and let it propagate."""
        if token != flow.token:
            return
        flow.in_flight = False
        self._in_flight -= 1
        up, down = flow.up, flow.down
        on_up, on_down = self._flows_on[up], self._flows_on[down]
        del on_up[flow.flow_id]
        del on_down[flow.flow_id]
        if on_up or on_down:  # links left empty: no flow's rate changes
            self._leave(flow)
        self._propagate(flow)

    def _propagate(self, flow: _Flow) -> None:
        """Deliver the message after its propagation latency."""
        call_later(self.env, flow.latency_s, lambda _timer: self._deliver(flow))

    def _deliver(self, flow: _Flow) -> None:
        """The message has arrived: count its bytes, then hand it to the receiver (unless a fault lost it or churn cut it)."""
        if flow.cancelled:
            return
        faults = self._faults
        if faults is not None and lost(faults, self._loss_draws, flow.src, flow.dst, flow.sent_s, self.env.now):
            self.messages_lost += 1
            if flow.on_lost is not None:
                flow.on_lost()
            return
        self._received[flow.dst] += flow.nbytes
        flow.on_delivered()
