"""Stochastic Gradient Push: push-sum gossip SGD on directed and time-varying graphs, causal on the wire.

Assran, Loizou, Ballas, Rabbat, "Stochastic Gradient Push for Distributed Deep Learning",
ICML 2019, https://arxiv.org/abs/1811.10792 (Algorithm 1, and its overlap variant OSGP).

Push-sum (Kempe, Dobra, Gehrke 2003): peer i holds a numerator x_i and a weight w_i
(initially 1); the model is the de-biased z_i = x_i / w_i, where gradients are taken. In round
k, with d_i^k out-neighbours:

    x_i <- x_i - lr g_i(z_i)                                  (adapt, on the numerator)
    send (x_i / (d_i^k + 1), w_i / (d_i^k + 1)) to each out-neighbour, keep one share
    x_i <- own share + sum of received numerators, w_i likewise;  z_i = x_i / w_i.

The weights are column stochastic (each sender splits what it has), so sum_i x_i and
sum_i w_i are conserved and z_i -> sum_i x_i / sum_i w_i on any strongly connected graph,
directed or not, where averaging x alone would be biased.

Storage: `world.params` holds z, the row the engine computes gradients on, evaluates and
measures consensus with; the weights w live here ([n] float64), and x = w z is implicit. The
gradient step on x is then a step of lr / w_i on z (`apply_gradient(lr_scale=1/w_i)`), exactly
the paper's for SGD, momentum, Nesterov and Adam (their directions do not depend on the row);
weight decay acts on z. A message carries z (copied at send) and the weight share w_i/(d+1):
the same information as (x_i/(d+1), w_i/(d+1)), the receiver adding w_share z to its numerator.

Graphs (`graph`): "topology", the scenario's undirected graph used in both directions with
shares 1/(degree + 1); or "exponential_one_peer", the time-varying directed graph of the paper's
Section 5: in round k peer i sends only to i + 2^(k mod m) mod n, m = floor(log2(n - 1)) + 1
(= log2 n for n a power of 2, where m consecutive rounds average exactly).

`tau` = 0: synchronous SGP, a peer ends round k once every round-k message to it has arrived
(summed into one [n, d] tensor as they come; one sent for a later round waits in a row pool).
`tau` >= 1: overlap SGP (tau-OSGP): a peer adds each message to (x_i, w_i) when it arrives and
goes on after sending; it starts round k + 1 only once every message sent to it in rounds
<= k - tau has arrived, so messages are at most tau rounds late. What is sent: per message the
whole model plus one 4-byte weight, `model_bytes + 4` bytes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from ..config import ScenarioError, bounded, check_ranges
from ..mixing import MAX_DENSE_PEERS, MixingReport, matrix_report
from .base import Algorithm, AlgorithmConfig, register_algorithm
from .dpsgd import RoundInbox

if TYPE_CHECKING:
    from ..engine import GradientJob, Message, World

__all__ = ["GRAPHS", "SGP", "SGPConfig"]

GRAPHS = ("topology", "exponential_one_peer")
WEIGHT_BYTES = 4  # the push-sum weight, one float32 per message


@dataclass(frozen=True)
class SGPConfig(AlgorithmConfig):
    """Which graph pushes go over, and how many rounds late a message may be (0: synchronous)."""

    graph: str = "topology"
    tau: int = bounded(0, low=0, high=1000)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)
        if self.graph not in GRAPHS:
            raise ScenarioError("graph", f"must be one of {', '.join(GRAPHS)}, got {self.graph!r}")


@register_algorithm
class SGP(Algorithm):
    """Adapt the numerator, push shares of (x, w) to out-neighbours, de-bias z = x / w."""

    name = "sgp"
    config_class = SGPConfig
    numerics_deferrable = True  # the push-sum weights are scalars kept in Python: no row value is read

    @classmethod
    def check_graph(cls, config: SGPConfig, graph: nx.Graph) -> None:
        if config.graph == "topology" and graph.number_of_nodes() > 1 and not nx.is_connected(graph):
            raise ScenarioError(
                "topology", "SGP over the topology needs a connected graph (or algorithm.graph = 'exponential_one_peer')"
            )

    def __init__(self, config: SGPConfig, world: World):
        super().__init__(config, world)
        n = world.n_peers
        self.weights = np.ones(n)
        self.round = [0] * n
        self._period = 1 if config.graph == "topology" or n < 2 else int(math.floor(math.log2(n - 1))) + 1
        self._in_degrees: dict[int, np.ndarray] = {}
        self._pushed = [False] * n
        # synchronous: sum_j share_j z_j (numerators) and sum_j share_j (weights) of each peer's round
        self._inbox = RoundInbox(world.rows, n) if config.tau == 0 else None
        self._received: list[Counter[int]] = [Counter() for _ in range(n)]  # overlap: messages per sending round
        self._complete = [-1] * n  # overlap: every message of rounds <= this has arrived
        self._blocked = [False] * n
        self._timed_out = [False] * n  # churn: the round's timeout passed

    def start(self) -> None:
        super().start()
        for peer in range(self.world.n_peers):
            self._arm(peer)

    def _arm(self, peer: int) -> None:
        """Churn: `timeout_s` after a round begins, it goes on with the messages that arrived."""
        world = self.world
        round_ = self.round[peer]
        world.after_timeout(peer, lambda: self._expire(peer, round_))

    def _expire(self, peer: int, round_: int) -> None:
        if self.round[peer] != round_:
            return
        if self._inbox is not None:
            self._timed_out[peer] = True
            self._try_combine(peer)
        elif self._blocked[peer]:  # overlap: the rounds it waits for count as complete
            self._complete[peer] = max(self._complete[peer], self.round[peer] - self.config.tau)
            self._try_advance(peer)

    def _fold(self, peer: int, share: float, row) -> None:
        """x_i += share z_j and w_i += share at once: z_i moves toward z_j by share / (w_i + share)."""
        self.world.mix_row(peer, row, share / (self.weights[peer] + share))
        self.weights[peer] += share

    def on_rejoin(self, peer: int) -> None:
        """A returning peer that lost its gradient computes again (unless it waits for its round's messages)."""
        if not self._pushed[peer] and not self._blocked[peer] and not self.world.is_computing(peer):
            self.world.compute(peer)
            self._arm(peer)

    def out_neighbors(self, peer: int, round_: int) -> list[int]:
        """Where `peer` pushes in round `round_`."""
        n = self.world.n_peers
        if self.config.graph == "topology":
            return self.world.neighbors[peer]
        if n < 2:
            return []
        return [(peer + 2 ** (round_ % self._period)) % n]

    def _in_degree(self, peer: int, round_: int) -> int:
        """How many messages `peer` receives in round `round_` (the graph repeats every `_period` rounds)."""
        key = round_ % self._period
        if key not in self._in_degrees:
            targets = [j for i in range(self.world.n_peers) for j in self.out_neighbors(i, round_)]
            self._in_degrees[key] = np.bincount(np.asarray(targets, dtype=np.int64), minlength=self.world.n_peers)
        return int(self._in_degrees[key][peer])

    def mixing(self) -> MixingReport:
        n = self.world.n_peers
        if self.config.graph == "exponential_one_peer":
            return MixingReport(
                None,
                "not defined per round: time-varying; for n a power of 2 the product of log2(n) consecutive "
                "rounds is 11^T/n (exact average)",
                f"one-peer exponential graph, period {self._period} rounds (Assran et al. 2019, Section 5)",
            )
        P = self.push_matrix()
        matrix = "column-stochastic push-sum P, P_ij = 1/(d_j + 1) on the topology's edges and diagonal"
        if np.allclose(P, P.T, rtol=0.0, atol=1e-12):
            return matrix_report(P, matrix)
        if n > MAX_DENSE_PEERS:
            return MixingReport(None, f"not computed: {n} peers > {MAX_DENSE_PEERS} (dense eigenvalues)", matrix)
        moduli = np.sort(np.abs(np.linalg.eigvals(P)))
        return MixingReport(float(1.0 - moduli[-2]), "1 - |lambda_2| of P (second largest eigenvalue modulus)", matrix)

    def push_matrix(self, round_: int = 0) -> np.ndarray:
        """P with x^{k+1} = P x^{k+1/2}: column j splits peer j's numerator among itself and its out-neighbours."""
        n = self.world.n_peers
        P = np.zeros((n, n))
        for j in range(n):
            targets = self.out_neighbors(j, round_)
            P[targets, j] = 1.0 / (len(targets) + 1)
            P[j, j] = 1.0 / (len(targets) + 1)
        return P

    def on_gradient(self, job: GradientJob) -> None:
        peer = job.peer
        self._adapt(job)
        self._push(peer)
        if self.config.tau == 0:
            self._pushed[peer] = True
            self._try_combine(peer)
        else:
            self._try_advance(peer)

    def _adapt(self, job: GradientJob) -> None:
        """x_i <- x_i - lr g_i(z_i): on z = x / w, a step of lr / w_i."""
        self.world.apply_gradient(job.peer, self.world.consume(job), lr_scale=1.0 / self.weights[job.peer])

    def _push(self, peer: int) -> None:
        """Send z_i and the weight share w_i / (d + 1) to each out-neighbour; keep one share of w (z is unchanged)."""
        world = self.world
        targets = self.out_neighbors(peer, self.round[peer])
        if world.timeout_s is not None:  # churn: push only to out-neighbours online (push-sum allows any out-degree)
            targets = [target for target in targets if world.is_online(target)]
        share = self.weights[peer] / (len(targets) + 1)
        for target in targets:
            world.send(
                peer, target, world.model_bytes + WEIGHT_BYTES, "push", (self.round[peer], share), row=world.params[peer]
            )
        self.weights[peer] = share

    def on_message(self, message: Message) -> None:
        sent_round, share = message.payload
        peer = message.dst
        if self._inbox is not None:
            if sent_round < self.round[peer]:  # churn: late for its round; added at once, so no push-sum mass is lost
                self._fold(peer, share, message.row)
                return
            if sent_round > self.round[peer] + 1 and self.world.timeout_s is not None:  # churn only: skip to a sender's round
                self.round[peer] = sent_round
                self._inbox.next_round(peer, sent_round, lambda weight, row: self._fold(peer, weight, row))
                self._timed_out[peer] = False
                self._arm(peer)
            self._inbox.add(peer, sent_round, self.round[peer], message.row, share)
            self._try_combine(peer)
            return
        # overlap: x_i += share z_j, w_i += share, so z_i moves toward z_j by share / (w_i + share)
        self.world.mix_row(peer, message.row, share / (self.weights[peer] + share))
        self.weights[peer] += share
        self._received[peer][sent_round] += 1
        if self._blocked[peer]:
            self._try_advance(peer)

    def _try_combine(self, peer: int) -> None:
        """Synchronous: once pushed and every round-k message is in, x_i and w_i gain the received sums."""
        inbox = self._inbox
        complete = inbox.counts[peer] >= self._in_degree(peer, self.round[peer])
        if not self._pushed[peer] or not (complete or self._timed_out[peer]):
            return
        self._timed_out[peer] = False  # the sums are normalised by the weights received: partial is push-sum's own rule
        total = self.weights[peer] + inbox.weights[peer]
        numerator, rows = inbox.sums[peer], self.world.rows
        rows.accumulate(numerator, self.world.params[peer], self.weights[peer])
        rows.divide(numerator, numerator, total)
        self.world.set_row(peer, numerator)
        self.weights[peer] = total
        self._pushed[peer] = False
        self._end_round(peer)

    def _try_advance(self, peer: int) -> None:
        """Overlap: start round k + 1 once every message of rounds <= k - tau has arrived."""
        received = self._received[peer]
        while True:  # move the mark over rounds whose messages have all arrived (none expected: up to now)
            following = self._complete[peer] + 1
            expected = self._in_degree(peer, following)
            if received[following] < expected or (expected == 0 and following > self.round[peer]):
                break
            received.pop(following, None)
            self._complete[peer] = following
        self._blocked[peer] = self._complete[peer] < self.round[peer] - self.config.tau
        if not self._blocked[peer]:
            self._end_round(peer)

    def _end_round(self, peer: int) -> None:
        """The round is complete on `peer`: start the next one."""
        self.round[peer] += 1
        if self._inbox is not None:
            self._inbox.next_round(peer, self.round[peer])
        self.world.compute(peer)
        self._arm(peer)
