"""Tests of the bill: power, energy, CO2, embodied carbon and cost (p2psim.energy, p2psim.bill), by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from p2psim.bill import bill_run
from p2psim.config import ScenarioError
from p2psim.energy import (
    average_power_w,
    embodied_gco2,
    energy_kwh,
    interval_energy_kwh,
    interval_mean_intensity,
    operational_gco2,
)
from p2psim.energy_spec import EnergySpec
from p2psim.grids import grid_catalogue, load_trace
from p2psim.hardware import load_devices
from p2psim.links import load_regions


def test_worked_example_four_gpus_ten_hours():
    """4 GPUs at 0.3 kW for 10 hours, PUE 1.5, 450 gCO2/kWh: 18 kWh and 8.1 kg CO2."""
    kwh = energy_kwh(power_w=300.0, seconds=10 * 3600.0, count=4, pue=1.5)
    assert kwh == 18.0
    assert operational_gco2(kwh, 450.0) == 8100.0


def _world(spec: EnergySpec, devices: list[str], links: list[str], regions: list, ticks: list[float],
           fractions: list[list[float]], bytes_sent: list[float] | None = None):
    """A setup and an outcome as the engine would hand them to `bill_run`, from a hand-written trace."""
    catalogue = load_devices()
    n = len(devices)
    fractions_array = np.array(fractions, dtype=np.float64)
    end = ticks[-1]
    busy_s = (fractions_array * np.diff(ticks, prepend=0.0)[:, None]).sum(axis=0)
    sent = bytes_sent or [0.0] * n
    setup = SimpleNamespace(
        scenario=SimpleNamespace(energy=spec), n_peers=n, devices=[catalogue[d] for d in devices],
        link_names=links, regions=regions,
    )
    outcome = SimpleNamespace(
        info={"sim_time_s": end},
        utilisation=list(zip(ticks, fractions_array)),
        peers=[{"computing_fraction": busy_s[i] / end, "bytes_sent": sent[i]} for i in range(n)],
        history=[{"bytes_sent": sum(sent) * t / end} for t in ticks],
    )
    return setup, outcome


def test_worked_example_through_the_bill():
    spec = EnergySpec(busy_power_w={"h100_sxm": 300.0}, pue=1.5, host_factor_datacenter=1.0,
                      gco2_per_kwh={"world": 450.0})
    setup, outcome = _world(spec, ["h100_sxm"] * 4, ["infiniband"] * 4, [None] * 4, [0.0, 36000.0], [[0.0] * 4, [1.0] * 4])
    bill = bill_run(setup, outcome)
    assert bill.facts["energy_kwh"] == pytest.approx(18.0, rel=1e-12)
    assert bill.facts["co2_operational_g"] == pytest.approx(8100.0, rel=1e-12)
    assert bill.history["energy_kwh"].tolist() == pytest.approx([0.0, 18.0], rel=1e-12)
    assert bill.peers["site"] == ["datacenter"] * 4
    # rented: 4 H100s for 10 h at the catalogue's hourly price, whatever they drew
    assert bill.facts["cost_usd"] == pytest.approx(4 * 10 * grid_catalogue().rental["h100_sxm"]["usd_per_hour"])


def test_idle_and_busy_accounting_of_two_peers_by_hand():
    """A T4 and an RX 580 at home, host factor 1: each interval draws idle + (board - idle) x computing fraction."""
    spec = EnergySpec(host_factor_home=1.0, gco2_per_kwh={"world": 100.0}, price_usd_per_kwh={"world": 0.5})
    ticks = [0.0, 100.0, 300.0]
    fractions = [[0.0, 0.0], [1.0, 0.5], [0.25, 0.0]]
    setup, outcome = _world(spec, ["t4", "rx_580"], ["fibre", "cable"], [None, None], ticks, fractions)
    bill = bill_run(setup, outcome)
    t4 = 100 * 70.0 + 200 * (10.5 + (70.0 - 10.5) * 0.25)  # 7000 J busy, then a quarter busy
    rx = 100 * (13.875 + (185.0 - 13.875) * 0.5) + 200 * 13.875  # half busy, then idle
    assert bill.peers["energy_kwh"].tolist() == pytest.approx([t4 / 3.6e6, rx / 3.6e6], rel=1e-12)
    assert bill.history["energy_kwh"].tolist() == pytest.approx([0.0, (7000 + 9943.75) / 3.6e6, (t4 + rx) / 3.6e6], rel=1e-12)
    assert bill.facts["co2_operational_g"] == pytest.approx((t4 + rx) / 3.6e6 * 100.0, rel=1e-12)
    assert bill.facts["cost_usd"] == pytest.approx((t4 + rx) / 3.6e6 * 0.5, rel=1e-12)
    # embodied: 300 s of each device's lifetime (5 years): a T4 is a data-centre GPU (150 kg), an RX 580 a consumer one (100 kg)
    expected = 300 / 3600 * 1000 * (150.0 + 100.0) / (5 * 8760)
    assert bill.facts["co2_embodied_g"] == pytest.approx(expected, rel=1e-12)


def test_time_after_the_last_record_is_billed_from_the_peers_totals():
    """A run that ends after its last record (diverged) is billed to its end; the history stops at the record."""
    spec = EnergySpec(host_factor_home=1.0, gco2_per_kwh={"world": 100.0})
    setup, outcome = _world(spec, ["t4"], ["fibre"], [None], [0.0, 100.0], [[0.0], [1.0]])
    outcome.info["sim_time_s"] = 200.0
    outcome.peers[0]["computing_fraction"] = 150.0 / 200.0  # 50 more busy seconds after the record
    bill = bill_run(setup, outcome)
    assert len(bill.history["energy_kwh"]) == 2
    assert bill.facts["energy_kwh"] == pytest.approx((150 * 70.0 + 50 * 10.5) / 3.6e6, rel=1e-12)


def test_power_is_linear_between_idle_and_busy():
    assert average_power_w(np.array([0.0, 0.5, 1.0]), 20.0, 220.0).tolist() == [20.0, 120.0, 220.0]
    durations = interval_energy_kwh(np.array([0.0, 3600.0]), np.array([[0.0], [0.5]]), np.array([20.0]), np.array([220.0]), np.array([2.0]))
    assert durations[:, 0].tolist() == pytest.approx([0.0, 0.24])  # 120 W x 2 for an hour


def test_embodied_carbon_is_charged_by_the_hour_of_a_lifetime():
    assert embodied_gco2(150.0, 5.0, 5 * 8760 * 3600.0) == pytest.approx(150_000.0)
    assert embodied_gco2(150.0, 5.0, 3600.0) == pytest.approx(150_000.0 / 43_800)


def test_mean_intensity_integrates_the_hourly_steps():
    start = pd.Timestamp("2024-01-01T00:30:00Z")
    hourly = pd.Series([100.0, 300.0, 50.0], index=pd.date_range("2024-01-01T00:00:00Z", periods=3, freq="h"))
    means = interval_mean_intensity(hourly, start, np.array([0.0, 3600.0, 4500.0]))
    # t=0: the value at 00:30; 00:30-01:30 is half 100, half 300; 01:30-01:45 lies in the 300 hour
    assert means.tolist() == pytest.approx([100.0, 200.0, 300.0])


def test_time_shifting_starts_at_the_cleanest_hour_within_the_window(tmp_path):
    trace = tmp_path / "trace.csv"
    values = [500.0, 400.0, 100.0, 300.0, 600.0, 700.0]
    pd.DataFrame({"time_utc": pd.date_range("2024-03-01", periods=6, freq="h", tz="UTC").astype(str), "gco2_per_kwh": values}).to_csv(trace, index=False)
    kwh = 3600 * 70.0 / 3.6e6  # a T4 busy for an hour, host factor 1
    for window, wait in ((0.0, 0), (1.0, 1), (5.0, 2)):
        spec = EnergySpec(start_utc="2024-03-01T00:00:00Z", traces={"world": str(trace)}, start_window_h=window, host_factor_home=1.0)
        setup, outcome = _world(spec, ["t4"], ["fibre"], [None], [0.0, 3600.0], [[0.0], [1.0]])
        bill = bill_run(setup, outcome)
        assert bill.facts["wait_h"] == wait
        assert bill.facts["co2_operational_g"] == pytest.approx(kwh * values[wait], rel=1e-12)
        assert bill.facts["co2_operational_g_at_earliest_start"] == pytest.approx(kwh * values[0], rel=1e-12)


def test_catalogue_covers_every_region_with_sources():
    catalogue = grid_catalogue()
    regions = load_regions()
    assert len(regions) >= 12 and set(regions) <= set(catalogue.grids)
    for grid in catalogue.grids.values():
        assert 0 < grid.gco2_per_kwh < 1000 and grid.year >= 2022 and grid.sources
    for profile in catalogue.profiles.values():
        assert profile.months.shape == (12, 24)
    assert catalogue.model["datacenter_pue"] == 1.58 and catalogue.model["home_pue"] == 1.0
    assert set(catalogue.embodied) == {d.kind for d in load_devices().values()} | set(catalogue.embodied)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"busy_power_w": {"t4": -1.0}}, "busy_power_w.t4"),
        ({"idle_power_w": {"t4": 80.0}}, "idle_power_w.t4"),
        ({"pue": 0.9}, "pue"),
        ({"pue": "mars"}, "pue"),
        ({"grid": "atlantis"}, "grid"),
        ({"gco2_per_kwh": {"atlantis": 1.0}}, "gco2_per_kwh.atlantis"),
        ({"traces": {"world": "/no/such/trace.csv"}}, "traces.world"),
        ({"start_utc": "the 32nd of May"}, "start_utc"),
        ({"admission": "cleanest"}, "admission"),
        ({"admission": "cleanest_k"}, "admit_k"),
        ({"rental_usd_per_hour": {"tpu": 1.0}}, "rental_usd_per_hour.tpu"),
    ],
)
def test_bad_values_fail_with_one_named_error(fields, field):
    with pytest.raises(ScenarioError) as error:
        EnergySpec(**fields)
    assert error.value.field == field


def test_a_trace_that_is_not_hourly_is_refused(tmp_path):
    trace = tmp_path / "bad.csv"
    pd.DataFrame({"time_utc": ["2024-01-01T00:00Z", "2024-01-01T02:00Z"], "gco2_per_kwh": [1.0, 2.0]}).to_csv(trace, index=False)
    with pytest.raises(ValueError, match="consecutive hours"):
        load_trace(trace)
    with pytest.raises(ScenarioError) as error:
        EnergySpec(traces={"us_east": str(trace)})
    assert error.value.field == "traces.us_east"
