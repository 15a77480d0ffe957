"""Gossip learning: every peer trains locally and sends its model to a random partner, without waiting.

Ormándi, Hegedűs, Jelasity, "Gossip learning with linear models on fully distributed
data", Concurrency and Computation: Practice and Experience 25(4), 2013,
https://arxiv.org/abs/1109.1396; Hegedűs, Danner, Jelasity, "Gossip learning as a
decentralized alternative to federated learning", DAIS 2019 (the age-weighted merge).

Update rule: a peer applies its gradient (the scenario's optimizer), and after every
`period`-th local step it picks a partner: uniform over its graph neighbours
(`partner = "neighbour"`) or uniform over all other peers (`"peer_sampling"`: an
idealised peer-sampling service, such as Newscast, that returns a uniform random peer).
Then, by `mode`:
- `push`: it sends its model; the receiver merges it into its own row when it arrives.
- `pull`: it sends a request; the partner replies with its model, which the requester merges.
- `push_pull`: it sends its model; the partner replies with the model it holds at that
  instant and then merges the one it received; the requester merges the reply.
Merging (`merge`): `average` sets x <- (x + x_received)/2; `age_weighted` sets
x <- (a x + a_r x_r)/(a + a_r) and the age to max(a, a_r), where a model's age is the number
of gradient steps it has had (Hegedűs et al. 2019); two models of age 0 are averaged equally.
Nobody waits: the sender computes on at once, and a merge happens when the message arrives,
with the model as it was sent (DESIGN decision 4).

What is sent: one model, `model_bytes` bytes, per transfer, plus 8 bytes (its age, an
int64) when `merge = "age_weighted"`; a pull request is a small control message, counted
as 64 bytes (headers and the requester's address).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from ..config import ScenarioError, bounded, check_ranges
from ..mixing import MAX_DENSE_PEERS, MixingReport, pairwise_gossip_report
from ..uniform import UniformIndices
from .base import Algorithm, AlgorithmConfig, register_algorithm

if TYPE_CHECKING:
    from ..engine import GradientJob, Message, World

__all__ = ["Gossip", "GossipConfig", "one_way_gossip_report"]

MODES = ("push", "pull", "push_pull")
PARTNERS = ("neighbour", "peer_sampling")
MERGES = ("average", "age_weighted")
AGE_BYTES = 8  # the model's age as an int64
PULL_REQUEST_BYTES = 64  # a control message: headers and the requester's address


@dataclass(frozen=True)
class GossipConfig(AlgorithmConfig):
    """Who talks (`partner`), in which direction (`mode`), how models merge (`merge`), how often (`period`)."""

    mode: str = "push"
    partner: str = "neighbour"
    merge: str = "average"
    period: int = bounded(1, low=1, high=10**9, why="local steps between two sends")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)
        for field, allowed in (("mode", MODES), ("partner", PARTNERS), ("merge", MERGES)):
            value = getattr(self, field)
            if value not in allowed:
                raise ScenarioError(field, f"must be one of {', '.join(allowed)}, got {value!r}")


def one_way_gossip_report(n: int, merge_counts: Counter[tuple[int, int]]) -> MixingReport:
    """Gap 1 - |lambda_2| of E[W] for one-way merges x_r <- (x_r + x_s)/2 at the observed (sender, receiver) rates.

    E[W] is row stochastic but not doubly stochastic: it contracts the expected disagreement
    E[x] towards a consensus that is not the initial mean (the sum is not preserved).

    >>> one_way_gossip_report(2, Counter({(0, 1): 4})).spectral_gap  # E[W] = [[1, 0], [1/2, 1/2]]
    0.5
    """
    matrix = f"E[W] of one one-way merge at the observed rates of {len(merge_counts)} (sender, receiver) pairs"
    if n == 1:
        return MixingReport(1.0, "a single peer is at consensus", matrix)
    if n > MAX_DENSE_PEERS:
        return MixingReport(None, f"not computed: {n} peers > {MAX_DENSE_PEERS} (dense eigenvalues)", matrix)
    expected = np.eye(n)
    total = sum(merge_counts.values())
    for (sender, receiver), count in merge_counts.items():
        p = count / total / 2
        expected[receiver, receiver] -= p
        expected[receiver, sender] += p
    moduli = np.sort(np.abs(np.linalg.eigvals(expected)))
    return MixingReport(float(1.0 - moduli[-2]), "1 - |lambda_2| of the one-way E[W] (row stochastic), per merge", matrix)


@register_algorithm
class Gossip(Algorithm):
    """Local steps; every `period` steps a model goes to a random partner, merged where it lands; no waiting."""

    name = "gossip"
    config_class = GossipConfig
    repairs_graph = True  # partners are drawn from world.neighbors at each send
    numerics_deferrable = True
    byzantine_surface = "the model it sends (push, reply)"

    @classmethod
    def check_graph(cls, config: GossipConfig, graph: nx.Graph) -> None:
        if config.partner == "neighbour" and graph.number_of_nodes() > 1 and not nx.is_connected(graph):
            raise ScenarioError(
                "algorithm.partner",
                f"\"neighbour\" gossip needs a connected graph; this one has {nx.number_connected_components(graph)} "
                "components (use a connected topology, or partner = \"peer_sampling\")",
            )

    def __init__(self, config: GossipConfig, world: World):
        super().__init__(config, world)
        self._ages = np.zeros(world.n_peers, dtype=np.int64)  # gradient steps each row's model has had
        self._since_send = np.zeros(world.n_peers, dtype=np.int64)
        self._merges: Counter[tuple[int, int]] = Counter()  # (sender, receiver) of one-way merges
        self._exchanges: Counter[tuple[int, int]] = Counter()  # unordered pairs of completed push-pull exchanges
        self._model_bytes = world.model_bytes + (AGE_BYTES if config.merge == "age_weighted" else 0)
        self._draws = UniformIndices(world.rng)  # `world.rng.integers(k)`, drawn in blocks: its only user here

    def on_gradient(self, job: GradientJob) -> None:
        peer = job.peer
        self._step(job)
        self._since_send[peer] += 1
        if self._since_send[peer] >= self.config.period:
            self._since_send[peer] = 0
            partner = self._partner(peer)
            if partner is not None:
                self._initiate(peer, partner)
        self.world.compute(peer)

    def _step(self, job: GradientJob) -> None:
        """The local update: one optimizer step; the model's age grows by one."""
        self.world.apply_gradient(job.peer, self.world.consume(job))
        self._ages[job.peer] += 1

    def _partner(self, peer: int) -> int | None:
        """A uniform neighbour, or a uniform other peer (idealised peer sampling); None when there is none."""
        world = self.world
        if self.config.partner == "neighbour":
            neighbours = world.neighbors[peer]
            return neighbours[self._draws.below(len(neighbours))] if neighbours else None
        if world.n_peers == 1:
            return None
        other = self._draws.below(world.n_peers - 1)
        return other + (other >= peer)

    def _initiate(self, peer: int, partner: int) -> None:
        world = self.world
        if self.config.mode == "pull":
            world.send(peer, partner, PULL_REQUEST_BYTES, "pull")
        else:
            self._send_model(peer, partner, self.config.mode)

    def _send_model(self, src: int, dst: int, kind: str) -> None:
        """The model and its age as they are now: what the receiver will merge."""
        world = self.world
        world.send(src, dst, self._model_bytes, kind, int(self._ages[src]), row=world.param_rows[src])

    def on_message(self, message: Message) -> None:
        src, dst, kind = message.src, message.dst, message.kind
        if kind == "pull":
            self._send_model(dst, src, "reply")
            return
        if kind == "push_pull":
            self._send_model(dst, src, "reply")  # the model held before merging, as a pairwise exchange needs
        self._merge(dst, message)
        if kind == "reply" and self.config.mode == "push_pull":
            self._exchanges[min(src, dst), max(src, dst)] += 1
        elif kind != "push_pull":
            self._merges[src, dst] += 1

    def _merge(self, peer: int, message: Message) -> None:
        """Merge the received model into `peer`'s row: equal weights, or weights by age (ages 0 and 0: equal)."""
        received_age, own_age = message.payload, int(self._ages[peer])
        weight = 0.5
        if self.config.merge == "age_weighted" and received_age + own_age > 0:
            weight = received_age / (received_age + own_age)
        self.world.mix_row(peer, message.row, weight)
        self._ages[peer] = max(own_age, received_age)

    def mixing(self) -> MixingReport:
        if self.config.merge == "age_weighted":
            return MixingReport(
                None,
                "not defined: the age-weighted merge's weights a_r/(a + a_r) change with the models' ages, "
                "so no fixed matrix E[W] describes it",
                "none",
            )
        if self.config.mode == "push_pull":
            return pairwise_gossip_report(self.world.n_peers, self._exchanges)
        return one_way_gossip_report(self.world.n_peers, self._merges)
