"""The validated, serialisable description of one run (DESIGN decisions 8 and 9).

A scenario is built in Python, from a dict or from a TOML file, checked before
anything runs, and written back to TOML fully resolved. Every error is a
`ScenarioError` naming the field, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from .algorithms import ALGORITHMS, AlgorithmConfig
from .config import ScenarioError, parse_dataclass, to_plain
from .hardware import PRECISIONS
from .partition import PARTITIONS
from .tasks import TASKS, Task
from .topology import MIXING_RULES, TOPOLOGY_PARAMS, edges_of

__all__ = [
    "BaselineSpec",
    "DataSpec",
    "EngineSpec",
    "LinkSpec",
    "MetricsSpec",
    "NetworkSpec",
    "PeersSpec",
    "Scenario",
    "ScenarioError",
    "StopSpec",
    "TopologySpec",
    "WorkloadSpec",
    "expand_mix",
    "load_scenario",
    "set_dotted",
]

STEP_TIME_DISTRIBUTIONS = ("lognormal", "exponential")


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ScenarioError(field_name, message)


def _positive(value: float | None, field_name: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    _require(ok, field_name, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _one_of(value: str, allowed: tuple[str, ...] | list[str], field_name: str, what: str = "") -> None:
    _require(value in allowed, field_name, f"unknown {what}{value!r} (allowed: {', '.join(allowed)})")


@dataclass(frozen=True)
class DataSpec:
    """How the training set is split among peers and how much each local step reads."""

    batch_size: int = 32
    partition: str = "iid"
    alpha: float | None = None  # Dirichlet concentration, for partition = "dirichlet"
    labels_per_peer: int | None = None  # for partition = "k_labels"

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size!r}")
        _one_of(self.partition, PARTITIONS, "partition", "partition ")
        if self.partition == "dirichlet":
            _require(self.alpha is not None, "alpha", "is required when partition = 'dirichlet'")
            _positive(self.alpha, "alpha")
        if self.partition == "k_labels":
            _require(self.labels_per_peer is not None, "labels_per_peer", "is required when partition = 'k_labels'")
            _require(self.labels_per_peer >= 1, "labels_per_peer", f"must be >= 1, got {self.labels_per_peer!r}")


@dataclass(frozen=True)
class WorkloadSpec:
    """A declared model whose cost the timing stands for, while the task's small model does the numerics."""

    name: str
    flops_per_sample: float  # training FLOPs per sample, forward + backward
    params: float  # parameter count: sets message sizes and memory
    activation_bytes_per_sample: float = 0.0

    def __post_init__(self) -> None:
        _positive(self.flops_per_sample, "flops_per_sample")
        _positive(self.params, "params")
        _positive(self.activation_bytes_per_sample, "activation_bytes_per_sample", allow_zero=True)


@dataclass(frozen=True)
class LinkSpec:
    """A link profile defined in the scenario, usable by name in `peers.links` and baselines."""

    name: str
    up_mbps: float
    down_mbps: float
    latency_ms: float = 0.0  # one-way access latency added at this end of every path

    def __post_init__(self) -> None:
        _positive(self.up_mbps, "up_mbps")
        _positive(self.down_mbps, "down_mbps")
        _positive(self.latency_ms, "latency_ms", allow_zero=True)


@dataclass(frozen=True)
class NetworkSpec:
    """Link profiles beyond the catalogue's."""

    links: tuple[LinkSpec, ...] = ()


@dataclass(frozen=True)
class PeersSpec:
    """Who the peers are: device, access link and region mixes, as counts or fractions."""

    devices: dict[str, int | float]
    links: dict[str, int | float]
    count: int | None = None
    regions: dict[str, int | float] = field(default_factory=dict)  # empty: all co-located
    precision: str = "fp32"
    utilisation: dict[str, float] = field(default_factory=dict)  # per device name, overrides the catalogue
    step_overhead_s: float = 1e-3  # launches, optimizer, data loading: ~1 ms a step for small models [assumption]
    jitter: float = 0.0  # sigma of a mean-one log-normal factor on each step's duration
    step_time_distribution: str = "lognormal"  # or "exponential": memoryless steps (Poisson clocks)

    def __post_init__(self) -> None:
        if self.count is not None:
            _require(self.count >= 1, "count", f"must be >= 1, got {self.count!r}")
        _one_of(self.precision, PRECISIONS, "precision", "precision ")
        _positive(self.step_overhead_s, "step_overhead_s", allow_zero=True)
        _positive(self.jitter, "jitter", allow_zero=True)
        _one_of(self.step_time_distribution, STEP_TIME_DISTRIBUTIONS, "step_time_distribution", "distribution ")
        for name, value in self.utilisation.items():
            _require(0 < value <= 1, f"utilisation.{name}", f"must be in (0, 1], got {value!r}")
        count = self.count
        for name in ("devices", "links", "regions"):
            mix = getattr(self, name)
            if name != "regions" or mix:
                count = len(expand_mix(mix, count, name))
        object.__setattr__(self, "count", count)


def expand_mix(mix: Mapping[str, int | float], count: int | None, field_name: str) -> list[str]:
    """One name per peer from a mix given as counts (integers) or fractions summing to 1.

    Fractions are turned into counts by largest remainder, ties broken by order.

    >>> expand_mix({"h100_sxm": 1, "rx_580": 2}, None, "devices")
    ['h100_sxm', 'rx_580', 'rx_580']
    >>> expand_mix({"a": 0.5, "b": 0.25, "c": 0.25}, 4, "devices")
    ['a', 'a', 'b', 'c']
    """
    _require(len(mix) > 0, field_name, "must name at least one entry")
    for name, v in mix.items():
        _require(
            isinstance(v, (int, float)) and not isinstance(v, bool),
            f"{field_name}.{name}",
            f"must be a count (integer) or a fraction (number), got {v!r} ({type(v).__name__})",
        )
    values = list(mix.values())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        for name, v in mix.items():
            _require(v >= 0, f"{field_name}.{name}", f"count must be >= 0, got {v!r}")
        total = sum(values)
        _require(total > 0, field_name, "counts sum to 0")
        if count is not None:
            _require(total == count, field_name, f"counts sum to {total}, but peers.count = {count}")
        return [name for name, v in mix.items() for _ in range(v)]
    for name, v in mix.items():
        _require(0 <= v <= 1, f"{field_name}.{name}", f"fraction must be in [0, 1], got {v!r}")
    share = sum(values)
    _require(abs(share - 1.0) <= 1e-9, field_name, f"fractions must sum to 1, got {share:.6g}")
    _require(count is not None, "count", f"is required when {field_name} are fractions")
    exact = [v * count for v in values]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    return [name for name, c in zip(mix, counts) for _ in range(c)]


PARAMETERS = ("degree", "p", "k", "rows", "path", "edges")


@dataclass(frozen=True)
class TopologySpec:
    """The communication graph and its mixing weights."""

    kind: str = "complete"
    mixing: str = "metropolis"
    degree: int | None = None
    p: float | None = None
    k: int | None = None
    rows: int | None = None
    path: str | None = None  # kind = "edge_list"; stored absolute (a file's own relative path: from its folder)
    edges: tuple[tuple[int | float, ...], ...] | None = None  # kind = "edges": [u, v] or [u, v, latency_ms]

    def __post_init__(self) -> None:
        kinds = list(TOPOLOGY_PARAMS)
        _one_of(self.kind, kinds, "kind", "topology ")
        _one_of(self.mixing, MIXING_RULES, "mixing", "mixing rule ")
        allowed = TOPOLOGY_PARAMS[self.kind]
        for name in PARAMETERS:
            if getattr(self, name) is not None and name not in allowed:
                raise ScenarioError(name, f"is not a parameter of kind {self.kind!r} (allowed: {', '.join(allowed) or 'none'})")
        if self.p is not None:
            _require(0 <= self.p <= 1, "p", f"must be in [0, 1], got {self.p!r}")
        if self.path is not None:
            # absolute, so that a saved scenario (a result folder) reloads from any working directory
            object.__setattr__(self, "path", os.path.abspath(self.path))

    def params(self) -> dict[str, Any]:
        """The builder's keyword arguments."""
        return {n: getattr(self, n) for n in PARAMETERS if getattr(self, n) is not None}

    @classmethod
    def from_networkx(cls, graph: Any, mixing: str = "metropolis") -> TopologySpec:
        """Any undirected networkx graph, held inline (kind "edges") so the scenario stays a file."""
        return cls(kind="edges", mixing=mixing, edges=tuple(tuple(edge) for edge in edges_of(graph)))


@dataclass(frozen=True)
class StopSpec:
    """When a run ends: whichever limit is reached first (at least one is required)."""

    sim_time_s: float | None = None
    samples: int | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        _require(
            any(v is not None for v in (self.sim_time_s, self.samples, self.steps)),
            "",
            "needs at least one of sim_time_s, samples, steps",
        )
        _positive(self.sim_time_s, "sim_time_s")
        for name in ("samples", "steps"):
            value = getattr(self, name)
            _require(value is None or value >= 1, name, f"must be >= 1, got {value!r}")


@dataclass(frozen=True)
class MetricsSpec:
    """What is recorded and when; the history has one row per recording tick."""

    eval_interval_s: float | None = None
    eval_interval_samples: int | None = None
    target_accuracy: float | None = None
    divergence_factor: float = 1e3  # diverged when the loss exceeds this multiple of the initial loss

    def __post_init__(self) -> None:
        _require(
            (self.eval_interval_s is None) != (self.eval_interval_samples is None),
            "",
            "needs exactly one of eval_interval_s, eval_interval_samples",
        )
        _positive(self.eval_interval_s, "eval_interval_s")
        _require(
            self.eval_interval_samples is None or self.eval_interval_samples >= 1,
            "eval_interval_samples",
            f"must be >= 1, got {self.eval_interval_samples!r}",
        )
        if self.target_accuracy is not None:
            _require(0 < self.target_accuracy <= 1, "target_accuracy", f"must be in (0, 1], got {self.target_accuracy!r}")
        _require(self.divergence_factor > 1, "divergence_factor", f"must be > 1, got {self.divergence_factor!r}")


@dataclass(frozen=True)
class EngineSpec:
    """How the engine evaluates gradients; results do not depend on it beyond float rounding."""

    batch_gradients: bool = True  # evaluate pending gradients together (DESIGN decision 5)
    threads: int = 1  # torch intra-op threads during the run; small per-peer ops are slower with more

    def __post_init__(self) -> None:
        _require(self.threads >= 1, "threads", f"must be >= 1, got {self.threads!r}")


@dataclass(frozen=True)
class BaselineSpec:
    """A centralized baseline on the same task: `count` devices with synchronous all-reduce."""

    name: str
    device: str
    count: int = 1
    link: str = "nvlink"
    lr: float | None = None  # default: the scenario's learning rate

    def __post_init__(self) -> None:
        _require(self.count >= 1, "count", f"must be >= 1, got {self.count!r}")
        _positive(self.lr, "lr")


@dataclass(frozen=True)
class Scenario:
    """Everything that defines one run; with its seed, it fixes the history."""

    task: Task
    peers: PeersSpec
    algorithm: AlgorithmConfig
    stop: StopSpec
    metrics: MetricsSpec
    name: str = "scenario"
    seed: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    workload: WorkloadSpec | None = None
    network: NetworkSpec = field(default_factory=NetworkSpec)
    topology: TopologySpec = field(default_factory=TopologySpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    baselines: tuple[BaselineSpec, ...] = ()

    def __post_init__(self) -> None:
        # numpy's SeedSequence, which derives every random stream, takes non-negative integers only
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], validate: bool = True) -> Scenario:
        """Parse and (by default) validate a scenario given as nested dicts, as in its TOML file."""
        if not isinstance(data, Mapping):
            raise ScenarioError("", f"a scenario must be a table, got {type(data).__name__}")
        data = dict(data)
        for key, registry in (("task", TASKS), ("algorithm", ALGORITHMS)):
            if key not in data:
                raise ScenarioError(key, "is required")
            data[key] = _parse_registered(registry, data[key], key)
        scenario = parse_dataclass(cls, data)
        if validate:
            from .validation import validate_scenario

            validate_scenario(scenario)
        return scenario

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain nested dicts; `from_dict` of it gives it back."""
        return to_plain(self)

    def to_toml(self) -> str:
        """The resolved scenario as a TOML document."""
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> Path:
        """Write the resolved scenario to a TOML file."""
        path = Path(path)
        path.write_text(self.to_toml())
        return path

    def with_overrides(self, overrides: Mapping[str, Any]) -> Scenario:
        """A copy with dotted keys replaced (``{"algorithm.lr": 0.05, "baselines.0.count": 4}``), re-validated."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            set_dotted(data, dotted, value)
        return Scenario.from_dict(data)

    def hash(self) -> str:
        """Short stable hash of the resolved scenario: names result folders, so sweeps resume."""
        return hashlib.sha256(self.to_toml().encode()).hexdigest()[:12]


def _parse_registered(registry: Mapping[str, type], value: Any, path: str) -> Any:
    if not isinstance(value, Mapping):
        if isinstance(value, tuple(registry.values())):
            return value
        raise ScenarioError(path, f"must be a table, got {value!r}")
    options = dict(value)
    name = options.pop("name", None)
    _require(name is not None, f"{path}.name", f"is required (allowed: {', '.join(registry)})")
    _one_of(name, list(registry), f"{path}.name", f"{path} ")
    return parse_dataclass(registry[name], options, path)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `data`'s field at a dotted path (``"peers.jitter"``, ``"baselines[0].lr"``) in place.

    >>> data = {"peers": {"jitter": 0.0}}
    >>> set_dotted(data, "peers.jitter", 0.2); data
    {'peers': {'jitter': 0.2}}
    """
    keys = re.sub(r"\[(\d+)\]", r".\1", dotted).split(".")  # baselines[0].lr == baselines.0.lr
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            _require(key.isdigit() and int(key) < len(node), ".".join(keys[: i + 1]), "no such list item")
            node = node[int(key)]
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            raise ScenarioError(dotted, "cannot set a key inside a value")
    last = keys[-1]
    if isinstance(node, list):
        _require(last.isdigit() and int(last) < len(node), dotted, "no such list item")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = copy.deepcopy(value)
    else:
        raise ScenarioError(dotted, "cannot set a key inside a value")


def load_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read, override and validate a scenario TOML file.

    A relative `topology.path` in the file is relative to the file's folder; one given in
    `overrides` is relative to the working directory. Both are stored absolute.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError("", f"scenario file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError("", f"cannot read scenario file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError("", f"{path} is not valid TOML: {error}") from None
    topology = data.get("topology")
    if isinstance(topology, dict) and isinstance(topology.get("path"), str):
        topology["path"] = os.path.join(os.path.dirname(os.path.abspath(path)), topology["path"])
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return Scenario.from_dict(data)
