"""Moshpit SGD: local steps, then an exact average inside small groups that change every round.

Ryabinin, Dettmers, Diskin, Borzunov, "Moshpit SGD: Communication-Efficient Decentralized
Training on Heterogeneous Unreliable Devices", NeurIPS 2021, https://arxiv.org/abs/2103.03239.

Update rule: a peer takes `local_steps` optimizer steps, then joins its group for its next
round and waits. `grouping = "grid"` (Moshpit averaging, Section 3.1): the n = M^d peers
sit on a d-dimensional grid of side M = `group_size`; round r groups the peers that share
every coordinate but coordinate r mod d, so after any d consecutive rounds of exact group
averaging every peer holds the exact global mean. Where n is not a power of M, the peers
fill the first n cells of the smallest grid with M^d >= n and some lines are shorter: the
lines still connect every peer, so the average is approached, but not reached exactly in
d rounds. `grouping = "random"`: each round, a
seeded uniform random permutation of the peers cut into groups of M (the last group
holds the n mod M left over); one round's expected matrix is E[W] = (G/n) I + (n - G)/(n(n-1))
off the diagonal for G groups, whose second eigenvalue is (G - 1)/(n - 1), and since each
group average is a projection, E[V] contracts by exactly that factor per round.

Inside a group, once all its members are ready, a ring all-reduce runs as real messages
(Patarasuk & Yuan 2009, as in `allreduce.py`): 2(M - 1) steps in which each member sends
1/M of the model to its successor, after receiving the previous step's chunk, so one group
average takes 2(M - 1)(latency + S/(M bandwidth)) on equal links. Each member's row is set
to the mean of the group's models as they were when the all-reduce started (the models
sent) at the instant its own last chunk arrives; members are idle meanwhile (no step
overlaps the average). Matchmaking (the paper's DHT) is assumed free and instant, and
groups ignore the topology (any peer can reach any peer).

What is sent: per group average, each member sends 2(M - 1) chunks of `model_bytes`/M bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import ScenarioError, bounded, check_ranges
from ..lazy import torch
from ..mixing import MAX_DENSE_PEERS, MixingReport
from .base import Algorithm, AlgorithmConfig, register_algorithm
from .dpsgd import RowSlots

if TYPE_CHECKING:
    import networkx as nx

    from ..engine import GradientJob, Message, World

__all__ = ["Moshpit", "MoshpitConfig", "grid_dimensions"]

GROUPINGS = ("grid", "random")


@dataclass(frozen=True)
class MoshpitConfig(AlgorithmConfig):
    """Group size M, how groups form each round, and local steps between two group averages."""

    group_size: int = bounded(2, low=2, high=10**9, why="M, the grid's side; at most the number of peers")
    grouping: str = "grid"
    local_steps: int = bounded(1, low=1, high=10**9)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)
        if self.grouping not in GROUPINGS:
            raise ScenarioError("grouping", f"must be one of {', '.join(GROUPINGS)}, got {self.grouping!r}")


def grid_dimensions(n: int, side: int) -> int:
    """The smallest d >= 1 with side^d >= n: the grid the n peers fill (exactly when side^d == n).

    >>> grid_dimensions(9, 3), grid_dimensions(8, 2), grid_dimensions(6, 2)
    (2, 3, 3)
    """
    d, size = 1, side
    while size < n:
        size *= side
        d += 1
    return d


@dataclass(eq=False)
class _GroupAverage:
    """One group's all-reduce in flight: its members, the mean of what they sent, chunks each has received."""

    members: tuple[int, ...]
    mean: torch.Tensor
    received: list[int]
    done: int = 0


@register_algorithm
class Moshpit(Algorithm):
    """Local steps, then an all-reduce within this round's group (grid or random); the groups rotate."""

    name = "moshpit"
    config_class = MoshpitConfig
    carries_rows = False
    numerics_deferrable = True

    @classmethod
    def check_graph(cls, config: MoshpitConfig, graph: nx.Graph) -> None:
        n, side = graph.number_of_nodes(), config.group_size
        if side > n:
            raise ScenarioError("algorithm.group_size", f"must be <= the number of peers ({n}), got {side}")

    def __init__(self, config: MoshpitConfig, world: World):
        super().__init__(config, world)
        n, side = world.n_peers, config.group_size
        self._dimensions = grid_dimensions(n, side) if config.grouping == "grid" else None
        self._steps = np.zeros(n, dtype=np.int64)
        self.rounds = np.zeros(n, dtype=np.int64)  # group averages each peer has completed
        self._partitions: dict[int, list[tuple[int, ...]]] = {}  # random grouping: round -> group of each peer
        self._joined: dict[int, int] = {}  # random grouping: round -> peers that have looked up their group
        self._ready: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        self._averages: dict[tuple[int, tuple[int, ...]], _GroupAverage] = {}
        self._closed: set[tuple[int, tuple[int, ...]]] = set()  # churn: groups that went on without some members
        self._in_group = [False] * n  # waiting for its group, or averaging in it
        self._means = RowSlots(world.rows)  # the mean of each all-reduce in flight

    def on_gradient(self, job: GradientJob) -> None:
        peer = job.peer
        self._step(job)
        self._steps[peer] += 1
        if self._steps[peer] % self.config.local_steps == 0:
            self._join(peer)
        else:
            self.world.compute(peer)

    def _step(self, job: GradientJob) -> None:
        """The local update: one optimizer step."""
        self.world.apply_gradient(job.peer, self.world.consume(job))

    def _group(self, peer: int, round_index: int) -> tuple[int, ...]:
        """The peers (sorted) that `peer` averages with in round `round_index`."""
        if self._dimensions is not None:
            side = self.config.group_size
            stride = side ** (round_index % self._dimensions)
            base = peer - (peer // stride % side) * stride  # the peer with coordinate r mod d set to 0
            return tuple(member for member in range(base, base + side * stride, stride) if member < self.world.n_peers)
        if round_index not in self._partitions:
            order, side = self.world.rng.permutation(self.world.n_peers).tolist(), self.config.group_size
            groups = [tuple(sorted(order[k : k + side])) for k in range(0, len(order), side)]
            self._partitions[round_index] = [()] * self.world.n_peers
            for members in groups:
                for member in members:
                    self._partitions[round_index][member] = members
        members = self._partitions[round_index][peer]
        self._joined[round_index] = self._joined.get(round_index, 0) + 1
        if self._joined[round_index] == self.world.n_peers:  # everyone has its group: forget the round
            del self._partitions[round_index], self._joined[round_index]
        return members

    def _join(self, peer: int) -> None:
        """Wait for this round's group; the last member to arrive starts the all-reduce."""
        round_index = int(self.rounds[peer])
        members = self._group(peer, round_index)
        if len(members) == 1:
            self._finish(peer, round_index)
            return
        key = (round_index, members)
        if key in self._closed:  # churn: the group timed out and went on without this peer
            self._finish(peer, round_index)
            return
        ready = self._ready.setdefault(key, [])
        ready.append(peer)
        self._in_group[peer] = True
        if len(ready) == len(members):
            del self._ready[key]
            self._start_average(key)
        elif len(ready) == 1 and self.world.timeout_s is not None:
            self.world.schedule(self.world.timeout_s, peer, lambda: self._expire_group(key))

    def _expire_group(self, key: tuple[int, tuple[int, ...]]) -> None:
        """Churn: `timeout_s` after the first member joined, the members that are ready average among themselves."""
        ready = self._ready.pop(key, None)
        if ready is None:
            return
        self._closed.add(key)
        if len(ready) == 1:
            self._finish(ready[0], key[0])
        else:
            self._start_average((key[0], tuple(sorted(ready))))

    def _expire_average(self, key: tuple[int, tuple[int, ...]]) -> None:
        """Churn: an all-reduce not done `timeout_s` after it began (a member left): the rest keep their models."""
        average = self._averages.pop(key, None)
        if average is None:
            return
        self._means.release(average.mean)
        for position, member in enumerate(average.members):
            if average.received[position] < 2 * (len(average.members) - 1):
                self._finish(member, key[0])

    def on_rejoin(self, peer: int) -> None:
        """A returning peer computes again unless it is still in a group's wait or all-reduce."""
        if not self._in_group[peer] and not self.world.is_computing(peer):
            self.world.compute(peer)

    def _start_average(self, key: tuple[int, tuple[int, ...]]) -> None:
        """Every member sends its first chunk; the mean of the models sent is fixed now, seen at the end."""
        world, members = self.world, key[1]
        mean = self._means.take()
        world.rows.mean_of(mean, [world.params[member] for member in members])
        self._averages[key] = _GroupAverage(members, mean, [0] * len(members))
        for member in members:  # churn: each member's own timer; the first to fire ends it
            world.after_timeout(member, lambda: self._expire_average(key))
        for position in range(len(members)):
            self._send_chunk(key, position)

    def _send_chunk(self, key: tuple[int, tuple[int, ...]], position: int) -> None:
        members = key[1]
        successor = (position + 1) % len(members)
        world = self.world
        world.send(members[position], members[successor], world.model_bytes / len(members), "chunk", (key, successor))

    def on_message(self, message: Message) -> None:
        key, position = message.payload
        average = self._averages.get(key)
        if average is None:
            return  # an all-reduce abandoned after a timeout (churn)
        average.received[position] += 1
        if average.received[position] < 2 * (len(average.members) - 1):
            self._send_chunk(key, position)
            return
        member = average.members[position]
        self.world.set_row(member, average.mean)
        average.done += 1
        if average.done == len(average.members):
            del self._averages[key]
            self._means.release(average.mean)
        self._finish(member, key[0])

    def _finish(self, peer: int, round_index: int) -> None:
        """`peer` has completed round `round_index`: back to local steps."""
        self.rounds[peer] = round_index + 1
        self._in_group[peer] = False
        self.world.compute(peer)

    def mixing(self) -> MixingReport:
        n = self.world.n_peers  # >= group_size >= 2 (check_graph)
        if self._dimensions is not None:
            return self._grid_report()
        groups = -(-n // self.config.group_size)
        return MixingReport(
            (n - groups) / (n - 1),
            "1 - lambda_2 of E[W] for one round of a uniformly random partition into G groups: (n - G)/(n - 1), "
            "exact per round (each W is a projection)",
            f"E[W] of one random grouping into {groups} groups of <= {self.config.group_size}",
        )

    def _grid_report(self) -> MixingReport:
        """The gap of the product of d consecutive grid rounds: 1 when n = M^d (it is then 11^T/n)."""
        n, side, d = self.world.n_peers, self.config.group_size, self._dimensions
        matrix = f"product of {d} rounds of grid group averaging (M = {side})"
        if n == side**d:
            return MixingReport(
                1.0,
                f"exact average every d = {d} rounds: the product of any d consecutive grid rounds' "
                "group-averaging matrices is 11^T/n (Ryabinin et al. 2021, Sec. 3.1); one round alone has gap 0",
                matrix,
            )
        if n > MAX_DENSE_PEERS:
            return MixingReport(None, f"not computed: {n} peers > {MAX_DENSE_PEERS} (dense eigenvalues)", matrix)
        product = np.eye(n)
        for round_index in range(d):
            averaging = np.zeros((n, n))
            for peer in range(n):
                members = list(self._group(peer, round_index))
                averaging[peer, members] = 1.0 / len(members)
            product = averaging @ product
        moduli = np.sort(np.abs(np.linalg.eigvals(product)))
        return MixingReport(
            float(1.0 - moduli[-2]),
            f"1 - |lambda_2| of the product of d = {d} rounds (incomplete grid: {n} peers < {side}^{d}), per d rounds",
            matrix,
        )
