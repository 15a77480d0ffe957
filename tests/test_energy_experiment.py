"""experiments/energy_bill.py at smoke size: its files, and the identities its cases must satisfy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from p2psim.grids import grid_catalogue

SCRIPT = Path(__file__).parent.parent / "experiments" / "energy_bill.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("energy_bill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--smoke", "--workers", "1", "--out", str(tmp_path_factory.mktemp("energy_bill"))])
    for name in ("runs.csv", "table.csv", "table.md", "figure.pdf", "figure.png"):
        assert (out / name).stat().st_size > 0
    return pd.read_csv(out / "runs.csv")


def test_the_data_centre_differs_between_regions_only_by_grid_intensity(runs):
    """One cluster run billed in three regions: same kWh; CO2 in the ratio of the grids' hour (June, 00 UTC)."""
    cluster = runs[runs["case"].str.startswith("(a)")].set_index("region")
    assert cluster["energy_kwh_total"].nunique() == 1 and cluster["time_s_total"].max() < 3600
    profiles = grid_catalogue().profiles
    for region in ("us_east", "us_central"):
        ratio = cluster.loc[region, "co2_operational_g_total"] / cluster.loc["us_west", "co2_operational_g_total"]
        assert ratio == pytest.approx(profiles[region].months[5, 0] / profiles["us_west"].months[5, 0], rel=1e-9)


def test_time_shifting_never_emits_more_and_uses_the_same_energy(runs):
    swarm = runs[runs["case"] == "(b) swarm"].iloc[0]
    shifted = runs[runs["case"] == "(d) swarm, time-shifted"].iloc[0]
    assert shifted["energy_kwh_total"] == swarm["energy_kwh_total"]
    assert shifted["co2_operational_g_total"] <= swarm["co2_operational_g_total"]
    assert 0 <= shifted["wait_h"] <= 24 and swarm["wait_h"] == 0


def test_clean_grids_keep_only_the_hydro_region(runs):
    clean = runs[runs["case"] == "(c) swarm, clean grids only"].iloc[0]
    assert clean["region"] == "us_west" and clean["peers"] == 11
    assert clean["co2_operational_g_total"] / clean["energy_kwh_total"] < 200.0
