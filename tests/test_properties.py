"""Property-based tests of the scenario boundary (issue 7), with Hypothesis.

1. Loading any scenario, valid or mutated at any depth (wrong types, out-of-range and huge
   numbers, NaN and inf, typos, unknown names, removed and added keys), either succeeds or
   raises `ScenarioError` naming a field (and the value, where one value was set there),
   within a time bound: never another exception, never a hang.
2. A sample of accepted scenarios, at tiny size and at the ends of the ranges, runs to a
   finished, diverged or stalled result: never an exception.

A few hundred examples by default; ``-m slow`` runs 10,000 of the first and 500 of the second
(README, "Limits and property tests", records how long that takes and what it found).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import signal
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import p2psim
from p2psim import Scenario, ScenarioError
from p2psim.algorithms import ALGORITHMS, IMPLEMENTATIONS
from p2psim.hardware import load_devices
from p2psim.links import load_link_profiles, load_regions
from p2psim.tasks import TASKS

DEVICES = sorted(load_devices())
LINKS = sorted(load_link_profiles())
REGIONS = sorted(load_regions())
LOAD_BOUND_S = 60.0  # a hang detector, not a speed test (benchmarks time things): cold imports on a loaded machine take seconds
RUN_BOUND_S = 60.0
STATUSES = ("finished", "diverged", "stalled")
NUMBERS = [0, -1, 1, 2, 3, 7, 1000, 10**6, 10**9, 10**12, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 10**30,
           0.0, -0.0, 0.5, 1.5, 1e-9, 1e-300, 5e-324, 1e6, 1e9, 1e39, 1e308, -1e308,
           math.nan, math.inf, -math.inf]


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Fail, instead of hanging, when the body runs longer than `seconds` (SIGALRM: main thread, Unix)."""

    def expire(*_: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- valid scenarios, tiny -------------------------------------------------------------------------


@st.composite
def tasks(draw: st.DrawFn) -> dict:
    name = draw(st.sampled_from(sorted(TASKS)))
    fraction = draw(st.sampled_from([0.1, 0.2, 0.5]))
    if name == "least_squares":
        return {"name": name, "n_samples": draw(st.integers(40, 300)), "n_features": draw(st.integers(1, 8)),
                "noise": draw(st.floats(0, 1e6)), "condition_number": draw(st.floats(1, 1e12)),
                "eval_fraction": fraction}
    if name == "logistic":
        return {"name": name, "n_samples": draw(st.integers(40, 300)), "n_features": draw(st.integers(1, 8)),
                "n_classes": draw(st.integers(2, 5)), "class_separation": draw(st.floats(0, 1e4)),
                "eval_fraction": fraction}
    if name == "digits_mlp":
        return {"name": name, "hidden": draw(st.lists(st.integers(1, 16), max_size=2)), "eval_fraction": fraction}
    return {"name": name}  # a task registered later: its defaults


def _mix(draw: st.DrawFn, names: list[str], n: int) -> dict:
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=min(3, n), unique=True))
    if draw(st.booleans()):  # counts
        cuts = sorted(draw(st.lists(st.integers(0, n), min_size=len(chosen) - 1, max_size=len(chosen) - 1)))
        bounds = [0, *cuts, n]
        return {name: bounds[i + 1] - bounds[i] for i, name in enumerate(chosen)}
    return {name: 1 / len(chosen) for name in chosen}  # fractions; peers.count is then set


@st.composite
def algorithm_tables(draw: st.DrawFn) -> dict:
    """Any registered algorithm: lr, and its own fields drawn within their ranges or left at their defaults."""
    # the library's algorithms, not those other test modules register for their own checks
    name = draw(st.sampled_from(sorted(n for n, cls in IMPLEMENTATIONS.items() if cls.__module__.startswith("p2psim."))))
    table: dict[str, Any] = {"name": name, "lr": draw(st.floats(1e-6, 1e6))}
    for f in dataclasses.fields(ALGORITHMS[name]):
        limits = f.metadata.get("range")
        if f.name == "lr" or not f.init or not draw(st.booleans()):
            continue
        if isinstance(f.default, bool):
            table[f.name] = draw(st.booleans())
        elif limits is not None and isinstance(f.default, int) or (limits is not None and f.default is None
                                                                     and "int" in str(f.type)):
            table[f.name] = draw(st.integers(int(math.ceil(limits.low)), int(min(limits.high, limits.low + 4))))
        elif limits is not None:
            low = limits.low + (1e-6 if limits.low_open else 0.0)
            high = min(limits.high, limits.low + 10.0) - (1e-6 if limits.high_open else 0.0)
            table[f.name] = draw(st.floats(low, high))
    return table


@st.composite
def valid_scenarios(draw: st.DrawFn) -> dict:
    """A scenario within every range, at tiny size: a handful of peers, a few steps."""
    task = draw(tasks())
    n = draw(st.integers(1, 6))
    devices, links = _mix(draw, DEVICES, n), _mix(draw, LINKS, n)
    peers: dict[str, Any] = {"devices": devices, "links": links, "count": n,
                             "precision": draw(st.sampled_from(["fp32", "fp16", "bf16"])),
                             "jitter": draw(st.floats(0, 2)),
                             "step_time_distribution": draw(st.sampled_from(["lognormal", "exponential"]))}
    if draw(st.booleans()):
        peers["regions"] = _mix(draw, REGIONS, n)
    kinds = ["complete", "star", "exponential"] + (["ring"] if n >= 3 else []) + (["hypercube"] if n & (n - 1) == 0 else [])
    topology: dict[str, Any] = {"kind": draw(st.sampled_from(kinds + ["erdos_renyi"]))}
    if topology["kind"] == "erdos_renyi":
        topology["p"] = 1.0
    data: dict[str, Any] = {"batch_size": draw(st.integers(1, 16))}
    if task["name"] in ("logistic", "digits_mlp") and draw(st.booleans()):
        data = {**data, **draw(st.sampled_from([{"partition": "dirichlet", "alpha": 0.5},
                                                {"partition": "k_labels", "labels_per_peer": 1}]))}
    interval = draw(st.floats(1e-3, 10.0))
    stop: dict[str, Any] = {"steps": draw(st.integers(1, 12))}
    if draw(st.booleans()):
        metrics: dict[str, Any] = {"eval_interval_samples": draw(st.integers(1, 64))}
    else:
        metrics = {"eval_interval_s": interval}
        stop["sim_time_s"] = interval * draw(st.integers(1, 50))  # few rows, whatever the links
    scenario = {
        "name": draw(st.sampled_from(["tiny", "run 1", "sweep-α"])),
        "seed": draw(st.integers(0, 2**32)),
        "task": task, "peers": peers, "data": data, "topology": topology,
        "algorithm": draw(algorithm_tables()), "stop": stop, "metrics": metrics,
        "baselines": [{"name": f"b{i}", "device": draw(st.sampled_from(DEVICES)), "count": draw(st.integers(1, 3))}
                      for i in range(draw(st.integers(0, 2)))],
    }
    if draw(st.booleans()):
        scenario["network"] = {"links": [{"name": "own", "up_mbps": draw(st.floats(1e-3, 1e9)),
                                          "down_mbps": draw(st.floats(1e-3, 1e9)),
                                          "latency_ms": draw(st.floats(0, 1e6))}]}
        peers["links"] = {"own": n}
    if draw(st.booleans()):
        scenario["workload"] = {"name": "w", "params": draw(st.floats(1, 1e8)),
                                "flops_per_sample": draw(st.floats(1, 1e12))}
    return scenario


# --- mutations at any depth ------------------------------------------------------------------------


def _places(tree: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every path to a value in nested dicts and lists, the root's children first."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield (*path, key)
        yield from _places(value, (*path, key))


def _parent(tree: Any, path: tuple) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def field_name(path: tuple) -> str:
    """A path as ScenarioError names fields: dotted keys, [i] for list items."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


weird_values = st.one_of(
    st.sampled_from(NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(-3, 3), max_size=2),
)


@st.composite
def mutated(draw: st.DrawFn, scenario: dict, max_mutations: int = 3) -> tuple[dict, tuple | None, Any]:
    """The scenario after 1 to 3 mutations; and the path and value of the last value set, if one was."""
    data = copy.deepcopy(scenario)
    last: tuple[tuple | None, Any] = (None, None)
    for _ in range(draw(st.integers(1, max_mutations))):
        places = list(_places(data))
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent, key = _parent(data, path), path[-1]
        operation = draw(st.sampled_from(["set", "set", "set", "scale", "typo", "unknown name", "remove", "add"]))
        value = parent[key]
        if operation == "scale" and isinstance(value, (int, float)) and not isinstance(value, bool):
            parent[key] = type(value)(value * draw(st.sampled_from([-1, 10**3, 10**9, 10**15])))
            last = (path, parent[key])
        elif operation == "typo" and isinstance(key, str) and key:
            i = draw(st.integers(0, len(key) - 1))
            parent[key[:i] + key[i + 1:] + draw(st.sampled_from(["", "s", "_"]))] = parent.pop(key)
            last = (None, None)
        elif operation == "unknown name" and isinstance(value, str):
            parent[key] = value + draw(st.sampled_from(["x", "_9", " ", "\x00"]))
            last = (path, parent[key])
        elif operation == "remove":
            parent.pop(key)
            last = (None, None)
        elif operation == "add" and isinstance(value, dict):
            value[draw(st.text(min_size=1, max_size=8))] = draw(weird_values)
            last = (None, None)
        else:
            parent[key] = draw(weird_values)
            last = (path, parent[key])
    return data, *last


def _check_load(data: dict, path: tuple | None, value: Any) -> None:
    """Loading succeeds, or fails with ScenarioError naming a field (and the value set there), in time."""
    started = time.perf_counter()
    with warnings.catch_warnings(), time_bound(LOAD_BOUND_S):
        warnings.simplefilter("ignore")
        try:
            Scenario.from_dict(data)
        except ScenarioError as error:
            assert error.field, f"no field named: {error}"
            assert str(error).startswith(f"{error.field}: ")
            named_key = error.reason.startswith("unknown key")  # a typo'd key is named, its value needs not be
            if path is not None and error.field == field_name(path) and _shown(value) and not named_key:
                assert any(text in str(error) for text in _quotes(value)), (error, value)
    assert time.perf_counter() - started < LOAD_BOUND_S


def _quotes(value: Any) -> list[str]:
    """How an error may quote `value`: as written, or as the float a number field holds."""
    quotes = [repr(value)[:40], str(value)]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1e308:
        quotes.append(repr(float(value)))
    return quotes


def _shown(value: Any) -> bool:
    """Scalars an error should quote (long texts and containers are summarised)."""
    return isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40)


PROPERTY = dict(database=None, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
FIXED = {**PROPERTY, "derandomize": True}  # the default suite draws the same examples every run: CI does not flake


def _loads(data: tuple) -> None:
    _check_load(*data)


@settings(max_examples=200, **FIXED)
@given(st.one_of(valid_scenarios().map(lambda s: (s, None, None)), valid_scenarios().flatmap(mutated)))
def test_loading_any_scenario_succeeds_or_names_a_field(data):
    _loads(data)


@pytest.mark.slow
@settings(max_examples=10_000, **PROPERTY)
@given(st.one_of(valid_scenarios().map(lambda s: (s, None, None)), valid_scenarios().flatmap(mutated)))
def test_loading_any_scenario_succeeds_or_names_a_field_10000(data):
    _loads(data)


def _runs(data: dict) -> None:
    """An accepted tiny scenario runs to a finished, diverged or stalled result, with its baselines."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scenario = Scenario.from_dict(data)
        except ScenarioError:
            assume(False)  # refused scenarios are the other property's
        with time_bound(RUN_BOUND_S):
            result = p2psim.run(scenario)
    for run in result.runs:
        assert result.manifest["runs"][run]["status"] in STATUSES


@settings(max_examples=10, **FIXED)
@given(valid_scenarios())
def test_accepted_tiny_scenarios_run_to_a_result(data):
    _runs(data)


@pytest.mark.slow
@settings(max_examples=500, **PROPERTY)
@given(valid_scenarios())
def test_accepted_tiny_scenarios_run_to_a_result_500(data):
    _runs(data)
