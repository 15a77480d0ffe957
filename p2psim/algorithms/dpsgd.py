"""D-PSGD and ATC diffusion SGD: synchronous gossip rounds with the topology's W, causal on the wire.

`dpsgd`: Lian, Zhang, Zhang, Hsieh, Zhang, Liu, "Can Decentralized Algorithms Outperform
Centralized Algorithms? A Case Study for Decentralized Parallel Stochastic Gradient Descent",
NeurIPS 2017, https://arxiv.org/abs/1705.09056 (Algorithm 1, combine-then-adapt). In round k
peer i starts a gradient on its model x_i^k and sends x_i^k to every neighbour; once the
gradient is done and every neighbour's round-k model has arrived,

    x_i^{k+1} = sum_j W_ij x_j^k - lr g_i(x_i^k).

`atc_dsgd` (adapt-then-combine diffusion: Chen & Sayed, "Diffusion Adaptation Strategies for
Distributed Optimization and Learning over Networks", IEEE TSP 2012,
https://arxiv.org/abs/1111.0034; Sayed, "Adaptation, Learning, and Optimization over
Networks", Found. Trends Mach. Learn. 2014, doi:10.1561/2200000051): peer i applies its own
gradient first and sends the adapted model, x_i^{k+1} = sum_j W_ij (x_j^k - lr g_j(x_j^k)).

W is the scenario's `topology.mixing` rule on its graph (`p2psim.topology.mixing_matrix`:
symmetric, doubly stochastic), the matrix `mixing()` reports. The step "- lr g" is one step
of the scenario's optimizer (`World.apply_gradient`): plain SGD gives the papers' rule.
What is sent: each round, the whole model to each neighbour, `model_bytes` per message
(degree x model_bytes per peer and round). The received model is the one copied at send
time; a fast neighbour may be one round ahead (it needs this peer's round-k model to leave
round k, so never two), so incoming models are summed, weighted by W, into one of two
[n, d] buffers chosen by the round's parity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..mixing import MixingReport, matrix_report
from ..topology import mixing_matrix
from .base import Algorithm, AlgorithmConfig, register_algorithm

if TYPE_CHECKING:
    from ..engine import GradientJob, Message, World

__all__ = ["ATCDSGD", "DPSGD", "DPSGDConfig"]


@dataclass(frozen=True)
class DPSGDConfig(AlgorithmConfig):
    """Only the learning rate and the optimizer: W comes from the scenario's topology and mixing rule."""


@register_algorithm
class DPSGD(Algorithm):
    """Synchronous rounds: gradient and model exchange together, then x_i <- sum_j W_ij x_j - lr g_i."""

    name = "dpsgd"
    config_class = DPSGDConfig
    needs_connected_graph = True
    adapt_first = False  # combine-then-adapt (Lian et al. 2017); ATC sets True

    def __init__(self, config: DPSGDConfig, world: World):
        super().__init__(config, world)
        self.W = mixing_matrix(world.setup.graph, world.setup.scenario.topology.mixing)
        n, d = world.params.shape
        self.round = [0] * n
        self._sums = torch.zeros(2, n, d, dtype=world.params.dtype)  # sum_j W_ij x_j^sent, by round parity
        self._arrived = np.zeros((2, n), dtype=np.int64)
        self._jobs: list[GradientJob | None] = [None] * n

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
        parity = message.payload % 2
        peer = message.dst
        self._sums[parity, peer].add_(message.row, alpha=float(self.W[peer, message.src]))
        self._arrived[parity, peer] += 1
        self._try_finish(peer)

    def _try_finish(self, peer: int) -> None:
        """End the round once the gradient is done and every neighbour's model of this round is in."""
        parity = self.round[peer] % 2
        job = self._jobs[peer]
        if job is None or self._arrived[parity, peer] < len(self.world.neighbors[peer]):
            return
        merged = self._sums[parity, peer]
        merged.add_(self.world.params[peer], alpha=float(self.W[peer, peer]))
        self.world.set_row(peer, merged)
        merged.zero_()
        self._arrived[parity, peer] = 0
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
        self._begin_round(peer)


@register_algorithm
class ATCDSGD(DPSGD):
    """Adapt then combine: x_i <- sum_j W_ij (x_j - lr g_j), each peer sending its adapted model."""

    name = "atc_dsgd"
    config_class = type("ATCDSGDConfig", (DPSGDConfig,), {"__doc__": DPSGDConfig.__doc__})
    adapt_first = True
