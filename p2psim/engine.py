"""The simpy world: peers computing and messaging in virtual time, and the monitor that records them.

DESIGN decision 4: a gradient is computed on the parameters its peer held when the
computation *started* (a snapshot row), whatever is merged meanwhile; staleness is
the number of updates the peer's row received in between. Decision 5: every peer's
parameters are a row of one tensor, and pending gradients are evaluated together,
in one vmapped call, when the first of their results is due. A gradient depends only
on its snapshot and its batch, so this changes no result, only the cost.
"""

from __future__ import annotations

import gc
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import networkx as nx
import numpy as np
import simpy
import torch
from torch.func import functional_call, grad_and_value, vmap

from .attacks import Adversary
from .batches import BatchDraws
from .compression import DTYPES as ROUNDINGS, Wire
from .config import MAX_HISTORY_ROWS
from .faults import LinkFaults
from .dataflow import Dataflow, EagerRows, RowHandle, evaluate_gradients
from .hardware import Device
from .churn import Churn
from .metrics import Evaluator, consensus_distance, consensus_distance_streamed
from .network import Network
from .optim import RowOptimizer, learning_rate
from .payloads import RowPool, RowViews
from .seeding import stream
from .stragglers import PeerTimings, StepClock
from .tasks import TaskData
from .timers import call_later

if TYPE_CHECKING:
    from .algorithms.base import Algorithm
    from .availability import Availability
    from .scenario import Scenario

# Python's cyclic collector while the event loop runs: ops, jobs and messages live from their
# event to the next flush, so the default (700, 10, 10) ran full collections over the whole
# world: a quarter of a 20,000-peer run's wall time (BENCHMARKS.md "4. Scale"). Young cycles
# are still collected; the caller's thresholds are restored when the run ends.
RUN_GC_THRESHOLDS = (100_000, 50, 1000)

__all__ = ["MAX_HISTORY_ROWS", "sampled_peers", "GradientJob", "Message", "RunOutcome", "RunSetup", "SimulationError", "World", "simulate"]


class SimulationError(RuntimeError):
    """A crash inside a peer's behaviour, with the peer and the virtual time in the message."""


@dataclass(eq=False)
class RunSetup:
    """The built pieces of one run, resolved from a scenario by `build.build_run`: what the engine runs."""

    scenario: Scenario
    task: TaskData | None  # None in cost-only mode (engine.numerics = "none")
    partitions: list[np.ndarray]
    devices: list[Device]
    link_names: list[str]
    regions: list[str | None]
    step_time_s: np.ndarray
    flops_per_step: float
    model_bytes: float
    graph: nx.Graph
    uplink_bytes_per_s: np.ndarray
    downlink_bytes_per_s: np.ndarray
    latency_s: Callable[[int, int], float]
    algorithm_class: type[Algorithm]
    byzantine: list[int] = field(default_factory=list)  # sorted; they lie in what they send (p2psim.attacks)
    faults: LinkFaults | None = None  # message loss and cuts (p2psim.faults)
    stragglers: PeerTimings | None = None  # slow-downs and throttling (p2psim.stragglers)
    availability: Availability | None = None  # when each peer is online (p2psim.availability); None: always

    @property
    def n_peers(self) -> int:
        """Number of peers."""
        return len(self.devices)


@dataclass(eq=False, slots=True)
class GradientJob:
    """One local gradient computation: who, when it started, on which row version and batch."""

    peer: int
    started_at: float
    version: int  # updates the peer's row had received when the computation started
    global_step: int  # gradients applied anywhere in the system when it started
    batch: np.ndarray
    duration_s: float
    grad: torch.Tensor | RowHandle | None = None  # a handle under deferred numerics: its row is known at a flush
    loss: float = math.nan
    finite: bool = True
    cancelled: bool = False  # lost: its peer left while computing (p2psim.churn)


@dataclass(eq=False, slots=True)
class Message:
    """A message: `nbytes` on the wire from `src` to `dst`, an opaque payload, and optionally a row.

    `row` is the copy of the tensor row given to `World.send`, as it was at `sent_at`; it
    is readable only while `on_message` runs (its pool slot is reused afterwards).
    """

    src: int
    dst: int
    kind: str
    payload: Any
    nbytes: float
    sent_at: float
    slot: int | None = None
    row: torch.Tensor | RowHandle | None = None
    ticket: int = -1  # churn's handle on it while in flight, to cut it when an end leaves


@dataclass
class RunOutcome:
    """What one simulation produced: history rows, per-peer rows and run facts."""

    history: list[dict[str, float]]
    peers: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    utilisation: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (time_s, per-peer computing fraction)
    offline: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (time_s, per-peer offline fraction); churn only


class World:
    """Shared state of one run and the only door through which algorithms act on it."""

    def __init__(self, setup: RunSetup, progress: Callable[[float, float], None] | None = None):
        scenario = setup.scenario
        self.setup = setup
        self.env = simpy.Environment()
        self.n_peers = setup.n_peers
        self.cost_only = scenario.engine.cost_only  # no numerics: rows have no columns, nothing is evaluated
        self.params = torch.zeros(self.n_peers, 0) if self.cost_only else setup.task.initial_params.unsqueeze(0).repeat(self.n_peers, 1)
        self.neighbors: list[list[int]] = [sorted(setup.graph.neighbors(i)) for i in range(self.n_peers)]
        self.rng = stream(scenario.seed, "algorithm")
        self.adversary = None if not setup.byzantine else Adversary(
            scenario.adversary, setup.byzantine, self.n_peers,
            len(setup.algorithm_class.learners(scenario.algorithm, self.n_peers)), scenario.seed,
        )
        byzantine = set(setup.byzantine)
        self.honest_peers = [peer for peer in range(self.n_peers) if peer not in byzantine]
        self.honest = slice(None) if not setup.byzantine else torch.as_tensor(self.honest_peers, device=self.params.device)  # rows the history describes
        self.sampled_peers = sampled_peers(self.honest_peers, scenario.metrics.sample_peers, scenario.seed)  # None: all
        self.model_bytes = setup.model_bytes
        self.wire = Wire(scenario.network.compression, scenario.peers.precision, self.params.shape[1], self.model_bytes, scenario.seed)
        self.network = Network(
            self.env, setup.uplink_bytes_per_s, setup.downlink_bytes_per_s, setup.latency_s, scenario.network, scenario.seed,
            setup.faults,
        )

        self._progress = progress
        self._batch_gradients = scenario.engine.batch_gradients
        self.param_rows = RowViews(self.params)  # `params[i]`, each view made once: what algorithms send and the engine updates
        # per-peer counters touched at every event: Python lists, whose items cost less to update than numpy's
        self._versions = [0] * self.n_peers
        self._pending: list[GradientJob] = []
        self._computing = np.zeros(self.n_peers, dtype=bool)
        self._busy_since = [0.0] * self.n_peers
        self._busy_total = [0.0] * self.n_peers
        self._batches = BatchDraws(setup.partitions, scenario.data.batch_size, scenario.seed)
        peers = scenario.peers
        self._step_clock = StepClock(
            setup.step_time_s, setup.stragglers, peers.step_time_distribution, peers.jitter, peers.pareto_alpha, scenario.seed
        )
        self._in_flight = 0

        task = setup.task

        def loss_of(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return task.loss(functional_call(task.model, task.unflatten(flat), (x,)), y)

        self._gradients = vmap(grad_and_value(loss_of))
        self._evaluator = None if self.cost_only else Evaluator(task)

        self.steps = 0
        self._instant, self._steps_before_instant = -1.0, 0
        self.samples = 0
        self.gradients_computed = 0
        self._peer_steps = [0] * self.n_peers
        self._peer_staleness = [0.0] * self.n_peers
        self.batch_sizes: list[int] = []
        self.history: list[dict[str, float]] = []
        self.utilisation: list[tuple[float, np.ndarray]] = []
        self.status = "running"
        self.info: dict[str, Any] = {}
        self._window = _Window()
        self._last_busy = np.zeros(self.n_peers)
        self._last_time = 0.0
        self._initial_loss = math.nan
        self._next_record_samples = scenario.metrics.eval_interval_samples or 0
        self._sample_limit = scenario.sample_limit()  # (samples, "samples" or "tokens"): stop.samples or stop.tokens
        self._step_limit = scenario.stop.steps
        schedule = scenario.algorithm.schedule  # without warm-up, a constant schedule's lr is the lr at every clock
        self._constant_lr = scenario.algorithm.lr if schedule.kind == "constant" and schedule.warmup == 0 else None
        self._record_interval_samples = scenario.metrics.eval_interval_samples
        self._stop = self.env.event()
        self.ctrl_c = False  # set by a Ctrl-C during run(): the run stops after the hook that is running
        self.pool = RowPool(self.params.shape[1], device=self.params.device)
        self.optimizer = RowOptimizer(scenario.algorithm.optimizer, self.n_peers, self.params.shape[1], device=self.params.device)
        self.numerics = self._numerics()
        # eager: the rows gradients are computed on, copied at each start; deferred: the op log reads them in order
        self._snapshots = torch.empty_like(self.params) if self.numerics != "deferred" else None
        self._snapshot_rows = None if self._snapshots is None else RowViews(self._snapshots)
        self._dataflow = None if self.numerics != "deferred" else Dataflow(
            self.params, self.pool, self.optimizer,
            lambda rows, batches: evaluate_gradients(self._gradients, task, rows, batches),
            self._batch_gradients, self.batch_sizes, max_rows=8 * self.n_peers,
        )
        # the algorithm's own rows (a server's sum, anchors) and the ops on them: recorded when deferred
        self.rows = self._dataflow if self._dataflow is not None else EagerRows(self.params, self.optimizer)
        self._running: list[GradientJob | None] = [None] * self.n_peers  # each peer's computation in progress
        self.offline: list[tuple[float, np.ndarray]] = []
        self._last_offline = np.zeros(self.n_peers)
        self.churn = None if setup.availability is None else Churn(self, setup.availability)
        self.algorithm = setup.algorithm_class(scenario.algorithm, self)

    # ----- what algorithms call -------------------------------------------------------

    @property
    def now(self) -> float:
        """Simulated seconds since the start."""
        return self.env.now

    @property
    def peer_steps(self) -> np.ndarray:
        """Gradients each peer has had consumed (a new array at each call)."""
        return np.array(self._peer_steps, dtype=np.int64)

    @property
    def peer_staleness(self) -> np.ndarray:
        """Each peer's row staleness summed over its consumed gradients (a new array at each call)."""
        return np.array(self._peer_staleness, dtype=np.float64)

    def is_online(self, peer: int) -> bool:
        """Whether `peer` is online now (always without churn): what a membership service or a check-in tells."""
        return self.churn is None or bool(self.churn.online[peer])

    def is_computing(self, peer: int) -> bool:
        """Whether `peer` has a computation in progress."""
        return bool(self._computing[peer])

    @property
    def timeout_s(self) -> float | None:
        """How long a peer waits for one that may have left (`churn.timeout_s`); None without churn: as long as it takes."""
        return None if self.churn is None else self.churn.spec.timeout_s

    def after_timeout(self, peer: int, action: Callable[[], None]) -> None:
        """Run `action()` for `peer` after `timeout_s` when peers may leave; without churn nobody gives up: nothing."""
        if self.churn is not None:
            self.schedule(self.churn.spec.timeout_s, peer, action)

    def compute(self, peer: int) -> GradientJob | None:
        """Start a local gradient computation on `peer`'s current parameters (None: `peer` is offline, nothing starts)."""
        if self.churn is not None and not self.churn.online[peer]:
            return None
        if self._computing[peer]:
            raise SimulationError(f"peer {peer} at t={self.now:.6g} s: compute() while already computing")
        now = self.env.now
        duration = self._step_clock.duration(peer, now)
        job = GradientJob(peer, now, self._versions[peer], self.steps, self._batches.next(peer), duration)
        if self._dataflow is not None:
            self._dataflow.gradient(peer, job)
        else:
            self._snapshot_rows[peer].copy_(self.param_rows[peer])
            self._pending.append(job)
        self._computing[peer] = True
        self._running[peer] = job
        self._busy_since[peer] = now
        call_later(self.env, duration, lambda _timer: self._finish(job))
        return job

    def send(
        self, src: int, dst: int, nbytes: float, kind: str, payload: Any = None, row: torch.Tensor | None = None,
        encoded: bool = False,
    ) -> None:
        """Send `nbytes` from `src` to `dst`; the algorithm's `on_message` runs when it has arrived.

        `row` (a parameter-sized tensor, e.g. `world.params[src]`) is copied now, at send
        time, and reaches the receiver as `message.row`: what was sent, as it left, decoded
        from the scenario's wire format (`self.wire`), whose bytes replace the `model_bytes`
        that `nbytes` counts for it. `encoded`: the caller encoded the row already
        (`self.wire.encode_`) and `nbytes` counts it, as when one compressed row goes to several peers.
        """
        slot = None
        if row is not None:
            if self.adversary is not None:
                row = self.adversary.outgoing(src, kind, row)
            slot = self.pool.store(row) if self._dataflow is None else self._dataflow.store(row)
            if not encoded and not self.wire.identity:
                nbytes += self._encode(src, slot, kind) - self.model_bytes
        message = Message(src, dst, kind, payload, nbytes, self.env.now, slot)
        if self.churn is None or self.churn.admit(message):  # an offline end: dropped or held (p2psim.churn)
            self._transmit(message)

    def _transmit(self, message: Message) -> None:
        """Put `message` on the network: at once, or when churn releases a held one."""
        self._in_flight += 1
        flow = self.network.send(
            message.src, message.dst, message.nbytes, lambda: self._deliver(message), lambda: self._lose(message)
        )
        if self.churn is not None:
            self.churn.track(message, flow)

    def consume(self, job: GradientJob) -> torch.Tensor:
        """The job's gradient, to be applied now: counts its step and samples, and its staleness.

        Two staleness measures are kept: row staleness (updates the peer's own row received
        since its snapshot) and the global delay of Lian et al. 2018 (gradients applied
        anywhere in the system after the read and at an earlier instant than this write,
        so a synchronous round's gradients have delay 0). Stopping rules count consumed
        gradients.
        """
        now, peer = self.env.now, job.peer
        if now != self._instant:  # gradients applied at this same instant are one update, not delays
            self._instant, self._steps_before_instant = now, self.steps
        row_staleness = self._versions[peer] - job.version
        global_delay = self._steps_before_instant - job.global_step
        self.steps += 1
        self.samples += len(job.batch)
        self._peer_steps[peer] += 1
        self._peer_staleness[peer] += row_staleness
        window = self._window
        window.row_staleness += row_staleness
        window.global_delay += global_delay
        window.age_s += now - job.started_at
        window.consumed += 1
        if self._dataflow is not None:
            self._dataflow.consumed(job)
        return job.grad

    def lr(self, peer: int) -> float:
        """`peer`'s learning rate now: the scenario's lr under its schedule, at the row's optimizer steps or time."""
        if self._constant_lr is not None:
            return self._constant_lr
        config = self.setup.scenario.algorithm
        clock = self.now if config.schedule.clock == "time" else float(self.optimizer.steps[peer])
        return learning_rate(config.lr, config.schedule, clock)

    def apply_gradient(self, peer: int, grad: torch.Tensor, lr_scale: float = 1.0) -> None:
        """One step of the scenario's optimizer on `peer`'s row, at its scheduled lr times `lr_scale`."""
        if self._dataflow is not None:
            self._dataflow.step(peer, grad, self.lr(peer) * lr_scale)
        else:
            self.optimizer.step(self.params, peer, grad, self.lr(peer) * lr_scale)
        self._versions[peer] += 1

    def add_to_row(self, peer: int, update: torch.Tensor, alpha: float = 1.0) -> None:
        """params[peer] += alpha * update."""
        if self._dataflow is not None:
            self._dataflow.add(peer, update, alpha)
        else:
            self.param_rows[peer].add_(update, alpha=alpha)
        self._versions[peer] += 1

    def set_row(self, peer: int, value: torch.Tensor) -> None:
        """params[peer] = value."""
        if self._dataflow is not None:
            self._dataflow.copy(peer, value)
        else:
            self.param_rows[peer].copy_(value)
        self._versions[peer] += 1

    def mix_row(self, peer: int, incoming: torch.Tensor, weight: float) -> None:
        """params[peer] = (1 - weight) params[peer] + weight incoming: a merge with a received model."""
        if self._dataflow is not None:
            self._dataflow.lerp(peer, incoming, weight)
        else:
            self.param_rows[peer].lerp_(incoming, weight)
        self._versions[peer] += 1

    def schedule(self, delay_s: float, peer: int, action: Callable[[], None]) -> None:
        """Run `action()` for `peer` after `delay_s` simulated seconds (a timer: a timeout, a period).

        Under churn an offline peer's timer fires when it is back, a crashed peer's never.
        """
        if self.churn is None:
            call_later(self.env, delay_s, lambda _timer: None if self._stop.triggered else self._call(peer, "timer", action, None))
            return
        self.churn.timer_set(delay_s)
        call_later(self.env, delay_s, lambda _timer: self._churn_timer(peer, action))

    def _churn_timer(self, peer: int, action: Callable[[], None]) -> None:
        if self._stop.triggered or not self.churn.timer_due(peer, action):
            return
        self._call(peer, "timer", action, None)
        self.churn.check()

    def average_rows(self, peers: tuple[int, ...] | list[int]) -> None:
        """Set the given rows to their mean, at this instant (an atomic average)."""
        if self._dataflow is not None:
            self._dataflow.average(peers)
        elif len(peers) == 2:  # the gossip hot path: two in-place row operations, no index tensor
            first, second = self.param_rows[peers[0]], self.param_rows[peers[1]]
            first.add_(second).mul_(0.5)
            second.copy_(first)
        else:
            index = torch.as_tensor(peers, device=self.params.device)
            self.params[index] = self.params.index_select(0, index).mean(dim=0)
        for peer in peers:
            self._versions[peer] += 1

    # ----- the engine's own machinery -------------------------------------------------

    def _abandon(self, peer: int) -> bool:
        """`peer` left: its computation in progress, if any, is lost (its time so far counts as computing)."""
        job = self._running[peer]
        if not self._computing[peer] or job is None:
            return False
        job.cancelled = True
        if job in self._pending:
            self._pending.remove(job)
        self._computing[peer] = False
        self._busy_total[peer] += self.now - job.started_at
        return True

    def _finish(self, job: GradientJob) -> None:
        if self._stop.triggered or job.cancelled:  # the run ended earlier at this same instant; or the peer left
            return
        if job.grad is None:
            self._evaluate(job)
        peer, now, window = job.peer, self.env.now, self._window
        self._computing[peer] = False
        self._busy_total[peer] += now - job.started_at
        self.gradients_computed += 1
        if self.churn is not None:
            self.churn.last_activity = now
        if self._dataflow is None:
            window.train_loss += job.loss
        else:
            window.deferred.append(job)  # its loss is known at the next flush
        window.computed += 1
        if not job.finite:
            self._diverge([peer], "non-finite gradient")
            return
        self._call(peer, "on_gradient", self.algorithm.on_gradient, job)

    def _evaluate(self, due: GradientJob) -> None:
        """Evaluate the due job, and with it every pending job when batching (DESIGN decision 5)."""
        if self.cost_only:  # no numerics: every pending job ends with an empty gradient and no loss
            for job in self._pending:
                job.grad = self.params[job.peer]
            self._pending = []
            return
        if self._batch_gradients:
            jobs, self._pending = self._pending, []
        else:
            jobs = [due]
            self._pending.remove(due)
        rows = self._snapshots.index_select(0, torch.as_tensor([job.peer for job in jobs], device=self.params.device))
        grads, losses, finite = evaluate_gradients(self._gradients, self.setup.task, rows, [job.batch for job in jobs])
        for job, g, loss, ok in zip(jobs, grads, losses, finite):
            job.grad, job.loss, job.finite = g, loss, ok
        self.batch_sizes.append(len(jobs))

    def _deliver(self, message: Message) -> None:
        self._in_flight -= 1
        if self.churn is not None:
            self.churn.untrack(message)
        slot = message.slot
        if slot is not None:
            message.row = self.pool.row(slot) if self._dataflow is None else self._dataflow.payload(slot)
        try:
            if not self._stop.triggered:
                self._call(message.dst, "on_message", self.algorithm.on_message, message)
        finally:
            if slot is not None:
                self.pool.release(slot)
                message.row, message.slot = None, None

    def _lose(self, message: Message) -> None:
        """A fault lost the message on its way (p2psim.faults): it leaves the network, and no algorithm sees it."""
        self._in_flight -= 1
        if self.churn is not None:
            self.churn.untrack(message)
        if message.slot is not None:
            self.pool.release(message.slot)
            message.slot = None

    def _call(self, peer: int, hook: str, action: Callable[..., None], argument: Any) -> None:
        """Run an algorithm's `action(argument)` (or `action()` for a timer): a crash names the peer, time and hook."""
        try:
            action() if argument is None else action(argument)
        except SimulationError:
            raise
        except Exception as error:
            raise SimulationError(
                f"peer {peer} at t={self.now:.6g} s, in {self.algorithm.name}.{hook}: {type(error).__name__}: {error}"
            ) from error
        self._check_budget()
        if self.ctrl_c:
            self._interrupt()

    def _check_budget(self) -> None:
        if self._sample_limit is not None and self.samples >= self._sample_limit[0]:
            self._request_stop(self._sample_limit[1])
        elif self._step_limit is not None and self.steps >= self._step_limit:
            self._request_stop("steps")
        interval = self._record_interval_samples
        if interval is not None and self.samples >= self._next_record_samples:
            self._next_record_samples += interval
            self._record()

    def _interrupt(self) -> None:
        """Ctrl-C: stop after the event that is running, with status "interrupted" (history so far)."""
        if self.status == "running":
            self.status = "interrupted"
            self.info["stop_reason"] = f"interrupted at t={self.now:.6g} s (Ctrl-C)"
        self._request_stop("interrupted")

    def _request_stop(self, reason: str) -> None:
        if not self._stop.triggered:
            self.info.setdefault("stop_reason", reason)
            self._stop.succeed()

    def _diverge(self, peers: list[int], reason: str, at_s: float | None = None) -> None:
        if self.status == "running":
            self.status = "diverged"
            self.info.update(diverged_at_s=self.now if at_s is None else at_s, diverged_peers=peers, divergence=reason)
        self._request_stop("diverged")

    def _monitor(self, interval_s: float):
        while True:
            self._record()
            if self.churn is not None:
                self.churn.check()  # stalled, with when and why (p2psim.churn)
            elif self._stalled():
                self.status = "stalled"
                self._request_stop("stalled: no computation or message in flight")
            elif len(self.history) >= MAX_HISTORY_ROWS:  # validation refuses such runs by estimate; a net behind it
                self.status = "stalled"
                self._request_stop(f"stalled: {MAX_HISTORY_ROWS} history rows recorded before the stopping rule")
            yield self.env.timeout(interval_s)

    def _stalled(self) -> bool:
        return self.now > 0 and not self._computing.any() and self._in_flight == 0

    def _record(self) -> None:
        """Append one history row; detect divergence instead of recording NaN."""
        if self.history and self.history[-1]["time_s"] == self.now and self.history[-1]["samples"] == self.samples:
            return
        if self._dataflow is not None and not self._flush():
            return
        model = {} if self.cost_only else self._model_columns()
        if model is None:
            return
        busy = self._busy()
        elapsed = self.now - self._last_time
        per_peer = (busy - self._last_busy) / elapsed if elapsed > 0 else np.zeros(self.n_peers)
        computing = float(per_peer.mean())
        offline = self._offline_fractions(elapsed)
        window = self._window
        row = {
            "time_s": self.now,
            "samples": self.samples,
            "steps": self.steps,
            **model,
            "bytes_sent": float(self.network.bytes_sent.sum()),
            **({"messages_lost": float(self.network.messages_lost)} if self.setup.faults is not None else {}),
            "row_staleness": window.row_staleness / window.consumed if window.consumed else math.nan,
            "global_delay": window.global_delay / window.consumed if window.consumed else math.nan,
            "gradient_age_s": window.age_s / window.consumed if window.consumed else math.nan,
            "computing_fraction": computing,
            "waiting_fraction": 1.0 - computing - float(offline.mean()) if elapsed > 0 else 0.0,
        }
        if self.churn is not None:
            row.update(offline_fraction=float(offline.mean()), peers_online=int(self.churn.online.sum()))
            self.offline.append((self.now, offline))
        self.history.append(row)
        self.utilisation.append((self.now, per_peer))
        self._window = _Window()
        self._last_busy = busy
        self._last_time = self.now
        if self._progress is not None:
            self._progress(self.now, self._fraction_done())

    def _busy(self) -> np.ndarray:
        """Each peer's seconds of computing so far, the computation in progress included."""
        return np.array(self._busy_total) + np.where(self._computing, self.now - np.array(self._busy_since), 0.0)

    def _offline_fractions(self, elapsed: float) -> np.ndarray:
        """Each peer's offline share of the interval of `elapsed` seconds that ends now (zeros without churn)."""
        if self.churn is None:
            return np.zeros(self.n_peers)
        seconds = self.churn.offline_seconds()
        fractions = (seconds - self._last_offline) / elapsed if elapsed > 0 else np.zeros(self.n_peers)
        self._last_offline = seconds
        return fractions

    def _model_columns(self) -> dict[str, float] | None:
        """The history's model metrics (loss, accuracy, consensus); None when they show divergence."""
        evaluator = self._evaluator
        average = self.algorithm.evaluated_model()
        loss, accuracy = evaluator.single(average)
        honest = self.params[self.honest]  # Byzantine peers' rows are theirs: no metric describes them
        evaluated = self.honest_peers if self.sampled_peers is None else self.sampled_peers
        peer_loss, peer_accuracy = evaluator.rows(honest if self.sampled_peers is None else self.params[self._sample_index])
        if math.isnan(self._initial_loss):
            self._initial_loss = loss
        limit = self.setup.scenario.metrics.divergence_factor * max(self._initial_loss, 1e-12)
        bad = ~torch.isfinite(peer_loss) | (peer_loss > limit)
        if not math.isfinite(loss) or loss > limit or bool(bad.any()):
            self._diverge([evaluated[i] for i in torch.nonzero(bad).flatten().tolist()], "loss beyond divergence_factor x initial loss")
            return None
        sampled = self.sampled_peers is not None  # then: own-model columns over the sample, consensus streamed
        mean_distance, max_distance = (consensus_distance_streamed if sampled else consensus_distance)(honest)
        window = self._window
        peers = "_sampled" if sampled else ""
        columns = {
            "loss": loss,
            "accuracy": accuracy,
            f"peers_loss{peers}": float(peer_loss.mean()),
            f"peers_accuracy{peers}": float(peer_accuracy.mean()),
            "train_loss": window.train_loss / window.computed if window.computed else math.nan,
            "consensus_distance": mean_distance,
            "consensus_distance_max": max_distance,
        }
        if self.setup.task.optimum_loss is not None:
            columns["suboptimality"] = evaluator.single(average, train=True)[0] - self.setup.task.optimum_loss
        if self.setup.task.n_classes is None:
            del columns["accuracy"], columns[f"peers_accuracy{peers}"]
        if self.setup.task.perplexity:  # a language model: exp of the mean cross-entropy per token (nats)
            columns["perplexity"] = math.exp(loss) if loss < 700 else math.inf
        return columns

    @property
    def _sample_index(self) -> torch.Tensor:
        return torch.as_tensor(self.sampled_peers, device=self.params.device)

    def _peer_metrics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every peer's own-model loss and accuracy; NaN outside `metrics.sample_peers` when it is set."""
        if self.sampled_peers is None:
            return self._evaluator.rows(self.params)
        loss, accuracy = self._evaluator.rows(self.params[self._sample_index])
        every = torch.full((2, self.n_peers), math.nan, dtype=loss.dtype, device=loss.device)
        every[0, self._sample_index], every[1, self._sample_index] = loss, accuracy
        return every[0], every[1]

    def _encode(self, src: int, slot: int, kind: str) -> float:
        """Turn the payload in `slot` into what its receiver decodes (deferred: its rounding, as an op); its bytes."""
        if self._dataflow is None:
            return self.wire.encode_(src, self.pool.row(slot), kind in self.algorithm.update_kinds)
        self._dataflow.round(slot, ROUNDINGS.get(self.wire.spec.kind) or ROUNDINGS[self.wire.precision])
        return self.wire.quantized_bytes

    def _numerics(self) -> str:
        """The scenario's numerics, or "eager" where it asks "deferred" but something reads or rewrites row values."""
        wanted = self.setup.scenario.engine.numerics
        wire = self.wire.spec  # an elementwise rounding (peers.precision, fp16, bf16) is deferred too; other codecs not
        rounding = wire.kind in ("none", *ROUNDINGS) and not wire.error_feedback
        trackable = self.setup.algorithm_class.defers_numerics(self.setup.scenario.algorithm) and self.adversary is None and rounding
        trackable = trackable and self.setup.availability is None  # churn cuts computations and copies rows itself
        return "eager" if wanted == "deferred" and not trackable else wanted

    def _flush(self) -> bool:
        """Run the deferred numerics; False if a gradient finished so far was not finite (diverged at its finish)."""
        self._dataflow.flush()
        window = self._window
        train_loss = window.train_loss  # summed in finishing order, as eager numerics do
        for job in window.deferred:
            if not job.finite:
                self._diverge([job.peer], "non-finite gradient", at_s=job.started_at + job.duration_s)
                return False
            train_loss += job.loss
        window.train_loss = train_loss
        window.deferred = []
        return True

    def _fraction_done(self) -> float:
        stop = self.setup.scenario.stop
        fractions = [
            self.now / stop.sim_time_s if stop.sim_time_s else 0.0,
            self.samples / self._sample_limit[0] if self._sample_limit else 0.0,
            self.steps / stop.steps if stop.steps else 0.0,
        ]
        return min(1.0, max(fractions))

    def run(self) -> RunOutcome:
        """Simulate until the stopping rule, divergence, a stall or Ctrl-C; return what was recorded."""
        collector = gc.get_threshold()
        gc.set_threshold(*RUN_GC_THRESHOLDS)  # from the algorithm's start (every peer's first step) to the last flush
        try:
            return self._run()
        finally:
            gc.set_threshold(*collector)

    def _run(self) -> RunOutcome:
        scenario = self.setup.scenario
        wall_start = time.perf_counter()
        if scenario.stop.sim_time_s is not None:
            call_later(self.env, scenario.stop.sim_time_s, lambda _timer: self._request_stop("sim_time_s"))
        if scenario.metrics.eval_interval_s is not None:
            self.env.process(self._monitor(scenario.metrics.eval_interval_s))
        else:
            self._record()
        if self.churn is not None:
            self.churn.start()
        self.algorithm.start()
        restore = _stop_on_ctrl_c(self)
        try:
            self.env.run(until=self._stop)
        except RuntimeError as error:
            if "No scheduled events left" not in str(error):
                raise
            self.status = "stalled"
            self.info.setdefault("stop_reason", "stalled: no computation or message in flight")
        finally:
            restore()
        if self.status in ("running", "stalled", "interrupted"):
            self._record()  # may itself find the run diverged since its last regular record
        if self.status == "running":
            self.status = "finished"
        if self._dataflow is not None and self._dataflow.pending:  # a diverged run's rows, for the per-peer table
            self._dataflow.flush()
        facts = self._facts(time.perf_counter() - wall_start)
        return RunOutcome(self.history, self._peer_rows(), facts, self.utilisation, self.offline)

    def _facts(self, wall_s: float) -> dict[str, Any]:
        sizes = np.asarray(self.batch_sizes) if self.batch_sizes else np.zeros(1)
        return {
            **self.info,
            "status": self.status,
            "sim_time_s": self.now,
            "samples": self.samples,
            "steps": self.steps,
            "wall_s": wall_s,
            "gradients_computed": self.gradients_computed,
            "gradient_evaluations": len(self.batch_sizes),
            "numerics": self.numerics,
            "mean_gradient_batch": float(sizes.mean()),
            "max_gradient_batch": int(sizes.max()),
            "torch_threads": torch.get_num_threads(),
            "torch_device": str(self.params.device),
            "messages": int(self.network.messages_sent),
            "messages_lost": int(self.network.messages_lost),
            "payload_rows_peak": self.pool.peak_in_use,
            **self._adversary_facts(),
            **({} if self.churn is None else self.churn.facts()),
            **self.algorithm.mixing().as_facts(),
        }

    def _adversary_facts(self) -> dict[str, Any]:
        if self.adversary is None:
            return {}
        return {
            "byzantine_peers": self.adversary.byzantine,
            "attack": self.adversary.spec.attack,
            "byzantine_rows_sent": self.adversary.rows_corrupted,
            "evaluated_peers": "honest peers only: the averaged model and peer metrics exclude the Byzantine peers",
        }

    def _peer_rows(self) -> list[dict[str, Any]]:
        setup = self.setup
        if not self.cost_only:
            with torch.no_grad():
                peer_loss, peer_accuracy = self._peer_metrics()
        busy = self._busy()
        bytes_sent, bytes_received = self.network.bytes_sent, self.network.bytes_received
        steps, staleness = self.peer_steps, self.peer_staleness
        offline_s = None if self.churn is None else self.churn.offline_seconds()
        rows = []
        for i in range(self.n_peers):
            row = {
                "peer": i,
                "device": setup.devices[i].name,
                "link": setup.link_names[i],
                "region": setup.regions[i] or "",
                "degree": len(self.neighbors[i]),
                "step_time_s": float(setup.step_time_s[i]),
                "steps": int(steps[i]),
                "computing_fraction": float(busy[i] / self.now) if self.now > 0 else 0.0,
                **({} if self.churn is None else {"offline_fraction": float(offline_s[i] / self.now) if self.now > 0 else 0.0}),
                "bytes_sent": float(bytes_sent[i]),
                "bytes_received": float(bytes_received[i]),
                "row_staleness": float(staleness[i] / steps[i]) if steps[i] else math.nan,
                "byzantine": i in self.setup.byzantine,
            }
            if not self.cost_only:
                row["loss"] = float(peer_loss[i])
            if not self.cost_only and setup.task.n_classes is not None:
                row["accuracy"] = float(peer_accuracy[i])
            rows.append(row)
        return rows


def sampled_peers(honest: list[int], sample: int | None, seed: int) -> list[int] | None:
    """The peers whose own models the history evaluates (sorted; a seeded random subset), or None for all.

    >>> sampled_peers(list(range(10)), 3, 0) == sampled_peers(list(range(10)), 3, 0), sampled_peers([0, 1], 5, 0)
    (True, None)
    """
    if sample is None or sample >= len(honest):
        return None
    return sorted(stream(seed, "recording").choice(honest, size=sample, replace=False).tolist())


def _stop_on_ctrl_c(world: World) -> Callable[[], None]:
    """Make Ctrl-C stop `world` after the hook that is running (a second Ctrl-C aborts); returns the undo.

    Only the main thread takes signals: elsewhere (a sweep's worker threads) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_signum: int, _frame: Any) -> None:
        if world.ctrl_c:
            raise KeyboardInterrupt
        world.ctrl_c = True

    previous = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


@dataclass
class _Window:
    """Sums over the current recording interval."""

    train_loss: float = 0.0
    computed: int = 0
    row_staleness: float = 0.0
    global_delay: float = 0.0
    age_s: float = 0.0
    consumed: int = 0
    deferred: list[GradientJob] = field(default_factory=list)  # finished, their losses not yet computed


def simulate(setup: RunSetup, progress: Callable[[float, float], None] | None = None) -> RunOutcome:
    """Run one built scenario to its end; `progress(sim_time_s, fraction_done)` is called at each record.

    Torch's thread count is set to the scenario's `engine.threads` for the run and restored after.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(setup.scenario.engine.threads)
    try:
        return World(setup, progress).run()
    finally:
        torch.set_num_threads(threads)
