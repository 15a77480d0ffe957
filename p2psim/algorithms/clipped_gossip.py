"""ClippedGossip: adapt-then-combine gossip whose merge clips each neighbour's difference, robust to Byzantine neighbours.

He, Karimireddy, Jaggi, "Byzantine-Robust Decentralized Learning via ClippedGossip", 2022,
https://arxiv.org/abs/2202.01545 (Algorithm 1, with a fixed clipping radius).

Update rule: in round k peer i takes a local step, x_i^{k+1/2} = step(x_i^k, g_i(x_i^k)), sends
x_i^{k+1/2} to every neighbour, and once all of theirs have arrived merges
x_i^{k+1} = x_i^{k+1/2} + sum_j W_ij clip_tau(x_j^{k+1/2} - x_i^{k+1/2}), where clip_tau scales a
vector to a norm of at most `tau`. A neighbour, honest or not, moves x_i by at most W_ij tau
a round; with tau above every honest difference this is `atc_dsgd` exactly. W is the
topology's mixing matrix, as for `dpsgd`. Left out: the paper's adaptive radius tau_i
(chosen per peer and round from the received differences and an assumed Byzantine weight);
here tau is one fixed number, to tune like a learning rate.

What is sent: as `atc_dsgd`, the adapted model to each neighbour each round, `model_bytes`
per message; the received rows wait in a row pool until the merge, which clips them
against the receiver's row as it is then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import bounded, check_ranges
from ..lazy import torch
from ..robust import clip
from .base import register_algorithm
from .dpsgd import ATCDSGD, DPSGDConfig, RoundInbox

if TYPE_CHECKING:
    from ..dataflow import RowOps
    from ..engine import World

__all__ = ["ClippedGossip", "ClippedGossipConfig", "ClippedInbox"]


@dataclass(frozen=True)
class ClippedGossipConfig(DPSGDConfig):
    """The clipping radius tau, in the parameters' units (a model distance)."""

    tau: float = bounded(1.0, low=0, high=1e12, low_open=True, why="the most a neighbour moves a row, per unit of W_ij")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)


class ClippedInbox(RoundInbox):
    """A `RoundInbox` that keeps each row of the round until the merge: clipping needs the receiver's row of then."""

    def __init__(self, rows: RowOps, n: int):
        super().__init__(rows, n)
        self._held: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(n)]  # (W_ij, slot) of each peer's round

    def _sum(self, peer: int, row: torch.Tensor, weight: float) -> None:
        self._held[peer].append((weight, self._pool.store(row)))
        self.weights[peer] += weight
        self.counts[peer] += 1

    def merged(self, peer: int, own: torch.Tensor, tau: float) -> torch.Tensor:
        """own + sum_j W_ij clip_tau(x_j - own) over the round's rows, which are then released."""
        held, self._held[peer] = self._held[peer], []
        out = own.clone()
        for weight, slot in held:
            out.add_(clip(self._pool.row(slot) - own, tau), alpha=weight)
            self._pool.release(slot)
        return out


@register_algorithm
class ClippedGossip(ATCDSGD):
    """Local step, then x_i <- x_i + sum_j W_ij clip_tau(x_j - x_i): a lying neighbour moves x_i at most W_ij tau."""

    name = "clipped_gossip"
    config_class = ClippedGossipConfig
    numerics_deferrable = False  # the merge clips by the distance between rows: it computes on their values

    def __init__(self, config: ClippedGossipConfig, world: World):
        super().__init__(config, world)
        self._inbox = ClippedInbox(world.rows, world.n_peers)

    def _try_finish(self, peer: int) -> None:
        """End the round once the adapted row exists and every neighbour's row of this round is in."""
        job = self._jobs[peer]
        if job is None or self._inbox.counts[peer] < len(self.world.neighbors[peer]):
            return
        self.world.set_row(peer, self._inbox.merged(peer, self.world.params[peer], self.config.tau))
        self._jobs[peer] = None
        self._end_round(peer)
