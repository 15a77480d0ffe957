"""D-PSGD and ATC diffusion SGD: synchronous gossip rounds with the topology's W, causal on the wire.

`dpsgd`: Lian, Zhang, Zhang, Hsieh, Zhang, Liu, "Can Decentralized Algorithms Outperform
Centralized Algorithms? A Case Study for Decentralized Parallel Stochastic Gradient Descent",
NeurIPS 2017, https://arxiv.org/abs/1705.09056 (Algorithm 1). `atc_dsgd`: Chen & Sayed,
"Diffusion Adaptation Strategies for Distributed Optimization and Learning over Networks",
IEEE TSP 2012, https://arxiv.org/abs/1111.0034; Sayed, "Adaptation, Learning, and
Optimization over Networks", Found. Trends Mach. Learn. 2014, doi:10.1561/2200000051.

`dpsgd` (combine-then-adapt, the paper's rule): in round k peer i starts a gradient on its
model x_i^k and sends x_i^k to every neighbour; once the gradient is done and every
neighbour's round-k model has arrived, x_i^{k+1} = sum_j W_ij x_j^k - lr g_i(x_i^k).
`atc_dsgd` (adapt-then-combine diffusion): peer i applies its own gradient first and sends
the adapted model, x_i^{k+1} = sum_j W_ij (x_j^k - lr g_j(x_j^k)).

W is the scenario's `topology.mixing` rule on its graph (`p2psim.topology.mixing_matrix`:
symmetric, doubly stochastic), the matrix `mixing()` reports. The step "- lr g" is one step
of the scenario's optimizer (`World.apply_gradient`): plain SGD gives the papers' rule.
What is sent: each round, the whole model to each neighbour, `model_bytes` per message
(degree x model_bytes per peer and round). The received model is the one copied at send
time, added times W_ij to the receiver's row of one [n, d] sum (`RoundInbox`); a fast
neighbour's model for a later round (it can be one round ahead: it needs this peer's
round-k model to leave round k) waits in a row pool until the receiver reaches that round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..lazy import torch
from ..mixing import MAX_DENSE_PEERS, MixingReport, matrix_report
from ..topology import mixing_matrix, sparse_mixing_matrix
from .base import Algorithm, AlgorithmConfig, register_algorithm

if TYPE_CHECKING:
    from ..dataflow import RowOps
    from ..engine import GradientJob, Message, World

__all__ = ["ATCDSGD", "DPSGD", "DPSGDConfig", "RoundInbox", "RowSlots"]


class RowSlots:
    """Copies of rows kept past the hook that received them, in the algorithm's own rows (`world.rows.new`).

    Rows are allocated in blocks that double, and a released row is reused, so the memory is
    the peak of rows kept; deferred numerics order a reused row's copy after its last reader.
    """

    def __init__(self, rows: RowOps, block: int = 16):
        self._rows = rows
        self._block = block
        self._free: list[torch.Tensor] = []
        self._in_use = 0
        self.peak_in_use = 0  # the most rows kept at once

    def store(self, row: torch.Tensor) -> torch.Tensor:
        """Copy `row` into a free slot (a row of its own) and return the slot."""
        slot = self.take()
        self._rows.assign(slot, row)
        return slot

    def take(self) -> torch.Tensor:
        """A free slot, for the caller to write through `world.rows`."""
        if not self._free:
            self._free = list(self._rows.new(self._block).unbind(0))[::-1]
            self._block *= 2
        self._in_use += 1
        self.peak_in_use = max(self.peak_in_use, self._in_use)
        return self._free.pop()

    def row(self, slot: torch.Tensor) -> torch.Tensor:
        """The stored row (the slot itself)."""
        return slot

    def release(self, slot: torch.Tensor) -> None:
        """Give the slot back for reuse."""
        self._free.append(slot)
        self._in_use -= 1


class RoundInbox:
    """Per receiver, the weighted sum of the rows received for its current round; rows sent for later rounds wait.

    `sums[i]` = sum of weight x row over the messages of peer i's current round, `weights[i]` the
    sum of their weights and `counts[i]` their number: one [n, d] block of the algorithm's own
    rows (`world.rows`, so deferred numerics record the sums), whatever the degree. A message for
    a round the receiver has not reached yet is copied into a `RowSlots` slot and folded in by
    `next_round`, so the memory beyond [n, d] is one row per early message.
    """

    def __init__(self, rows: RowOps, n: int):
        self._rows = rows
        self.sums = rows.new(n)
        self.weights = np.zeros(n)
        self.counts = np.zeros(n, dtype=np.int64)
        self._pool = RowSlots(rows)
        self._early: list[list[tuple[int, float, torch.Tensor]]] = [[] for _ in range(n)]  # (round, weight, slot)

    def add(self, peer: int, sent_round: int, current_round: int, row: torch.Tensor, weight: float) -> None:
        """A message to `peer` sent in `sent_round`: summed now if that is `peer`'s round, else kept for later."""
        if sent_round == current_round:
            self._sum(peer, row, weight)
        elif sent_round > current_round:
            self._early[peer].append((sent_round, weight, self._pool.store(row)))
        # else: sent for a round the receiver has left (churn timeout): dropped

    def next_round(self, peer: int, round_: int, skipped: Callable[[float, torch.Tensor], None] | None = None) -> None:
        """`peer` has moved to `round_`: empty its sums and fold in what already arrived for that round.

        Rows kept for rounds it skipped (churn) go to `skipped(weight, row)` if given, else are dropped.
        """
        self._rows.zero(self.sums[peer])
        self.weights[peer] = 0.0
        self.counts[peer] = 0
        early, self._early[peer] = self._early[peer], []
        for sent_round, weight, slot in early:
            if sent_round == round_:
                self._sum(peer, self._pool.row(slot), weight)
                self._pool.release(slot)
            elif sent_round > round_:
                self._early[peer].append((sent_round, weight, slot))
            else:  # a round skipped (churn)
                if skipped is not None:
                    skipped(weight, self._pool.row(slot))
                self._pool.release(slot)

    def _sum(self, peer: int, row: torch.Tensor, weight: float) -> None:
        self._rows.accumulate(self.sums[peer], row, weight)
        self.weights[peer] += weight
        self.counts[peer] += 1


@dataclass(frozen=True)
class DPSGDConfig(AlgorithmConfig):
    """Only the learning rate and the optimizer: W comes from the scenario's topology and mixing rule."""


@register_algorithm
class DPSGD(Algorithm):
    """Synchronous rounds: gradient and model exchange together, then x_i <- sum_j W_ij x_j - lr g_i."""

    name = "dpsgd"
    config_class = DPSGDConfig
    byzantine_surface = "the model it sends each neighbour"
    needs_connected_graph = True
    adapt_first = False  # combine-then-adapt (Lian et al. 2017); ATC sets True
    numerics_deferrable = True

    def __init__(self, config: DPSGDConfig, world: World):
        super().__init__(config, world)
        n = world.n_peers
        build = mixing_matrix if n <= MAX_DENSE_PEERS else sparse_mixing_matrix  # never an n x n array at scale
        self.W = build(world.setup.graph, world.setup.scenario.topology.mixing)
        self.round = [0] * n
        self._inbox = RoundInbox(world.rows, n)  # sum_j W_ij x_j^sent of each peer's round
        self._jobs: list[GradientJob | None] = [None] * n
        self._timed_out = [False] * n  # churn: the round's timeout passed

    def mixing(self) -> MixingReport:
        rule = self.world.setup.scenario.topology.mixing
        return matrix_report(self.W, f"{rule} W of the topology, every round")

    def start(self) -> None:
        for peer in range(self.world.n_peers):
            self._begin_round(peer)

    def _begin_round(self, peer: int) -> None:
        self.world.compute(peer)
        if not self.adapt_first:
            self._share(peer)
        self._arm(peer)

    def _arm(self, peer: int) -> None:
        """Churn: the round ends `timeout_s` after it began with the neighbours' models that arrived."""
        world = self.world
        round_ = self.round[peer]
        world.after_timeout(peer, lambda: self._expire(peer, round_))

    def _expire(self, peer: int, round_: int) -> None:
        if self.round[peer] == round_:
            self._timed_out[peer] = True
            self._try_finish(peer)

    def _jump(self, peer: int, round_: int) -> None:
        """Churn: a neighbour is two or more rounds ahead (this peer was away or slow): skip to its round."""
        self.round[peer] = round_
        self._inbox.next_round(peer, round_)
        self._timed_out[peer] = False
        self._arm(peer)
        if not self.adapt_first or self._jobs[peer] is not None:
            self._share(peer)

    def on_rejoin(self, peer: int) -> None:
        """A returning peer that lost its gradient begins its round again (model sent again, timeout armed)."""
        if self._jobs[peer] is None and not self.world.is_computing(peer):
            self._begin_round(peer)

    def _share(self, peer: int) -> None:
        """Send the model held now (copied at send) to every neighbour, tagged with the round."""
        world = self.world
        for neighbour in world.neighbors[peer]:
            world.send(peer, neighbour, world.model_bytes, "model", self.round[peer], row=world.params[peer])

    def on_gradient(self, job: GradientJob) -> None:
        self._jobs[job.peer] = job
        if self.adapt_first:
            self._apply(job)
            self._share(job.peer)
        self._try_finish(job.peer)

    def on_message(self, message: Message) -> None:
        peer = message.dst
        if message.payload > self.round[peer] + 1:  # only under churn: without it a neighbour is at most one round ahead
            self._jump(peer, message.payload)
        self._inbox.add(peer, message.payload, self.round[peer], message.row, float(self.W[peer, message.src]))
        self._try_finish(peer)

    def _try_finish(self, peer: int) -> None:
        """End the round once the gradient is done and every neighbour's model of this round is in."""
        job = self._jobs[peer]
        complete = self._inbox.counts[peer] >= len(self.world.neighbors[peer])
        if job is None or not (complete or self._timed_out[peer]):
            return
        own = float(self.W[peer, peer])
        merged, rows = self._inbox.sums[peer], self.world.rows
        rows.accumulate(merged, self.world.params[peer], own)
        if not complete:  # churn timeout: W's row renormalised over the models that arrived
            rows.divide(merged, merged, self._inbox.weights[peer] + own)
        self.world.set_row(peer, merged)
        self._timed_out[peer] = False
        self._jobs[peer] = None
        if not self.adapt_first:
            self._apply(job)
        self._end_round(peer)

    def _apply(self, job: GradientJob) -> None:
        """x_i <- x_i - lr g_i: one step of the scenario's optimizer."""
        self.world.apply_gradient(job.peer, self.world.consume(job))

    def _end_round(self, peer: int) -> None:
        """The round is complete on `peer`: start the next one."""
        self.round[peer] += 1
        self._inbox.next_round(peer, self.round[peer])
        self._begin_round(peer)


@register_algorithm
class ATCDSGD(DPSGD):
    """Adapt then combine: x_i <- sum_j W_ij (x_j - lr g_j), each peer sending its adapted model."""

    name = "atc_dsgd"
    config_class = type("ATCDSGDConfig", (DPSGDConfig,), {"__doc__": DPSGDConfig.__doc__})
    adapt_first = True
