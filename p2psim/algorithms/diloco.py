"""DiLoCo: H inner optimizer steps per worker, then an outer Nesterov step on the averaged model delta.

Douillard, Feng, Rusu, Chhaparia, Donchev, Kuncoro, Ranzato, Szlam, Shen, "DiLoCo:
Distributed Low-Communication Training of Language Models", 2023,
https://arxiv.org/abs/2311.08105 (Algorithm 1).

Update rule, round t (`diloco`): the server sends theta_t to every worker (or to the
clients a round samples: the FedAvg fields apply, including `deadline_s`); worker i sets
its row to theta_t, runs `local_steps` (H) inner steps of the scenario's optimizer on its
own batches, and sends the pseudo-gradient Delta_i = theta_t - theta_i. The server
averages Delta = mean_i Delta_i over the replies received and takes one outer step with
its own optimizer state (one row): `outer_optimizer = "nesterov"` (default, the paper's:
torch SGD with Nesterov momentum `outer_momentum` 0.9, lr `outer_lr` 0.7),
b <- mu b + Delta, theta_{t+1} = theta_t - lr_out (Delta + mu b), or `"sgd"`,
theta_{t+1} = theta_t - lr_out Delta. With H = 1, outer SGD at lr 1 and inner plain SGD
this is synchronous SGD. The inner optimizer is the scenario's `[algorithm.optimizer]`:
the paper's is AdamW, so DiLoCo scenarios set `name = "adamw"`; each worker keeps its
inner state across rounds (`reset_optimizer = false` by default), as in the paper.

Asynchronous variant (`diloco_async`), in the spirit of Liu, Douillard, et al.,
"Asynchronous Local-SGD Training for Language Modeling", 2024,
https://arxiv.org/abs/2401.09135: there are no rounds. A worker sends Delta_i as soon as
its H steps are done; the server applies the outer step at once with that one delta
scaled by 1 / n_workers (so a sweep of all workers moves the model as one synchronous
round's mean would at outer SGD) and sends its current model back to that worker only.
Its outer momentum is the plain one (not that paper's Delayed Nesterov), which the paper
shows to degrade as asynchrony grows.

What is sent: the global model to each worker and each worker's Delta_i back, one
`model_bytes` each (parameters x bytes per element): 2 model_bytes per worker per H steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ScenarioError, bounded
from ..lazy import torch
from ..optim import OptimizerSpec, RowOptimizer
from .base import register_algorithm
from .fedavg import FedAvg, FedAvgConfig

if TYPE_CHECKING:
    from ..engine import GradientJob, Message

__all__ = ["DiLoCo", "DiLoCoAsync", "DiLoCoAsyncConfig", "DiLoCoConfig"]

OUTER_OPTIMIZERS = ("nesterov", "sgd")


@dataclass(frozen=True)
class DiLoCoConfig(FedAvgConfig):
    """FedAvg's fields (H = `local_steps`, default 500 as in the paper) and the outer optimizer."""

    local_steps: int = bounded(500, low=1, high=10**9)
    reset_optimizer: bool = False  # each worker keeps its inner AdamW state across rounds, as in the paper
    outer_optimizer: str = "nesterov"
    outer_lr: float = bounded(0.7, low=0, high=1e3, low_open=True)
    outer_momentum: float = bounded(0.9, low=0, high=1, high_open=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outer_optimizer not in OUTER_OPTIMIZERS:
            raise ScenarioError(
                "outer_optimizer", f"must be one of {', '.join(OUTER_OPTIMIZERS)}, got {self.outer_optimizer!r}"
            )


@register_algorithm
class DiLoCo(FedAvg):
    """FedAvg's rounds, with the workers' deltas as pseudo-gradients of an outer optimizer at the server."""

    name = "diloco"
    config_class = DiLoCoConfig
    reply_kind = "delta"
    update_kinds = ("delta",)

    def start(self) -> None:
        world = self.world
        n_params = world.params.shape[1]
        self._anchor = world.rows.new(world.n_peers)  # the global model each worker last received
        self._delta = world.rows.new(1)[0]
        self._global = world.rows.new(1)  # the outer optimizer's single row
        world.rows.assign(self._global[0], world.params[self.server])
        spec = OptimizerSpec(name=self.config.outer_optimizer, momentum=self.config.outer_momentum)
        self.outer = RowOptimizer(spec, 1, n_params, dtype=world.params.dtype, device=world.params.device)
        super().start()

    def _receive_global(self, message: Message) -> None:
        self.world.rows.assign(self._anchor[message.dst], message.row)
        super()._receive_global(message)

    def _reply_row(self, client: int) -> torch.Tensor:
        """Delta_i = theta_received - theta_i, the pseudo-gradient (copied by the send)."""
        self.world.rows.subtract(self._delta, self._anchor[client], self.world.params[client])
        return self._delta

    def _aggregate(self, mean: torch.Tensor) -> None:
        """One outer step with the mean pseudo-gradient."""
        self._outer_step(mean)

    def _outer_step(self, pseudo_gradient: torch.Tensor) -> None:
        rows = self.world.rows
        rows.assign(self._global[0], self.world.params[self.server])
        rows.optimizer_step(self.outer, self._global, 0, pseudo_gradient, self.config.outer_lr)
        self.world.set_row(self.server, self._global[0])


@dataclass(frozen=True)
class DiLoCoAsyncConfig(DiLoCoConfig):
    """DiLoCo's fields without rounds: every worker takes part, and nothing waits for a deadline."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("clients_per_round", "client_fraction", "deadline_s"):
            if getattr(self, name) is not None:
                raise ScenarioError(name, "has no meaning for diloco_async (no rounds: every worker, no deadline)")


@register_algorithm
class DiLoCoAsync(DiLoCo):
    """Each arriving delta is applied at once (scaled by 1/n_workers); the sender gets the current model back."""

    name = "diloco_async"
    config_class = DiLoCoAsyncConfig

    def start(self) -> None:
        self.arrivals: list[tuple[float, int]] = []  # (time, worker) of each delta applied
        self._replies = [0] * self.world.n_peers  # deltas each worker has sent
        super().start()

    def on_gradient(self, job: GradientJob) -> None:
        super().on_gradient(job)
        client, world = job.peer, self.world
        if world.timeout_s is not None and self._steps_done[client] >= self.config.local_steps:  # it sent its delta
            self._replies[client] += 1
            sent = self._replies[client]
            world.schedule(world.timeout_s, client, lambda: self._no_model(client, sent))

    def _no_model(self, client: int, sent: int) -> None:
        """Churn: no model within `timeout_s` of the delta: H more steps from the model it holds."""
        if self._replies[client] == sent and self._steps_done[client] >= self.config.local_steps:
            self.on_rejoin(client)

    def on_rejoin(self, peer: int) -> None:
        """No rounds sample it again: a returning worker starts H local steps from the model it holds."""
        if peer != self.server and not self.world.is_computing(peer):
            self._steps_done[peer] = 0
            self._job_round[peer] = -1
            self._compute(peer)

    def _open_round(self) -> None:
        """At time zero only: every worker gets the initial model."""
        for worker in self.workers:
            self._send_global(worker)

    def _send_global(self, worker: int) -> None:
        world = self.world
        world.send(self.server, worker, world.model_bytes, "global", 0, row=world.params[self.server])

    def _receive_reply(self, message: Message) -> None:
        self.arrivals.append((self.world.now, message.src))
        self.world.rows.divide(self._mean, message.row, len(self.workers))  # its share of a mean over the workers
        self._outer_step(self._mean)
        self._send_global(message.src)
