"""Message delivery in virtual time: each message is a flow over its sender's uplink and receiver's downlink.

DESIGN decision 3: a message of S bytes from i to j arrives latency(i, j) + S / bandwidth
after it is sent, where a peer's access links are shared by its concurrent transfers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

__all__ = ["Network"]

# Bytes left below this are float crumbs of rate x time products, not data: the flow is done.
# The relative part keeps the snap meaningful for multi-gigabyte messages.
_CRUMB_BYTES = 1e-6
_CRUMB_RELATIVE = 1e-12


@dataclass(slots=True, eq=False)
class _Flow:
    """A message in flight: bytes left to serialise, its current rate, when they were last accounted.

    ``token`` counts reschedules, so a completion timeout scheduled at an old rate is ignored.
    """

    flow_id: int
    src: int
    dst: int
    remaining_bytes: float
    crumb_bytes: float
    latency_s: float
    nbytes: float
    on_delivered: Callable[[], None]
    rate_bytes_per_s: float = 0.0
    updated_s: float = 0.0
    token: int = 0


class Network:
    """Flow-level model of messages over per-peer access links.

    A message of S bytes from ``src`` to ``dst`` is a flow whose rate at any instant is
    ``min(uplink[src] / flows on src's uplink, downlink[dst] / flows on dst's downlink)``:
    each link is shared equally by the transfers in flight on it. Simplification: capacity
    a flow leaves unused because it is limited on its other link is not redistributed to
    the other flows of the link. Rates change only when a flow starts or ends on one of a
    flow's two links. When the last byte has been serialised the message propagates for
    ``latency_s(src, dst)`` (looked up when it is sent), then ``on_delivered()`` is called.
    A lone message thus arrives after L + S / min(up, down); an empty one after L.
    Latency is not a link resource: messages in propagation do not share anything.
    """

    def __init__(
        self,
        env: simpy.Environment,
        uplink_bytes_per_s: Sequence[float],
        downlink_bytes_per_s: Sequence[float],
        latency_s: Callable[[int, int], float],
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
        self.n_peers = len(uplink_bytes_per_s)
        # Python floats: indexing them is cheaper than numpy scalars in the event loop.
        self._uplink = [float(value) for value in uplink_bytes_per_s]
        self._downlink = [float(value) for value in downlink_bytes_per_s]
        self._latency_s = latency_s
        # Flows on each link, keyed by flow id in start order (dicts keep insertion order).
        self._on_uplink: list[dict[int, _Flow]] = [{} for _ in range(self.n_peers)]
        self._on_downlink: list[dict[int, _Flow]] = [{} for _ in range(self.n_peers)]
        self._flow_ids = itertools.count()
        self.bytes_sent = np.zeros(self.n_peers, dtype=np.float64)
        self.bytes_received = np.zeros(self.n_peers, dtype=np.float64)
        self.messages_sent = 0

    def send(self, src: int, dst: int, nbytes: float, on_delivered: Callable[[], None]) -> None:
        """Start sending ``nbytes`` from ``src`` to ``dst``; ``on_delivered()`` runs at arrival time."""
        for name, peer in (("src", src), ("dst", dst)):
            if not 0 <= peer < self.n_peers:
                raise ValueError(f"{name}={peer} is not a peer in 0..{self.n_peers - 1}")
        if src == dst:
            raise ValueError(f"peer {src} cannot send a message to itself")
        if not (math.isfinite(nbytes) and nbytes >= 0):
            raise ValueError(f"nbytes must be finite and >= 0, got {nbytes} (from {src} to {dst})")
        latency_s = float(self._latency_s(src, dst))
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency_s({src}, {dst}) must be finite and >= 0, got {latency_s}")
        self.bytes_sent[src] += nbytes
        self.messages_sent += 1
        flow = _Flow(
            flow_id=next(self._flow_ids),
            src=src,
            dst=dst,
            remaining_bytes=float(nbytes),
            crumb_bytes=max(_CRUMB_BYTES, _CRUMB_RELATIVE * nbytes),
            latency_s=latency_s,
            nbytes=float(nbytes),
            on_delivered=on_delivered,
            updated_s=self.env.now,
        )
        if flow.remaining_bytes <= flow.crumb_bytes:
            self._propagate(flow)
            return
        self._on_uplink[src][flow.flow_id] = flow
        self._on_downlink[dst][flow.flow_id] = flow
        self._update_rates(src, dst)

    def _update_rates(self, src: int, dst: int) -> None:
        """Give new rates to the flows on src's uplink and dst's downlink, the only ones whose share changed."""
        for flow in self._on_uplink[src].values():
            self._set_rate(flow)
        for flow in self._on_downlink[dst].values():
            if flow.src != src:  # a src -> dst flow was already updated with the uplink
                self._set_rate(flow)

    def _set_rate(self, flow: _Flow) -> None:
        """Account the flow's progress at its old rate, then reschedule its end at the new one."""
        rate = min(
            self._uplink[flow.src] / len(self._on_uplink[flow.src]),
            self._downlink[flow.dst] / len(self._on_downlink[flow.dst]),
        )
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
        done = self.env.timeout(flow.remaining_bytes / rate)
        done.callbacks.append(lambda _event: self._serialised(flow, token))

    def _serialised(self, flow: _Flow, token: int) -> None:
        """The flow's last byte is on the wire: free its links and let it propagate."""
        if token != flow.token:
            return
        del self._on_uplink[flow.src][flow.flow_id]
        del self._on_downlink[flow.dst][flow.flow_id]
        self._update_rates(flow.src, flow.dst)
        self._propagate(flow)

    def _propagate(self, flow: _Flow) -> None:
        """Deliver the message after its propagation latency."""
        arrived = self.env.timeout(flow.latency_s)
        arrived.callbacks.append(lambda _event: self._deliver(flow))

    def _deliver(self, flow: _Flow) -> None:
        """The message has arrived: count its bytes, then hand it to the receiver."""
        self.bytes_received[flow.dst] += flow.nbytes
        flow.on_delivered()
