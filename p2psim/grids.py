"""The grid catalogue: carbon intensity, electricity price, PUE, embodied carbon and rental prices.

Numbers come from `p2psim/data/grids.toml` (yearly figures) and `grid_profiles.toml` (a
typical day per month, by UTC hour), each with its source; `p2psim grids` prints them. A
user's own hourly trace (CSV) replaces a grid's profile through `load_trace`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .data import check_sources, read_catalogue
from .lazy import pandas as pd

__all__ = [
    "Grid",
    "HourlyProfile",
    "grid_catalogue",
    "format_grid_table",
    "load_trace",
]

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class Grid:
    """A region's electricity: yearly carbon intensity and household price, with their years and sources."""

    name: str
    label: str
    gco2_per_kwh: float
    year: int
    price_usd_per_kwh: float
    price_year: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class HourlyProfile:
    """gCO2/kWh by time: a typical day per month (12 x 24, UTC) or an hourly trace from a start time."""

    months: np.ndarray | None = None  # [12, 24]
    trace_start: pd.Timestamp | None = None
    trace: np.ndarray | None = None  # one value per hour from trace_start
    source: str = ""

    def at_hours(self, hours: pd.DatetimeIndex) -> np.ndarray:
        """Intensity during each given UTC hour (a trace repeats itself beyond its end)."""
        if self.months is not None:
            return self.months[hours.month - 1, hours.hour]
        offset = ((hours - self.trace_start) // pd.Timedelta(hours=1)).to_numpy()
        return self.trace[np.mod(offset, len(self.trace))]


@dataclass(frozen=True)
class Catalogue:
    """Everything grids.toml and grid_profiles.toml hold, validated."""

    model: dict[str, float]
    model_sources: tuple[str, ...]
    grids: dict[str, Grid]
    profiles: dict[str, HourlyProfile]
    pue: dict[str, dict[str, Any]]
    embodied: dict[str, dict[str, Any]]
    rental: dict[str, dict[str, Any]]
    sources: dict[str, str]


def _check_keys(where: str, entry: Mapping[str, Any], expected: set[str]) -> None:
    missing, unknown = expected - entry.keys(), entry.keys() - expected
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")


def _positive(where: str, value: Any, low: float = 0.0) -> float:
    number = float(value)
    if not math.isfinite(number) or number < low:
        raise ValueError(f"{where}: must be a number >= {low:g}, got {value!r}")
    return number


def _table(data: Mapping[str, Any], section: str, fields: set[str], sources: Mapping[str, str]) -> dict[str, dict]:
    out = {}
    for name, entry in data[section].items():
        where = f"grids.toml: {section}.{name}"
        _check_keys(where, entry, fields | {"sources"})
        row = {key: entry[key] for key in fields}
        for key, value in row.items():
            if isinstance(value, (int, float)) and key != "year":
                row[key] = _positive(f"{where}.{key}", value, 1.0 if key == "pue" else 0.0)
        row["sources"] = check_sources(where, entry["sources"], sources)
        out[name] = row
    return out


@functools.cache
def grid_catalogue() -> Catalogue:
    """Read and validate grids.toml and grid_profiles.toml once."""
    data = read_catalogue("grids.toml")
    sources = {key: str(value) for key, value in data["sources"].items()}
    model_keys = {"datacenter_pue", "home_pue", "host_factor_datacenter", "host_factor_home", "network_reference_kwh_per_gb"}
    _check_keys("grids.toml: model", data["model"], model_keys | {"sources"})
    model_sources = check_sources("grids.toml: model", data["model"]["sources"], sources)
    model = {key: _positive(f"grids.toml: model.{key}", data["model"][key]) for key in model_keys}
    grids = {}
    for name, entry in _table(data, "grids", {"label", "gco2_per_kwh", "year", "price_usd_per_kwh", "price_year"}, sources).items():
        grids[name] = Grid(name=name, **{k: int(v) if k.endswith("year") else v for k, v in entry.items()})
    profiles = {}
    for name, entry in read_catalogue("grid_profiles.toml")["profiles"].items():
        where = f"grid_profiles.toml: profiles.{name}"
        months = np.asarray(entry["months"], dtype=np.float64)
        if name not in grids or months.shape != (12, 24) or not (months >= 0).all():
            raise ValueError(f"{where}: needs a grid of grids.toml and 12 rows of 24 values >= 0")
        cited = "; ".join(f"{s}: {sources[s]}" for s in check_sources(where, entry["sources"], sources))
        profiles[name] = HourlyProfile(months=months, source=f"typical day per month, {entry['grid']} {entry['year']}; {cited}")
    return Catalogue(
        model=model,
        model_sources=model_sources,
        grids=grids,
        profiles=profiles,
        pue=_table(data, "pue", {"pue", "year"}, sources),
        embodied=_table(data, "embodied", {"kgco2", "lifetime_years"}, sources),
        rental=_table(data, "rental", {"usd_per_hour", "date"}, sources),
        sources=sources,
    )


def cite(ids: tuple[str, ...]) -> str:
    """Source ids with their reference text, for manifests."""
    sources = grid_catalogue().sources
    return "; ".join(f"{key}: {sources[key]}" for key in ids)


def load_trace(path: str | Path) -> HourlyProfile:
    """An hourly trace from a CSV with columns `time_utc` (ISO 8601) and `gco2_per_kwh`, one row per hour.

    Raises ValueError naming what is wrong: a missing file or column, unparsable times,
    negative or missing values, or rows that are not consecutive hours.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise ValueError(f"trace file not found: {path}") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read trace file {path}: {error}") from None
    for column in ("time_utc", "gco2_per_kwh"):
        if column not in table:
            raise ValueError(f"trace file {path}: needs a column {column!r} (has {', '.join(map(str, table.columns))})")
    try:
        times = pd.DatetimeIndex(pd.to_datetime(table["time_utc"], utc=True))
    except (ValueError, TypeError) as error:
        raise ValueError(f"trace file {path}: time_utc does not parse as ISO 8601 times: {error}") from None
    values = pd.to_numeric(table["gco2_per_kwh"], errors="coerce").to_numpy(dtype=np.float64)
    if len(values) == 0 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"trace file {path}: gco2_per_kwh needs at least one row, every value a number >= 0")
    if len(times) > 1 and not (times[1:] - times[:-1] == pd.Timedelta(hours=1)).all():
        raise ValueError(f"trace file {path}: rows must be consecutive hours")
    return HourlyProfile(trace_start=times[0].floor("h"), trace=values, source=f"trace file {path.resolve()}")


def format_grid_table() -> str:
    """The grid, PUE, embodied-carbon and rental catalogues as aligned text with their sources, for `p2psim grids`."""
    cat = grid_catalogue()
    lines = [
        _aligned(
            ("grid", "label", "gCO2/kWh", "year", "hourly profile", "USD/kWh", "price year", "sources"),
            [
                (g.name, g.label, f"{g.gco2_per_kwh:g}", str(g.year), "yes" if g.name in cat.profiles else "flat",
                 f"{g.price_usd_per_kwh:g}", str(g.price_year), ", ".join(g.sources))
                for g in cat.grids.values()
            ],
        ),
        "",
        _aligned(("PUE", "value", "year", "sources"), [(k, f"{v['pue']:g}", str(v["year"]), ", ".join(v["sources"])) for k, v in cat.pue.items()]),
        "",
        _aligned(
            ("embodied (device kind)", "kgCO2", "lifetime years", "sources"),
            [(k, f"{v['kgco2']:g}", f"{v['lifetime_years']:g}", ", ".join(v["sources"])) for k, v in cat.embodied.items()],
        ),
        "",
        _aligned(
            ("rental (device)", "USD/hour", "date", "sources"),
            [(k, f"{v['usd_per_hour']:g}", str(v["date"]), ", ".join(v["sources"])) for k, v in cat.rental.items()],
        ),
        "",
        _aligned(("model", "value"), [(k, f"{v:g}") for k, v in cat.model.items()]),
        f"(model sources: {', '.join(cat.model_sources)})",
        "",
    ]
    lines += [f"{key}: {text}" for key, text in cat.sources.items()]
    return "\n".join(lines)


def _aligned(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)
