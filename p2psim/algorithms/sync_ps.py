"""Synchronous parameter-server SGD, with optional backup workers.

Chen, Pan, Monga, Bengio, Jozefowicz, "Revisiting Distributed Synchronous SGD",
ICLR workshop 2016, https://arxiv.org/abs/1604.00981 (Algorithms 1 and 2).

Update rule: in round r every worker computes a gradient on the model of round r and
pushes it; the server takes the first k = n_workers - b gradients of round r to arrive
(b = `backup_workers`), applies their mean with the scenario's optimizer,
w_{r+1} = step(w_r, (1/k) sum of the k gradients), and broadcasts w_{r+1}. With
`[algorithm.aggregation]` the mean is replaced by a robust rule of `p2psim.robust` over the
k gradients (median, trimmed mean, Krum, Multi-Krum, centred clipping from the previous
round's aggregate), the defence against Byzantine workers (`[adversary]`). Gradients of
round r that arrive after the k-th are dropped and counted (`dropped_gradients` in the
run's facts). A worker still computing when a newer model arrives finishes, pushes (the
server drops it), then computes on the newest model it holds, as Algorithm 2's workers do.
With b = 0 this is synchronous data-parallel SGD: the same steps as all-reduce on the
workers' gradients, and as one device on the union of their batches.

What is sent: each worker pushes its gradient, `model_bytes` up; the server sends the
model, `model_bytes`, to every worker each round (n_workers x `model_bytes` down). The
model a worker adopts is the copy the server sent, as it left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import ScenarioError, bounded, check_ranges
from ..lazy import torch
from ..robust import Aggregation, aggregate
from .base import register_algorithm
from .server import ServerAlgorithm, ServerConfig

if TYPE_CHECKING:
    import networkx as nx

    from ..engine import GradientJob, Message, World

__all__ = ["SyncPS", "SyncPSConfig"]


@dataclass(frozen=True)
class SyncPSConfig(ServerConfig):
    """How many of the workers' gradients a round may go without (b; k = n_workers - b are averaged)."""

    backup_workers: int = bounded(0, low=0, high=10**6, why="and below the number of workers, checked against the peers")
    aggregation: Aggregation = field(default_factory=Aggregation)  # how the server combines a round's k gradients

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)


@register_algorithm
class SyncPS(ServerAlgorithm):
    """Workers push gradients of round r; the server steps with the mean of the first k and broadcasts."""

    name = "sync_ps"
    config_class = SyncPSConfig
    byzantine_surface = "the gradient each worker pushes"
    update_kinds = ("gradient",)
    numerics_deferrable = True  # with the mean; a robust rule reads the gradients' values (`defers_numerics`)

    @classmethod
    def defers_numerics(cls, config: SyncPSConfig) -> bool:
        return config.aggregation.rule == "mean"

    @classmethod
    def check_graph(cls, config: SyncPSConfig, graph: nx.Graph) -> None:
        super().check_graph(config, graph)
        workers = graph.number_of_nodes() - 1
        if config.backup_workers > workers - 1:
            raise ScenarioError(
                "algorithm.backup_workers",
                f"must be in [0, {workers - 1}] (at least one of the {workers} workers' gradients per round), "
                f"got {config.backup_workers}",
            )
        config.aggregation.check_inputs(workers - config.backup_workers, "algorithm.aggregation")

    def __init__(self, config: SyncPSConfig, world: World):
        super().__init__(config, world)
        self.k = len(self.workers) - config.backup_workers
        self.round = 0
        self.dropped = 0
        world.info["dropped_gradients"] = 0
        self._arrived: list[tuple[int, GradientJob]] = []
        self._gradients = world.rows.new(world.n_peers)  # row w: worker w's gradient of the current round
        self._model_round = [0] * world.n_peers  # the round of the model each worker holds
        self._center = world.rows.new(1)[0]  # the round's aggregate; the previous one is centered_clip's start
        self._computing_round = [-1] * world.n_peers  # the round of the model under computation (-1: idle)
        self._timer = 0  # counts round timers set (churn), so an old one is recognised

    def start(self) -> None:
        for worker in self.workers:
            self._compute(worker)
        self._arm()

    def _arm(self) -> None:
        """Churn: the round closes `timeout_s` after it opened with the gradients that arrived by then."""
        if self.world.timeout_s is not None:
            self._timer += 1
            timer = self._timer
            self.world.schedule(self.world.timeout_s, self.server, lambda: self._expire(timer))

    def _expire(self, timer: int) -> None:
        """No k gradients within `timeout_s`: step with those in; with none, send the model again and wait anew."""
        if timer != self._timer:
            return
        if self._arrived:
            self._step()
            return
        self._broadcast()

    def _broadcast(self) -> None:
        """Send the server's model, as it is now, to every worker; then wait for the round."""
        world = self.world
        model = world.param_rows[self.server]
        for worker in self.workers:
            world.send(self.server, worker, world.model_bytes, "model", self.round, row=model)
        self._arm()

    def on_rejoin(self, peer: int) -> None:
        """A returning worker computes on the model it holds (a gradient of an old round is dropped)."""
        if peer != self.server and not self.world.is_computing(peer):
            self._compute(peer)

    def _compute(self, worker: int) -> None:
        self._computing_round[worker] = self._model_round[worker]
        self.world.compute(worker)

    def on_gradient(self, job: GradientJob) -> None:
        world, worker = self.world, job.peer
        world.send(worker, self.server, world.model_bytes, "gradient", (self._computing_round[worker], job), row=job.grad)
        if self._model_round[worker] > self._computing_round[worker]:
            self._compute(worker)  # a newer model arrived meanwhile: its row already holds it
        else:
            self._computing_round[worker] = -1

    def on_message(self, message: Message) -> None:
        if message.kind == "model":
            worker = message.dst
            self.world.set_row(worker, message.row)
            self._model_round[worker] = message.payload
            if self._computing_round[worker] < 0:
                self._compute(worker)
            return
        round_, job = message.payload
        if round_ != self.round:  # the round closed with its first k gradients
            self.dropped += 1
            self.world.info["dropped_gradients"] = self.dropped
            return
        self.world.rows.assign(self._gradients[message.src], message.row)
        self._arrived.append((message.src, job))
        if len(self._arrived) == self.k:
            self._step()

    def _step(self) -> None:
        """Apply the aggregate of the round's k gradients (in worker order, for a reproducible sum), then broadcast."""
        world = self.world
        arrived = sorted(self._arrived, key=lambda pair: pair[0])
        for _, job in arrived:
            world.consume(job)
        if self.config.aggregation.rule == "mean":
            world.rows.mean_of(self._center, [self._gradients[worker] for worker, _ in arrived])
        else:  # a robust rule reads the values: eager only
            rows = self._gradients[torch.as_tensor([worker for worker, _ in arrived], device=self._gradients.device)]
            world.rows.assign(self._center, aggregate(rows, self.config.aggregation, self._center))
        world.apply_gradient(self.server, self._center)
        self._arrived = []
        self.round += 1
        self._broadcast()
