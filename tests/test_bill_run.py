"""Every run carries its bill (history, peers, manifest, summary), and admission picks peers by their grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import p2psim
from p2psim.admission import admit
from p2psim.cli import main
from p2psim.grids import grid_catalogue
from p2psim.hardware import load_devices

RING = Path(__file__).parent.parent / "experiments" / "scenarios" / "least_squares_ring.toml"
SHORT = {"stop.sim_time_s": 5.0}


@pytest.fixture(scope="module")
def result():
    return p2psim.run(p2psim.load_scenario(RING, SHORT))


def test_history_columns_are_cumulative_and_end_at_the_totals(result):
    for run in result.runs:
        history = result.run_history(run)
        facts = result.manifest["runs"][run]["energy"]
        for column in ("energy_kwh", "co2_operational_g", "co2_embodied_g", "cost_usd"):
            values = history[column].to_numpy()
            assert values[0] == 0.0 and (np.diff(values) >= 0).all() and values[-1] > 0
            assert values[-1] == pytest.approx(facts[column], rel=1e-9)  # a finished run's last record is its end


def test_energy_is_idle_plus_busy_power_over_the_run(result):
    """Per peer: (end x idle + busy seconds x (board - idle)) x host factor, from peers.csv alone."""
    end = result.manifest["runs"]["p2p"]["sim_time_s"]
    devices = load_devices()
    host = grid_catalogue().model["host_factor_home"]
    expected = [
        (end * devices[row.device].idle_power_w
         + row.computing_fraction * end * (devices[row.device].board_power_w - devices[row.device].idle_power_w)) * host / 3.6e6
        for row in result.peers.itertuples()
    ]
    assert result.peers["energy_kwh"].tolist() == pytest.approx(expected, rel=1e-9)
    assert result.peers["energy_kwh"].sum() == pytest.approx(result.manifest["runs"]["p2p"]["energy"]["energy_kwh"], rel=1e-12)
    assert set(result.peers["site"]) == {"home"} and set(result.peers["grid"]) == {"eu_west", "us_east"}


def test_the_baseline_sits_in_a_data_centre_on_the_default_grid(result):
    baseline = result.runs[1]
    facts = result.manifest["runs"][baseline]["energy"]["coefficients"]
    assert facts["sites"]["datacenter"]["pue"] == 1.58 and facts["sites"]["datacenter"]["host_factor"] == 1.4
    assert list(facts["grids"]) == ["world"] and "Ember" in facts["grids"]["world"]["intensity_source"]
    assert "devices.toml" in facts["devices"]["rtx_4090"]["power_source"]


def test_summary_and_folder_carry_the_bill(result, tmp_path):
    text = result.format_summary()
    assert text.count("bill:") == len(result.runs) and "p2p / this run" in text
    loaded = p2psim.Result.load(result.save(tmp_path / "run"))
    assert "cost_usd" in loaded.peers and "co2_embodied_g" in loaded.history
    assert loaded.manifest["runs"]["p2p"]["energy"]["energy_kwh"] == pytest.approx(result.manifest["runs"]["p2p"]["energy"]["energy_kwh"])


def test_admission_keeps_the_peers_below_the_threshold():
    scenario = p2psim.load_scenario(RING, {**SHORT, "peers.regions": {"us_west": 8, "us_east": 8},
                                            "energy.admission": "below_threshold", "energy.max_gco2_per_kwh": 100.0})
    admitted, report = admit(scenario)
    assert admitted.peers.count == 8 and admitted.peers.regions == {"us_west": 8}
    assert report["peers_admitted"] == 8 and report["regions_dropped"] == ["us_east"]
    assert report["mean_gco2_per_kwh_admitted"] == grid_catalogue().grids["us_west"].gco2_per_kwh
    assert 0 < report["compute_throughput_kept"] < 1
    assert admit(admitted)[0] is admitted  # the admitted scenario is resolved


def test_cleanest_k_and_an_empty_admission():
    base = p2psim.load_scenario(RING, {**SHORT, "peers.regions": {"eu_north": 2, "eu_east": 14}})
    admitted, report = admit(base.with_overrides({"energy.admission": "cleanest_k", "energy.admit_k": 5}))
    assert admitted.peers.regions == {"eu_north": 2, "eu_east": 3} and report["peers_admitted"] == 5
    with pytest.raises(p2psim.ScenarioError) as error:
        admit(base.with_overrides({"energy.admission": "below_threshold", "energy.max_gco2_per_kwh": 10.0}))
    assert error.value.field == "energy.max_gco2_per_kwh"


def test_cli_prints_the_grid_catalogue_with_sources(capsys):
    assert main(["grids"]) == 0
    out = capsys.readouterr().out
    assert "us_west" in out and "1.58" in out and "E4: Uptime Institute" in out
