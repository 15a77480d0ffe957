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

import torch

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

    def start(self) -> None:
        self._ready: list[GradientJob] = []
        self._round = [0] * self.world.n_peers
        self._done = 0
        super().start()

    def on_gradient(self, job: GradientJob) -> None:
        self._ready.append(job)
        if len(self._ready) < self.world.n_peers:
            return
        if self.world.n_peers == 1:
            self._apply()
            return
        for peer in range(self.world.n_peers):
            self._send_round(peer)

    def _send_round(self, peer: int) -> None:
        world = self.world
        world.send(peer, (peer + 1) % world.n_peers, world.model_bytes / world.n_peers, "chunk", self._round[peer])

    def on_message(self, message: Message) -> None:
        peer = message.dst
        self._round[peer] += 1
        if self._round[peer] < 2 * (self.world.n_peers - 1):
            self._send_round(peer)
            return
        self._done += 1
        if self._done == self.world.n_peers:
            self._apply()

    def _apply(self) -> None:
        world = self.world
        jobs = sorted(self._ready, key=lambda job: job.peer)
        mean = torch.stack([world.consume(job) for job in jobs]).mean(dim=0)
        self._ready, self._round, self._done = [], [0] * world.n_peers, 0
        for peer in range(world.n_peers):
            world.apply_gradient(peer, mean)
            world.compute(peer)

    def mixing(self) -> MixingReport:
        return MixingReport(1.0, "exact average every step: W = 11^T/n", "11^T/n (all-reduce)")
