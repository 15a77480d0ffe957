"""What peers leaving and returning does to a run: the engine's side of the `[churn]` table.

Rules (`ChurnSpec` names the settings):
- An offline peer computes and sends nothing, and runs no hook: a computation in progress
  when it leaves is lost (its time so far counts as computing: the device worked), its
  timers wait and fire when it is back (a process that restarts finds its deadlines
  passed), and `World.compute` / `World.send` for it do nothing.
- A message to an offline peer is lost (`offline_messages = "drop"`, the default: the
  connection fails before any payload leaves, so no bytes count) or kept by the sender's
  transport and sent when both ends are online (`"hold"`).
- A transfer in flight is lost when its receiver leaves, or its sender leaves before the
  last byte has left; its links are freed at once and only the bytes that left count.
- A returning peer keeps its old model (`rejoin = "old_model"`) or first fetches the model of
  a uniformly chosen online neighbour (`"fetch"`), paying that transfer; then its deferred
  timers fire, then the algorithm's `on_rejoin` (by default: compute again).
- A crash is a departure with no return. A crash of a peer the algorithm cannot do without
  (`Algorithm.essential_peers`: a server) stalls the run at once.
- Graph repair (`repair_degree` > 0, for algorithms whose class sets `repairs_graph`): a
  peer left with no online neighbour, `timeout_s` after the departure that did it (the time a
  failure detector takes), links to that many online peers chosen uniformly (an idealised
  peer-sampling service); a peer returning to no online neighbour does the same at once.
- Stall: nothing computing, no message in flight, no held message whose two ends can both be
  online before the stop, no offline peer that returns before the stop, and either no timer
  pending or nothing but timers for twice the longest timer delay seen.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from .seeding import stream
from .timers import call_later

if TYPE_CHECKING:
    from .availability import Availability
    from .engine import Message, World

__all__ = ["Churn"]


class Churn:
    """Each peer's online state over the run, and what its changes do to computations, messages and timers."""

    def __init__(self, world: World, availability: Availability):
        self.world = world
        self.env = world.env
        self.spec = availability.spec
        self.peers = availability.peers
        n = world.n_peers
        self.session_on = np.array([p is None or p.initially_online() for p in self.peers])
        self.window_on = np.ones(n, dtype=bool)
        self.crashed = np.zeros(n, dtype=bool)
        self.online = self.session_on.copy()
        self._toggles = [None if p is None else iter(p.toggles()) for p in self.peers]
        self._next_session = np.full(n, math.inf)
        self._next_window = np.full(n, math.inf)
        self._offline_since = np.zeros(n)
        self._offline_total = np.zeros(n)
        self._last_offline = np.zeros(n)
        self._tickets: dict[int, tuple[Message, Any, Callable[[], None] | None]] = {}
        self._by_peer: list[dict[int, None]] = [{} for _ in range(n)]  # tickets touching each peer, in order
        self._next_ticket = 0
        self._held: list[Message] = []
        self._deferred: list[list[Callable[[], None]]] = [[] for _ in range(n)]
        self.timers_pending = 0
        self._max_timer_s = 0.0
        self.last_activity = 0.0  # the last gradient finished, message sent or arrived, or peer back
        self._rng = stream(world.setup.scenario.seed, "churn")
        start = pd.Timestamp(world.setup.scenario.energy.start_utc)
        self._start_hour = start.hour + start.minute / 60 + start.second / 3600
        self.counts = dict(departures=0, returns=0, crashes=0, lost_computations=0, messages_dropped=0,
                           messages_cut=0, messages_held=0, repairs=0, fetches=0)

    # ----- the schedule -----------------------------------------------------------------

    def start(self) -> None:
        """At t = 0: initial states, and the first change of every peer's session, window and crash."""
        for peer, churn in enumerate(self.peers):
            if churn is None:
                continue
            if churn.window_h is not None:
                self.window_on[peer] = self._in_window(peer, 0.0)
                self._schedule_window(peer)
            if math.isfinite(churn.crash_s):
                call_later(self.env, churn.crash_s, lambda _timer, p=peer: self._crash(p))
            self._schedule_session(peer)
        self.online = self.session_on & self.window_on
        self._offline_since[~self.online] = 0.0

    def _schedule_session(self, peer: int) -> None:
        t = next(self._toggles[peer], math.inf)
        if t >= self.peers[peer].crash_s or not math.isfinite(t):
            self._next_session[peer] = math.inf
            return
        self._next_session[peer] = t
        call_later(self.env, max(t - self.env.now, 0.0), lambda _timer: self._session_change(peer))

    def _session_change(self, peer: int) -> None:
        if self.world._stop.triggered or self.crashed[peer]:
            return
        self.session_on[peer] = not self.session_on[peer]
        self._schedule_session(peer)
        self._update(peer)

    def _local_hour(self, peer: int, t: float) -> float:
        return (self._start_hour + t / 3600.0 + self.peers[peer].offset_h) % 24.0

    def _in_window(self, peer: int, t: float) -> bool:
        start, end = self.peers[peer].window_h
        hour = self._local_hour(peer, t)
        return start <= hour < end if start < end else (hour >= start or hour < end)

    def _schedule_window(self, peer: int) -> None:
        """The next time the local clock crosses the window's start or end."""
        start, end = self.peers[peer].window_h
        now = self.env.now
        hour = self._local_hour(peer, now)
        target = end if self.window_on[peer] else start
        ahead = (target - hour) % 24.0 or 24.0
        self._next_window[peer] = now + ahead * 3600.0
        call_later(self.env, ahead * 3600.0, lambda _timer: self._window_change(peer))

    def _window_change(self, peer: int) -> None:
        if self.world._stop.triggered or self.crashed[peer]:
            return
        self.window_on[peer] = not self.window_on[peer]
        self._schedule_window(peer)
        self._update(peer)

    def _crash(self, peer: int) -> None:
        if self.world._stop.triggered:
            return
        self.crashed[peer] = True
        self.counts["crashes"] += 1
        self._deferred[peer] = []
        self._update(peer)
        essential = self.world.algorithm.essential_peers()
        if peer in essential:
            self._stall(f"peer {peer}, which {self.world.algorithm.name} cannot run without, crashed at t={self.env.now:.6g} s", self.env.now)

    def _update(self, peer: int) -> None:
        online = bool(self.session_on[peer] and self.window_on[peer] and not self.crashed[peer])
        if online == self.online[peer]:
            return
        if online:
            self._arrive(peer)
        else:
            self._leave(peer)
        self.check()

    # ----- leaving and returning ---------------------------------------------------------

    def _leave(self, peer: int) -> None:
        world = self.world
        self.online[peer] = False
        self._offline_since[peer] = self.env.now
        self.counts["departures"] += 1
        if world._abandon(peer):
            self.counts["lost_computations"] += 1
        for ticket in list(self._by_peer[peer]):
            message, flow, _ = self._tickets[ticket]
            if message.dst == peer or flow is None or world.network.serialising(flow):  # its last byte has not left
                self._cut(ticket)
        if self.spec.repair_degree and world.algorithm.repairs_graph:
            alone = [j for j in world.neighbors[peer] if self.online[j] and not self.online[world.neighbors[j]].any()]
            if alone:
                call_later(self.env, self.spec.timeout_s, lambda _timer: self._repair(alone))

    def _arrive(self, peer: int) -> None:
        self.online[peer] = True
        self.last_activity = self.env.now
        self._offline_total[peer] += self.env.now - self._offline_since[peer]
        self.counts["returns"] += 1
        if self.spec.repair_degree and self.world.algorithm.repairs_graph:
            self._repair([peer])
        self._release_held(peer)
        if self.spec.rejoin == "fetch" and self._fetch(peer):
            return
        self._resume(peer)

    def _fetch(self, peer: int) -> bool:
        """Start the transfer of a uniformly chosen online neighbour's model; False if none is online."""
        world = self.world
        sources = [j for j in world.neighbors[peer] if self.online[j]]
        if not sources:
            return False
        source = sources[int(self._rng.integers(len(sources)))]
        from .engine import Message

        message = Message(source, peer, "rejoin_model", None, world.model_bytes, self.env.now, world.pool.store(world.params[source]))
        self.counts["fetches"] += 1

        def arrived() -> None:
            self._untrack(message)
            world._in_flight -= 1
            world.set_row(peer, world.pool.row(message.slot))
            world.pool.release(message.slot)
            if not world._stop.triggered:
                self._resume(peer)

        world._in_flight += 1
        flow = world.network.send(source, peer, message.nbytes, arrived)
        self._track(message, flow, lambda: self._resume(peer) if self.online[peer] else None)
        return True

    def _resume(self, peer: int) -> None:
        """The peer's process runs again: its deferred timers fire, then the algorithm's `on_rejoin`."""
        world = self.world
        deferred, self._deferred[peer] = self._deferred[peer], []
        for action in deferred:
            if world._stop.triggered or not self.online[peer]:
                return
            world._call(peer, "timer", action, None)
        if not world._stop.triggered and self.online[peer]:
            world._call(peer, "on_rejoin", world.algorithm.on_rejoin, peer)

    def _repair(self, peers: list[int]) -> None:
        """Each of `peers` still online with no online neighbour links to `repair_degree` online peers."""
        world = self.world
        for peer in peers:
            if not self.online[peer] or self.online[world.neighbors[peer]].any():
                continue
            candidates = np.flatnonzero(self.online)
            candidates = candidates[(candidates != peer) & ~np.isin(candidates, world.neighbors[peer])]
            if not len(candidates):
                continue
            chosen = self._rng.choice(candidates, size=min(self.spec.repair_degree, len(candidates)), replace=False)
            for other in sorted(int(c) for c in chosen):
                bisect.insort(world.neighbors[peer], other)
                bisect.insort(world.neighbors[other], peer)
                self.counts["repairs"] += 1

    # ----- messages -----------------------------------------------------------------------

    def admit(self, message: Message) -> bool:
        """Whether a message may enter the network now; one that may not is dropped or held here."""
        if not self.online[message.src]:
            self._discard(message)
            return False
        if self.online[message.dst]:
            return True
        if self.spec.offline_messages == "hold" and not self.crashed[message.dst]:
            self._held.append(message)
            self.counts["messages_held"] += 1
        else:
            self._discard(message)
        return False

    def _discard(self, message: Message) -> None:
        self.counts["messages_dropped"] += 1
        if message.slot is not None:
            self.world.pool.release(message.slot)
            message.slot = None

    def _release_held(self, peer: int) -> None:
        """Send the held messages whose two ends are now online, in the order they were held."""
        ready = [m for m in self._held if (m.dst == peer or m.src == peer) and self.online[m.src] and self.online[m.dst]]
        if not ready:
            return
        self._held = [m for m in self._held if m not in ready]
        for message in ready:
            self.world._transmit(message)

    def _track(self, message: Message, flow: Any, on_cut: Callable[[], None] | None = None) -> None:
        ticket = self._next_ticket
        self._next_ticket += 1
        message.ticket = ticket
        self._tickets[ticket] = (message, flow, on_cut)
        self.last_activity = self.env.now
        self._by_peer[message.src][ticket] = None
        self._by_peer[message.dst][ticket] = None

    def track(self, message: Message, flow: Any) -> None:
        """A message has entered the network as `flow`: it may be cut if an end leaves."""
        self._track(message, flow)

    def _untrack(self, message: Message) -> None:
        ticket = message.ticket
        self.last_activity = self.env.now
        if self._tickets.pop(ticket, None) is not None:
            self._by_peer[message.src].pop(ticket, None)
            self._by_peer[message.dst].pop(ticket, None)

    def untrack(self, message: Message) -> None:
        """A message has arrived (or was lost by a fault): it can no longer be cut."""
        self._untrack(message)

    def _cut(self, ticket: int) -> None:
        message, flow, on_cut = self._tickets[ticket]
        self._untrack(message)
        world = self.world
        if flow is not None:
            world.network.cancel(flow)
        world._in_flight -= 1
        if message.slot is not None:
            world.pool.release(message.slot)
            message.slot = None
        self.counts["messages_cut"] += 1
        if on_cut is not None and not world._stop.triggered:
            on_cut()

    # ----- timers -------------------------------------------------------------------------

    def timer_set(self, delay_s: float) -> None:
        """A timer was set: counted until it fires."""
        self.timers_pending += 1
        self._max_timer_s = max(self._max_timer_s, delay_s)

    def timer_due(self, peer: int, action: Callable[[], None]) -> bool:
        """A timer fires: True if it runs now; an offline peer's waits for its return, a crashed peer's is gone."""
        self.timers_pending -= 1
        if self.online[peer]:
            return True
        if not self.crashed[peer]:
            self._deferred[peer].append(action)
        return False

    # ----- stalls and records -------------------------------------------------------------

    def stall_reason(self) -> str | None:
        """Why nothing can progress any more, or None while something can (see the module docstring)."""
        world = self.world
        if world._in_flight > 0 or world._computing.any():
            return None
        horizon = world.setup.scenario.stop.sim_time_s or math.inf
        if self.env.now >= horizon:
            return None  # the run ends now anyway
        back = np.where(self.session_on, self._next_window, self._next_session)
        returning = ~self.online & ~self.crashed & (back < horizon)
        if returning.any():
            return None
        if self.timers_pending and self.env.now - self.last_activity < 2.0 * self._max_timer_s:
            return None
        held = len(self._held)
        offline = int((~self.online & ~self.crashed).sum())
        parts = [f"no peer computing and no message in flight since t={self.last_activity:.6g} s"]
        if held:
            parts.append(f"{held} message(s) held for peers that are not both online before the stop")
        if offline:
            parts.append(f"{offline} peer(s) offline until after the stop")
        if self.crashed.any():
            parts.append(f"{int(self.crashed.sum())} peer(s) crashed")
        if self.timers_pending:
            parts.append(f"only timers fired for {self.env.now - self.last_activity:.6g} s")
        return "; ".join(parts)

    def check(self) -> None:
        """Stop the run as stalled if nothing can progress any more."""
        if self.world._stop.triggered:
            return
        reason = self.stall_reason()
        if reason is not None:
            self._stall(reason, self.last_activity)

    def _stall(self, reason: str, since_s: float) -> None:
        world = self.world
        if world.status == "running":
            world.status = "stalled"
            world.info["stalled_at_s"] = since_s
        world._request_stop(f"stalled: {reason}")

    def offline_seconds(self) -> np.ndarray:
        """Each peer's offline time so far, in seconds."""
        now = self.env.now
        return self._offline_total + np.where(self.online, 0.0, now - self._offline_since)

    def facts(self) -> dict[str, Any]:
        """Counts of what churn did during the run, for the run's facts."""
        return {f"churn_{name}": value for name, value in self.counts.items()} | {
            "churn_held_at_end": len(self._held),
            "offline_messages": self.spec.offline_messages,
            "rejoin": self.spec.rejoin,
            "timeout_s": self.spec.timeout_s,
        }
