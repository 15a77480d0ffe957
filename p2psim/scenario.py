"""The validated, serialisable description of one run (DESIGN decisions 8 and 9).

A scenario is built in Python, from a dict or from a TOML file, checked before
anything runs, and written back to TOML fully resolved. Every error is a
`ScenarioError` naming the field, the bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from .adversary import AdversarySpec
from .algorithms import ALGORITHMS, AlgorithmConfig
from .compression import CompressionSpec
from .config import INT64_MAX, ScenarioError, bounded, check_ranges, parse_dataclass, to_plain
from .churn_spec import ChurnSpec
from .energy_spec import EnergySpec
from .faults import FaultsSpec
from .footprint import OFFLOADS
from .hardware import PRECISIONS
from .netmodel import NetworkModel
from .overrides import apply_overrides, set_dotted
from .partition import PARTITIONS
from .stragglers import StragglersSpec
from .tasks import TASKS, Task
from .topology import MIXING_RULES, TOPOLOGY_PARAMS, edges_of
from .workloads import load_workloads

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
    "MAX_PEERS",
    "expand_mix",
    "load_scenario",
    "mix_counts",
    "set_dotted",
]

STEP_TIME_DISTRIBUTIONS = ("lognormal", "exponential", "pareto")
TORCH_DEVICES = ("cpu", "cuda", "auto")  # p2psim.compute_device resolves them (no torch import here)
NUMERICS = ("eager", "deferred", "none")  # "deferred": p2psim.dataflow; "none": cost-only, see EngineSpec
MAX_PEERS = 10**6  # peers are rows of one tensor; beyond this the per-peer bookkeeping alone fills a machine
MAX_SECONDS = 1e12  # ~31,700 years of simulated time: longer spans no run records at all
RATE_MBPS = dict(low=1e-3, high=1e9, why="1 kbit/s to 1 Pbit/s")


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ScenarioError(field_name, message)


def _one_of(value: str, allowed: tuple[str, ...] | list[str], field_name: str, what: str = "") -> None:
    _require(value in allowed, field_name, f"unknown {what}{value!r} (allowed: {', '.join(allowed)})")


@dataclass(frozen=True)
class DataSpec:
    """How the training set is split among peers and how much each local step reads."""

    batch_size: int = bounded(32, low=1, high=10**6)
    partition: str = "iid"
    # Dirichlet concentration, for partition = "dirichlet"
    alpha: float | None = bounded(None, low=1e-3, high=1e6, why="below 1e-3 every class goes to one peer")
    labels_per_peer: int | None = bounded(None, low=1, high=1000)  # for partition = "k_labels"; <= the task's classes

    def __post_init__(self) -> None:
        check_ranges(self)
        _one_of(self.partition, PARTITIONS, "partition", "partition ")
        if self.partition == "dirichlet":
            _require(self.alpha is not None, "alpha", "is required when partition = 'dirichlet'")
        if self.partition == "k_labels":
            _require(self.labels_per_peer is not None, "labels_per_peer", "is required when partition = 'k_labels'")


@dataclass(frozen=True)
class WorkloadSpec:
    """A declared model whose cost the timing stands for, while the task's small model does the numerics.

    A `name` from the workload catalogue (p2psim/data/workloads.toml) fills the fields left
    out; any other name needs `flops_per_sample` and `params`. The resolved values are
    what the scenario stores.
    """

    name: str
    # training FLOPs per sample, forward + backward
    flops_per_sample: float | None = bounded(None, low=0, high=1e18, low_open=True)
    params: float | None = bounded(None, low=0, high=1e13, low_open=True)  # parameter count: message sizes, memory
    activation_bytes_per_sample: float | None = bounded(None, low=0, high=1e12)
    # tokens in one sample (a language model's sequence): counts tokens, allows stop.tokens
    tokens_per_sample: int | None = bounded(None, low=1, high=10**7)

    def __post_init__(self) -> None:
        check_ranges(self)
        catalogue = load_workloads()
        entry = catalogue.get(self.name)
        if entry is None:
            for name in ("flops_per_sample", "params"):
                _require(getattr(self, name) is not None, name,
                         f"is required unless name is a catalogue workload (allowed: {', '.join(catalogue)})")
            resolved = {"activation_bytes_per_sample": 0.0}
        else:
            flops, activations, tokens = entry.costs(self.tokens_per_sample)
            resolved = {"flops_per_sample": flops, "params": entry.params,
                        "activation_bytes_per_sample": activations, "tokens_per_sample": tokens}
        for name, value in resolved.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        check_ranges(self)


@dataclass(frozen=True)
class LinkSpec:
    """A link profile defined in the scenario, usable by name in `peers.links` and baselines."""

    name: str
    up_mbps: float = bounded(**RATE_MBPS)
    down_mbps: float = bounded(**RATE_MBPS)
    # one-way access latency added at this end of every path; 1e6 ms is 17 minutes
    latency_ms: float = bounded(0.0, low=0, high=1e6)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class NetworkSpec(NetworkModel):
    """How links are shared and used (fields of `NetworkModel`), and link profiles beyond the catalogue's."""

    links: tuple[LinkSpec, ...] = ()
    compression: CompressionSpec | None = None  # None: rows travel at peers.precision (p2psim.compression)


@dataclass(frozen=True)
class PeersSpec:
    """Who the peers are: device, access link and region mixes, as counts or fractions."""

    devices: dict[str, int | float]
    links: dict[str, int | float]
    count: int | None = bounded(None, low=1, high=MAX_PEERS)
    regions: dict[str, int | float] = field(default_factory=dict)  # empty: all co-located
    precision: str = "fp32"
    # per device name, overrides the catalogue
    utilisation: dict[str, float] = bounded(low=0, high=1, low_open=True, default_factory=dict)
    # launches, optimizer, data loading: ~1 ms a step for small models [assumption]
    step_overhead_s: float = bounded(1e-3, low=0, high=3600)
    # sigma of a mean-one log-normal factor on each step's duration; beyond 2 most steps take almost no time
    jitter: float = bounded(0.0, low=0, high=2)
    step_time_distribution: str = "lognormal"  # or "exponential": memoryless steps (Poisson clocks); or "pareto"
    # shape of the mean-one Pareto factor (step_time_distribution = "pareto"): heavy-tailed, infinite variance <= 2
    pareto_alpha: float | None = bounded(None, low=1, high=100, low_open=True, why="alpha <= 1 has no finite mean")
    # recompute activations in the backward: 2/sqrt(layers) of them kept, one more forward (footprint.py)
    activation_checkpointing: bool = False
    offload: str = "none"  # or "optimizer": master weights and optimizer state in host memory (ZeRO-Offload)
    calibration: str = ""  # a calibration file (p2psim calibrate --write): measured efficiencies per device

    def __post_init__(self) -> None:
        check_ranges(self)
        _one_of(self.precision, PRECISIONS, "precision", "precision ")
        _one_of(self.offload, OFFLOADS, "offload", "offload ")
        _one_of(self.step_time_distribution, STEP_TIME_DISTRIBUTIONS, "step_time_distribution", "distribution ")
        _require(
            (self.pareto_alpha is not None) == (self.step_time_distribution == "pareto"),
            "pareto_alpha",
            "is required when step_time_distribution = 'pareto', and allowed only then",
        )
        count = self.count
        for name in ("devices", "links", "regions"):
            mix = getattr(self, name)
            if name != "regions" or mix:
                count = sum(mix_counts(mix, count, name).values())
        object.__setattr__(self, "count", count)


def expand_mix(mix: Mapping[str, int | float], count: int | None, field_name: str) -> list[str]:
    """One name per peer from a mix given as counts (integers) or fractions summing to 1.

    >>> expand_mix({"h100_sxm": 1, "rx_580": 2}, None, "devices")
    ['h100_sxm', 'rx_580', 'rx_580']
    >>> expand_mix({"a": 0.5, "b": 0.25, "c": 0.25}, 4, "devices")
    ['a', 'a', 'b', 'c']
    """
    return [name for name, c in mix_counts(mix, count, field_name).items() for _ in range(c)]


def mix_counts(mix: Mapping[str, int | float], count: int | None, field_name: str) -> dict[str, int]:
    """Peers per name of a mix, by arithmetic only: a mix of a billion peers fails before any list is built.

    Fractions are turned into counts by largest remainder, ties broken by order.

    >>> mix_counts({"a": 0.5, "b": 0.25, "c": 0.25}, 4, "devices")
    {'a': 2, 'b': 1, 'c': 1}
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
        _require(total <= MAX_PEERS, field_name, f"counts sum to {total}, more than the {MAX_PEERS} peers a run can hold")
        if count is not None:
            _require(total == count, field_name, f"counts sum to {total}, but peers.count = {count}")
        return dict(mix)
    for name, v in mix.items():
        _require(0 <= v <= 1, f"{field_name}.{name}", f"fraction must be in [0, 1], got {v!r}")
    share = sum(values)
    _require(abs(share - 1.0) <= 1e-9, field_name, f"fractions must sum to 1, got {share:.6g}")
    _require(count is not None, "count", f"is required when {field_name} are fractions")
    exact = [v * count for v in values]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    _require(1 <= count <= MAX_PEERS, "count", f"must be in [1, {MAX_PEERS}], got {count!r}")
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    return dict(zip(mix, counts))


PARAMETERS = ("degree", "p", "k", "rows", "path", "edges")


@dataclass(frozen=True)
class TopologySpec:
    """The communication graph and its mixing weights."""

    kind: str = "complete"
    mixing: str = "metropolis"
    degree: int | None = bounded(None, low=0, high=MAX_PEERS)
    p: float | None = bounded(None, low=0, high=1)
    k: int | None = bounded(None, low=0, high=MAX_PEERS)
    rows: int | None = bounded(None, low=1, high=MAX_PEERS)
    path: str | None = None  # kind = "edge_list"; stored absolute (a file's own relative path: from its folder)
    # kind = "edges": [u, v] or [u, v, latency_ms]; nodes are peers, latency_ms as a link's
    edges: tuple[tuple[int | float, ...], ...] | None = bounded(None, low=0, high=MAX_PEERS)

    def __post_init__(self) -> None:
        check_ranges(self)
        kinds = list(TOPOLOGY_PARAMS)
        _one_of(self.kind, kinds, "kind", "topology ")
        _one_of(self.mixing, MIXING_RULES, "mixing", "mixing rule ")
        allowed = TOPOLOGY_PARAMS[self.kind]
        for name in PARAMETERS:
            if getattr(self, name) is not None and name not in allowed:
                raise ScenarioError(name, f"is not a parameter of kind {self.kind!r} (allowed: {', '.join(allowed) or 'none'})")
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

    sim_time_s: float | None = bounded(None, low=0, high=MAX_SECONDS, low_open=True)
    samples: int | None = bounded(None, low=1, high=10**15)
    steps: int | None = bounded(None, low=1, high=10**15)
    tokens: int | None = bounded(None, low=1, high=10**18)  # samples x workload.tokens_per_sample

    def __post_init__(self) -> None:
        check_ranges(self)
        _require(
            any(v is not None for v in (self.sim_time_s, self.samples, self.steps, self.tokens)),
            "",
            "needs at least one of sim_time_s, samples, steps, tokens",
        )


@dataclass(frozen=True)
class MetricsSpec:
    """What is recorded and when; the history has one row per recording tick."""

    eval_interval_s: float | None = bounded(None, low=0, high=MAX_SECONDS, low_open=True)
    eval_interval_samples: int | None = bounded(None, low=1, high=10**15)
    target_accuracy: float | None = bounded(None, low=0, high=1, low_open=True)
    # diverged when the loss exceeds this multiple of the initial loss
    divergence_factor: float = bounded(1e3, low=1, high=1e12, low_open=True)
    # evaluate only this many peers' own models (a seeded random subset, columns *_sampled): O(sample) a record
    sample_peers: int | None = bounded(None, low=1, high=MAX_PEERS)

    def __post_init__(self) -> None:
        check_ranges(self)
        _require(
            (self.eval_interval_s is None) != (self.eval_interval_samples is None),
            "",
            "needs exactly one of eval_interval_s, eval_interval_samples",
        )


@dataclass(frozen=True)
class EngineSpec:
    """How the engine evaluates gradients; results do not depend on it beyond float rounding.

    `numerics = "deferred"`: the same events; their row operations are recorded and computed
    at each record in batched waves (p2psim.dataflow), eager for algorithms that read row values.
    `numerics = "none"` is the cost-only mode: the same events, times, bytes and energy,
    with no gradients, losses or models computed (for models far beyond this machine).
    """

    batch_gradients: bool = True  # evaluate pending gradients together (DESIGN decision 5)
    # torch intra-op threads during the run; small per-peer ops are slower with more
    threads: int = bounded(1, low=1, high=1024)
    numerics: str = "eager"  # "deferred": batched later; "none": cost-only (time, traffic, utilisation, energy; no loss)
    device: str = "cpu"  # where rows and task data live: "cpu", "cuda" or "auto" (the GPU if torch sees one)

    def __post_init__(self) -> None:
        check_ranges(self)
        _one_of(self.numerics, NUMERICS, "numerics", "numerics ")
        _one_of(self.device, TORCH_DEVICES, "device", "device ")

    @property
    def cost_only(self) -> bool:
        """True when no numerics run: only time, traffic, utilisation and energy are simulated."""
        return self.numerics == "none"


@dataclass(frozen=True)
class BaselineSpec:
    """A centralized baseline on the same task: `count` devices with synchronous all-reduce."""

    name: str
    device: str
    count: int = bounded(1, low=1, high=MAX_PEERS)
    link: str = "nvlink"
    lr: float | None = bounded(None, low=0, high=1e6, low_open=True)  # default: the scenario's learning rate

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class Scenario:
    """Everything that defines one run; with its seed, it fixes the history."""

    task: Task
    peers: PeersSpec
    algorithm: AlgorithmConfig
    stop: StopSpec
    metrics: MetricsSpec
    name: str = "scenario"
    # numpy's SeedSequence takes non-negative integers; TOML holds 64-bit ones
    seed: int = bounded(0, low=0, high=INT64_MAX)
    data: DataSpec = field(default_factory=DataSpec)
    workload: WorkloadSpec | None = None
    network: NetworkSpec = field(default_factory=NetworkSpec)
    topology: TopologySpec = field(default_factory=TopologySpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    baselines: tuple[BaselineSpec, ...] = ()
    energy: EnergySpec = field(default_factory=EnergySpec)  # kWh, CO2 and money: clock, sites, grids, choices
    adversary: AdversarySpec | None = None  # Byzantine peers and their attack (adversary.py, attacks.py)
    faults: FaultsSpec | None = None  # message loss, link failures, partitions (faults.py)
    stragglers: StragglersSpec | None = None  # slow peers and throttling (stragglers.py)
    churn: ChurnSpec | None = None  # peers leaving, returning and crashing (churn_spec.py, churn.py)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.engine.cost_only:
            _require(self.metrics.target_accuracy is None, "metrics.target_accuracy",
                     "has no meaning when engine.numerics = 'none' (cost-only: no accuracy is computed)")
        if self.stop.tokens is not None:
            _require(self.workload is not None and self.workload.tokens_per_sample is not None, "stop.tokens",
                     "needs workload.tokens_per_sample (a catalogue language model sets it)")

    def sample_limit(self) -> tuple[int, str] | None:
        """The stop's sample budget and its field: stop.samples, or stop.tokens in whole samples, whichever is first."""
        limits = []
        if self.stop.samples is not None:
            limits.append((self.stop.samples, "samples"))
        if self.stop.tokens is not None:
            limits.append((-(-self.stop.tokens // self.workload.tokens_per_sample), "tokens"))
        return min(limits) if limits else None

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], validate: bool = True, progress: Callable[[str], None] | None = None
    ) -> Scenario:
        """Parse and (by default) validate a scenario given as nested dicts, as in its TOML file.

        `progress` is told, one line each, about builds that validation estimates to take over a second.
        """
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

            validate_scenario(scenario, progress)
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
        return Scenario.from_dict(apply_overrides(self.to_dict(), overrides))

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


def load_scenario(
    path: str | Path, overrides: Mapping[str, Any] | None = None, progress: Callable[[str], None] | None = None
) -> Scenario:
    """Read, override and validate a scenario TOML file (`progress`: as in `Scenario.from_dict`).

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
    return Scenario.from_dict(apply_overrides(data, overrides or {}), progress=progress)
