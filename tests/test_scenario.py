"""Scenarios: bad input fails early with one clear message naming the field (DESIGN decision 9),
and a scenario survives the trip to TOML and back unchanged (decision 8)."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
from pathlib import Path

import pytest
import tomli_w

import p2psim
from p2psim import ScenarioError
from p2psim.algorithms import ALGORITHMS
from p2psim.scenario import (
    BaselineSpec,
    MetricsSpec,
    PeersSpec,
    Scenario,
    StopSpec,
    TopologySpec,
    expand_mix,
    load_scenario,
)
from p2psim.tasks import TASKS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "scenarios" / "quickstart.toml"


@pytest.fixture
def base() -> dict:
    """A small valid scenario: 4 unequal peers on a ring, least squares, AD-PSGD."""
    return {
        "name": "tiny",
        "seed": 3,
        "task": {"name": "least_squares", "n_samples": 200, "n_features": 5},
        "peers": {"devices": {"h100_sxm": 2, "rx_580": 2}, "links": {"fibre": 2, "lab": 2}},
        "network": {"links": [{"name": "lab", "up_mbps": 100.0, "down_mbps": 200.0, "latency_ms": 1.0}]},
        "topology": {"kind": "ring"},
        "algorithm": {"name": "adpsgd", "lr": 0.1},
        "stop": {"samples": 256},
        "metrics": {"eval_interval_s": 0.01},
        "baselines": [{"name": "one", "device": "h100_sxm"}],
    }


def test_base_is_valid(base):
    scenario = Scenario.from_dict(base)
    assert scenario.peers.count == 4
    assert scenario.algorithm.lr == 0.1
    assert scenario.network.links[0].up_mbps == 100.0


# --- bad input: one ScenarioError naming the field, the bad value and what is allowed -------------


def _set(path: str, value):
    """A mutation that sets base[path] (dotted; integer parts index lists) to value."""

    def mutate(d: dict) -> None:
        *parents, last = path.split(".")
        node = d
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(path: str):
    def mutate(d: dict) -> None:
        *parents, last = path.split(".")
        node = d
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


BAD_CASES = [
    pytest.param(
        _set("peers.devices", {"h100_sxm": 2, "gtx_9999": 2}),
        "peers.devices",
        ["unknown device", "'gtx_9999'", "allowed:", "h100_sxm", "rx_580"],
        id="unknown-device",
    ),
    pytest.param(
        _set("network.links.0.up_mbps", 0),
        "network.links[0].up_mbps",
        ["must be in [0.001, 1e9]", "got 0"],
        id="zero-bandwidth",
    ),
    pytest.param(
        _set("network.links.0.down_mbps", -5),
        "network.links[0].down_mbps",
        ["must be in [0.001, 1e9]", "got -5"],
        id="negative-bandwidth",
    ),
    pytest.param(
        _set("network.links.0.latency_ms", -1),
        "network.links[0].latency_ms",
        ["must be in [0, 1e6]", "got -1"],
        id="negative-latency",
    ),
    pytest.param(
        _set("peers", {"devices": {"h100_sxm": 0.5, "rx_580": 0.4}, "links": {"fibre": 4}, "count": 4}),
        "peers.devices",
        ["fractions must sum to 1", "0.9"],
        id="fractions-not-summing-to-1",
    ),
    pytest.param(
        _set("algorithm.name", "sgd9"),
        "algorithm.name",
        ["unknown algorithm", "'sgd9'", "allowed:", "adpsgd"],
        id="unknown-algorithm",
    ),
    pytest.param(_set("algorithm.lr", "fast"), "algorithm.lr", ["number", "'fast'"], id="lr-string"),
    pytest.param(_set("algorithm.lr", 0), "algorithm.lr", ["positive number", "got 0"], id="lr-zero"),
    pytest.param(_set("algorithm.lr", -1), "algorithm.lr", ["positive number", "got -1"], id="lr-negative"),
    pytest.param(_set("algorithm.lr", math.nan), "algorithm.lr", ["finite number", "nan"], id="lr-nan"),
    pytest.param(_set("algorithm.lr", math.inf), "algorithm.lr", ["finite number", "inf"], id="lr-inf"),
    pytest.param(_set("algorithm.lr", True), "algorithm.lr", ["number", "True"], id="lr-bool"),
    pytest.param(
        _set("topology", {"kind": "erdos_renyi", "p": 0.0}),
        "topology",
        ["disconnected", "erdos_renyi", "4 components", "'adpsgd'", "connected graph"],
        id="disconnected-graph",
    ),
    pytest.param(
        _set("topology", {"kind": "ring", "p": 0.5}),
        "topology.p",
        ["not a parameter", "'ring'"],
        id="topology-param-of-other-kind",
    ),
    pytest.param(
        _set("topology", {"kind": "moebius"}),
        "topology.kind",
        ["unknown topology", "'moebius'", "ring"],
        id="unknown-topology",
    ),
    pytest.param(_set("sed", 1), "sed", ["unknown key 'sed'", "allowed:", "seed"], id="typo-top-level"),
    pytest.param(_set("peers.cuont", 4), "peers.cuont", ["unknown key 'cuont'", "allowed:", "count"], id="typo-peers"),
    pytest.param(
        _set("algorithm.learning_rate", 0.1),
        "algorithm.learning_rate",
        ["unknown key 'learning_rate'", "allowed: lr"],
        id="typo-algorithm",
    ),
    pytest.param(
        _set("task.n_sample", 100), "task.n_sample", ["unknown key 'n_sample'", "allowed:", "n_samples"], id="typo-task"
    ),
    pytest.param(
        _set("baselines.0.devcie", "t4"),
        "baselines[0].devcie",
        ["unknown key 'devcie'", "allowed:", "device"],
        id="typo-baselines",
    ),
    pytest.param(
        _set("baselines.0.device", "tpu_v9"),
        "baselines[0].device",
        ["unknown device", "'tpu_v9'", "h100_sxm"],
        id="unknown-baseline-device",
    ),
    pytest.param(
        _set("baselines", [{"name": "one", "device": "h100_sxm"}, {"name": "one", "device": "t4"}]),
        "baselines[0].name",  # the first of the two that share it
        ["'one'", "twice"],
        id="duplicate-baseline-name",
    ),
    pytest.param(
        _set("workload", {"name": "Llama-70B", "params": 70e9, "flops_per_sample": 1e12}),
        "peers.devices",
        ["does not fit", "'h100_sxm'", "GB", "80 GB"],
        id="model-too-big-for-every-device",
    ),
    pytest.param(
        # 1e9 params x 4 B x 3 = 12 GB: fits an H100 (80 GB), not an RX 580 (8 GB)
        _set("workload", {"name": "1B", "params": 1e9, "flops_per_sample": 6e9}),
        "peers.devices",
        ["does not fit", "'rx_580'", "8 GB"],
        id="model-too-big-for-rx580",
    ),
    pytest.param(
        _set("peers.links", {"fibre": 2, "wifi": 2}),
        "peers.links",
        ["unknown link", "'wifi'", "allowed:", "fibre", "lab"],
        id="unknown-link",
    ),
    pytest.param(
        _set("peers.regions", {"us_east": 2, "mars": 2}),
        "peers.regions",
        ["unknown region", "'mars'", "allowed:", "us_east"],
        id="unknown-region",
    ),
    pytest.param(
        _set("data", {"partition": "random"}),
        "data.partition",
        ["unknown partition", "'random'", "iid", "dirichlet", "k_labels"],
        id="unknown-partition",
    ),
    pytest.param(
        _set("data", {"partition": "dirichlet", "alpha": 1.0}),
        "data.partition",
        ["'dirichlet'", "classification", "'least_squares'", "regression", "allowed: iid"],
        id="dirichlet-on-regression",
    ),
    pytest.param(
        _set("data", {"partition": "dirichlet"}), "data.alpha", ["required", "dirichlet"], id="dirichlet-no-alpha"
    ),
    pytest.param(_set("data.batch_size", 0), "data.batch_size", ["must be in [1, 1e6]", "got 0"], id="zero-batch"),
    pytest.param(_drop("stop"), "stop", ["is required"], id="missing-stop"),
    pytest.param(_drop("task"), "task", ["is required"], id="missing-task"),
    pytest.param(_drop("peers.links"), "peers.links", ["is required"], id="missing-peers-links"),
    pytest.param(
        _set("network.links", [{"name": "x", "down_mbps": 1.0}]),
        "network.links[0].up_mbps",
        ["is required"],
        id="missing-link-bandwidth",
    ),
    pytest.param(_set("stop", {}), "stop", ["at least one of", "samples"], id="empty-stop"),
    pytest.param(
        _set("metrics", {"eval_interval_s": 1.0, "eval_interval_samples": 10}),
        "metrics",
        ["exactly one of"],
        id="two-eval-intervals",
    ),
    pytest.param(_set("stop.samples", "many"), "stop.samples", ["integer", "'many'"], id="samples-not-int"),
    pytest.param(
        _set("peers.devices", {"h100_sxm": 2, "rx_580": 3}),
        "peers.links",
        ["counts sum to 4", "peers.count = 5"],
        id="mixes-disagree-on-count",
    ),
    pytest.param(
        _set("peers.utilisation", {"t4": 0.5}),
        "peers.utilisation",
        ["'t4'", "not in peers.devices"],
        id="utilisation-of-absent-device",
    ),
    pytest.param(
        _set("peers.utilisation", {"rx_580": 1.5}),
        "peers.utilisation.rx_580",
        ["(0, 1]", "1.5"],
        id="utilisation-above-1",
    ),
    pytest.param(_set("task.n_samples", 3), "peers.count", ["4 peers", "training samples"], id="more-peers-than-samples"),
    pytest.param(_set("seed", -1), "seed", ["must be in [0, 9223372036854775807]", "got -1"], id="negative-seed"),
    pytest.param(_set("seed", True), "seed", ["integer", "True"], id="seed-bool"),
    pytest.param(_set("peers.count", True), "peers.count", ["integer", "True"], id="count-bool"),
    pytest.param(
        _set("task.eval_fraction", 0.9999),
        "task.eval_fraction",
        ["leaves 0 training and 200 held-out samples", "got 0.9999"],
        id="task-eval-fraction-leaves-no-training-set",
    ),
    pytest.param(
        _set("task.n_samples", 2), "task.eval_fraction", ["of 2", "both need one"], id="task-too-few-samples"
    ),
    pytest.param(
        _set("workload", {"name": "x", "flops_per_sample": 1e9}),
        "workload.params",
        ["is required"],
        id="optional-table-keeps-sub-field",
    ),
    pytest.param(
        _set("workload", {"name": "x", "flops_per_sample": 1e9, "params": -1}),
        "workload.params",
        ["must be in (0, 1e13]", "got -1"],
        id="optional-table-keeps-sub-field-of-post-init",
    ),
    pytest.param(
        _set("peers.devices", {"h100_sxm": True, "rx_580": 3}),
        "peers.devices.h100_sxm",
        ["must be an integer or a number", "got True (bool)"],
        id="bool-in-device-mix",
    ),
    pytest.param(
        _set("peers.links", {"fibre": 2, "lab": False}),
        "peers.links.lab",
        ["integer", "number", "False"],
        id="bool-in-link-mix",
    ),
    pytest.param(
        _set("topology", {"kind": "edge_list"}),
        "topology.path",
        ["missing parameter 'path'"],
        id="edge-list-without-path",
    ),
]


@pytest.mark.parametrize("mutate, field, fragments", BAD_CASES)
def test_bad_input_names_field_value_and_allowed(base, mutate, field, fragments):
    data = copy.deepcopy(base)
    mutate(data)
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data)
    error = caught.value
    assert error.field == field
    message = str(error)
    if field:
        assert message.startswith(f"{field}: ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message


def test_scenario_error_is_a_value_error():
    assert issubclass(ScenarioError, ValueError)
    assert p2psim.ScenarioError is ScenarioError


def test_disconnected_graph_allowed_for_algorithm_that_does_not_need_one(base, monkeypatch):
    """The connectivity check follows the algorithm's declaration, not a blanket rule."""
    from p2psim.algorithms import IMPLEMENTATIONS

    base["topology"] = {"kind": "erdos_renyi", "p": 0.0}
    monkeypatch.setattr(IMPLEMENTATIONS["adpsgd"], "needs_connected_graph", False)
    assert Scenario.from_dict(base).topology.kind == "erdos_renyi"


def test_validate_false_skips_catalogue_checks(base):
    base["peers"]["devices"] = {"gtx_9999": 4}
    scenario = Scenario.from_dict(base, validate=False)
    assert scenario.peers.devices == {"gtx_9999": 4}
    with pytest.raises(ScenarioError, match="peers.devices: unknown device 'gtx_9999'"):
        p2psim.run(scenario, baselines=False)


# --- round trip ----------------------------------------------------------------------------------


def _round_trip(scenario: Scenario) -> Scenario:
    return Scenario.from_dict(tomllib.loads(scenario.to_toml()))


@pytest.mark.parametrize("variant", ["base", "digits", "fractions"])
def test_toml_round_trip_is_equal_with_same_hash(base, variant):
    if variant == "digits":
        base["task"] = {"name": "digits_mlp", "hidden": [16]}
        base["data"] = {"partition": "dirichlet", "alpha": 0.5, "batch_size": 8}
        base["peers"]["regions"] = {"us_east": 1, "eu_west": 3}
        base["workload"] = {"name": "small", "params": 1e6, "flops_per_sample": 6e6}
        base["topology"] = {"kind": "complete"}
    if variant == "fractions":
        base["peers"] = {"devices": {"h100_sxm": 0.25, "rx_580": 0.75}, "links": {"fibre": 1.0}, "count": 8}
    scenario = Scenario.from_dict(base)
    again = _round_trip(scenario)
    assert again == scenario
    assert again.hash() == scenario.hash()
    assert again.to_toml() == scenario.to_toml()
    assert isinstance(again.task, TASKS[base["task"]["name"]])
    assert isinstance(again.algorithm, ALGORITHMS["adpsgd"])


def test_resolved_toml_contains_defaults(base):
    resolved = tomllib.loads(Scenario.from_dict(base).to_toml())
    assert resolved["engine"]["batch_gradients"] is True
    assert resolved["engine"]["threads"] == 1
    assert resolved["peers"]["count"] == 4  # resolved from the counts; not in the input
    assert resolved["peers"]["precision"] == "fp32"
    assert resolved["data"] == {"batch_size": 32, "partition": "iid"}
    assert resolved["topology"]["mixing"] == "metropolis"
    assert resolved["metrics"]["divergence_factor"] == 1e3
    assert resolved["task"]["noise"] == 0.1  # task defaults too
    assert resolved["baselines"][0]["link"] == "nvlink"
    assert (resolved["algorithm"]["name"], resolved["algorithm"]["lr"], resolved["algorithm"]["overlap"]) == ("adpsgd", 0.1, True)
    assert "count" not in base["peers"] and "engine" not in base


def test_hash_changes_with_content(base):
    one = Scenario.from_dict(base)
    base["algorithm"]["lr"] = 0.2
    other = Scenario.from_dict(base)
    assert one != other
    assert one.hash() != other.hash()
    assert len(one.hash()) == 12


def test_save_and_load_scenario(base, tmp_path):
    scenario = Scenario.from_dict(base)
    path = scenario.save(tmp_path / "s.toml")
    assert load_scenario(path) == scenario
    assert load_scenario(path, {"algorithm.lr": 0.3}).algorithm.lr == 0.3


def test_load_scenario_bad_files(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[task\nname = 1\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path)  # a directory


def test_quickstart_loads_and_overrides_change_exactly_those_fields():
    scenario = load_scenario(QUICKSTART)
    assert scenario.name == "quickstart"
    assert scenario.peers.count == 32
    assert scenario.algorithm.name == "adpsgd"
    assert [b.count for b in scenario.baselines] == [1, 8]

    changed = scenario.with_overrides({"algorithm.lr": 0.05, "baselines.0.count": 2})
    assert changed.algorithm.lr == 0.05
    assert changed.baselines[0].count == 2
    assert scenario.algorithm.lr == 0.5 and scenario.baselines[0].count == 1  # the original is untouched
    before, after = scenario.to_dict(), changed.to_dict()
    assert after["algorithm"] == {**before["algorithm"], "lr": 0.05}
    assert after["baselines"][0] == {**before["baselines"][0], "count": 2}
    assert after["baselines"][1] == before["baselines"][1]
    for key in before:
        if key not in ("algorithm", "baselines"):
            assert after[key] == before[key], key
    assert changed.hash() != scenario.hash()


@pytest.mark.parametrize(
    "overrides, field, fragment",
    [
        ({"algorithm.lr": -1.0}, "algorithm.lr", "positive"),
        ({"algorithm.lrr": 0.1}, "algorithm.lrr", "unknown key 'lrr'"),
        ({"baselines.5.count": 2}, "baselines.5", "no such list item"),
        ({"algorithm.lr.x": 1}, "algorithm.lr.x", "cannot set a key inside a value"),
        ({"algorithm.lr.x.y": 1}, "algorithm.lr.x.y", "cannot set a key inside a value"),
    ],
)
def test_bad_overrides(overrides, field, fragment):
    scenario = load_scenario(QUICKSTART)
    with pytest.raises(ScenarioError) as caught:
        scenario.with_overrides(overrides)
    assert caught.value.field == field
    assert fragment in str(caught.value)


# --- expand_mix ----------------------------------------------------------------------------------


def test_expand_mix_counts_keep_order():
    assert expand_mix({"h100_sxm": 1, "rx_580": 2}, None, "devices") == ["h100_sxm", "rx_580", "rx_580"]
    assert expand_mix({"a": 0, "b": 2}, 2, "devices") == ["b", "b"]


@pytest.mark.parametrize(
    "mix, count, expected",
    [
        ({"a": 0.5, "b": 0.25, "c": 0.25}, 4, ["a", "a", "b", "c"]),
        ({"a": 0.6, "b": 0.3, "c": 0.1}, 7, ["a"] * 4 + ["b"] * 2 + ["c"]),  # 4.2, 2.1, 0.7: c has the largest remainder
        ({"a": 0.5, "b": 0.5}, 3, ["a", "a", "b"]),  # a tie goes to the first
        ({"a": 0.25, "b": 0.75}, 10, ["a"] * 3 + ["b"] * 7),  # 2.5, 7.5: tie, first wins
        ({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 5, ["a", "a", "b", "b", "c"]),
        ({"a": 0.9, "b": 0.1}, 1, ["a"]),
        ({"a": 0.1, "b": 0.9}, 3, ["b"] * 3),  # 0.3, 2.7: b takes the spare
    ],
)
def test_expand_mix_fractions_largest_remainder(mix, count, expected):
    names = expand_mix(mix, count, "devices")
    assert names == expected
    assert len(names) == count


def test_expand_mix_errors():
    with pytest.raises(ScenarioError) as caught:
        expand_mix({"a": 2, "b": 2}, 5, "peers.devices")
    assert caught.value.field == "peers.devices" and "counts sum to 4, but peers.count = 5" in str(caught.value)
    with pytest.raises(ScenarioError) as caught:
        expand_mix({"a": 0.5, "b": 0.5}, None, "devices")
    assert caught.value.field == "count" and "fractions" in str(caught.value)
    with pytest.raises(ScenarioError) as caught:
        expand_mix({"a": -1, "b": 2}, None, "devices")
    assert caught.value.field == "devices.a"
    with pytest.raises(ScenarioError) as caught:
        expand_mix({}, 3, "devices")
    assert caught.value.field == "devices"


def test_fraction_mix_without_count_names_peers_count(base):
    base["peers"] = {"devices": {"h100_sxm": 0.5, "rx_580": 0.5}, "links": {"fibre": 4}}
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(base)
    assert caught.value.field == "peers.count"
    assert "required" in str(caught.value) and "devices are fractions" in str(caught.value)


def test_fraction_mix_with_count_expands(base):
    base["peers"] = {"devices": {"h100_sxm": 0.25, "rx_580": 0.75}, "links": {"fibre": 0.5, "dsl": 0.5}, "count": 8}
    scenario = Scenario.from_dict(base)
    assert scenario.peers.count == 8
    assert expand_mix(scenario.peers.devices, 8, "devices") == ["h100_sxm"] * 2 + ["rx_580"] * 6


# --- Python objects --------------------------------------------------------------------------------


def _python_scenario(devices: dict) -> Scenario:
    return Scenario(
        name="py",
        task=TASKS["least_squares"](n_samples=200, n_features=5),
        peers=PeersSpec(devices=devices, links={"fibre": 4}),
        algorithm=ALGORITHMS["adpsgd"](lr=0.1),
        stop=StopSpec(samples=128),
        metrics=MetricsSpec(eval_interval_s=0.01),
        topology=TopologySpec(kind="ring"),
    )


def test_scenario_from_python_objects_equals_its_dict_form():
    scenario = _python_scenario({"h100_sxm": 2, "rx_580": 2})
    assert scenario.peers.count == 4
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert _round_trip(scenario).hash() == scenario.hash()
    result = p2psim.run(scenario, baselines=False)
    assert result.status == "finished"
    assert result.manifest["runs"]["p2p"]["samples"] >= 128
    assert result.runs == ["p2p"]


def test_run_validates_python_objects_before_running(monkeypatch):
    import p2psim.runner

    def must_not_run(*args, **kwargs):
        raise AssertionError("the engine ran before validation")

    monkeypatch.setattr(p2psim.runner, "_simulate", must_not_run)
    scenario = _python_scenario({"h100_sxm": 2, "gtx_9999": 2})
    with pytest.raises(ScenarioError) as caught:
        p2psim.run(scenario)
    assert caught.value.field == "peers.devices"
    assert "'gtx_9999'" in str(caught.value)

    bad_baseline = dataclasses.replace(_python_scenario({"h100_sxm": 4}), baselines=(BaselineSpec(name="b", device="nope"),))
    with pytest.raises(ScenarioError, match=r"baselines\[0\]\.device: unknown device 'nope'"):
        p2psim.run(bad_baseline)


def test_python_objects_reject_bad_values_at_construction():
    with pytest.raises(ScenarioError, match="lr: must be a positive number"):
        ALGORITHMS["adpsgd"](lr=-0.1)
    with pytest.raises(ScenarioError) as caught:
        PeersSpec(devices={"a": 0.5, "b": 0.5}, links={"fibre": 2})
    assert caught.value.field == "count"
    with pytest.raises(ScenarioError, match="at least one of"):
        StopSpec()


# --- everything that can fail when a run is built fails at validation, naming the field -------------


def _digits(base: dict, peers: int, **data) -> dict:
    base["task"] = {"name": "digits_mlp", "hidden": [8]}
    base["data"] = {"batch_size": 1, **data}
    base["peers"] = {"devices": {"t4": peers}, "links": {"fibre": peers}}
    return base


def test_k_labels_beyond_the_number_of_labels_names_labels_per_peer(base):
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(_digits(base, 4, partition="k_labels", labels_per_peer=20))
    assert caught.value.field == "data.labels_per_peer"
    assert "must be <= 10" in str(caught.value) and "'digits_mlp'" in str(caught.value) and "got 20" in str(caught.value)


def test_partition_that_cannot_be_made_fails_validation(base):
    """1400 peers holding one label each: about 140 per label, more than some labels' training samples."""
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(_digits(base, 1400, partition="k_labels", labels_per_peer=1))
    assert caught.value.field == "data"
    assert "cannot be split 'k_labels' among 1400 peers" in str(caught.value)
    assert "samples for 140 peers holding it" in str(caught.value)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: None, "No such file"),
        (lambda p: os.symlink("/dev/zero", p), "not a regular file"),
        (lambda p: os.truncate(p.open("wb").name, 257 * 2**20), "may have at most"),  # sparse: no disk used
    ],
    ids=["folder", "missing", "device", "huge"],
)
def test_edge_list_path_that_cannot_be_read_names_topology_path(base, tmp_path, make, reason):
    """Devices and huge files are refused before reading (/dev/zero once read until MemoryError)."""
    path = tmp_path / "graph.txt"
    make(path)
    base["topology"] = {"kind": "edge_list", "path": str(path)}
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(base)
    assert caught.value.field == "topology.path"
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_edge_list_path_is_relative_to_the_scenario_file_and_stored_absolute(base, tmp_path, monkeypatch):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "ring.txt").write_text("0 1\n1 2\n2 3\n3 0\n")
    base["topology"] = {"kind": "edge_list", "path": "ring.txt"}
    file = folder / "tiny.toml"
    file.write_text(tomli_w.dumps(base))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    scenario = load_scenario(Path("..") / "scenarios" / "tiny.toml")
    assert scenario.topology.path == str(folder / "ring.txt")
    saved = scenario.save(elsewhere / "resolved.toml")
    monkeypatch.chdir(tmp_path)  # a result folder reloads from any working directory
    assert load_scenario(saved) == scenario
    # a path given as an override is the user's, relative to the working directory
    overridden = load_scenario(file, {"topology.path": "scenarios/ring.txt"})
    assert overridden.topology.path == str(folder / "ring.txt")


@dataclasses.dataclass(frozen=True)
class _Inner:
    size: int


@dataclasses.dataclass(frozen=True)
class _Outer:
    inner: _Inner | str


def test_union_error_keeps_the_deepest_field():
    from p2psim.config import parse_dataclass

    with pytest.raises(ScenarioError) as caught:
        parse_dataclass(_Outer, {"inner": {"size": "big"}}, "outer")
    assert caught.value.field == "outer.inner.size"
    assert str(caught.value) == "outer.inner.size: must be an integer, got 'big' (str)"
    with pytest.raises(ScenarioError) as caught:
        parse_dataclass(_Outer, {"inner": 3}, "outer")
    assert str(caught.value) == "outer.inner: must be a table or a string, got 3 (int)"


def test_python_mix_rejects_booleans():
    with pytest.raises(ScenarioError) as caught:
        PeersSpec(devices={"h100_sxm": True}, links={"fibre": 1})
    assert caught.value.field == "devices.h100_sxm"
    assert "must be a count (integer) or a fraction (number), got True (bool)" in str(caught.value)


def test_catalogue_constants_have_one_definition():
    import ast

    from p2psim import hardware, partition, scenario, topology

    assert scenario.PRECISIONS is hardware.PRECISIONS
    assert scenario.PARTITIONS is partition.PARTITIONS
    assert scenario.MIXING_RULES is topology.MIXING_RULES
    for module in (hardware, partition, topology):  # no import cycle: they never import the scenario
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name and name.endswith("scenario") for name in imported), module.__name__


# --- memory: peers hold their whole batch, baselines accumulate micro-batches ---------------------------


def test_check_fits_is_a_validation():
    import p2psim.build
    import p2psim.validation

    assert callable(p2psim.validation.check_fits)
    assert not hasattr(p2psim.build, "check_fits")


def test_quickstart_at_64_peers_validates_its_baselines_by_micro_batches():
    """1x H100 with a global batch of 64 x 32 = 2048 ResNet-50 samples: 2048 x 50 MB of activations
    would need 102 GB, but the baseline accumulates gradients over micro-batches."""
    quickstart = load_scenario(QUICKSTART)
    peers = quickstart.peers

    def fractions(mix: dict) -> dict:
        return {name: count / peers.count for name, count in mix.items()}

    scaled = load_scenario(
        QUICKSTART,
        {
            "peers.count": 64,
            "peers.devices": fractions(peers.devices),
            "peers.links": fractions(peers.links),
            "peers.regions": fractions(peers.regions),
        },
    )
    assert scaled.peers.count == 64
    assert scaled.baselines[0].count == 1 and scaled.data.batch_size * scaled.peers.count == 2048


def test_baseline_still_fails_when_weights_alone_do_not_fit(base):
    """12e9 params, fp16 SGD: 2 + 2 + 4 (master) B + a received 2 B = 120 GB: fits MI300X peers (192 GB), not an H100."""
    base["peers"] = {"devices": {"mi300x": 4}, "links": {"fibre": 4}, "precision": "fp16"}
    base["workload"] = {"name": "12B", "params": 12e9, "flops_per_sample": 1.2e11}
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(base)
    assert caught.value.field == "baselines[0].device"
    message = str(caught.value)
    assert "does not fit" in message and "needs 120 GB per baseline device with 1 sample" in message
    assert "'h100_sxm' has 80 GB" in message and "micro-batches" in message and "'mi300x'" not in message


def test_peers_keep_the_full_batch_rule(base):
    """The same 50 MB a sample that a baseline splits into micro-batches must fit a peer's whole batch."""
    base["workload"] = {"name": "w", "params": 1e6, "flops_per_sample": 1e9, "activation_bytes_per_sample": 5e7}
    base["data"] = {"batch_size": 512}  # 25.6 GB: fits the H100 peers, not the 8 GB RX 580s
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(base)
    assert caught.value.field == "peers.devices"
    assert "'rx_580' has 8" in str(caught.value) and "per peer with batch 512" in str(caught.value)
