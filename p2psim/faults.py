"""Unreliable links: random message loss, link failures and network partitions (the `[faults]` section).

The rule, one for every cause: a lost message is lost *at the receiver, after its full
transfer*. It takes its share of the sender's uplink and the receiver's downlink like any
other message, its bytes count in the sender's `bytes_sent` (they left), never in the
receiver's `bytes_received`, and it never reaches the algorithm. This is the simplest
honest rule: a real sender learns of a loss only by a timeout, and wastes its uplink meanwhile.

- Loss: a message from i to j is lost with probability 1 - (1 - p)(1 - p_i)(1 - p_j), where
  p is `loss_probability` (the path) and p_i, p_j are `link_loss` of each end's access-link
  profile: independent drops at each access link and in between.
- Cuts: during [start_s, end_s) the peers of `regions` and `peers` are cut off from the rest,
  and the paths of `edges` fail (both directions). A message crossing a cut is lost when its
  time in the network, from sending to arrival, meets the interval: one sent before the cut
  and still travelling when it starts is lost; one sent at end_s or later is not. Messages are
  lost, not held: nothing waits for a cut to heal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import ScenarioError, bounded, check_ranges

__all__ = ["CutSpec", "FaultsSpec", "LinkFaults", "LossDraws", "check_faults", "lost", "resolve_faults"]

MAX_SECONDS = 1e12  # as scenario.MAX_SECONDS: ~31,700 years of simulated time
LOSS_RANGE = dict(low=0, high=1, high_open=True, why="a probability; 1 would lose every message")
DRAW_BLOCK = 4096  # uniform draws made at a time for the loss decisions


@dataclass(frozen=True)
class CutSpec:
    """A link failure or partition: messages across it are lost during [start_s, end_s)."""

    start_s: float = bounded(low=0, high=MAX_SECONDS)
    end_s: float = bounded(low=0, high=MAX_SECONDS, low_open=True)
    regions: tuple[str, ...] = ()  # these regions' peers on one side, every other peer on the other
    peers: tuple[int, ...] = bounded((), low=0, high=10**6)  # these peers on that side too
    edges: tuple[tuple[int, int], ...] = bounded((), low=0, high=10**6)  # [u, v]: the path between u and v fails

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.end_s > self.start_s:
            raise ScenarioError("end_s", f"must be > start_s = {self.start_s!r}, got {self.end_s!r}")
        if not (self.regions or self.peers or self.edges):
            raise ScenarioError("", "a cut needs at least one of regions, peers, edges")
        for i, (u, v) in enumerate(self.edges):
            if u == v:
                raise ScenarioError(f"edges[{i}]", f"joins peer {u} to itself: a path needs two peers")


@dataclass(frozen=True)
class FaultsSpec:
    """Message loss per path and per access-link profile, and cuts; see the module docstring for the rule."""

    loss_probability: float = bounded(0.0, **LOSS_RANGE)  # every message, on the path between the two ends
    # by link profile name (as in peers.links): the chance that this end's access link drops a message
    link_loss: dict[str, float] = bounded(**LOSS_RANGE, default_factory=dict)
    cuts: tuple[CutSpec, ...] = ()

    def __post_init__(self) -> None:
        check_ranges(self)


def check_faults(spec: FaultsSpec, n_peers: int, regions: Sequence[str], links: Sequence[str]) -> None:
    """Names and peers in `spec` against the scenario's: `regions` and `links` are the mixes' names."""
    for name in spec.link_loss:
        if name not in links:
            raise ScenarioError(f"faults.link_loss.{name}", f"no peer has link {name!r} (peers.links: {', '.join(links)})")
    for i, cut in enumerate(spec.cuts):
        where = f"faults.cuts[{i}]"
        for region in cut.regions:
            if region not in regions:
                allowed = ", ".join(regions) or "none: peers.regions is empty"
                raise ScenarioError(f"{where}.regions", f"no peer is in region {region!r} (peers.regions: {allowed})")
        for j, peer in enumerate(cut.peers):
            if peer >= n_peers:
                raise ScenarioError(f"{where}.peers[{j}]", f"peer {peer} does not exist (peers 0..{n_peers - 1})")
        for j, edge in enumerate(cut.edges):
            if max(edge) >= n_peers:
                raise ScenarioError(f"{where}.edges[{j}]", f"peer {max(edge)} does not exist (peers 0..{n_peers - 1})")


@dataclass(frozen=True)
class _Cut:
    """A cut resolved to peers: a side (one flag per peer) and failed paths as sorted pairs."""

    start_s: float
    end_s: float
    side: np.ndarray
    edges: frozenset[tuple[int, int]]

    def crosses(self, src: int, dst: int) -> bool:
        """Whether a message from src to dst goes through the cut."""
        return bool(self.side[src] != self.side[dst]) or (min(src, dst), max(src, dst)) in self.edges


@dataclass(eq=False)
class LinkFaults:
    """The faults of one built run: each peer's access-link drop chance, the path's, and the cuts."""

    loss_probability: float
    peer_loss: np.ndarray  # per peer: its access link's drop chance
    cuts: list[_Cut] = field(default_factory=list)

    @property
    def random_loss(self) -> bool:
        """Whether any message can be lost at random (and loss draws are needed)."""
        return self.loss_probability > 0 or bool(self.peer_loss.any())

    def loss_chance(self, src: int, dst: int) -> float:
        """The probability that a message from src to dst is lost at random."""
        kept = (1.0 - self.loss_probability) * (1.0 - float(self.peer_loss[src])) * (1.0 - float(self.peer_loss[dst]))
        return 1.0 - kept

    def cut_between(self, src: int, dst: int, sent_s: float, arrived_s: float) -> bool:
        """Whether a cut separates src from dst at some time from sending to arrival."""
        return any(
            cut.crosses(src, dst) and sent_s < cut.end_s and arrived_s >= cut.start_s for cut in self.cuts
        )


def resolve_faults(spec: FaultsSpec, link_names: Sequence[str], regions: Sequence[str | None]) -> LinkFaults:
    """The faults of `spec` over the built peers (each peer's link profile name and region)."""
    n = len(link_names)
    peer_loss = np.array([spec.link_loss.get(name, 0.0) for name in link_names], dtype=np.float64)
    cuts = []
    for cut in spec.cuts:
        side = np.array([region in cut.regions for region in regions], dtype=bool) if cut.regions else np.zeros(n, bool)
        side[list(cut.peers)] = True
        edges = frozenset((min(u, v), max(u, v)) for u, v in cut.edges)
        cuts.append(_Cut(cut.start_s, cut.end_s, side, edges))
    return LinkFaults(spec.loss_probability, peer_loss, cuts)


class LossDraws:
    """Uniform draws in [0, 1) for loss decisions, made in blocks of `DRAW_BLOCK` from one generator."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._block = np.empty(0)
        self._next = 0

    def next(self) -> float:
        """The next draw (the same sequence as one draw at a time)."""
        if self._next == len(self._block):
            self._block, self._next = self._rng.random(DRAW_BLOCK), 0
        value = self._block[self._next]
        self._next += 1
        return float(value)


def lost(faults: LinkFaults, draws: LossDraws | None, src: int, dst: int, sent_s: float, arrived_s: float) -> bool:
    """Whether the message from src to dst, sent at sent_s and arriving at arrived_s, is lost.

    A cut decides first; a random draw is used only for messages a cut did not take, and only
    where random loss is configured, so a scenario without it draws nothing.
    """
    if faults.cuts and faults.cut_between(src, dst, sent_s, arrived_s):
        return True
    if draws is None:
        return False
    chance = faults.loss_chance(src, dst)
    return chance > 0 and draws.next() < chance

