"""AD-PSGD: asynchronous decentralized parallel SGD.

Lian, Zhang, Zhang, Liu, "Asynchronous Decentralized Parallel Stochastic Gradient
Descent", ICML 2018, https://arxiv.org/abs/1710.06952 (Algorithm 1).

A peer that finishes a gradient (computed on the parameters it held when it started)
picks a neighbour uniformly at random and exchanges models with it: it pushes its
model, the neighbour replies with its own, and when the reply has arrived the pair is
averaged atomically, as the paper's Algorithm 1 requires. The peer then applies its
gradient and starts the next one. Both transfers are paid on the network; the average
uses the two models as they are at that instant, so gossip preserves the peers' mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import GradientJob, Message
from .base import Algorithm, AlgorithmConfig, register_algorithm

__all__ = ["ADPSGD", "ADPSGDConfig"]


@dataclass(frozen=True)
class ADPSGDConfig(AlgorithmConfig):
    """AD-PSGD needs only a learning rate."""


@register_algorithm
class ADPSGD(Algorithm):
    """Gradient, then an atomic pairwise average with a random neighbour, then the step."""

    name = "adpsgd"
    config_class = ADPSGDConfig
    needs_connected_graph = True

    def on_gradient(self, job: GradientJob) -> None:
        world = self.world
        neighbours = world.neighbors[job.peer]
        if not neighbours:
            self._step(job)
            return
        partner = neighbours[int(world.rng.integers(len(neighbours)))]
        world.send(job.peer, partner, world.model_bytes, "model", job)

    def on_message(self, message: Message) -> None:
        job: GradientJob = message.payload
        if message.kind == "model":
            self.world.send(message.dst, message.src, self.world.model_bytes, "reply", job)
        else:
            self.world.average_rows((job.peer, message.src))
            self._step(job)

    def _step(self, job: GradientJob) -> None:
        self.world.add_to_row(job.peer, self.world.consume(job), alpha=-self.config.lr)
        self.world.compute(job.peer)
