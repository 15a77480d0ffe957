"""AD-PSGD: asynchronous decentralized parallel SGD.

Lian, Zhang, Zhang, Liu, "Asynchronous Decentralized Parallel Stochastic Gradient
Descent", ICML 2018, https://arxiv.org/abs/1710.06952 (Algorithm 1).

A peer that finishes a gradient (computed on the parameters it held when it started)
picks a neighbour uniformly at random and exchanges models with it: it pushes its
model, the neighbour replies with its own, and when the reply has arrived the pair is
averaged atomically, as Algorithm 1 requires; then the gradient is applied. Both
transfers are paid on the network; the average uses the two models as they are at that
instant, so gossip preserves the peers' mean.

With `overlap` (the default, as in the paper's implementation, where a communication
thread runs beside computation) the peer starts its next gradient as soon as it has
sent its push; a gradient that finishes while the exchange is still in flight waits for
it, so each peer has at most one exchange and one computation under way. Without
`overlap` the peer idles until its exchange completes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import GradientJob, Message
from .base import Algorithm, AlgorithmConfig, register_algorithm

__all__ = ["ADPSGD", "ADPSGDConfig"]


@dataclass(frozen=True)
class ADPSGDConfig(AlgorithmConfig):
    """Learning rate, and whether computation overlaps the model exchange."""

    overlap: bool = True


@register_algorithm
class ADPSGD(Algorithm):
    """Gradient, then an atomic pairwise average with a random neighbour, then the step."""

    name = "adpsgd"
    config_class = ADPSGDConfig
    needs_connected_graph = True

    def start(self) -> None:
        self._exchanging = [False] * self.world.n_peers
        self._held: list[GradientJob | None] = [None] * self.world.n_peers
        super().start()

    def on_gradient(self, job: GradientJob) -> None:
        if self._exchanging[job.peer]:
            self._held[job.peer] = job  # applied after the exchange under way
            return
        self._exchange(job)

    def _exchange(self, job: GradientJob) -> None:
        world = self.world
        neighbours = world.neighbors[job.peer]
        if not neighbours:
            self._apply(job)
            world.compute(job.peer)
            return
        partner = neighbours[int(world.rng.integers(len(neighbours)))]
        self._exchanging[job.peer] = True
        world.send(job.peer, partner, world.model_bytes, "model", job)
        if self.config.overlap:
            world.compute(job.peer)

    def on_message(self, message: Message) -> None:
        world = self.world
        job: GradientJob = message.payload
        if message.kind == "model":
            world.send(message.dst, message.src, world.model_bytes, "reply", job)
            return
        peer = job.peer
        world.average_rows((peer, message.src))
        self._apply(job)
        self._exchanging[peer] = False
        if not self.config.overlap:
            world.compute(peer)
        elif self._held[peer] is not None:
            held, self._held[peer] = self._held[peer], None
            self._exchange(held)

    def _apply(self, job: GradientJob) -> None:
        """The SGD step with the job's gradient, after the pair average."""
        self.world.add_to_row(job.peer, self.world.consume(job), alpha=-self.config.lr)
