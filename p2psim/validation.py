"""Checks that need the catalogues, the sizes or the graph: run before anything simulates.

`validate_scenario` checks sizes, memory and duration by arithmetic first (`budget.py`),
so that a scenario too large or too slow fails with an estimate before anything is
allocated; then it builds only what is cheap and needed: the graph (connectivity, the
algorithm's own check) and, for a label-based partition, the task's labels and the
split. Each failure is one `ScenarioError` naming the field, the bad value and what is
allowed (DESIGN decision 9); what runs, but perhaps not as meant, is a `ScenarioWarning`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Container, Iterable

import networkx as nx
import numpy as np

from .adversary import byzantine_peers
from .algorithms import ALGORITHMS, IMPLEMENTATIONS
from .baselines import baseline_scenario
from .budget import (
    MAX_HISTORY_ROWS,
    ModelCost,
    end_time_lower_s,
    first_message_lower_s,
    gradient_steps_upper,
    graph_build_s,
    host_seconds,
    memory_terms,
    model_cost,
    peer_step_times,
)
from .build import build_graph, build_task, link_catalogue, partitions_of, peer_partitions
from .compression import check_compression
from .config import Range, ScenarioError, warn
from .faults import check_faults
from .calibration import read_calibration
from .hardware import host_memory_bytes, load_devices, supported_precisions
from .links import load_regions
from .result import MAIN_RUN
from .scenario import Scenario
from .stepmodel import activations_at_precision, memory_need
from .stragglers import check_stragglers
from .tasks import TASKS, TaskSizes

__all__ = ["LR_RANGE", "MAX_NAME_LENGTH", "Progress", "check_fits", "check_name", "field_limits", "limits_table",
           "validate_scenario"]

Progress = Callable[[str], None]
"""Called with one line before a build that is estimated to take more than a second."""

LR_RANGE = Range(0, 1e6, low_open=True, why="a larger step diverges at once; beyond 3.4e38 float32 overflows")
MAX_NAME_LENGTH = 100  # a result folder is <name>-<12-hex hash>; file systems allow 255 bytes
NAME_FORBIDDEN = '/\\<>:"|?*'  # path separators, and what Windows forbids in a file name
HOST_MEMORY_SHARE = 0.8  # of physical memory: the OS, Python and torch need the rest
LONG_S = 1.0  # builds estimated longer than this are announced through `progress`
WARN_HOST_S = 600.0  # a run estimated to compute longer than this gets a warning
MAX_HOST_S = 7 * 86400.0  # ... and longer than a week, an error: no run of the suite's kind can wait that long
FEW_SAMPLES_SHARE = 0.1  # warn when more than this share of peers hold a single sample


def field_limits() -> dict[str, Range]:
    """Every bounded field by dotted path (``[]`` for any list item, the task or algorithm in parentheses).

    The README's limits table states each of these; a test keeps the two equal.
    """
    limits = _dataclass_limits(Scenario, "")
    shipped = [("task.", TASKS), ("algorithm.", ALGORITHMS)]  # not those a notebook or a test registers
    for prefix, registry in shipped:
        for name, cls in registry.items():
            if cls.__module__.startswith("p2psim."):
                limits.update({f"{path} ({name})": r for path, r in _dataclass_limits(cls, prefix).items()})
    limits["algorithm.lr"] = LR_RANGE
    return limits


def limits_table() -> str:
    """The README's limits table (markdown), one row per bounded field: path, range, why."""
    rows = ["| field | range | why |", "|---|---|---|"]
    rows += [f"| `{path}` | {r} | {r.why} |" for path, r in sorted(field_limits().items())]
    return "\n".join(rows)


def _dataclass_limits(cls: type, prefix: str) -> dict[str, Range]:
    out: dict[str, Range] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "range" in f.metadata:
            out[prefix + f.name] = f.metadata["range"]
        inner = [a for a in typing.get_args(hints[f.name]) if a is not type(None) and a is not Ellipsis]
        for option in [hints[f.name], *inner]:
            if dataclasses.is_dataclass(option):
                many = typing.get_origin(hints[f.name]) is tuple
                out.update(_dataclass_limits(option, f"{prefix}{f.name}{'[]' if many else ''}."))
    return out


def _known(names: Iterable[str], allowed: Container[str], field: str, what: str) -> None:
    for name in names:
        if name not in allowed:
            raise ScenarioError(field, f"unknown {what} {name!r} (allowed: {', '.join(allowed)})")


def _note(progress: Progress | None, seconds: float, what: str) -> None:
    if progress is not None and seconds > LONG_S:
        progress(f"{what} (estimated {seconds:.0f} s)")


def validate_scenario(scenario: Scenario, progress: Progress | None = None) -> None:
    """Raise `ScenarioError` for the first problem found in `scenario`; return None if it can run.

    `progress` is told, one line each, about builds estimated to take over a second.
    """
    check_name(scenario.name, "name")
    devices = load_devices()
    links = link_catalogue(scenario)
    peers = scenario.peers
    _known(peers.devices, devices, "peers.devices", "device")
    _known(peers.utilisation, peers.devices, "peers.utilisation", "device (not in peers.devices)")
    _known(peers.links, links, "peers.links", "link")
    _known(peers.regions, load_regions(), "peers.regions", "region")
    if scenario.faults is not None:
        check_faults(scenario.faults, peers.count, list(peers.regions), list(peers.links))
    if scenario.stragglers is not None:
        check_stragglers(scenario.stragglers, peers.count, list(peers.devices))
    if scenario.churn is not None:
        scenario.churn.check_peers(peers.count, {*peers.devices, *peers.links, *peers.regions})
    _known([scenario.algorithm.name], IMPLEMENTATIONS, "algorithm.name", "algorithm")
    check_compression(scenario.network.compression, peers.precision, IMPLEMENTATIONS[scenario.algorithm.name],
                      scenario.workload is not None)
    LR_RANGE.check(scenario.algorithm.lr, "algorithm.lr")
    _check_baselines(scenario, devices, links)
    _check_precision(scenario)
    if peers.calibration:
        read_calibration(peers.calibration)

    sizes = scenario.task.sizes()
    if scenario.data.partition != "iid" and sizes.n_classes is None:
        raise ScenarioError(
            "data.partition",
            f"{scenario.data.partition!r} splits by label and needs a classification task; "
            f"task {scenario.task.name!r} has no single class label per sample (a regression, or a language "
            f"model's target per position) (allowed: iid)",
        )
    learners = len(IMPLEMENTATIONS[scenario.algorithm.name].learners(scenario.algorithm, peers.count))
    data_checks = not scenario.engine.cost_only  # cost-only runs hold no data
    if data_checks and learners > sizes.n_train:
        raise ScenarioError(
            "peers.count", f"{peers.count} peers ({learners} training) but only {sizes.n_train} training samples"
        )
    for i, baseline in enumerate(scenario.baselines):
        if data_checks and baseline.count > sizes.n_train:
            raise ScenarioError(
                f"baselines[{i}].count",
                f"{baseline.count} devices share the training set IID, but it has only {sizes.n_train} samples",
            )
    cost = model_cost(scenario)
    _check_baseline_runs(scenario, cost)
    check_fits(scenario, cost)
    _check_memory(scenario, sizes, cost)
    _check_duration(scenario, cost, links)
    _check_topology(scenario, progress)
    _check_adversary(scenario)
    if data_checks:
        _check_partition(scenario, sizes, progress)


def _check_adversary(scenario: Scenario) -> None:
    """Byzantine peers must be learners, leave one honest, and have rows to corrupt in this algorithm."""
    if scenario.adversary is None:
        return
    algorithm = IMPLEMENTATIONS[scenario.algorithm.name]
    if not algorithm.byzantine_surface:
        allowed = sorted(name for name, cls in IMPLEMENTATIONS.items() if cls.byzantine_surface)
        raise ScenarioError(
            "adversary",
            f"algorithm {scenario.algorithm.name!r} combines rows without sending them, so an attacker has nothing "
            f"to corrupt (allowed with an adversary: {', '.join(allowed)})",
        )
    learners = algorithm.learners(scenario.algorithm, scenario.peers.count)
    if len(byzantine_peers(scenario.adversary, learners, scenario.seed)) >= len(learners):
        raise ScenarioError("adversary.peers", f"names every one of the {len(learners)} learners; at least one must be honest")


def check_name(name: str, field: str) -> None:
    """A run's name becomes a folder name and a CSV value: printable, no path separators, at most 100 characters."""
    bad = sorted({c for c in name if c in NAME_FORBIDDEN or not c.isprintable()})
    if not name.strip() or name.strip(".") == "" or bad or len(name) > MAX_NAME_LENGTH or name != name.strip():
        reasons = []
        if bad:
            reasons.append(f"contains {', '.join(repr(c) for c in bad)}")
        if len(name) > MAX_NAME_LENGTH:
            reasons.append(f"has {len(name)} characters")
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ScenarioError(
            field,
            f"{shown!r} cannot name a result folder ({'; '.join(reasons) or 'empty, dots or edge spaces'}): "
            f"use 1 to {MAX_NAME_LENGTH} printable characters without {NAME_FORBIDDEN} or leading/trailing spaces",
        )


def _check_baselines(scenario: Scenario, devices: Container[str], links: Container[str]) -> None:
    names = [b.name for b in scenario.baselines]
    for i, baseline in enumerate(scenario.baselines):
        check_name(baseline.name, f"baselines[{i}].name")
        if baseline.name == MAIN_RUN:
            raise ScenarioError(f"baselines[{i}].name", f"{MAIN_RUN!r} is the peer-to-peer run's own name; choose another")
        _known([baseline.device], devices, f"baselines[{i}].device", "device")
        _known([baseline.link], links, f"baselines[{i}].link", "link")
        if names.count(baseline.name) > 1:
            raise ScenarioError(f"baselines[{i}].name", f"{baseline.name!r} is used twice")
        if baseline.lr is not None:
            LR_RANGE.check(baseline.lr, f"baselines[{i}].lr")


def _check_baseline_runs(scenario: Scenario, cost: ModelCost) -> None:
    """Derive each baseline's run now, as the runner will after the peer-to-peer run, so none fails then."""
    batch_range = Range(1, 10**6)
    global_batch = scenario.data.batch_size * scenario.peers.count
    samples = min(10**15, int(gradient_steps_upper(scenario, peer_step_times(scenario, cost)) * scenario.data.batch_size))
    for i, spec in enumerate(scenario.baselines):
        per_device = max(1, global_batch // spec.count)
        if not batch_range.contains(per_device):
            raise ScenarioError(
                f"baselines[{i}].count",
                f"{spec.count} devices would each take {per_device} samples of the global batch "
                f"({scenario.peers.count} peers x {scenario.data.batch_size}); a batch must be in {batch_range}",
            )
        try:
            baseline_scenario(scenario, spec, samples)
        except ScenarioError as error:
            raise ScenarioError(f"baselines[{i}]", f"its centralized run cannot be derived: {error}") from None


def _check_memory(scenario: Scenario, sizes: TaskSizes, cost: ModelCost) -> None:
    """The run's arrays, by arithmetic, against this machine's memory; the error names the largest part."""
    budget = HOST_MEMORY_SHARE * host_memory_bytes()
    runs = [None, *range(len(scenario.baselines))]
    for baseline in runs:
        terms = memory_terms(scenario, sizes, cost, baseline)
        need = sum(term.bytes for term in terms)
        if need > budget:
            largest = terms[0]
            raise ScenarioError(
                largest.field,
                f"the {'peer-to-peer run' if baseline is None else 'baseline'} needs about {need / 1e9:.3g} GB of "
                f"host memory, more than {budget / 1e9:.3g} GB ({HOST_MEMORY_SHARE:.0%} of this machine's); "
                f"the largest part is {largest.what}: {largest.bytes / 1e9:.3g} GB",
            )


def _check_duration(scenario: Scenario, cost: ModelCost, links: dict) -> None:
    """Refuse a run that would record millions of rows, wait forever for a message, or compute for weeks."""
    steps = peer_step_times(scenario, cost)
    metrics, stop, n = scenario.metrics, scenario.stop, scenario.peers.count
    interval = metrics.eval_interval_s
    if interval is not None:
        end = end_time_lower_s(scenario, steps)
        if end / interval > MAX_HISTORY_ROWS:
            raise ScenarioError(
                "metrics.eval_interval_s",
                f"{interval!r} s would record at least {end / interval:.3g} history rows (the run lasts at least "
                f"{end:.3g} s of simulated time); at most {MAX_HISTORY_ROWS} are allowed: "
                f"raise eval_interval_s or lower the stop",
            )
        if n > 1:
            wait, fastest = first_message_lower_s(scenario, cost, links)
            horizon = min(wait, stop.sim_time_s or math.inf)
            if horizon / interval > MAX_HISTORY_ROWS:
                raise ScenarioError(
                    "peers.links",
                    f"no model message ({cost.model_bytes:.3g} B) can arrive before t = {wait:.3g} s, even on the "
                    f"fastest link {fastest!r}: an algorithm that waits for one records {horizon / interval:.3g} rows "
                    f"of eval_interval_s = {interval!r} first (at most {MAX_HISTORY_ROWS}); use faster links, "
                    f"a larger eval_interval_s or a stop.sim_time_s",
                )
    if metrics.eval_interval_samples is not None and stop.sim_time_s is None:
        limit = scenario.sample_limit()
        samples = min(limit[0] if limit else math.inf, (stop.steps or math.inf) * scenario.data.batch_size)
        if samples / metrics.eval_interval_samples > MAX_HISTORY_ROWS:
            raise ScenarioError(
                "metrics.eval_interval_samples",
                f"{metrics.eval_interval_samples} would record {samples / metrics.eval_interval_samples:.3g} history "
                f"rows before the stop; at most {MAX_HISTORY_ROWS} are allowed",
            )
    n_steps = gradient_steps_upper(scenario, steps)
    seconds = host_seconds(scenario, cost, n_steps)
    if seconds > MAX_HOST_S:
        raise ScenarioError(
            "stop",
            f"the run would compute up to {n_steps:.3g} gradients of {scenario.data.batch_size} samples, about "
            f"{seconds / 86400:.3g} days on one host core; lower the stop (at most {MAX_HOST_S / 86400:.0f} days)",
        )
    if seconds > WARN_HOST_S:
        warn(
            "stop",
            f"the run may compute up to {n_steps:.3g} gradients of {scenario.data.batch_size} samples: "
            f"about {seconds / 60:.3g} min on one host core",
        )


def _check_topology(scenario: Scenario, progress: Progress | None = None) -> None:
    """Arithmetic first (peers a family needs), then build the graph and check it as the algorithm requires."""
    topology, n = scenario.topology, scenario.peers.count
    if topology.kind in ("ring", "watts_strogatz") and n < 3:
        raise ScenarioError("peers.count", f"topology {topology.kind!r} needs at least 3 peers, got {n}")
    if topology.kind == "hypercube" and n & (n - 1):
        raise ScenarioError("peers.count", f"topology 'hypercube' needs a power of two of peers, got {n}")
    field = "topology.path" if topology.kind == "edge_list" else "topology"  # there, the file is what is wrong
    _note(progress, graph_build_s(topology, n), f"building the {topology.kind} graph over {n} peers")
    try:
        graph = build_graph(scenario)
    except OSError as error:
        raise ScenarioError(field, f"cannot read edge list {topology.path!r}: {error.strerror or error}") from None
    except (ValueError, nx.NetworkXError) as error:
        where = "" if topology.kind == "edge_list" else f" (n is peers.count = {n})"
        raise ScenarioError(field, f"{error}{where}") from None
    algorithm = IMPLEMENTATIONS[scenario.algorithm.name]
    if algorithm.needs_connected_graph and not nx.is_connected(graph):
        components = nx.number_connected_components(graph)
        raise ScenarioError(
            "topology",
            f"the {topology.kind} graph over {n} peers is disconnected ({components} components); "
            f"algorithm {scenario.algorithm.name!r} needs a connected graph",
        )
    check_graph = getattr(algorithm, "check_graph", None)
    if check_graph is not None:
        check_graph(scenario.algorithm, graph)


def _check_partition(scenario: Scenario, sizes: TaskSizes, progress: Progress | None = None) -> None:
    """Shard sizes by arithmetic for IID; for a label split, split the class counts as the run will split the labels.

    A label split (`partition.py`) draws one permutation per class and shares per peer, the
    same random numbers whatever order the labels come in, so the shard sizes of labels
    ``repeat(arange(classes), train_class_counts)`` are the run's (tests/test_cli_imports.py
    checks it): validation needs neither the data nor torch.
    """
    data, n = scenario.data, scenario.peers.count
    if data.partition == "iid":
        smallest = sizes.n_train // n
        short = n - sizes.n_train % n if smallest < data.batch_size else 0
        _warn_short_shards(scenario, short, smallest)
        return
    if data.partition == "k_labels" and data.labels_per_peer > sizes.n_classes:
        raise ScenarioError(
            "data.labels_per_peer",
            f"must be <= {sizes.n_classes} (the number of labels of task {scenario.task.name!r}), "
            f"got {data.labels_per_peer!r}",
        )
    split_s = sizes.n_train * 1e-7 + (sizes.n_classes or 1) * n * 1e-6  # one draw per sample, one share per peer and label
    counts, task = sizes.train_class_counts, None
    if counts is not None:  # the split draws the same numbers whatever the labels' order: sizes follow from the counts
        _note(progress, split_s, f"splitting the labels of task {scenario.task.name!r} among {n} peers")
        labels = np.repeat(np.arange(len(counts)), counts)
    else:  # a task that does not state its class counts is built (this imports torch)
        _note(progress, sizes.build_s + split_s, f"building task {scenario.task.name!r} to split its labels among {n} peers")
        task = build_task(scenario.task, scenario.seed)
    try:
        parts = partitions_of(scenario, labels, len(labels)) if task is None else peer_partitions(scenario, task)
        shards = np.array([len(part) for part in parts])
    except ValueError as error:
        raise ScenarioError(
            "data", f"the training set cannot be split {data.partition!r} among {n} peers: {error}"
        ) from None
    shards = shards[shards > 0]  # a peer that does not train (a server) holds no data
    _warn_short_shards(scenario, int((shards < data.batch_size).sum()), int(shards.min()))
    single = int((shards == 1).sum())
    if data.partition == "dirichlet" and single > FEW_SAMPLES_SHARE * n:
        warn(
            "data.alpha",
            f"alpha = {data.alpha!r} leaves {single} of {n} peers with a single training sample "
            f"(a peer the draw left empty takes one from the largest); a larger alpha spreads the labels more",
        )


def _warn_short_shards(scenario: Scenario, short: int, smallest: int) -> None:
    if short:
        warn(
            "data.batch_size",
            f"{scenario.data.batch_size} is larger than the shard of {short} of {scenario.peers.count} peers "
            f"(smallest: {smallest} samples): their batches are drawn with replacement",
        )


def check_fits(scenario: Scenario, cost: ModelCost | None = None) -> None:
    """A model that does not fit a device's memory is an error that says so, for every device that fails (DESIGN 2).

    A peer needs weights, gradients and optimizer state (by precision and optimizer,
    `footprint.parameter_bytes`), one received model, and the activations of its whole
    local batch (fewer with `peers.activation_checkpointing`; no optimizer state with
    `peers.offload = "optimizer"`). A centralized baseline whose per-device batch's
    activations do not fit accumulates gradients over micro-batches instead (the same
    FLOPs), so it fails only if one sample does not fit. Sizes come from the
    meta-device model, so nothing is built; one error lists every failing device.
    """
    cost = model_cost(scenario) if cost is None else cost
    activations = activations_at_precision(scenario, cost.timing_activation_bytes_per_sample)
    catalogue = load_devices()
    batch = scenario.data.batch_size
    uses = {("peers.devices", batch, f"per peer with batch {batch}"): list(scenario.peers.devices)}
    if scenario.baselines:
        what = "per baseline device with 1 sample (it accumulates micro-batches)"
        uses[("baselines[0].device", 1, what)] = [b.device for b in scenario.baselines]
    failures, fields = [], []
    for (field, samples, what), names in uses.items():
        need = memory_need(scenario, cost.timing_params, samples, activations)
        short = [f"{name!r} has {catalogue[name].memory_gb:g}" for name in dict.fromkeys(names)
                 if need.total > catalogue[name].memory_gb * 1e9]
        if short:
            fields.append(field)
            failures.append(f"training needs {need.total / 1e9:.3g} GB {what} ({need.describe()} GB): "
                            + ", ".join(short) + " GB")
    if failures:
        raise ScenarioError(
            fields[0],
            f"the model ({cost.timing_params:.3g} params, {scenario.peers.precision}, "
            f"{scenario.algorithm.optimizer.name}) does not fit: " + "; ".join(failures),
        )


def _check_precision(scenario: Scenario) -> None:
    """Every device of the mix and the baselines has hardware for the precision: one error lists those without."""
    catalogue, precision = load_devices(), scenario.peers.precision
    names = list(scenario.peers.devices) + [b.device for b in scenario.baselines]
    lacking = sorted({name for name in names if precision not in supported_precisions(catalogue[name])})
    if lacking:
        raise ScenarioError(
            "peers.precision",
            f"{precision!r} has no hardware on {', '.join(repr(n) for n in lacking)} "
            f"(allowed there: {', '.join(supported_precisions(catalogue[lacking[0]]))})",
        )
