"""`--set`, `Scenario.with_overrides` and sweep axes share one set of override rules (p2psim.overrides)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2psim.config import ScenarioError
from p2psim.overrides import apply_overrides, set_dotted
from p2psim.scenario import expand_mix, load_scenario

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "scenarios" / "quickstart.toml"


def test_peer_count_scales_mixes_given_as_counts():
    scenario = load_scenario(QUICKSTART, {"peers.count": 128})
    devices = expand_mix(scenario.peers.devices, 128, "peers.devices")
    assert len(devices) == 128
    assert devices.count("rx_580") == 16  # 4 of 32 in the file: the same eighth of 128
    assert devices.count("rtx_3060") == 24  # 6 of 32


def test_topology_kind_replaces_the_previous_kinds_parameters():
    scenario = load_scenario(QUICKSTART, {"topology.kind": "ring"})
    assert scenario.topology.kind == "ring" and scenario.topology.degree is None
    again = scenario.with_overrides({"topology.kind": "random_regular", "topology.degree": 6})
    assert (again.topology.kind, again.topology.degree) == ("random_regular", 6)


def test_topology_kind_keeps_the_mixing_rule():
    data = {"topology": {"kind": "ring", "mixing": "uniform"}}
    assert apply_overrides(data, {"topology.kind": "complete"})["topology"] == {"kind": "complete", "mixing": "uniform"}


def test_a_share_rescales_the_rest_and_a_bad_share_names_the_field():
    data = {"peers": {"devices": {"a": 1, "b": 3}}}
    assert apply_overrides(data, {"peers.devices.a": 0.5})["peers"]["devices"] == {"b": 0.5, "a": 0.5}
    with pytest.raises(ScenarioError, match=r"peers\.devices\.a"):
        apply_overrides(data, {"peers.devices.a": 1.5})


def test_overrides_leave_the_input_untouched_and_name_bad_list_items():
    data = {"baselines": [{"lr": 0.1}]}
    assert apply_overrides(data, {"baselines[0].lr": 0.2})["baselines"][0]["lr"] == 0.2
    assert data["baselines"][0]["lr"] == 0.1
    with pytest.raises(ScenarioError, match=r"baselines\.3"):
        set_dotted(data, "baselines[3].lr", 0.2)
