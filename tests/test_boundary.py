"""Issue 7, "Hardening the boundary": every case found by mutating scenarios gives one named error
before anything runs, or runs to a result; warnings name their field; limits are documented."""

from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path

import pytest

import p2psim
from p2psim import Scenario, ScenarioError
from p2psim.config import ScenarioWarning
from p2psim.scenario import set_dotted
from p2psim.tasks import TASKS

README = Path(__file__).resolve().parents[1] / "README.md"
SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "scenarios").glob("*.toml"))


@pytest.fixture
def base() -> dict:
    """4 unequal peers on a ring, least squares, AD-PSGD, one baseline."""
    return {
        "name": "tiny",
        "seed": 3,
        "task": {"name": "least_squares", "n_samples": 200, "n_features": 5},
        "peers": {"devices": {"h100_sxm": 2, "rx_580": 2}, "links": {"fibre": 4}},
        "topology": {"kind": "ring"},
        "algorithm": {"name": "adpsgd", "lr": 0.1},
        "stop": {"samples": 256},
        "metrics": {"eval_interval_s": 0.01},
        "baselines": [{"name": "one", "device": "h100_sxm"}],
    }


def _with(base: dict, changes: dict) -> dict:
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        set_dotted(data, dotted, value)
    return data


SLOW = {"name": "slow", "up_mbps": 1e-9, "down_mbps": 1e-9}
CASES = [
    ({"peers.devices": {"rtx_4090": 859148252}, "peers.links": {"fibre": 1.0}}, "peers.devices", "859148252"),
    ({"peers.devices": {"rtx_4090": 0.5, "t4": 0.5}, "peers.links": {"fibre": 1.0}, "peers.count": 10**12},
     "peers.count", "1000000000000"),
    ({"task.n_samples": 10**12}, "task.n_samples", "1000000000000"),
    ({"task": {"name": "digits_mlp", "hidden": [322941167]}}, "task.hidden[0]", "322941167"),
    ({"task": {"name": "digits_mlp", "hidden": [1000000]}}, "task.hidden", "GB of host memory"),
    ({"task.n_features": 9223372036854775807}, "task.n_features", "9223372036854775807"),
    ({"task.n_features": 2**62}, "task.n_features", str(2**62)),
    ({"topology": {"kind": "edge_list", "path": "/dev/zero"}}, "topology.path", "not a regular file"),
    ({"algorithm.lr": 1e39}, "algorithm.lr", "1e+39"),
    ({"algorithm.lr": 1e308}, "algorithm.lr", "1e+308"),
    ({"engine.threads": 2147483648}, "engine.threads", "2147483648"),
    ({"baselines.0.count": 5000}, "baselines[0].count", "5000 devices"),
    ({"data.batch_size": 10**6}, "baselines[0].count", "4000000 samples"),
    ({"baselines.0.name": "p2p"}, "baselines[0].name", "'p2p'"),
    ({"name": "a\x00b"}, "name", "'\\x00'"),
    ({"name": "x" * 300}, "name", "300 characters"),
    ({"baselines.0.name": "a/b"}, "baselines[0].name", "'/'"),
    ({"task.noise": math.inf}, "task.noise", "inf"),
    ({"task": {"name": "logistic", "class_separation": math.inf}}, "task.class_separation", "inf"),
    ({"metrics.eval_interval_s": 1e-9}, "metrics.eval_interval_s", "history rows"),
    ({"network": {"links": [SLOW]}, "peers.links": {"slow": 4}, "stop": {"steps": 10}},
     "network.links[0].up_mbps", "1e-09"),
    ({"network": {"links": [{**SLOW, "up_mbps": 1e-3, "down_mbps": 1e-3}]}, "peers.links": {"slow": 4},
      "workload": {"name": "big", "params": 1e8, "flops_per_sample": 1e9}, "stop": {"steps": 10}},
     "peers.links", "no model message"),
    ({"network": {"links": [{"name": "far", "up_mbps": 10, "down_mbps": 10, "latency_ms": 1e12}]}},
     "network.links[0].latency_ms", "1000000000000.0"),
    ({"data.batch_size": 10**7}, "data.batch_size", "10000000"),
    ({"stop": {"sim_time_s": 1e12}, "metrics": {"eval_interval_s": 1e8}}, "stop", "days"),
    ({"peers.devices": {"h100_sxm": 1}, "peers.links": {"fibre": 1}}, "peers.count", "at least 3 peers"),
    ({"sed": 1}, "sed", "unknown key 'sed'"),
    ({"": 1}, "''", "unknown key ''"),
    ({"peers.": 1}, "peers.''", "unknown key ''"),
    ({"peers.devices": {"h100_sxm": 10**6}, "peers.links": {"fibre": 10**6}, "topology": {"kind": "complete"},
      "task.n_samples": 10**7, "baselines": []}, "topology", "GB of host memory"),
    ({"task.eval_fraction": 1e-9}, "task.eval_fraction", "held-out"),
    ({"seed": 2**64}, "seed", "64-bit"),
    ({"data": {"partition": "dirichlet", "alpha": 1e-300}, "task": {"name": "logistic"}}, "data.alpha", "1e-300"),
]


@pytest.mark.parametrize("changes, field, fragment", CASES, ids=[case[1] + ":" + case[2][:20] for case in CASES])
def test_each_case_gives_one_named_error_before_anything_runs(base, changes, field, fragment):
    started = time.perf_counter()
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(_with(base, changes))
    assert time.perf_counter() - started < 5  # arithmetic, not a build (was minutes, or MemoryError)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "changes, fields",
    [
        ({"data.batch_size": 64}, ["data.batch_size"]),
        ({"task": {"name": "digits_mlp", "hidden": [8]}, "peers.devices": {"h100_sxm": 32},
          "peers.links": {"fibre": 32}, "data": {"partition": "dirichlet", "alpha": 0.01}},
         ["data.batch_size", "data.alpha"]),
    ],
    ids=["batch-larger-than-shard", "dirichlet-one-sample-peers"],
)
def test_surprises_are_warnings_that_name_the_field(base, changes, fields):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Scenario.from_dict(_with(base, changes))
    scenario_warnings = [w for w in caught if issubclass(w.category, ScenarioWarning)]
    assert [w.message.field for w in scenario_warnings] == fields
    assert all(str(w.message).startswith(f"{w.message.field}: ") for w in scenario_warnings)
    assert all(w.filename == __file__ for w in scenario_warnings)  # attributed to the caller, not to p2psim


def test_one_sample_peers_are_counted_in_the_warning(base):
    data = _with(base, {"task": {"name": "digits_mlp", "hidden": [8]}, "peers.devices": {"h100_sxm": 32},
                        "peers.links": {"fibre": 32}, "data": {"partition": "dirichlet", "alpha": 0.01}})
    with pytest.warns(ScenarioWarning, match=r"data\.alpha: alpha = 0\.01 leaves \d+ of 32 peers with a single"):
        Scenario.from_dict(data)


def test_accepted_edge_cases_run_to_a_result(base):
    """At the ends of the ranges a run finishes or diverges; it never crashes or hangs."""
    edge = [
        ({"algorithm.lr": 1e6}, "diverged"),
        ({"task.noise": 1e6}, None),
        ({"network": {"links": [{**SLOW, "up_mbps": 1e-3, "down_mbps": 1e-3}]}, "peers.links": {"slow": 4},
          "stop": {"steps": 10}}, "finished"),
        ({"peers.jitter": 2.0, "stop": {"sim_time_s": 0.05}}, "finished"),
    ]
    for changes, status in edge:
        result = p2psim.run(_with(base, changes))
        assert result.status in (status,) if status else ("finished", "diverged")
        assert all(result.manifest["runs"][run]["status"] in ("finished", "diverged", "stalled") for run in result.runs)


def test_unknown_key_is_the_field_at_any_depth(base):
    for dotted, field in [("sed", "sed"), ("peers.cuont", "peers.cuont"), ("baselines.0.devcie", "baselines[0].devcie")]:
        with pytest.raises(ScenarioError) as caught:
            Scenario.from_dict(_with(base, {dotted: 1}))
        assert caught.value.field == field


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_shipped_scenarios_validate_by_arithmetic_building_no_task(path, monkeypatch):
    """Validation is cheap because it builds nothing: a non-IID split is sized from the class counts (speed: benchmarks)."""
    builds = []
    for task in TASKS.values():
        build = task.build
        monkeypatch.setattr(task, "build", lambda self, seed, build=build: builds.append(seed) or build(self, seed))
    scenario = p2psim.load_scenario(path)
    assert builds == [], scenario.data.partition


def test_readme_states_every_range():
    """The README's limits table is the code's: each bounded field with the range its error states."""
    from p2psim.validation import field_limits, limits_table

    text = README.read_text()
    table = text.split("<!-- limits:start -->\n", 1)[1].split("\n<!-- limits:end -->", 1)[0]
    assert table == limits_table(), (
        "README's limits table is stale; regenerate it with "
        "python -c 'from p2psim.validation import limits_table; print(limits_table())'"
    )
    assert "| `data.batch_size` | [1, 1e6] |" in table and len(field_limits()) == table.count("\n") - 1
