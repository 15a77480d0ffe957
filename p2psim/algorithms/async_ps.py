"""Asynchronous parameter-server SGD (Downpour), with staleness-aware steps and delay compensation.

Dean et al., "Large Scale Distributed Deep Networks", NeurIPS 2012 (Downpour SGD), in
the lock-free spirit of Recht, Re, Wright, Niu, "Hogwild!", NeurIPS 2011,
https://arxiv.org/abs/1106.5730.

Update rule: a worker pulls the model, computes a gradient g on it and pushes g; the server
applies it on arrival, w <- step(w, g), and sends the model it now holds back to that worker,
which computes on it next. Between a worker's pull and its push the server applies the
other workers' gradients: g is stale by s = the server updates since that pull.

Options:
- `staleness_aware`: the step uses lr / max(s, 1) (Zhang, Gupta, Lian, Liu, "Staleness-aware
  Async-SGD for Distributed Deep Learning", IJCAI 2016, https://arxiv.org/abs/1511.05950).
- `dc_lambda` > 0: delay compensation, DC-ASGD (Zheng, Meng, Wang, Chen, Yu, Ma, Liu,
  "Asynchronous Stochastic Gradient Descent with Delay Compensation", ICML 2017,
  https://arxiv.org/abs/1609.08326): the server applies g + lambda g*g*(w_now - w_pulled),
  a first-order Taylor correction towards the gradient at w_now with lambda g*g standing for
  the Hessian's diagonal. The server keeps the model each worker pulled (one row per worker).
  `dc_adaptive` (DC-ASGD-a): lambda = dc_lambda / sqrt(MeanSquare + 1e-7), with
  MeanSquare <- m MeanSquare + (1 - m) g*g over every gradient received, m = `dc_momentum`.

Byzantine-robust buffers, BASGD (Yang, Li, "Buffered Asynchronous SGD for Byzantine Learning",
ICML 2021, https://arxiv.org/abs/2003.00937): with `buffers` = B > 0 the server adds worker w's
gradient to the running mean of buffer (w's position among the workers) mod B and replies at
once; when every buffer holds at least one gradient it steps with the `[algorithm.aggregation]`
rule over the B buffer means (`p2psim.robust`) and empties them. f Byzantine workers spoil at
most f buffers, so a rule that tolerates f of B inputs holds. B = 0: each gradient on arrival.

What is sent: each gradient, `model_bytes` up; each reply, the model, `model_bytes` down. The
model a worker adopts is the copy the server sent, as it left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..config import ScenarioError, bounded, check_ranges
from ..lazy import torch
from ..robust import Aggregation, aggregate
from .base import register_algorithm
from .server import ServerAlgorithm, ServerConfig

if TYPE_CHECKING:
    import networkx as nx

    from ..engine import GradientJob, Message, World

__all__ = ["AsyncPS", "AsyncPSConfig"]

MEAN_SQUARE_EPS = 1e-7  # inside DC-ASGD-a's square root, keeps lambda finite where no gradient has been seen


@dataclass(frozen=True)
class AsyncPSConfig(ServerConfig):
    """Staleness-aware steps, and delay compensation (off at dc_lambda = 0; adaptive as DC-ASGD-a)."""

    staleness_aware: bool = False
    dc_lambda: float = bounded(0.0, low=0, high=1e6)  # implementations default to 0.04 (DC-ASGD-c), 2 (DC-ASGD-a)
    dc_adaptive: bool = False
    # the paper's m for MeanSquare
    dc_momentum: float = bounded(0.95, low=0, high=1, high_open=True, why="m = 1 would never update MeanSquare")
    buffers: int = bounded(0, low=0, high=10**6, why="BASGD's B; at most the workers, checked against the peers")
    aggregation: Aggregation = field(default_factory=Aggregation)  # over the B buffers' means

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)
        if self.aggregation.rule != "mean" and self.buffers == 0:
            raise ScenarioError("buffers", f"must be > 0 for aggregation.rule = {self.aggregation.rule!r} (BASGD's B), got 0")
        if self.buffers and (self.staleness_aware or self.dc_lambda > 0):
            raise ScenarioError("buffers", "steps with buffer aggregates, not per gradient: set staleness_aware = false, dc_lambda = 0")
        if self.dc_adaptive and self.dc_lambda == 0:
            raise ScenarioError("dc_lambda", "must be > 0 when dc_adaptive = true (it is lambda_0), got 0.0")


@register_algorithm
class AsyncPS(ServerAlgorithm):
    """The server applies each worker's gradient on arrival and replies with the model it then holds."""

    name = "async_ps"
    config_class = AsyncPSConfig
    byzantine_surface = "the gradient each worker pushes"
    update_kinds = ("gradient",)
    numerics_deferrable = True  # plain and staleness-aware; delay compensation and buffers compute on values

    @classmethod
    def defers_numerics(cls, config: AsyncPSConfig) -> bool:
        return config.dc_lambda == 0 and not config.buffers

    @classmethod
    def check_graph(cls, config: AsyncPSConfig, graph: nx.Graph) -> None:
        super().check_graph(config, graph)
        workers = graph.number_of_nodes() - 1
        if config.buffers > workers:
            raise ScenarioError("algorithm.buffers", f"must be in [0, {workers}] (a buffer per worker at most), got {config.buffers}")
        if config.buffers:
            config.aggregation.check_inputs(config.buffers, "algorithm.aggregation")

    def __init__(self, config: AsyncPSConfig, world: World):
        super().__init__(config, world)
        self.updates = 0  # gradients the server has applied
        self._pulled_at = [0] * world.n_peers  # server updates when each worker's model left the server
        compensate = config.dc_lambda > 0
        self._pulled = world.params.clone() if compensate else None  # row w: the model worker w pulled
        self._mean_square = torch.zeros(world.params.shape[1], device=world.params.device) if config.dc_adaptive else None
        self._buffers = torch.zeros(config.buffers, world.params.shape[1], device=world.params.device) if config.buffers else None
        self._buffered = np.zeros(config.buffers, dtype=np.int64)  # gradients in each buffer since the last step
        self._buffer_of = {worker: i % config.buffers for i, worker in enumerate(self.workers)} if config.buffers else {}
        self._center = torch.zeros(world.params.shape[1], device=world.params.device)  # the previous aggregate: centered_clip's start
        self._pushes = [0] * world.n_peers  # gradients each worker has pushed
        self._awaited = [0] * world.n_peers  # the push whose reply the worker waits for (0: none)

    def on_gradient(self, job: GradientJob) -> None:
        world, worker = self.world, job.peer
        world.send(worker, self.server, world.model_bytes, "gradient", job, row=job.grad)
        self._pushes[worker] += 1
        self._awaited[worker] = push = self._pushes[worker]
        world.after_timeout(worker, lambda: self._retry(worker, push))  # churn: no reply, compute again on the model held

    def _retry(self, worker: int, push: int) -> None:
        if self._awaited[worker] == push:
            self._awaited[worker] = 0
            if not self.world.is_computing(worker):  # it came back and computes already
                self.world.compute(worker)

    def on_message(self, message: Message) -> None:
        world = self.world
        if message.kind == "model":
            world.set_row(message.dst, message.row)
            self._awaited[message.dst] = 0
            if not world.is_computing(message.dst):  # it may have given up waiting and computed on (churn)
                world.compute(message.dst)
            return
        worker = message.src
        world.consume(message.payload)
        if self._buffers is not None:
            self._buffer(worker, message.row)
            world.send(self.server, worker, world.model_bytes, "model", row=world.params[self.server])
            return
        staleness = self.updates - self._pulled_at[worker]
        scale = 1.0 / max(staleness, 1) if self.config.staleness_aware else 1.0
        world.apply_gradient(self.server, self.compensated(worker, message.row), scale)
        self.updates += 1
        self._pulled_at[worker] = self.updates
        model = world.params[self.server]
        if self._pulled is not None:
            self._pulled[worker].copy_(model)
        world.send(self.server, worker, world.model_bytes, "model", row=model)

    def _buffer(self, worker: int, grad: torch.Tensor) -> None:
        """BASGD: fold `grad` into its buffer's mean; once no buffer is empty, step with the rule over them."""
        b = self._buffer_of[worker]
        self._buffered[b] += 1
        self._buffers[b].add_(grad - self._buffers[b], alpha=1.0 / self._buffered[b])
        if self._buffered.all():
            self._center = aggregate(self._buffers, self.config.aggregation, self._center)
            self.world.apply_gradient(self.server, self._center)
            self.updates += 1
            self._buffers.zero_()
            self._buffered[:] = 0

    def compensated(self, worker: int, grad: torch.Tensor) -> torch.Tensor:
        """The gradient the server applies for `worker`: `grad` itself, or DC-ASGD's compensated one."""
        config = self.config
        if self._pulled is None:
            return grad
        square = grad * grad
        drift = self.world.params[self.server] - self._pulled[worker]
        if self._mean_square is None:
            return grad + config.dc_lambda * square * drift
        self._mean_square.mul_(config.dc_momentum).add_(square, alpha=1 - config.dc_momentum)
        return grad + config.dc_lambda * square * drift / (self._mean_square + MEAN_SQUARE_EPS).sqrt()
