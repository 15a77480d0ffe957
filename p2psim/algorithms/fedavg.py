"""FedAvg (Local SGD through a server): sampled clients train locally, the server averages their models.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of
Deep Networks from Decentralized Data", AISTATS 2017, https://arxiv.org/abs/1602.05629
(Algorithm 1, FederatedAveraging).

Update rule, round t: the server samples m clients without replacement with the
algorithm's seeded stream (`clients_per_round`, or m = max(1, floor(C K)) for
`client_fraction` C of the K workers, or every worker) and sends each the global model
theta_t. Client k sets its row to the model it received, runs `local_steps` (H) steps of
the scenario's optimizer on its own batches, and sends its model theta_k back. The
server sets theta_{t+1} = sum_k w_k theta_k / sum_k w_k over the replies received, with
w_k the samples the client processed (H x batch size: equal weights, as every client
runs H steps) or, with `weighting = "partition"`, the client's local data set size n_k
(the paper's n_k / n). Then round t+1 starts. Workers not sampled idle.

Waiting rule: synchronous, the server waits for every sampled client; with `deadline_s`
the round closes that many seconds after it started and replies still missing are
dropped (deadline-based rounds of real FL systems: Bonawitz et al., "Towards Federated
Learning at Scale: System Design", MLSys 2019, arXiv:1902.01046). If none arrived the
global model is unchanged. A late reply that arrives afterwards is counted and ignored.
A client sampled again while still computing for a closed round abandons that work: the
gradient in progress is discarded (not counted as a step) and it starts on the new model.

Optimizer: the local steps use the scenario's `[algorithm.optimizer]` through the
world's per-row state. `reset_optimizer = true` (default) gives a client fresh state at
each round it is sampled for (momentum buffer and Adam moments zeroed, Adam's step count
restarted), as FedAvg with plain SGD, which has no state, implies; `false` keeps each
client's state across rounds.

What is sent: the global model to each sampled client and each client's model back,
`model_bytes` each (parameters x bytes per element): 2 m model_bytes per round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import ScenarioError, bounded, check_ranges
from ..lazy import torch
from ..mixing import MixingReport
from .base import register_algorithm
from .server import ServerAlgorithm, ServerConfig

if TYPE_CHECKING:
    import networkx as nx

    from ..engine import GradientJob, Message

__all__ = ["FedAvg", "FedAvgConfig", "Round"]

WEIGHTINGS = ("samples", "partition")


@dataclass(frozen=True)
class FedAvgConfig(ServerConfig):
    """Local steps per round, how many clients a round samples, the deadline, the optimizer reset, the weights."""

    local_steps: int = bounded(1, low=1, high=10**9)
    clients_per_round: int | None = bounded(None, low=1, high=10**9)  # at most the number of workers
    client_fraction: float | None = bounded(None, low=0, high=1, low_open=True)  # the paper's C
    deadline_s: float | None = bounded(None, low=0, high=1e12, low_open=True)
    reset_optimizer: bool = True
    weighting: str = "samples"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)
        if self.clients_per_round is not None and self.client_fraction is not None:
            raise ScenarioError("client_fraction", "give either clients_per_round or client_fraction, not both")
        if self.weighting not in WEIGHTINGS:
            raise ScenarioError("weighting", f"must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")


@dataclass
class Round:
    """One round as the server saw it: when, whom it sampled, whose replies counted, how many came late."""

    index: int
    started_at: float
    clients: tuple[int, ...]
    received: list[int] = field(default_factory=list)
    ended_at: float | None = None
    late: int = 0  # replies that arrived after the round had closed

    @property
    def dropped(self) -> int:
        """Sampled clients whose reply was missing when the round closed."""
        return len(self.clients) - len(self.received) if self.ended_at is not None else 0


@register_algorithm
class FedAvg(ServerAlgorithm):
    """Rounds of: sample clients, send the model, H local steps each, average the replies."""

    name = "fedavg"
    config_class = FedAvgConfig
    reply_kind = "model"
    numerics_deferrable = True  # who and when never read the rows; the server's sum and mean are `world.rows`

    @classmethod
    def check_graph(cls, config: FedAvgConfig, graph: nx.Graph) -> None:
        super().check_graph(config, graph)
        workers = graph.number_of_nodes() - 1
        if config.clients_per_round is not None and config.clients_per_round > workers:
            raise ScenarioError(
                "algorithm.clients_per_round",
                f"must be in [1, {workers}] (the workers: every peer but the server), got {config.clients_per_round}",
            )

    def start(self) -> None:
        world = self.world
        n = world.n_peers
        self.rounds: list[Round] = []
        self._round_of = [-1] * n  # the round each worker is working for
        self._job_round = [-1] * n  # the round of the gradient each worker is computing (-1: idle)
        self._steps_done = [0] * n
        self._sum, self._mean = world.rows.new(2)  # the weighted sum of the replies, and the round's mean
        self._weight = 0.0
        self._open_round()

    def clients_per_round(self) -> int:
        """m: the configured count, max(1, floor(C K)) for a fraction C of the K workers, or all of them."""
        workers = len(self.workers)
        if self.config.clients_per_round is not None:
            return self.config.clients_per_round
        if self.config.client_fraction is not None:
            return max(1, int(self.config.client_fraction * workers))
        return workers

    def mixing(self) -> MixingReport:
        why = "not defined: the server averages the models its clients send back (no gossip matrix)"
        return MixingReport(None, why, "server average")

    def _open_round(self) -> None:
        world = self.world
        # churn: the server samples among the clients that have checked in (are online), as FL servers do
        pool = self.workers if world.timeout_s is None else [w for w in self.workers if world.is_online(w)]
        if not pool:  # nobody online: try again after timeout_s
            world.schedule(world.timeout_s, self.server, self._open_round)
            return
        chosen = world.rng.choice(pool, size=min(self.clients_per_round(), len(pool)), replace=False)
        record = Round(len(self.rounds), world.now, tuple(sorted(int(peer) for peer in chosen)))
        self.rounds.append(record)
        world.rows.zero(self._sum)
        self._weight = 0.0
        for client in record.clients:
            world.send(self.server, client, world.model_bytes, "global", record.index, row=world.param_rows[self.server])
        deadline_s = self.config.deadline_s if self.config.deadline_s is not None else world.timeout_s  # churn's default
        if deadline_s is not None:
            world.schedule(deadline_s, self.server, lambda: self._close(record))

    def on_rejoin(self, peer: int) -> None:
        """A returning client lost the work in progress and waits to be sampled again; the server waits for messages."""
        if peer != self.server and not self.world.is_computing(peer):
            self._job_round[peer] = -1

    def on_message(self, message: Message) -> None:
        if message.kind == "global":
            self._receive_global(message)
        else:
            self._receive_reply(message)

    def _receive_global(self, message: Message) -> None:
        """At a client: adopt the global model that was sent, and start (or restart) its local steps."""
        client = message.dst
        self.world.set_row(client, message.row)
        if self.config.reset_optimizer:
            self.world.rows.reset_optimizer(client)
        self._round_of[client] = message.payload
        self._steps_done[client] = 0
        if self._job_round[client] < 0:  # else the gradient in progress is discarded when it ends
            self._compute(client)

    def _compute(self, client: int) -> None:
        self._job_round[client] = self._round_of[client]
        self.world.compute(client)

    def on_gradient(self, job: GradientJob) -> None:
        world, client = self.world, job.peer
        abandoned = self._job_round[client] != self._round_of[client]
        self._job_round[client] = -1
        if abandoned:
            self._compute(client)
            return
        world.apply_gradient(client, world.consume(job))
        self._steps_done[client] += 1
        if self._steps_done[client] < self.config.local_steps:
            self._compute(client)
            return
        reply = self._reply_row(client)
        world.send(client, self.server, world.model_bytes, self.reply_kind, self._round_of[client], row=reply)

    def _reply_row(self, client: int) -> torch.Tensor:
        """What a client sends back after its local steps: its model."""
        return self.world.param_rows[client]

    def _weight_of(self, client: int) -> float:
        """w_k: samples processed this round (H x batch size), or the client's data set size n_k."""
        if self.config.weighting == "partition":
            return float(len(self.world.setup.partitions[client]))
        return float(self.config.local_steps * self.world.setup.scenario.data.batch_size)

    def _receive_reply(self, message: Message) -> None:
        """At the server: add a reply of the open round to the weighted sum; close the round when all are in."""
        record = self.rounds[message.payload]
        if record.ended_at is not None:
            record.late += 1
            return
        weight = self._weight_of(message.src)
        self.world.rows.accumulate(self._sum, message.row, weight)
        self._weight += weight
        record.received.append(message.src)
        if len(record.received) == len(record.clients):
            self._close(record)

    def _close(self, record: Round) -> None:
        """End the round (all replies in, or the deadline): aggregate what arrived and start the next."""
        if record.ended_at is not None:  # the deadline of a round that had already completed
            return
        record.ended_at = self.world.now
        if self._weight > 0:
            self.world.rows.divide(self._mean, self._sum, self._weight)
            self._aggregate(self._mean)
        self._open_round()

    def _aggregate(self, mean: torch.Tensor) -> None:
        """The server's update from the weighted mean of the replies: FedAvg takes it as the model."""
        self.world.set_row(self.server, mean)
