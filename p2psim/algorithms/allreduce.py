"""Centralized baseline: synchronous data-parallel SGD with ring all-reduce.

Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations",
JPDC 69(2), 2009, https://doi.org/10.1016/j.jpdc.2008.09.002.

One device (count 1) trains on the global batch; K devices each compute the gradient
of 1/K of it and average the gradients with a ring all-reduce: 2(K-1) rounds in which
every device sends 1/K of the model to its successor, so one all-reduce takes
2(K-1) (latency + S / (K bandwidth)) on equal links. The rounds are real messages on
the simulated network. All rows stay equal: this is one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..mixing import MixingReport
from .base import Algorithm, AlgorithmConfig, register_algorithm

if TYPE_CHECKING:
    from ..engine import GradientJob, Message

__all__ = ["AllReduce", "AllReduceConfig"]


@dataclass(frozen=True)
class AllReduceConfig(AlgorithmConfig):
    """Synchronous SGD needs only a learning rate and the optimizer."""


@register_algorithm
class AllReduce(Algorithm):
    """Every device computes its shard's gradient; the ring averages them; all apply the mean."""

    name = "allreduce"
    config_class = AllReduceConfig
    carries_rows = False
    numerics_deferrable = True

    def start(self) -> None:
        self._mean = self.world.rows.new(1)[0]  # the ring's mean gradient
        self._ready: dict[int, GradientJob] = {}
        self._members: tuple[int, ...] = ()  # the ring running now (empty: none)
        self._round: dict[int, int] = {}
        self._done = 0
        self._ring = 0  # counts rings and timeouts (churn), so an old message or timer is recognised
        super().start()

    def on_gradient(self, job: GradientJob) -> None:
        self._ready[job.peer] = job
        if self._members:
            return  # a ring is running: this gradient waits for the next
        waiting = [peer for peer in range(self.world.n_peers) if peer not in self._ready and self.world.is_online(peer)]
        if not waiting:
            self._launch()
        elif len(self._ready) == 1 and self.world.timeout_s is not None:
            self._arm()

    def _arm(self) -> None:
        """Churn: `timeout_s` after the first gradient of a step, or after a ring starts, the step goes on without the missing."""
        ring = self._ring
        keeper = min(self._ready) if self._ready else 0  # a peer with a gradient ready keeps the time
        self.world.schedule(self.world.timeout_s, keeper, lambda: self._expire(ring))

    def _expire(self, ring: int) -> None:
        """Abandon a ring that has not completed, and all-reduce over the online peers whose gradient is ready."""
        if ring != self._ring:
            return
        self._ring += 1
        self._members = ()
        self._ready = {peer: job for peer, job in self._ready.items() if self.world.is_online(peer)}
        if self._ready:
            self._launch()
        else:
            self._arm()

    def _launch(self) -> None:
        """Start the ring over the peers whose gradient is ready (every peer, without churn)."""
        members = tuple(sorted(self._ready))
        if len(members) == 1:
            self._apply(members)
            return
        self._members, self._round, self._done = members, dict.fromkeys(members, 0), 0
        self._ring += 1
        if self.world.timeout_s is not None:
            self._arm()
        for position in range(len(members)):
            self._send_round(position)

    def _send_round(self, position: int) -> None:
        world, members = self.world, self._members
        peer = members[position]
        payload = (self._ring, position, self._round[peer])
        world.send(peer, members[(position + 1) % len(members)], world.model_bytes / len(members), "chunk", payload)

    def on_message(self, message: Message) -> None:
        ring, position, _ = message.payload
        if ring != self._ring:
            return  # a ring abandoned after a timeout (churn)
        members = self._members
        position = (position + 1) % len(members)
        peer = members[position]
        self._round[peer] += 1
        if self._round[peer] < 2 * (len(members) - 1):
            self._send_round(position)
            return
        self._done += 1
        if self._done == len(members):
            self._apply(members)

    def _apply(self, members: tuple[int, ...]) -> None:
        world = self.world
        jobs = [self._ready.pop(peer) for peer in members]
        world.rows.mean_of(self._mean, [world.consume(job) for job in jobs])
        self._members, self._round, self._done = (), {}, 0
        self._ring += 1
        for peer in members:
            world.apply_gradient(peer, self._mean)
            world.compute(peer)

    def mixing(self) -> MixingReport:
        return MixingReport(1.0, "exact average every step: W = 11^T/n", "11^T/n (all-reduce)")
