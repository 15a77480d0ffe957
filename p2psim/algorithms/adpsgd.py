"""AD-PSGD: asynchronous decentralized parallel SGD, causal on the wire.

Lian, Zhang, Zhang, Liu, "Asynchronous Decentralized Parallel Stochastic Gradient
Descent", ICML 2018, https://arxiv.org/abs/1710.06952 (Algorithm 1).

Update rule: a peer i that finishes a gradient g (computed on the parameters it held
when it started) picks a neighbour j uniformly at random and exchanges models with it;
each side then averages its own current model with the model it *received*, and i
applies g with the scenario's optimizer: x_j <- (x_j + x_i^sent)/2 when the push
arrives, x_i <- (x_i + x_j^sent)/2 when the reply arrives, then x_i <- x_i - lr g.
What is sent: the whole model each way, `model_bytes` bytes (parameters x bytes per
element). A model copied at send time is what arrives: updates the sender makes while
the message travels do not reach the receiver (DESIGN decision 4). When nothing else
touches the pair meanwhile, both end at the exact pairwise mean, as in Algorithm 1.

`overlap` (default, as in the paper's implementation, where a communication thread runs
beside computation): the peer starts its next gradient as soon as it has sent its push;
a gradient that finishes while the exchange is in flight waits for it. `bipartite`: the
paper's deadlock-free scheme (Section 4): the graph's two colour classes are active and
passive; only active peers initiate exchanges, passive peers apply their own gradients
locally and answer requests. `ADPSGDIdealised` keeps Algorithm 1's instantaneous atomic
average of both *current* models at reply time: not causal, kept for comparison only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx

from ..config import ScenarioError
from ..mixing import MixingReport, pairwise_gossip_report
from ..uniform import UniformIndices
from .base import Algorithm, AlgorithmConfig, register_algorithm

if TYPE_CHECKING:
    from ..engine import GradientJob, Message, World

__all__ = ["ADPSGD", "ADPSGDConfig", "ADPSGDIdealised"]


@dataclass(frozen=True)
class ADPSGDConfig(AlgorithmConfig):
    """Whether computation overlaps the exchange, and whether the active/passive scheme is used."""

    overlap: bool = True
    bipartite: bool = False


@register_algorithm
class ADPSGD(Algorithm):
    """Gradient, then a causal pairwise average with a random neighbour, then the step."""

    name = "adpsgd"
    config_class = ADPSGDConfig
    needs_connected_graph = True
    repairs_graph = True  # partners are world.neighbors, read at each exchange (not with bipartite = true)
    numerics_deferrable = True

    @classmethod
    def check_graph(cls, config: ADPSGDConfig, graph: nx.Graph) -> None:
        if config.bipartite and graph.number_of_nodes() > 1 and not nx.is_bipartite(graph):
            raise ScenarioError(
                "algorithm.bipartite",
                "the active/passive scheme needs a bipartite graph (ring of even size, torus of even sides, "
                "hypercube, star); this topology has an odd cycle",
            )

    def __init__(self, config: ADPSGDConfig, world: World):
        super().__init__(config, world)
        self._pairs: Counter[tuple[int, int]] = Counter()  # completed exchanges per unordered pair

    def start(self) -> None:
        world = self.world
        self._exchanging = [False] * world.n_peers
        self._held: list[GradientJob | None] = [None] * world.n_peers
        self._waiting: list[GradientJob | None] = [None] * world.n_peers  # the job whose exchange is awaited
        self._partners = world.neighbors
        self._draws = UniformIndices(world.rng)  # `world.rng.integers(k)`, drawn in blocks: its only user here
        self._active = [True] * world.n_peers
        if self.config.bipartite and world.n_peers > 1:
            colour = nx.bipartite.color(world.setup.graph)
            self._active = [colour[i] == 1 for i in range(world.n_peers)]
            self._partners = [[j for j in world.neighbors[i] if not self._active[j]] for i in range(world.n_peers)]
        super().start()

    def mixing(self) -> MixingReport:
        return pairwise_gossip_report(self.world.n_peers, self._pairs)

    def on_gradient(self, job: GradientJob) -> None:
        if self._exchanging[job.peer]:
            self._held[job.peer] = job  # applied after the exchange under way
            return
        self._exchange(job)

    def _exchange(self, job: GradientJob) -> None:
        world = self.world
        partners = self._partners[job.peer]
        if not partners or not self._active[job.peer]:
            self._apply(job)
            if not world.is_computing(job.peer):  # churn: a peer back online may compute already
                world.compute(job.peer)
            return
        partner = partners[self._draws.below(len(partners))]
        self._exchanging[job.peer] = True
        self._waiting[job.peer] = job
        self._push(job, partner)
        world.after_timeout(job.peer, lambda: self._give_up(job))  # churn: a partner that left never replies
        if self.config.overlap and not world.is_computing(job.peer):
            world.compute(job.peer)

    def _push(self, job: GradientJob, partner: int) -> None:
        world = self.world
        world.send(job.peer, partner, world.model_bytes, "model", job, row=world.param_rows[job.peer])

    def on_message(self, message: Message) -> None:
        if message.kind == "model":
            self._answer(message)
            return
        job: GradientJob = message.payload
        peer = job.peer
        if self._waiting[peer] is not job:  # the peer gave up on this exchange (churn timeout): ignored
            return
        self._merge_reply(message)
        self._pairs[min(peer, message.src), max(peer, message.src)] += 1
        self._apply(job)
        self._go_on(peer)

    def _give_up(self, job: GradientJob) -> None:
        """Churn: no reply within `timeout_s`: apply the gradient alone and go on (a late reply is ignored)."""
        if self._waiting[job.peer] is job:
            self._apply(job)
            self._go_on(job.peer)

    def _go_on(self, peer: int) -> None:
        """The exchange is over: exchange the gradient that waited for it, or compute the next."""
        self._exchanging[peer] = False
        self._waiting[peer] = None
        held, self._held[peer] = self._held[peer], None
        if held is not None:
            self._exchange(held)
        elif not self.world.is_computing(peer):
            self.world.compute(peer)

    def on_rejoin(self, peer: int) -> None:
        """Back online: compute again, unless a non-overlapping exchange is still awaited."""
        if self.config.overlap or not self._exchanging[peer]:
            super().on_rejoin(peer)

    def _answer(self, message: Message) -> None:
        """The passive side: reply with the model held now, then merge the one that was sent."""
        world, me = self.world, message.dst
        world.send(me, message.src, world.model_bytes, "reply", message.payload, row=world.param_rows[me])
        world.mix_row(me, message.row, 0.5)

    def _merge_reply(self, message: Message) -> None:
        self.world.mix_row(message.dst, message.row, 0.5)

    def _apply(self, job: GradientJob) -> None:
        """The optimizer step with the job's gradient, after the pair average."""
        self.world.apply_gradient(job.peer, self.world.consume(job))


@register_algorithm
class ADPSGDIdealised(ADPSGD):
    """Algorithm 1's atomic average of both current models at reply time: flatters decentralization (not causal)."""

    name = "adpsgd_idealised"
    config_class = type("ADPSGDIdealisedConfig", (ADPSGDConfig,), {"__doc__": ADPSGDConfig.__doc__})

    def _push(self, job: GradientJob, partner: int) -> None:
        world = self.world
        world.send(job.peer, partner, world.model_bytes, "model", job)

    def _answer(self, message: Message) -> None:
        world = self.world
        world.send(message.dst, message.src, world.model_bytes, "reply", message.payload)

    def _merge_reply(self, message: Message) -> None:
        self.world.average_rows((message.dst, message.src))
