"""The scenario's `[churn]` table: when peers are online, what leaving means, and how long others wait.

Each class of peers (all of them, or those of one device, access link or region) gets an
on/off process: session and downtime lengths from a distribution (exponential, Weibull,
log-normal, each given by its mean or median), a named profile of `data/churn.toml`, or a
trace file of online intervals; optionally a daily window outside which the peer is off
(diurnal), and a time to a permanent crash. `availability.py` turns this into each peer's
on/off times; `churn.py` is what the engine does with them.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .config import ScenarioError, bounded, check_ranges

__all__ = [
    "DISTRIBUTIONS",
    "OFFLINE_MESSAGES",
    "REJOIN_RULES",
    "ChurnClass",
    "ChurnSpec",
    "DurationSpec",
    "load_churn_profiles",
]

DISTRIBUTIONS = ("exponential", "weibull", "lognormal")
OFFLINE_MESSAGES = ("drop", "hold")
REJOIN_RULES = ("old_model", "fetch")
MAX_SECONDS = 1e12  # as scenario.MAX_SECONDS: ~31,700 years of simulated time


@dataclass(frozen=True)
class DurationSpec:
    """A distribution of durations (sessions or downtimes), by its mean or its median and its shape.

    Weibull takes `shape` (k); log-normal takes `sigma` (of the log). Exactly one of
    `mean_s` and `median_s` fixes the scale.

    >>> DurationSpec("weibull", median_s=900.0, shape=0.5).mean()  # doctest: +ELLIPSIS
    3746.46...
    """

    distribution: str
    mean_s: float | None = bounded(None, low=0, high=MAX_SECONDS, low_open=True)
    median_s: float | None = bounded(None, low=0, high=MAX_SECONDS, low_open=True)
    # Weibull k; Stutzbach & Rejaie (2006) measured 0.34-0.59 for P2P sessions
    shape: float | None = bounded(None, low=0.05, high=20, why="below 0.05 the mean is 1e20 medians")
    sigma: float | None = bounded(None, low=0.01, high=5, why="log-normal sigma; at 5 the mean is 2.7e5 medians")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.distribution not in DISTRIBUTIONS:
            raise ScenarioError("distribution", f"unknown distribution {self.distribution!r} (allowed: {', '.join(DISTRIBUTIONS)})")
        if (self.mean_s is None) == (self.median_s is None):
            raise ScenarioError("mean_s", "give exactly one of mean_s and median_s")
        needs = {"weibull": "shape", "lognormal": "sigma"}.get(self.distribution)
        for name in ("shape", "sigma"):
            given = getattr(self, name) is not None
            if given != (name == needs):
                rule = "is required" if name == needs else "is not a parameter"
                raise ScenarioError(name, f"{rule} for distribution = {self.distribution!r}")

    def scale(self) -> float:
        """The scale parameter: the exponential's mean, Weibull's lambda, or exp(mu) of the log-normal."""
        if self.distribution == "exponential":
            return self.mean_s if self.mean_s is not None else self.median_s / math.log(2)
        if self.distribution == "weibull":
            k = self.shape
            return self.mean_s / math.gamma(1 + 1 / k) if self.mean_s is not None else self.median_s / math.log(2) ** (1 / k)
        return self.mean_s / math.exp(self.sigma**2 / 2) if self.mean_s is not None else self.median_s

    def mean(self) -> float:
        """The mean duration in seconds (closed form)."""
        if self.mean_s is not None:
            return self.mean_s
        if self.distribution == "exponential":
            return self.scale()
        if self.distribution == "weibull":
            return self.scale() * math.gamma(1 + 1 / self.shape)
        return self.scale() * math.exp(self.sigma**2 / 2)


@dataclass(frozen=True)
class ChurnClass:
    """One class of peers and its on/off process (see the module docstring); the first class a peer matches wins."""

    peers: str = "*"  # "*", or a device, access-link or region name: the peers it applies to
    profile: str | None = None  # a profile of data/churn.toml, instead of session and downtime
    session: DurationSpec | None = None
    downtime: DurationSpec | None = None
    trace: str | None = None  # CSV of online intervals (host, start_s, end_s), repeated past its end; stored absolute
    # exponential time to a crash: the peer leaves for good (Llama 3: one per 5e4 GPU-hours)
    crash_mean_s: float | None = bounded(None, low=0, high=MAX_SECONDS, low_open=True)
    # diurnal: online only between these local hours (e.g. [23, 7]: overnight); None: any hour
    online_hours: tuple[float, float] | None = bounded(None, low=0, high=24)
    # each peer's local clock runs this many hours at most ahead of UTC, uniform per peer
    phase_spread_h: float = bounded(0.0, low=0, high=24)

    def __post_init__(self) -> None:
        check_ranges(self)
        given = [self.profile is not None, self.session is not None or self.downtime is not None, self.trace is not None]
        if sum(given) != 1:
            raise ScenarioError("", "give exactly one of: profile, session and downtime, trace")
        if given[1] and (self.session is None or self.downtime is None):
            raise ScenarioError("session" if self.session is None else "downtime", "is required with the other")
        if self.profile is not None and self.profile not in load_churn_profiles():
            raise ScenarioError("profile", f"unknown profile {self.profile!r} (allowed: {', '.join(load_churn_profiles())})")
        if self.online_hours is not None and self.online_hours[0] == self.online_hours[1]:
            raise ScenarioError("online_hours", f"start and end are equal ({self.online_hours[0]!r}): an empty window")
        if self.trace is not None:
            object.__setattr__(self, "trace", os.path.abspath(self.trace))

    def durations(self) -> tuple[DurationSpec, DurationSpec] | None:
        """(session, downtime), from the profile if named; None for a trace."""
        if self.profile is not None:
            profile = load_churn_profiles()[self.profile]
            return DurationSpec(**profile["session"]), DurationSpec(**profile["downtime"])
        if self.session is not None:
            return self.session, self.downtime
        return None

    def window(self) -> tuple[float, float] | None:
        """The daily online window in local hours: the class's own, else its profile's, else None."""
        if self.online_hours is not None:
            return self.online_hours
        if self.profile is not None and "online_hours" in load_churn_profiles()[self.profile]:
            start, end = load_churn_profiles()[self.profile]["online_hours"]
            return float(start), float(end)
        return None


@dataclass(frozen=True)
class ChurnSpec:
    """Who is online when (`classes`, `crashes`), and what leaving means for messages, models and waits."""

    classes: tuple[ChurnClass, ...] = ()  # peers matching no class are always online
    crashes: tuple[tuple[int, float], ...] = bounded((), low=0, high=MAX_SECONDS)  # [peer, time_s]: leaves for good
    offline_messages: str = "drop"  # a message to an offline peer: "drop" (lost) or "hold" (sent when it is back)
    rejoin: str = "old_model"  # a returning peer keeps its model, or "fetch"es a neighbour's over the network
    # how long a peer waits for another that may have left before going on without it
    timeout_s: float = bounded(60.0, low=0, high=MAX_SECONDS, low_open=True)
    # graph repair: a peer left with no online neighbour picks this many through peer sampling (0: none)
    repair_degree: int = bounded(0, low=0, high=1000)

    def __post_init__(self) -> None:
        check_ranges(self)
        for name, value, allowed in (
            ("offline_messages", self.offline_messages, OFFLINE_MESSAGES),
            ("rejoin", self.rejoin, REJOIN_RULES),
        ):
            if value not in allowed:
                raise ScenarioError(name, f"unknown rule {value!r} (allowed: {', '.join(allowed)})")
        for i, crash in enumerate(self.crashes):
            if len(crash) != 2 or int(crash[0]) != crash[0]:
                raise ScenarioError(f"crashes[{i}]", f"must be [peer, time_s] with an integer peer, got {list(crash)!r}")

    def check_peers(self, n_peers: int, names: set[str]) -> None:
        """Peer indices and class names against the scenario's peers (`names`: its devices, links and regions)."""
        for i, (peer, _) in enumerate(self.crashes):
            if not 0 <= peer < n_peers:
                raise ScenarioError(f"churn.crashes[{i}]", f"peer {int(peer)} is not in 0..{n_peers - 1}")
        for i, group in enumerate(self.classes):
            if group.peers != "*" and group.peers not in names:
                raise ScenarioError(
                    f"churn.classes[{i}].peers", f"no peer has device, link or region {group.peers!r} (allowed: *, {', '.join(sorted(names))})"
                )
            if group.trace is not None and not os.path.isfile(group.trace):
                raise ScenarioError(f"churn.classes[{i}].trace", f"file not found: {group.trace}")


@lru_cache(maxsize=1)
def load_churn_profiles() -> dict[str, dict]:
    """Named availability profiles of data/churn.toml, each with its sources."""
    text = resources.files("p2psim.data").joinpath("churn.toml").read_text()
    return tomllib.loads(text)["profiles"]
