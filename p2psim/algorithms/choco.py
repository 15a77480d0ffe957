"""CHOCO-SGD: decentralized SGD whose peers send compressed differences to public copies of their models.

Koloskova, Stich, Jaggi, "Decentralized Stochastic Optimization and Gossip Algorithms with
Compressed Communication", ICML 2019, https://arxiv.org/abs/1902.00340 (Algorithm 2,
CHOCO-SGD; with lr -> 0 it is Algorithm 1, CHOCO-Gossip).

Each peer i holds its model x_i and a public copy x̂_i (initially 0) that every neighbour
also holds. In round t, with the scenario's compressor Q (`network.compression`) and W the
topology's mixing matrix:

    x_i^{t+1/2} = x_i^t - lr g_i(x_i^t)                    (one step of the scenario's optimizer)
    q_i = Q(x_i^{t+1/2} - x̂_i),  sent to every neighbour;  x̂_i <- x̂_i + q_i everywhere
    x_i^{t+1} = x_i^{t+1/2} + gamma sum_j W_ij (x̂_j - x̂_i)  (once every neighbour's round-t q_j is in)

Q compresses the difference to the public copy, which shrinks as peers agree, so a
sparsifier that would destroy a model (top-k of x) loses little here; x̂ carries what Q
dropped, which is why error feedback is refused. With the identity (no compression) and
gamma = 1, x̂_j = x_j^{t+1/2} and the rule is adapt-then-combine D-SGD (`atc_dsgd`);
gamma < 1 mixes with (1 - gamma) I + gamma W. With compression the paper's theory needs
gamma below 1 (its Theorem 2 gives gamma ~ rho^2 delta, rho the spectral gap, delta Q's
quality): gamma is this algorithm's option. Sum_i x_i changes only by the gradient steps,
for any Q, as W is doubly stochastic.

Storage: x̂ as one [n, d] tensor (row i is peer i's public copy, updated when it sends),
and s_i = sum_j W_ij x̂_j as peer i has received the q_j (one [n, d] tensor, built from the
messages as they arrive, a later round's waiting as in `dpsgd`), so no peer uses a q_j
before it arrived. What is sent: each round, the one encoded q_i to each neighbour, the
bytes of `network.compression` (`p2psim.compression.wire_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import bounded, check_ranges
from ..lazy import torch
from .base import register_algorithm
from .dpsgd import DPSGD, DPSGDConfig

if TYPE_CHECKING:
    from ..engine import World

__all__ = ["CHOCO", "CHOCOConfig"]


@dataclass(frozen=True)
class CHOCOConfig(DPSGDConfig):
    """The consensus step size gamma; W comes from the topology, Q from `network.compression`."""

    gamma: float = bounded(1.0, low=0, high=1, low_open=True, why="consensus step size; 1 with no compression")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)


@register_algorithm
class CHOCO(DPSGD):
    """Adapt, send Q(x - x̂) to neighbours, then x <- x + gamma sum_j W_ij (x̂_j - x̂_i)."""

    name = "choco"
    config_class = CHOCOConfig
    adapt_first = True
    update_kinds = ("difference",)
    error_feedback_built_in = True
    numerics_deferrable = False  # the compressor (top-k, random-k, QSGD) encodes a computed difference in place

    def __init__(self, config: CHOCOConfig, world: World):
        super().__init__(config, world)
        n, d = world.params.shape
        like = {"dtype": world.params.dtype, "device": world.params.device}
        self.public = torch.zeros(n, d, **like)  # x̂_i, as every neighbour of i holds it
        self.seen = torch.zeros(n, d, **like)  # sum_j W_ij x̂_j, as peer i received them
        self._difference = torch.empty(d, **like)

    def _share(self, peer: int) -> None:
        """q = Q(x_i - x̂_i), encoded once; x̂_i and s_i gain q; the same q goes to every neighbour."""
        world = self.world
        q = torch.sub(world.params[peer], self.public[peer], out=self._difference)
        nbytes = world.wire.encode_(peer, q, update=True)
        self.public[peer].add_(q)
        self.seen[peer].add_(q, alpha=float(self.W[peer, peer]))
        for neighbour in world.neighbors[peer]:
            world.send(peer, neighbour, nbytes, "difference", self.round[peer], row=q, encoded=True)

    def _try_finish(self, peer: int) -> None:
        """Once the gradient step is done and every neighbour's q of this round is in: the consensus step."""
        if self._jobs[peer] is None or self._inbox.counts[peer] < len(self.world.neighbors[peer]):
            return
        seen = self.seen[peer].add_(self._inbox.sums[peer])
        self.world.add_to_row(peer, seen - self.public[peer], alpha=self.config.gamma)
        self._jobs[peer] = None
        self._end_round(peer)
