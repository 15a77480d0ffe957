"""One run's bill: kWh, operational and embodied CO2 and money, per recording tick and per peer.

Computed after `simulate()` from what the engine records: each peer's computing fraction
per recording interval (`RunOutcome.utilisation`, exact integrals), the bytes sent, and
the run's end. A peer sits in a data centre if its access link is one of
`energy.datacenter_links`, else at home; its grid is its region's (or `energy.grid`).
With `energy.start_window_h`, the start is chosen, in whole hours, where the run's
operational CO2 is least: nothing in the simulated dynamics depends on the clock time,
so the same run is billed at each candidate start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .config import ScenarioError
from .energy import (
    SECONDS_PER_HOUR,
    embodied_gco2,
    interval_energy_kwh,
    interval_mean_intensity,
)
from .energy_spec import EnergySpec
from .grids import HourlyProfile, cite, grid_catalogue, load_trace
from .hardware import device_sources

if TYPE_CHECKING:
    from .engine import RunOutcome, RunSetup

__all__ = ["HISTORY_COLUMNS", "PEER_COLUMNS", "RunBill", "bill_run", "grid_intensity"]

HISTORY_COLUMNS = ("energy_kwh", "co2_operational_g", "co2_embodied_g", "cost_usd")
PEER_COLUMNS = ("site", "grid", "energy_kwh", "co2_operational_g", "co2_embodied_g", "cost_usd")
RESOLUTION = (
    "busy/idle energy is exact per recording interval (computing fractions are exact integrals); "
    "within an interval power is taken as its mean when applying hourly carbon intensity"
)


@dataclass
class RunBill:
    """Cumulative history columns (one value per tick), per-peer totals, and totals with their coefficients."""

    history: dict[str, np.ndarray]
    peers: dict[str, list | np.ndarray]
    facts: dict[str, Any]


def grid_intensity(spec: EnergySpec, grid: str) -> tuple[float, HourlyProfile | None, str]:
    """(yearly gCO2/kWh, hourly profile or None, where they come from) of `grid` under `spec`."""
    catalogue = grid_catalogue()
    entry = catalogue.grids[grid]
    if grid in spec.gco2_per_kwh:
        return spec.gco2_per_kwh[grid], None, "scenario override (energy.gco2_per_kwh), flat"
    if grid in spec.traces:
        trace = load_trace(spec.traces[grid])
        return float(trace.trace.mean()), trace, trace.source
    yearly = f"{entry.gco2_per_kwh:g} gCO2/kWh, {entry.year}; {cite(entry.sources)}"
    if spec.hourly and grid in catalogue.profiles:
        profile = catalogue.profiles[grid]
        return entry.gco2_per_kwh, profile, f"{profile.source} (yearly mean {yearly})"
    return entry.gco2_per_kwh, None, f"flat yearly mean: {yearly}"


def _hourly_series(profile: HourlyProfile, start: pd.Timestamp, end_s: float) -> pd.Series:
    hours = pd.date_range(start.floor("h"), start + pd.Timedelta(seconds=end_s) + pd.Timedelta(hours=1), freq="h")
    return pd.Series(profile.at_hours(hours), index=hours)


def _pue(spec: EnergySpec) -> tuple[float, str]:
    catalogue = grid_catalogue()
    if spec.pue is None:
        return catalogue.model["datacenter_pue"], f"default; {cite(('E4',))}"
    if isinstance(spec.pue, str):
        fleet = catalogue.pue[spec.pue]
        return fleet["pue"], f"fleet {spec.pue!r} {fleet['year']}; {cite(fleet['sources'])}"
    return float(spec.pue), "scenario override (energy.pue)"


def bill_run(setup: RunSetup, outcome: RunOutcome) -> RunBill:
    """The bill of one simulated run (see the module docstring for what is charged where)."""
    spec: EnergySpec = setup.scenario.energy
    catalogue = grid_catalogue()
    n = setup.n_peers
    end_s = float(outcome.info["sim_time_s"])
    times = np.array([t for t, _ in outcome.utilisation], dtype=np.float64)
    computing = np.array([u for _, u in outcome.utilisation], dtype=np.float64).reshape(len(times), n)
    peer_rows = outcome.peers
    total_fraction = np.array([row["computing_fraction"] for row in peer_rows])
    ticks = len(times)
    if ticks == 0 or end_s > times[-1]:  # time after the last record (a diverged run): one more interval
        last = times[-1] if ticks else 0.0
        busy_recorded = computing.T @ np.diff(times, prepend=0.0) if ticks else np.zeros(n)
        tail = np.clip((total_fraction * end_s - busy_recorded) / (end_s - last), 0.0, 1.0) if end_s > last else np.zeros(n)
        times, computing = np.append(times, end_s), np.vstack([computing, tail])
    offline = None  # churn: each peer's offline fraction per interval, which draws no power
    recorded_offline = getattr(outcome, "offline", None)  # an outcome built by hand may have none
    if recorded_offline:
        offline = np.array([u for _, u in recorded_offline], dtype=np.float64).reshape(len(recorded_offline), n)
        if len(times) > len(offline):  # the tail interval: what the whole run's offline time leaves for it
            recorded = offline.T @ np.diff(times[: len(offline)], prepend=0.0)
            total = np.array([row.get("offline_fraction", 0.0) for row in peer_rows]) * end_s
            span = end_s - times[len(offline) - 1]
            offline = np.vstack([offline, np.clip((total - recorded) / span, 0.0, 1.0) if span > 0 else np.zeros(n)])

    datacenter = np.array([link in spec.datacenter_links for link in setup.link_names])
    grids = [region or spec.grid for region in setup.regions]
    devices = setup.devices
    busy_w = np.array([spec.busy_power_w.get(d.name, d.board_power_w) for d in devices])
    idle_w = np.array([spec.idle_power_w.get(d.name, d.idle_power_w) for d in devices])
    for d, busy, idle in zip(devices, busy_w, idle_w):
        if idle > busy:
            raise ScenarioError(f"energy.idle_power_w.{d.name}", f"{idle!r} W is above the busy power {busy!r} W")
    pue_dc, pue_source = _pue(spec)
    host_dc = spec.host_factor_datacenter or catalogue.model["host_factor_datacenter"]
    host_home = spec.host_factor_home or catalogue.model["host_factor_home"]
    factor = np.where(datacenter, host_dc * pue_dc, host_home * spec.home_pue)
    device_kwh = interval_energy_kwh(times, computing, idle_w, busy_w, factor, offline)

    sent = np.array([row["bytes_sent"] for row in peer_rows])
    run_bytes = np.array([row["bytes_sent"] for row in outcome.history], dtype=np.float64)  # one per tick
    if len(times) > ticks:
        run_bytes = np.append(run_bytes, sent.sum())
    share = sent / sent.sum() if sent.sum() > 0 else np.zeros(n)
    network_kwh = np.diff(run_bytes, prepend=0.0)[:, None] * share[None, :] * spec.network_kwh_per_gb / 1e9
    kwh = device_kwh + network_kwh

    names = sorted(set(grids))
    column = np.array([names.index(g) for g in grids])
    sources = {g: grid_intensity(spec, g) for g in names}

    def operational(start: pd.Timestamp) -> np.ndarray:
        intensity = np.empty((len(times), len(names)))
        for j, g in enumerate(names):
            yearly, profile, _ = sources[g]
            if profile is None:
                intensity[:, j] = yearly
            else:
                intensity[:, j] = interval_mean_intensity(_hourly_series(profile, start, end_s), start, times)
        return kwh * intensity[:, column]

    earliest = spec.start
    candidates = [earliest + pd.Timedelta(hours=h) for h in range(int(spec.start_window_h) + 1)]
    totals = [float(operational(start).sum()) for start in candidates]
    best = int(np.argmin(totals))  # ties: the earliest
    start = candidates[best]
    co2 = operational(start)

    embodied_rate = np.array([embodied_gco2(**_embodied(d.kind), seconds=1.0) for d in devices])
    embodied = embodied_rate[None, :] * np.diff(times, prepend=0.0)[:, None]

    rental = np.array([spec.rental_usd_per_hour.get(d.name, catalogue.rental.get(d.name, {}).get("usd_per_hour", np.nan)) for d in devices])
    rented = datacenter & np.isfinite(rental)
    price = np.array([spec.price_usd_per_kwh.get(g, catalogue.grids[g].price_usd_per_kwh) for g in grids])
    hours = np.diff(times, prepend=0.0)[:, None] / SECONDS_PER_HOUR
    cost = np.where(rented[None, :], rental[None, :] * hours, device_kwh * price[None, :])

    recorded = slice(0, ticks)
    history = {
        "energy_kwh": np.cumsum(kwh.sum(axis=1))[recorded],
        "co2_operational_g": np.cumsum(co2.sum(axis=1))[recorded],
        "co2_embodied_g": np.cumsum(embodied.sum(axis=1))[recorded],
        "cost_usd": np.cumsum(cost.sum(axis=1))[recorded],
    }
    peers = {
        "site": ["datacenter" if dc else "home" for dc in datacenter],
        "grid": grids,
        "energy_kwh": kwh.sum(axis=0),
        "co2_operational_g": co2.sum(axis=0),
        "co2_embodied_g": embodied.sum(axis=0),
        "cost_usd": cost.sum(axis=0),
    }
    facts = {
        "energy_kwh": float(kwh.sum()),
        "network_kwh": float(network_kwh.sum()),
        "co2_operational_g": float(co2.sum()),
        "co2_embodied_g": float(embodied.sum()),
        "cost_usd": float(cost.sum()),
        "start_utc": start.isoformat(),
        "wait_h": float(best),
        "co2_operational_g_at_earliest_start": totals[0],
        "resolution": RESOLUTION,
        "coefficients": _coefficients(spec, devices, names, sources, datacenter, (pue_dc, pue_source), host_dc, host_home, rented),
    }
    return RunBill(history, peers, facts)


def _embodied(kind: str) -> dict[str, float]:
    entry = grid_catalogue().embodied[kind]
    return {"kgco2": entry["kgco2"], "lifetime_years": entry["lifetime_years"]}


def _coefficients(spec, devices, grids, sources, datacenter, pue, host_dc, host_home, rented) -> dict[str, Any]:
    """Every number the bill used, with where it comes from."""
    catalogue = grid_catalogue()
    device_refs = device_sources()
    out: dict[str, Any] = {"devices": {}, "grids": {}, "sites": {}}
    for d, is_rented in zip(devices, rented):
        kind = catalogue.embodied[d.kind]
        out["devices"][d.name] = {
            "busy_power_w": spec.busy_power_w.get(d.name, d.board_power_w),
            "idle_power_w": spec.idle_power_w.get(d.name, d.idle_power_w),
            "power_source": "scenario override" if d.name in spec.busy_power_w or d.name in spec.idle_power_w
            else "devices.toml: " + "; ".join(f"{s}: {device_refs[s]}" for s in d.sources),
            "power_rule": "linear in the computing fraction between idle and busy (Fan, Weber, Barroso, ISCA 2007); "
            "busy = board power unless overridden [assumption]",
            "embodied_kgco2": kind["kgco2"],
            "lifetime_years": kind["lifetime_years"],
            "embodied_source": cite(kind["sources"]),
        }
        if is_rented:
            override = d.name in spec.rental_usd_per_hour
            entry = catalogue.rental.get(d.name, {})
            out["devices"][d.name]["rental_usd_per_hour"] = spec.rental_usd_per_hour.get(d.name, entry.get("usd_per_hour"))
            out["devices"][d.name]["rental_source"] = "scenario override" if override else f"{entry['date']}; {cite(entry['sources'])}"
    for g in grids:
        yearly, _, source = sources[g]
        entry = catalogue.grids[g]
        override = g in spec.price_usd_per_kwh
        out["grids"][g] = {
            "gco2_per_kwh": yearly,
            "intensity_source": source,
            "price_usd_per_kwh": spec.price_usd_per_kwh.get(g, entry.price_usd_per_kwh),
            "price_source": "scenario override" if override else f"{entry.price_year}; {cite(entry.sources)}",
        }
    if datacenter.any():
        out["sites"]["datacenter"] = {"pue": pue[0], "pue_source": pue[1], "host_factor": host_dc,
                                      "host_source": "scenario override" if spec.host_factor_datacenter else cite(("A2",))}
    if (~datacenter).any():
        out["sites"]["home"] = {"pue": spec.home_pue, "pue_source": cite(("A1",)) if spec.home_pue == 1.0 else "scenario override",
                                "host_factor": host_home,
                                "host_source": "scenario override" if spec.host_factor_home else cite(("A3",))}
    out["network_kwh_per_gb"] = spec.network_kwh_per_gb
    out["network_source"] = ("off (energy.network_kwh_per_gb = 0)" if spec.network_kwh_per_gb == 0
                             else f"scenario; reference {cite(('N1',))}; charged at the sender's grid, no PUE")
    out["cost_rule"] = "rented data-centre devices: rental per hour held (electricity included); others: device kWh x household price"
    return out
