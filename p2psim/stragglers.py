"""Stragglers: slow peers and time-varying throttling (the `[stragglers]` section), and each step's duration.

A local step's work is its device's modelled time (`hardware.step_time_s`) x the product of
the peer's slow-down factors x a mean-one random factor (`peers.jitter`,
`peers.step_time_distribution`: log-normal, exponential or heavy-tailed Pareto). Throttling
then stretches that work in time: inside a window of factor f the peer computes at 1/f of
its speed, so a step that starts before a window and ends inside it is slowed for its part
inside only (integrated exactly, not judged by when the step started).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import ScenarioError, bounded, check_ranges
from .hardware import step_time_factors
from .seeding import stream, streams

__all__ = [
    "PeerGroup",
    "PeerTimings",
    "SlowdownSpec",
    "StepClock",
    "StragglersSpec",
    "ThrottleSpec",
    "Window",
    "check_stragglers",
    "resolve_stragglers",
    "throttled_duration",
]

MAX_SECONDS = 1e12  # as scenario.MAX_SECONDS: ~31,700 years of simulated time
FACTOR = dict(low=1, high=1e6, why="a slow-down; a faster device is another catalogue entry")
DRAW_BLOCK = 256  # random step factors drawn at a time per peer, at most
FIRST_BLOCK = 8  # a peer's first block: a short run draws little (blocks double up to DRAW_BLOCK)


@dataclass(frozen=True, kw_only=True)
class PeerGroup:
    """Which peers a setting applies to: listed peers, peers on listed devices, and a seeded random fraction.

    The group is the union of the three; with none given, it is every peer.
    """

    peers: tuple[int, ...] = bounded((), low=0, high=10**6)
    devices: tuple[str, ...] = ()  # device names, as in peers.devices
    fraction: float | None = bounded(None, low=0, high=1)  # round(fraction x peers.count) peers drawn from the seed

    def members(self, device_names: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        """A flag per peer: whether it is in the group (`rng` draws the random fraction)."""
        n = len(device_names)
        if not (self.peers or self.devices or self.fraction is not None):
            return np.ones(n, dtype=bool)
        chosen = np.array([name in self.devices for name in device_names], dtype=bool)
        chosen[list(self.peers)] = True
        if self.fraction is not None:
            chosen[rng.permutation(n)[: round(self.fraction * n)]] = True
        return chosen


@dataclass(frozen=True, kw_only=True)
class SlowdownSpec(PeerGroup):
    """A constant slow-down: the group's steps take `factor` times as long (factors of several groups multiply)."""

    factor: float = bounded(**FACTOR)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True, kw_only=True)
class ThrottleSpec(PeerGroup):
    """Throttling: the group computes at 1/`factor` of its speed during [start_s, end_s), repeated every period_s."""

    factor: float = bounded(**FACTOR)
    start_s: float = bounded(low=0, high=MAX_SECONDS)
    end_s: float = bounded(low=0, high=MAX_SECONDS, low_open=True)
    # None: once; else the window recurs at start_s + k period_s (a day is 86400 s)
    period_s: float | None = bounded(None, low=0, high=MAX_SECONDS, low_open=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.end_s > self.start_s:
            raise ScenarioError("end_s", f"must be > start_s = {self.start_s!r}, got {self.end_s!r}")
        if self.period_s is not None and self.end_s - self.start_s > self.period_s:
            raise ScenarioError(
                "period_s", f"must be at least the window's length end_s - start_s = {self.end_s - self.start_s!r}, "
                f"got {self.period_s!r}"
            )


@dataclass(frozen=True)
class StragglersSpec:
    """Slow-down factors and throttling windows, each over a group of peers."""

    slow: tuple[SlowdownSpec, ...] = ()
    throttle: tuple[ThrottleSpec, ...] = ()


def check_stragglers(spec: StragglersSpec, n_peers: int, devices: Sequence[str]) -> None:
    """Peers and device names in `spec` against the scenario's (`devices`: peers.devices' names)."""
    for kind, groups in (("slow", spec.slow), ("throttle", spec.throttle)):
        for i, group in enumerate(groups):
            where = f"stragglers.{kind}[{i}]"
            for j, peer in enumerate(group.peers):
                if peer >= n_peers:
                    raise ScenarioError(f"{where}.peers[{j}]", f"peer {peer} does not exist (peers 0..{n_peers - 1})")
            for name in group.devices:
                if name not in devices:
                    raise ScenarioError(f"{where}.devices", f"no peer has device {name!r} (peers.devices: {', '.join(devices)})")


@dataclass(frozen=True)
class Window:
    """A throttling window of one peer: factor f during [start_s, end_s), recurring every period_s if not None."""

    start_s: float
    end_s: float
    factor: float
    period_s: float | None = None

    def at(self, t: float) -> tuple[bool, float]:
        """(whether `t` is inside the window, the next time > t at which that changes)."""
        if t < self.start_s:
            return False, self.start_s
        if self.period_s is None:
            return (True, self.end_s) if t < self.end_s else (False, math.inf)
        period, width = self.period_s, self.end_s - self.start_s
        k = math.floor((t - self.start_s) / period)
        if self.start_s + (k + 1) * period <= t:  # float rounding of the division: keep start + k period <= t
            k += 1
        elif self.start_s + k * period > t:
            k -= 1
        opens = self.start_s + k * period
        if t < opens + width:
            return True, opens + width
        return False, opens + period


def throttled_duration(start_s: float, work_s: float, windows: Sequence[Window]) -> float:
    """Seconds that `work_s` seconds of unthrottled computing take from `start_s` through `windows`.

    Overlapping windows multiply their factors.

    >>> throttled_duration(0.0, 10.0, [Window(5.0, 100.0, 2.0)])  # 5 s at full speed, then 5 s of work at half
    15.0
    """
    t, left, elapsed = start_s, work_s, 0.0
    while True:
        factor, change = 1.0, math.inf
        for window in windows:
            inside, next_change = window.at(t)
            if inside:
                factor *= window.factor
            change = min(change, next_change)
        span = left * factor
        if t + span <= change:
            return elapsed + span
        elapsed += change - t
        left -= (change - t) / factor
        t = change


@dataclass(eq=False)
class PeerTimings:
    """Stragglers resolved over the built peers: each peer's slow-down factor and throttling windows."""

    slowdown: np.ndarray
    windows: list[list[Window]] = field(default_factory=list)


def resolve_stragglers(spec: StragglersSpec, device_names: Sequence[str], seed: int) -> PeerTimings:
    """Each peer's product of slow-down factors and its windows; random fractions draw from the seed."""
    n = len(device_names)
    slowdown = np.ones(n)
    for i, slow in enumerate(spec.slow):
        slowdown[slow.members(device_names, stream(seed, "stragglers_slow", i))] *= slow.factor
    windows: list[list[Window]] = [[] for _ in range(n)]
    for i, throttle in enumerate(spec.throttle):
        window = Window(throttle.start_s, throttle.end_s, throttle.factor, throttle.period_s)
        for peer in np.flatnonzero(throttle.members(device_names, stream(seed, "stragglers_throttle", i))):
            windows[peer].append(window)
    return PeerTimings(slowdown, windows)


class StepClock:
    """Each local step's duration: base x slow-down x a random factor, stretched through throttling windows.

    Random factors come from each peer's own stream ("jitter"), in blocks of `FIRST_BLOCK`
    doubling up to `DRAW_BLOCK`: numpy's normal, exponential and Pareto draws hold no state
    between calls, so the factors are those of one long block, whatever the block sizes.
    """

    def __init__(
        self,
        base_s: np.ndarray,
        timings: PeerTimings | None,
        distribution: str,
        jitter: float,
        pareto_alpha: float | None,
        seed: int,
    ) -> None:
        n = len(base_s)
        slowdown = timings.slowdown if timings is not None else np.ones(n)
        self._work_s = (np.asarray(base_s, dtype=np.float64) * slowdown).tolist()
        self._windows = timings.windows if timings is not None else [[] for _ in range(n)]
        self._draw = (distribution, jitter, pareto_alpha)
        self._seed = seed
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._factors: list[list[float]] = [[] for _ in range(n)]
        self._next = [0] * n

    def duration(self, peer: int, start_s: float) -> float:
        """Seconds of the step `peer` starts at `start_s` (consumes one random factor)."""
        work = self._work_s[peer] * self._factor(peer)
        windows = self._windows[peer]
        return throttled_duration(start_s, work, windows) if windows else work

    def _factor(self, peer: int) -> float:
        factors = self._factors[peer]
        if self._next[peer] == len(factors):
            rng = self._rngs[peer]
            if rng is None:  # the first draw anywhere: every peer's stream at once (seeding.streams, ~6x cheaper)
                self._rngs = streams(self._seed, "jitter", len(self._rngs))
                rng = self._rngs[peer]
            distribution, jitter, alpha = self._draw
            size = min(2 * len(factors), DRAW_BLOCK) if factors else FIRST_BLOCK
            factors = self._factors[peer] = step_time_factors(rng, distribution, jitter, size, alpha)
            self._next[peer] = 0
        self._next[peer] += 1
        return factors[self._next[peer] - 1]
