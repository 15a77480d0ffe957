"""DiLoCo without a server: the workers all-reduce their pseudo-gradients over a ring, as deployed systems do.

Douillard et al., "DiLoCo: Distributed Low-Communication Training of Language Models", 2023,
https://arxiv.org/abs/2311.08105 (Algorithm 1); the all-reduce among workers is that of
OpenDiLoCo (Jaghouar, Ong, Hagemann 2024, https://arxiv.org/abs/2407.07852) and INTELLECT-1
(Jaghouar et al. 2024, https://arxiv.org/abs/2412.01152), which have no parameter server.

Update rule, round t: every worker starts from theta_t, runs `local_steps` (H) inner steps of
the scenario's optimizer on its own batches, and holds Delta_i = theta_t - theta_i. Once all
have, a ring all-reduce averages the deltas (Patarasuk & Yuan 2009: 2(K-1) rounds in which
each worker sends 1/K of the payload to its successor, so it lasts 2(K-1)(latency + S/(K
bandwidth)) on equal links); then every worker applies the same outer step to theta_t, as
`diloco` does (Nesterov momentum `outer_momentum`, lr `outer_lr`, or plain SGD), and the
next round starts. Every worker holds the same outer state, so it is kept once.

What is sent: the all-reduced payload S is the pseudo-gradient at `outer_bytes_per_param`
bytes per parameter (default: the scenario's precision; INTELLECT-1 sends int8, 1 byte).
The bytes are counted as given, the values are not rounded: the mean is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ScenarioError, bounded, check_ranges
from ..mixing import MixingReport
from ..optim import OptimizerSpec, RowOptimizer
from .base import Algorithm, AlgorithmConfig, register_algorithm
from .diloco import OUTER_OPTIMIZERS

if TYPE_CHECKING:
    from ..engine import GradientJob, Message

__all__ = ["DiLoCoRing", "DiLoCoRingConfig"]


@dataclass(frozen=True)
class DiLoCoRingConfig(AlgorithmConfig):
    """Inner steps per round, the outer optimizer, and the bytes per parameter of the all-reduced delta."""

    local_steps: int = bounded(500, low=1, high=10**9)
    outer_optimizer: str = "nesterov"
    outer_lr: float = bounded(0.7, low=0, high=1e3, low_open=True)
    outer_momentum: float = bounded(0.9, low=0, high=1, high_open=True)
    # None: the scenario's precision (peers.precision); 1.0 models INTELLECT-1's int8 all-reduce
    outer_bytes_per_param: float | None = bounded(None, low=0, high=8, low_open=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self)
        if self.outer_optimizer not in OUTER_OPTIMIZERS:
            raise ScenarioError(
                "outer_optimizer", f"must be one of {', '.join(OUTER_OPTIMIZERS)}, got {self.outer_optimizer!r}"
            )


@register_algorithm
class DiLoCoRing(Algorithm):
    """H inner steps on every worker, a ring all-reduce of the deltas, one outer step everywhere."""

    name = "diloco_ring"
    config_class = DiLoCoRingConfig
    carries_rows = False  # chunks carry bytes; the mean is taken from the rows when the ring completes
    numerics_deferrable = True

    def start(self) -> None:
        world = self.world
        n_params = world.params.shape[1]
        self._anchor, self._mean, self._delta = world.rows.new(3)  # theta_t, the rows' mean, the mean delta
        world.rows.assign(self._anchor, world.params[0])  # every row starts equal
        self._global = world.rows.new(1)  # the outer optimizer's single row
        spec = OptimizerSpec(name=self.config.outer_optimizer, momentum=self.config.outer_momentum)
        self.outer = RowOptimizer(spec, 1, n_params, dtype=world.params.dtype, device=world.params.device)
        per_param = self.config.outer_bytes_per_param
        self.payload_bytes = world.model_bytes if per_param is None else per_param * self._params_on_wire()
        self._steps_done = [0] * world.n_peers
        self._ready = 0
        self._round = [0] * world.n_peers
        self._finished = 0
        self.round_ends: list[float] = []  # when each all-reduce completed
        super().start()

    def _params_on_wire(self) -> float:
        """Parameters the model bytes stand for (model_bytes over the precision's bytes per element)."""
        from ..build import bytes_per_element  # build imports this package: a module-level import would cycle

        return self.world.model_bytes / bytes_per_element(self.world.setup.scenario.peers.precision)

    def mixing(self) -> MixingReport:
        return MixingReport(1.0, "exact average every round: W = 11^T/n", "11^T/n (all-reduce of the deltas)")

    def on_gradient(self, job: GradientJob) -> None:
        world, peer = self.world, job.peer
        world.apply_gradient(peer, world.consume(job))
        self._steps_done[peer] += 1
        if self._steps_done[peer] < self.config.local_steps:
            world.compute(peer)
            return
        self._ready += 1
        if self._ready < world.n_peers:
            return
        if world.n_peers == 1:
            self._outer_step()
            return
        for peer in range(world.n_peers):
            self._send_chunk(peer)

    def _send_chunk(self, peer: int) -> None:
        world = self.world
        world.send(peer, (peer + 1) % world.n_peers, self.payload_bytes / world.n_peers, "chunk", self._round[peer])

    def on_message(self, message: Message) -> None:
        peer = message.dst
        self._round[peer] += 1
        if self._round[peer] < 2 * (self.world.n_peers - 1):
            self._send_chunk(peer)
            return
        self._finished += 1
        if self._finished == self.world.n_peers:
            self._outer_step()

    def _outer_step(self) -> None:
        """theta_{t+1} from the mean delta, on every worker; the next round's inner steps start."""
        world, rows = self.world, self.world.rows
        self.round_ends.append(world.now)
        rows.mean_of(self._mean, [world.params[peer] for peer in range(world.n_peers)])
        rows.subtract(self._delta, self._anchor, self._mean)  # mean_i (theta_t - theta_i)
        rows.assign(self._global[0], self._anchor)
        rows.optimizer_step(self.outer, self._global, 0, self._delta, self.config.outer_lr)
        rows.assign(self._anchor, self._global[0])
        n = world.n_peers
        self._steps_done, self._ready, self._round, self._finished = [0] * n, 0, [0] * n, 0
        for peer in range(n):
            world.set_row(peer, self._anchor)
            world.compute(peer)

