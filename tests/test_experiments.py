"""Every scenario file in experiments/ runs at smoke size, through one override of its stopping rule."""

from __future__ import annotations

from pathlib import Path

import pytest

import p2psim

SCENARIOS = sorted((Path(__file__).parent.parent / "experiments" / "scenarios").glob("*.toml"))
SMOKE = {"stop": {"samples": 2048}}


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_runs_at_smoke_size(path):
    scenario = p2psim.load_scenario(path, SMOKE)
    result = p2psim.run(scenario)
    assert result.status == "finished"
    assert result.runs == ["p2p", *[b.name for b in scenario.baselines]]
    for run in result.runs:
        assert result.manifest["runs"][run]["samples"] >= 2048
    first, last = result.run_history().iloc[0], result.run_history().iloc[-1]
    assert last["loss"] < first["loss"]  # 2048 samples of SGD already lower the loss


def test_quickstart_is_the_documented_mix():
    scenario = p2psim.load_scenario(Path(__file__).parent.parent / "experiments" / "scenarios" / "quickstart.toml")
    assert scenario.peers.count == 32
    assert {"h100_sxm", "rx_580"} <= set(scenario.peers.devices)
    assert len(scenario.peers.regions) >= 3
    assert scenario.topology.kind == "random_regular"
    assert scenario.workload is not None
    assert {b.count for b in scenario.baselines} == {1, 8}
