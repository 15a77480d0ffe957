"""Asynchronous elastic averaging SGD (EASGD), causal on the wire.

Zhang, Choromanska, LeCun, "Deep learning with Elastic Averaging SGD", NeurIPS 2015,
https://arxiv.org/abs/1412.6651 (Algorithm 1, asynchronous EASGD).

Update rule: worker i takes local SGD steps on its own model x_i; at every `tau`-th local step
it sends x (its model then) to the server, which replies with the centre it holds, c, and then
moves it: c <- c + alpha (x - c). The worker, on the reply, moves its model by the same elastic
difference computed from what it sent and what it received, x_i <- x_i - alpha (x - c), then
applies the gradient it computed on x meanwhile: x_i <- x_i - lr g(x), as Algorithm 1's
x^i <- x^i - alpha (x - x~) - eta g(x). A worker does not step while its exchange is in flight,
so its model is still x when the reply arrives. `alpha` defaults to beta / p with beta = 0.9
(the paper's choice) and p the number of workers. The centre is the evaluated model.

What is sent: every `tau` local steps, the worker's model up and the centre down, `model_bytes`
each way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import bounded, check_ranges
from .base import register_algorithm
from .server import ServerAlgorithm, ServerConfig

if TYPE_CHECKING:
    from ..engine import GradientJob, Message, World

__all__ = ["EASGD", "EASGDConfig"]

BETA = 0.9  # the paper's beta = p alpha (Section 5)


@dataclass(frozen=True)
class EASGDConfig(ServerConfig):
    """Communication period (local steps between exchanges) and the moving rate (default 0.9 / workers)."""

    tau: int = bounded(1, low=1, high=10**6)
    alpha: float | None = bounded(
        None, low=0, high=1, low_open=True, high_open=True, why="at 1 an exchange would swap centre and worker"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)


@register_algorithm
class EASGD(ServerAlgorithm):
    """Workers step locally; every tau steps each exchanges models with the centre, elastically."""

    name = "easgd"
    config_class = EASGDConfig
    numerics_deferrable = True

    def __init__(self, config: EASGDConfig, world: World):
        super().__init__(config, world)
        self.alpha = config.alpha if config.alpha is not None else BETA / len(self.workers)
        self._local_steps = [0] * world.n_peers
        self._exchanging = [False] * world.n_peers
        self._held: list[GradientJob | None] = [None] * world.n_peers
        self._exchanges = [0] * world.n_peers  # exchanges each worker has begun, to recognise a late centre

    def start(self) -> None:
        for worker in self.workers:
            self._begin_step(worker)

    def _begin_step(self, worker: int) -> None:
        """Send the model first if this step is an exchange step, then compute on it."""
        world = self.world
        if self._local_steps[worker] % self.config.tau == 0:
            self._exchanging[worker] = True
            self._exchanges[worker] += 1
            exchange = self._exchanges[worker]
            world.send(worker, self.server, world.model_bytes, "model", exchange, row=world.params[worker])
            world.after_timeout(worker, lambda: self._give_up(worker, exchange))  # churn: the centre may never come
        world.compute(worker)

    def _give_up(self, worker: int, exchange: int) -> None:
        """Churn: no centre within `timeout_s`: step without the elastic move (a late centre is ignored)."""
        if self._exchanging[worker] and self._exchanges[worker] == exchange:
            self._exchanging[worker] = False
            held, self._held[worker] = self._held[worker], None
            if held is not None:
                self._step(held)

    def on_rejoin(self, peer: int) -> None:
        """A returning worker computes again: on in its exchange if one is awaited, else from a new step."""
        if peer == self.server or self.world.is_computing(peer):
            return
        if self._exchanging[peer]:
            if self._held[peer] is None:  # its gradient of this step was lost: compute it again
                self.world.compute(peer)
        else:
            self._begin_step(peer)

    def on_gradient(self, job: GradientJob) -> None:
        if self._exchanging[job.peer]:
            self._held[job.peer] = job  # stepped once the centre has arrived
            return
        self._step(job)

    def _step(self, job: GradientJob) -> None:
        world = self.world
        world.apply_gradient(job.peer, world.consume(job))
        self._local_steps[job.peer] += 1
        self._begin_step(job.peer)

    def on_message(self, message: Message) -> None:
        world = self.world
        if message.kind == "model":
            world.send(self.server, message.src, world.model_bytes, "centre", message.payload, row=world.params[self.server])
            world.mix_row(self.server, message.row, self.alpha)
            return
        worker = message.dst
        if not self._exchanging[worker] or message.payload != self._exchanges[worker]:
            return  # the worker gave up on this exchange (churn)
        world.mix_row(worker, message.row, self.alpha)  # x - alpha (x - c): the row is still the x it sent
        self._exchanging[worker] = False
        held, self._held[worker] = self._held[worker], None
        if held is not None:
            self._step(held)
