"""The `[adversary]` section of a scenario: which peers are Byzantine and which attack they run.

Byzantine peers are a `fraction` of the peers that train (the algorithm's learners: a
server is trusted and never Byzantine), drawn by the scenario's seed, or an explicit list
of `peers`. They run the protocol on their own rows and lie in every row they send
(`p2psim.attacks`); the history and the evaluated model describe the honest peers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ScenarioError, bounded, check_ranges
from .seeding import stream

__all__ = ["ATTACKS", "AdversarySpec", "byzantine_peers"]

ATTACKS = ("sign_flip", "scaled", "gaussian", "alie", "ipm", "replay")
MAX_PEER_INDEX = 10**6  # scenario.MAX_PEERS: a peer index beyond it names no peer


@dataclass(frozen=True)
class AdversarySpec:
    """Who is Byzantine (`fraction` of the learners, or `peers`) and what they send (`attack` and its parameter)."""

    attack: str = "sign_flip"
    # share of the learners, rounded down to whole peers
    fraction: float | None = bounded(None, low=0, high=1, high_open=True, why="at least one peer stays honest")
    peers: tuple[int, ...] | None = bounded(None, low=0, high=MAX_PEER_INDEX, why="peer indices, among the learners")
    scale: float = bounded(-10.0, low=-1e12, high=1e12, why="attack 'scaled': sends scale x row")
    sigma: float = bounded(1.0, low=0, high=1e12, low_open=True, why="attack 'gaussian': sends N(0, sigma^2 I)")
    z: float | None = bounded(None, low=-1e6, high=1e6, why="attack 'alie': sends mu - z sigma; default Baruch et al.'s z_max")
    epsilon: float = bounded(0.1, low=0, high=1e12, low_open=True, why="attack 'ipm': sends -epsilon x honest mean")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.attack not in ATTACKS:
            raise ScenarioError("attack", f"unknown attack {self.attack!r} (allowed: {', '.join(ATTACKS)})")
        if (self.fraction is None) == (self.peers is None):
            raise ScenarioError("", "needs exactly one of fraction, peers")
        if self.peers is not None and len(set(self.peers)) != len(self.peers):
            raise ScenarioError("peers", f"lists a peer twice: {list(self.peers)}")


def byzantine_peers(spec: AdversarySpec | None, learners: list[int], seed: int) -> list[int]:
    """The Byzantine peers, sorted: floor(fraction x learners) drawn by the seed's "byzantine" stream, or the list.

    >>> byzantine_peers(AdversarySpec(peers=(3, 1)), [1, 2, 3], 0)
    [1, 3]
    >>> len(byzantine_peers(AdversarySpec(fraction=0.5), list(range(1, 8)), 0))
    3
    """
    if spec is None:
        return []
    if spec.peers is not None:
        outside = [peer for peer in spec.peers if peer not in set(learners)]
        if outside:
            raise ScenarioError(
                "adversary.peers",
                f"peers {outside} do not train (Byzantine peers must be among the learners "
                f"{_span(learners)}; a server is trusted)",
            )
        return sorted(spec.peers)
    count = math.floor(spec.fraction * len(learners) + 1e-9)  # 0.3 x 10 is 3, not 2.9999999999999996
    chosen = stream(seed, "byzantine").choice(len(learners), size=count, replace=False)
    return sorted(learners[i] for i in chosen)


def _span(peers: list[int]) -> str:
    """A list of peer indices as a reader wants it: 1..7 when contiguous."""
    if peers and peers == list(range(peers[0], peers[-1] + 1)):
        return f"{peers[0]}..{peers[-1]}"
    return str(peers)
