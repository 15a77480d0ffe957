"""Each peer's on/off times, drawn before they are needed from the scenario's seed (the `[churn]` table).

A peer's session process alternates online and offline periods. Durations are drawn in
blocks of `BLOCK` per peer with vectorised numpy calls from the peer's own stream
(`seeding.stream(seed, "availability", peer)`), so a peer's times do not depend on how far
another's have been read. The process starts in equilibrium: online with probability
E[S] / (E[S] + E[D]), the first period being a forward recurrence time (a uniform fraction
of a length-biased draw), so the online fraction is E[S] / (E[S] + E[D]) at every instant,
not only in the long run. A trace replays its hosts' online intervals, repeated with the
trace's span as period. A crash ends the peer's sessions for good; a daily window
(`online_hours`, in the peer's local time) is applied on top by the engine (`churn.py`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .churn_spec import ChurnSpec, DurationSpec
from .config import ScenarioError
from .seeding import stream

__all__ = ["BLOCK", "Availability", "PeerChurn", "build_availability", "draw_durations", "load_trace"]

BLOCK = 64  # on/off periods drawn per peer at a time


def draw_durations(spec: DurationSpec, rng: np.random.Generator, size: int, length_biased: bool = False) -> np.ndarray:
    """`size` durations in seconds; `length_biased`: drawn with density x f(x) / E[X] (for the equilibrium start)."""
    scale = spec.scale()
    if spec.distribution == "exponential":
        return rng.gamma(2.0, scale, size) if length_biased else rng.exponential(scale, size)
    if spec.distribution == "weibull":
        k = spec.shape
        # (X / lambda)^k is Gamma(1 + 1/k) under length bias, Exp(1) (= Gamma(1)) without
        return scale * rng.gamma(1.0 + 1.0 / k if length_biased else 1.0, 1.0, size) ** (1.0 / k)
    mu = math.log(scale) + (spec.sigma**2 if length_biased else 0.0)
    return rng.lognormal(mu, spec.sigma, size)


@lru_cache(maxsize=8)
def load_trace(path: str) -> tuple[dict[str, np.ndarray], float]:
    """A trace's online intervals per host ([k, 2] arrays of start_s, end_s, sorted and merged) and its span."""
    hosts: dict[str, list[tuple[float, float]]] = {}
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"host", "start_s", "end_s"} - set(reader.fieldnames or ())
            if missing:
                raise ScenarioError("trace", f"{path} lacks the column(s) {', '.join(sorted(missing))} (needs host, start_s, end_s)")
            for line, row in enumerate(reader, start=2):
                try:
                    start, end = float(row["start_s"]), float(row["end_s"])
                except ValueError:
                    raise ScenarioError("trace", f"{path} line {line}: start_s and end_s must be numbers") from None
                if not (0 <= start < end < math.inf):
                    raise ScenarioError("trace", f"{path} line {line}: needs 0 <= start_s < end_s, got {start!r}, {end!r}")
                hosts.setdefault(row["host"], []).append((start, end))
    except OSError as error:
        raise ScenarioError("trace", f"cannot read {path}: {error}") from None
    if not hosts:
        raise ScenarioError("trace", f"{path} has no intervals")
    merged = {}
    for host, intervals in hosts.items():
        out: list[list[float]] = []
        for start, end in sorted(intervals):
            if out and start <= out[-1][1]:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([start, end])
        merged[host] = np.asarray(out)
    span = max(float(intervals[-1, 1]) for intervals in merged.values())
    return merged, span


@dataclass(frozen=True)
class PeerChurn:
    """One peer's availability: its session process, crash time and daily window."""

    peer: int
    seed: int
    session: DurationSpec | None = None
    downtime: DurationSpec | None = None
    trace: np.ndarray | None = None  # [k, 2] online intervals
    trace_span_s: float = 0.0
    crash_s: float = math.inf
    window_h: tuple[float, float] | None = None  # local hours [start, end), may wrap midnight
    offset_h: float = 0.0  # local time = UTC + offset

    def initially_online(self) -> bool:
        """Whether the session process starts online (before any crash or window)."""
        if self.trace is not None:
            return bool(self.trace[0, 0] <= 0.0)
        return self.session is None or self._start()[0]

    def toggles(self) -> Iterator[float]:
        """Times (s) at which the session process changes state, in order: forever, or none for an always-on peer."""
        if self.trace is not None:
            yield from self._trace_toggles()
            return
        if self.session is None:
            return
        online, t, rng = self._start()
        yield t
        online = not online
        while True:
            ups = draw_durations(self.session, rng, BLOCK)
            downs = draw_durations(self.downtime, rng, BLOCK)
            for up, down in zip(ups.tolist(), downs.tolist()):
                t += up if online else down
                yield t
                t += down if online else up
                yield t

    def _start(self) -> tuple[bool, float, np.random.Generator]:
        """(online at t = 0, time of the first change, the stream after these draws): an equilibrium start."""
        rng = stream(self.seed, "availability", self.peer)
        up, down = self.session.mean(), self.downtime.mean()
        online = bool(rng.random() < up / (up + down))
        length = draw_durations(self.session if online else self.downtime, rng, 1, length_biased=True)[0]
        return online, float(length * rng.random()), rng

    def _trace_toggles(self) -> Iterator[float]:
        """The trace's starts and ends, repeated every span; an interval touching the previous one is no change."""
        starts, ends = self.trace[:, 0], self.trace[:, 1]
        pending = None if starts[0] > 0.0 else float(ends[0])  # the end of the current online interval, not yet told
        first = 0 if pending is None else 1
        repeat = 0
        while True:
            shift = repeat * self.trace_span_s
            for start, end in zip((starts[first:] + shift).tolist(), (ends[first:] + shift).tolist()):
                if pending is not None and start <= pending:
                    pending = max(pending, end)
                    continue
                if pending is not None:
                    yield pending
                yield start
                pending = end
            first, repeat = 0, repeat + 1


@dataclass(frozen=True)
class Availability:
    """Every peer's availability (`PeerChurn`; None: always online) and the churn rules the engine applies."""

    spec: ChurnSpec
    peers: tuple[PeerChurn | None, ...]

    @property
    def n_peers(self) -> int:
        """Number of peers."""
        return len(self.peers)


def build_availability(
    spec: ChurnSpec, devices: Sequence[str], links: Sequence[str], regions: Sequence[str | None], seed: int
) -> Availability:
    """Each peer's `PeerChurn` from the first class it matches (by device, link or region name, or "*")."""
    n = len(devices)
    crash = np.full(n, math.inf)
    for peer, time_s in spec.crashes:
        crash[int(peer)] = min(crash[int(peer)], float(time_s))
    members: list[list[int]] = [[] for _ in spec.classes]
    for peer in range(n):
        names = {"*", devices[peer], links[peer], regions[peer]}
        for index, group in enumerate(spec.classes):
            if group.peers in names:
                members[index].append(peer)
                break
    peers: list[PeerChurn | None] = [None] * n
    for index, group in enumerate(spec.classes):
        chosen = members[index]
        if not chosen:
            continue
        rng = stream(seed, "churn_class", index)
        lifetimes = rng.exponential(group.crash_mean_s, len(chosen)) if group.crash_mean_s is not None else np.full(len(chosen), math.inf)
        offsets = rng.uniform(0.0, group.phase_spread_h, len(chosen)) if group.phase_spread_h > 0 else np.zeros(len(chosen))
        traces: list[np.ndarray | None] = [None] * len(chosen)
        span = 0.0
        if group.trace is not None:
            hosts, span = load_trace(group.trace)
            names = sorted(hosts)
            order = rng.permutation(len(names))
            traces = [hosts[names[order[k % len(names)]]] for k in range(len(chosen))]
        durations = group.durations()
        for k, peer in enumerate(chosen):
            peers[peer] = PeerChurn(
                peer=peer,
                seed=seed,
                session=durations[0] if durations else None,
                downtime=durations[1] if durations else None,
                trace=traces[k],
                trace_span_s=span,
                crash_s=float(min(lifetimes[k], crash[peer])),
                window_h=group.window(),
                offset_h=float(offsets[k]),
            )
    for peer in range(n):
        if peers[peer] is None and math.isfinite(crash[peer]):  # a listed crash of a peer in no class: on until then
            peers[peer] = PeerChurn(peer=peer, seed=seed, crash_s=float(crash[peer]))
    return Availability(spec, tuple(peers))
