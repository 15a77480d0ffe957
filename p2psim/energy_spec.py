"""The scenario's `[energy]` table: clock, sites, grids, prices, and carbon-aware choices of place and time."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from .config import ScenarioError, bounded, check_ranges
from .grids import grid_catalogue, load_trace
from .hardware import load_devices

__all__ = ["ADMISSION_POLICIES", "DATACENTER_LINKS", "EnergySpec", "parse_start"]

ADMISSION_POLICIES = ("all", "below_threshold", "cleanest_k")
DATACENTER_LINKS = ("nvlink", "infiniband", "datacenter_ethernet")
POWER_W = dict(low=0, high=1e6, why="a 1 MW device is no single accelerator")


def parse_start(text: str, field_name: str = "start_utc") -> pd.Timestamp:
    """A UTC timestamp from ISO 8601 text (naive times are taken as UTC), or a ScenarioError naming the field.

    >>> parse_start("2024-06-01T12:00:00Z")
    Timestamp('2024-06-01 12:00:00+0000', tz='UTC')
    """
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if stamp is pd.NaT or pd.isna(stamp):
        raise ScenarioError(field_name, f"{text!r} is not a date and time (ISO 8601, e.g. '2024-06-01T12:00:00Z')")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@dataclass(frozen=True)
class EnergySpec:
    """How modelled power becomes kWh, CO2 and money, and where and when a job may run to pollute less."""

    start_utc: str = "2024-01-01T00:00:00Z"  # the simulated clock's t = 0, in UTC
    grid: str = "world"  # the grid of peers without a region: co-located peers and the centralized baselines
    hourly: bool = True  # use a grid's typical day per month where the catalogue has one; else its yearly mean
    traces: dict[str, str] = field(default_factory=dict)  # grid -> hourly CSV (time_utc, gco2_per_kwh); stored absolute
    gco2_per_kwh: dict[str, float] = bounded(low=0, high=2000, why="coal alone is about 820-1000", default_factory=dict)  # a grid's intensity, flat
    price_usd_per_kwh: dict[str, float] = bounded(low=0, high=100, why="household prices are below 1 USD/kWh", default_factory=dict)  # household price by grid
    rental_usd_per_hour: dict[str, float] = bounded(low=0, high=1e4, why="an 8-GPU node rents for about 100 USD/h", default_factory=dict)  # by device
    busy_power_w: dict[str, float] = bounded(**POWER_W, default_factory=dict)  # by device; default board power
    idle_power_w: dict[str, float] = bounded(**POWER_W, default_factory=dict)  # by device; default catalogue idle
    datacenter_links: tuple[str, ...] = DATACENTER_LINKS  # peers on these access links sit in a data centre
    pue: float | str | None = None  # data-centre PUE, a number >= 1 or a fleet of grids.toml; default 1.58
    home_pue: float = bounded(1.0, low=1, high=10, why="a PUE below 1 would create energy")
    host_factor_datacenter: float | None = bounded(None, low=1, high=10, why="a host draws at least its devices' power")  # default grids.toml's 1.4
    host_factor_home: float | None = bounded(None, low=1, high=10, why="a host draws at least its devices' power")  # default grids.toml's 1.25
    network_kwh_per_gb: float = bounded(0.0, low=0, high=10, why="the 2015 estimate was 0.06")  # off by default; Aslan et al. 2018 give 0.06 for 2015
    admission: str = "all"  # which peers join: all, below_threshold or cleanest_k (by their grid's yearly intensity)
    max_gco2_per_kwh: float | None = bounded(None, low=0, high=2000, why="coal alone is about 820-1000")  # for below_threshold
    admit_k: int | None = bounded(None, low=1, high=10**6, why="and at most the peers, checked against them")  # for cleanest_k
    start_window_h: float = bounded(0.0, low=0, high=8760, why="a year")  # time shifting: start up to this late, at the least CO2

    def __post_init__(self) -> None:
        check_ranges(self)
        parse_start(self.start_utc)
        catalogue = grid_catalogue()
        grids = list(catalogue.grids)
        for name, where in [(self.grid, "grid"), *((g, f"traces.{g}") for g in self.traces),
                            *((g, f"gco2_per_kwh.{g}") for g in self.gco2_per_kwh),
                            *((g, f"price_usd_per_kwh.{g}") for g in self.price_usd_per_kwh)]:
            if name not in grids:
                raise ScenarioError(where, f"unknown grid {name!r} (allowed: {', '.join(grids)})")
        traces = {}
        for name, path in self.traces.items():
            try:
                load_trace(path)
            except ValueError as error:
                raise ScenarioError(f"traces.{name}", str(error)) from None
            traces[name] = os.path.abspath(path)
        object.__setattr__(self, "traces", traces)  # absolute: a saved scenario reloads from anywhere
        devices = load_devices()
        for where in ("rental_usd_per_hour", "busy_power_w", "idle_power_w"):
            for name in getattr(self, where):
                if name not in devices:
                    raise ScenarioError(f"{where}.{name}", f"unknown device {name!r} (allowed: {', '.join(devices)})")
        for name, idle in self.idle_power_w.items():
            busy = self.busy_power_w.get(name, devices[name].board_power_w)
            if idle > busy:
                raise ScenarioError(f"idle_power_w.{name}", f"{idle!r} W is above the busy power {busy!r} W")
        for name, busy in self.busy_power_w.items():
            idle = self.idle_power_w.get(name, devices[name].idle_power_w)
            if busy < idle:
                raise ScenarioError(f"busy_power_w.{name}", f"{busy!r} W is below the idle power {idle!r} W")
        if isinstance(self.pue, str) and self.pue not in catalogue.pue:
            raise ScenarioError("pue", f"unknown fleet {self.pue!r} (allowed: a number >= 1, or {', '.join(catalogue.pue)})")
        if isinstance(self.pue, float) and not 1 <= self.pue <= 10:
            raise ScenarioError("pue", f"must be in [1, 10], got {self.pue!r} (a PUE below 1 would create energy)")
        if self.admission not in ADMISSION_POLICIES:
            raise ScenarioError("admission", f"unknown policy {self.admission!r} (allowed: {', '.join(ADMISSION_POLICIES)})")
        if self.admission == "below_threshold" and self.max_gco2_per_kwh is None:
            raise ScenarioError("max_gco2_per_kwh", "is required when admission = 'below_threshold'")
        if self.admission == "cleanest_k" and self.admit_k is None:
            raise ScenarioError("admit_k", "is required when admission = 'cleanest_k'")

    @property
    def start(self) -> pd.Timestamp:
        """The simulated clock's t = 0 as a UTC timestamp."""
        return parse_start(self.start_utc)
