"""Per-peer optimizers whose state lives in rows, like the parameters (DESIGN decision 5).

`OptimizerSpec` and `ScheduleSpec` are the `[algorithm.optimizer]` and
`[algorithm.schedule]` tables of a scenario; `RowOptimizer` holds one state row per
peer (momentum buffer, Adam moments) and applies one peer's step to its row in place.
Update rules follow torch.optim's documented algorithms (SGD with momentum and
dampening 0, Nesterov as in Sutskever et al. 2013; Adam, Kingma & Ba 2015; AdamW's
decoupled weight decay, Loshchilov & Hutter 2019), so a single peer reproduces torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import ScenarioError
from .lazy import torch

__all__ = ["OPTIMIZERS", "SCHEDULES", "OptimizerSpec", "RowOptimizer", "ScheduleSpec", "learning_rate"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
SCHEDULE_CLOCKS = ("steps", "time")


def _check(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ScenarioError(field, message)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class OptimizerSpec:
    """How a peer turns a gradient into a step: `sgd`, `momentum`, `nesterov`, `adam` or `adamw`."""

    name: str = "sgd"
    momentum: float = 0.9  # for momentum and nesterov
    beta1: float = 0.9  # Adam's first-moment decay
    beta2: float = 0.999  # Adam's second-moment decay
    eps: float = 1e-8
    weight_decay: float = 0.0  # L2 added to the gradient (sgd, momentum, nesterov, adam); decoupled for adamw

    def __post_init__(self) -> None:
        _check(self.name in OPTIMIZERS, "name", f"unknown optimizer {self.name!r} (allowed: {', '.join(OPTIMIZERS)})")
        for name in ("momentum", "beta1", "beta2"):
            value = getattr(self, name)
            _check(_finite(value) and 0 <= value < 1, name, f"must be in [0, 1), got {value!r}")
        _check(_finite(self.eps) and self.eps > 0, "eps", f"must be > 0, got {self.eps!r}")
        _check(
            _finite(self.weight_decay) and 0 <= self.weight_decay < 1e3,
            "weight_decay",
            f"must be in [0, 1000), got {self.weight_decay!r}",
        )


@dataclass(frozen=True)
class ScheduleSpec:
    """The learning rate over a peer's own steps (`clock = "steps"`) or simulated seconds (`"time"`).

    `constant`; `step`: multiplied by `gamma` every `every` units; `cosine`: from lr down to
    `final_fraction` x lr over `horizon` units, then flat. A linear warm-up over `warmup`
    units from 0 precedes any of them.
    """

    kind: str = "constant"
    clock: str = "steps"
    warmup: float = 0.0
    every: float | None = None  # step schedule
    gamma: float = 0.1  # step schedule
    horizon: float | None = None  # cosine schedule
    final_fraction: float = 0.0  # cosine schedule

    def __post_init__(self) -> None:
        _check(self.kind in SCHEDULES, "kind", f"unknown schedule {self.kind!r} (allowed: {', '.join(SCHEDULES)})")
        _check(self.clock in SCHEDULE_CLOCKS, "clock", f"unknown clock {self.clock!r} (allowed: steps, time)")
        _check(_finite(self.warmup) and self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup!r}")
        _check(_finite(self.gamma) and 0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma!r}")
        _check(
            _finite(self.final_fraction) and 0 <= self.final_fraction <= 1,
            "final_fraction",
            f"must be in [0, 1], got {self.final_fraction!r}",
        )
        if self.kind == "step":
            _check(self.every is not None, "every", "is required when kind = 'step'")
            _check(_finite(self.every) and self.every > 0, "every", f"must be > 0, got {self.every!r}")
        if self.kind == "cosine":
            _check(self.horizon is not None, "horizon", "is required when kind = 'cosine'")
            _check(_finite(self.horizon) and self.horizon > 0, "horizon", f"must be > 0, got {self.horizon!r}")


def learning_rate(base: float, schedule: ScheduleSpec, clock: float) -> float:
    """The scheduled learning rate at `clock` (a peer's applied steps, or simulated seconds).

    >>> learning_rate(0.1, ScheduleSpec(kind="step", every=10, gamma=0.5), 25)
    0.025
    >>> learning_rate(1.0, ScheduleSpec(kind="cosine", horizon=100), 50)
    0.5
    >>> learning_rate(1.0, ScheduleSpec(warmup=4), 1)
    0.25
    """
    if schedule.warmup > 0 and clock < schedule.warmup:
        return base * clock / schedule.warmup
    if schedule.kind == "step":
        return base * schedule.gamma ** math.floor(clock / schedule.every)
    if schedule.kind == "cosine":
        progress = min(1.0, max(0.0, clock - schedule.warmup) / schedule.horizon)
        floor = schedule.final_fraction
        return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    return base


class RowOptimizer:
    """Optimizer state as `[n_rows, n_params]` tensors; `step(rows, i, grad, lr)` updates `rows[i]` in place."""

    def __init__(
        self, spec: OptimizerSpec, n_rows: int, n_params: int, dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ):
        """`dtype`: the rows' (None: float32)."""
        self.spec = spec
        # counts in numpy: read and bumped at every step, where a torch scalar op costs microseconds
        self.steps = np.zeros(n_rows, dtype=np.int64)  # steps applied to each row: the schedule's clock
        self._t = np.zeros(n_rows, dtype=np.int64)  # steps since the row's state was last reset
        state = {"dtype": torch.float32 if dtype is None else dtype, "device": device}
        self._buffer = torch.zeros(n_rows, n_params, **state) if spec.name in ("momentum", "nesterov") else None
        adam = spec.name in ("adam", "adamw")
        self._m = torch.zeros(n_rows, n_params, **state) if adam else None
        self._v = torch.zeros(n_rows, n_params, **state) if adam else None

    def reset(self, i: int) -> None:
        """Fresh state for row `i` (momentum buffer, Adam moments and bias-correction count); its step clock runs on."""
        self._t[i] = 0
        for state in (self._buffer, self._m, self._v):
            if state is not None:
                state[i].zero_()

    def reset_count(self, i: int) -> None:
        """`reset`'s count part alone: deferred numerics zero the state rows later (`zero_states`), in the log's order."""
        self._t[i] = 0

    @property
    def has_state(self) -> bool:
        """Whether there are state rows (momentum, Adam): plain SGD has only counts."""
        return self.spec.name != "sgd"

    def zero_states(self, index: torch.Tensor | slice) -> None:
        """`reset`'s state part for the rows `index` (an index tensor, or a slice of consecutive rows) at once."""
        for state in self._states():
            if state is not None:
                state[index] = 0.0

    def step(self, rows: torch.Tensor, i: int, grad: torch.Tensor, lr: float) -> None:
        """One optimizer step on row `i` of `rows` with gradient `grad` (not modified)."""
        t = self.advance(i)
        self._update(rows[i], grad, lr, t, *(None if state is None else state[i] for state in self._states()))

    def advance(self, i: int) -> int:
        """Count one step on row `i` (its schedule clock and its state's step count); return that count, t."""
        self.steps[i] += 1
        self._t[i] += 1
        return int(self._t[i])

    def batch_key(self, t: int) -> int:
        """What of a step count t the update uses (Adam: t; momentum: first or not; SGD: nothing): steps batch by it."""
        if self.spec.name in ("adam", "adamw"):
            return t
        return min(t, 2) if self.spec.name in ("momentum", "nesterov") else 0

    def step_rows(self, rows: torch.Tensor, index: torch.Tensor | slice, grads: torch.Tensor, lr: float, t: int) -> None:
        """`step` on the rows `index` at once, all at count `t` (or its `batch_key`), counts already advanced.

        `index` is an index tensor, or a slice of consecutive rows, whose views are then updated in place.
        """
        if type(index) is slice:
            self._update(rows[index], grads, lr, t, *(None if state is None else state[index] for state in self._states()))
            return
        block = rows.index_select(0, index)
        states = [None if state is None else state.index_select(0, index) for state in self._states()]
        self._update(block, grads, lr, t, *states)
        rows.index_copy_(0, index, block)
        for state, rows_of_state in zip(self._states(), states):
            if state is not None:
                state.index_copy_(0, index, rows_of_state)

    def _states(self) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        return self._buffer, self._m, self._v

    def _update(
        self,
        row: torch.Tensor,
        grad: torch.Tensor,
        lr: float,
        t: int,
        buffer: torch.Tensor | None,
        m: torch.Tensor | None,
        v: torch.Tensor | None,
    ) -> None:
        """The update rule in place on `row` (one row, or a block of rows at the same lr and count t)."""
        spec = self.spec
        if spec.name == "adamw" and spec.weight_decay:
            row.mul_(1 - lr * spec.weight_decay)
        if spec.weight_decay and spec.name != "adamw":
            grad = grad.add(row, alpha=spec.weight_decay)
        if spec.name == "sgd":
            row.add_(grad, alpha=-lr)
        elif spec.name in ("momentum", "nesterov"):
            if t == 1:
                buffer.copy_(grad)
            else:
                buffer.mul_(spec.momentum).add_(grad)
            direction = grad.add(buffer, alpha=spec.momentum) if spec.name == "nesterov" else buffer
            row.add_(direction, alpha=-lr)
        else:
            m.mul_(spec.beta1).add_(grad, alpha=1 - spec.beta1)
            v.mul_(spec.beta2).addcmul_(grad, grad, value=1 - spec.beta2)
            denominator = (v / (1 - spec.beta2**t)).sqrt_().add_(spec.eps)
            row.addcdiv_(m, denominator, value=-lr / (1 - spec.beta1**t))
