"""Where peers are and what access links they have: link profiles, regions and RTTs between regions.

Numbers come from `p2psim/data/links.toml` and `regions.toml`, each with its
source. How messages are delivered over these links lives in `network.py`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import networkx as nx
import numpy as np

from .data import check_sources, read_catalogue

__all__ = [
    "LinkProfile",
    "Region",
    "link_sources",
    "latency_function",
    "load_link_profiles",
    "load_regions",
    "region_rtt_ms",
    "region_rtt_source",
    "region_sources",
    "rtt_matrix_ms",
]


@dataclass(frozen=True)
class LinkProfile:
    """An access link: bandwidth per direction and one-way latency added at each end of a path."""

    name: str
    label: str
    up_mbps: float
    down_mbps: float
    latency_ms: float
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Region:
    """A place peers can be, by the coordinates of its city."""

    name: str
    label: str
    lat: float
    lon: float
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class _MeasuredRtt:
    """One measured RTT between two regions, with what was measured."""

    rtt_ms: float
    note: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class _RegionTable:
    """Everything regions.toml holds, validated."""

    regions: dict[str, Region]
    measured: dict[frozenset[str], _MeasuredRtt]
    model: dict[str, float]
    sources: dict[str, str]


def _check_keys(where: str, entry: Mapping[str, Any], expected: set[str]) -> None:
    """Reject a TOML table with missing or unknown keys, naming them."""
    missing, unknown = expected - entry.keys(), entry.keys() - expected
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")


@functools.cache
def _link_table() -> tuple[dict[str, LinkProfile], dict[str, str]]:
    """Read and validate links.toml once."""
    data = read_catalogue("links.toml")
    sources = {key: str(value) for key, value in data["sources"].items()}
    profiles = {}
    for name, entry in data["links"].items():
        where = f"links.toml: links.{name}"
        _check_keys(where, entry, {"label", "up_mbps", "down_mbps", "latency_ms", "sources"})
        numbers = {key: float(entry[key]) for key in ("up_mbps", "down_mbps", "latency_ms")}
        for key, value in numbers.items():
            if value <= 0:
                raise ValueError(f"{where}.{key}: must be > 0, got {value}")
        profiles[name] = LinkProfile(
            name=name, label=str(entry["label"]), **numbers, sources=check_sources(where, entry["sources"], sources)
        )
    return profiles, sources


@functools.cache
def _region_table() -> _RegionTable:
    """Read and validate regions.toml once."""
    data = read_catalogue("regions.toml")
    sources = {key: str(value) for key, value in data["sources"].items()}
    model_keys = {"same_region_rtt_ms", "fibre_km_per_ms", "route_inflation", "earth_radius_km"}
    _check_keys("regions.toml: model", data["model"], model_keys | {"sources"})
    check_sources("regions.toml: model", data["model"]["sources"], sources)
    model = {key: float(data["model"][key]) for key in model_keys}
    regions = {}
    for name, entry in data["regions"].items():
        where = f"regions.toml: regions.{name}"
        _check_keys(where, entry, {"label", "lat", "lon", "sources"})
        regions[name] = Region(
            name=name,
            label=str(entry["label"]),
            lat=float(entry["lat"]),
            lon=float(entry["lon"]),
            sources=check_sources(where, entry["sources"], sources),
        )
    measured = {}
    for index, entry in enumerate(data["rtt"]):
        where = f"regions.toml: rtt[{index}]"
        _check_keys(where, entry, {"a", "b", "rtt_ms", "note", "sources"})
        pair = frozenset((entry["a"], entry["b"]))
        if len(pair) != 2 or not pair <= regions.keys() or pair in measured:
            raise ValueError(f"{where}: needs two distinct known regions, not listed before; got {sorted(pair)}")
        measured[pair] = _MeasuredRtt(
            float(entry["rtt_ms"]), str(entry["note"]), check_sources(where, entry["sources"], sources)
        )
    return _RegionTable(regions, measured, model, sources)


def load_link_profiles() -> dict[str, LinkProfile]:
    """Access-link profiles by name (a fresh dict over cached, frozen profiles).

    >>> load_link_profiles()["nvlink"].up_mbps
    3600000.0
    """
    return dict(_link_table()[0])


def link_sources() -> dict[str, str]:
    """The [sources] table of links.toml: source id -> reference text."""
    return dict(_link_table()[1])


def load_regions() -> dict[str, Region]:
    """Regions by name (a fresh dict over cached, frozen regions)."""
    return dict(_region_table().regions)


def region_sources() -> dict[str, str]:
    """The [sources] table of regions.toml: source id -> reference text."""
    return dict(_region_table().sources)


def _region(name: str) -> Region:
    """The region called `name`, or a ValueError naming the allowed regions."""
    regions = _region_table().regions
    if name not in regions:
        raise ValueError(f"unknown region {name!r}; allowed: {', '.join(regions)}")
    return regions[name]


def _great_circle_km(a: Region, b: Region) -> float:
    """Haversine distance between two regions' coordinates on a spherical Earth."""
    lat_a, lat_b = math.radians(a.lat), math.radians(b.lat)
    half_dlat, half_dlon = (lat_b - lat_a) / 2, math.radians(b.lon - a.lon) / 2
    h = math.sin(half_dlat) ** 2 + math.cos(lat_a) * math.cos(lat_b) * math.sin(half_dlon) ** 2
    return 2 * _region_table().model["earth_radius_km"] * math.asin(math.sqrt(h))


def region_rtt_ms(a: str, b: str) -> float:
    """RTT in ms between regions `a` and `b`: measured if listed, else derived from the great circle.

    Symmetric. Same region: the same-metro RTT. Derived: 2 x distance / fibre speed
    x route inflation (constants and sources in regions.toml).

    >>> region_rtt_ms("eu_central", "eu_west")
    19.6
    >>> region_rtt_ms("us_east", "us_east")
    3.0
    """
    region_a, region_b = _region(a), _region(b)
    table = _region_table()
    if a == b:
        return table.model["same_region_rtt_ms"]
    measured = table.measured.get(frozenset((a, b)))
    if measured is not None:
        return measured.rtt_ms
    distance_km = _great_circle_km(region_a, region_b)
    return 2 * distance_km / table.model["fibre_km_per_ms"] * table.model["route_inflation"]


def region_rtt_source(a: str, b: str) -> str:
    """Where region_rtt_ms(a, b) comes from: "measured: ...", "assumption: ..." or "derived: ..."."""
    region_a, region_b = _region(a), _region(b)
    table = _region_table()
    if a == b:
        return f"assumption: same region, {table.model['same_region_rtt_ms']:g} ms (regions.toml [model])"
    measured = table.measured.get(frozenset((a, b)))
    if measured is not None:
        cited = "; ".join(f"{s}: {table.sources[s]}" for s in measured.sources)
        return f"measured: {measured.note}; {cited}"
    model = table.model
    return (
        f"derived: great-circle {_great_circle_km(region_a, region_b):.0f} km x 2 / "
        f"{model['fibre_km_per_ms']:g} km/ms x route inflation {model['route_inflation']:g} (assumption)"
    )


def rtt_matrix_ms(regions: Sequence[str]) -> np.ndarray:
    """Matrix [r, r] of region_rtt_ms between the given region names, for fast lookups by index.

    >>> rtt_matrix_ms(["us_east", "eu_west"]).tolist()
    [[3.0, 80.0], [80.0, 3.0]]
    """
    return np.array([[region_rtt_ms(a, b) for b in regions] for a in regions], dtype=np.float64)


def latency_function(graph: nx.Graph, regions: list[str | None], access_s: np.ndarray) -> Callable[[int, int], float]:
    """One-way latency between two peers: an edge's own `latency_ms` where the graph gives one,
    else half the RTT between their regions (none: co-located) plus each end's access latency."""
    explicit = {}
    for u, v, attributes in graph.edges(data=True):
        if "latency_ms" in attributes:
            explicit[(u, v)] = explicit[(v, u)] = attributes["latency_ms"] / 1e3
    # Python lists of Python floats: read once per message, where numpy scalars cost a microsecond each;
    # float64 sums in the same order, so the same floats as the arrays gave
    if regions[0] is None:
        between = [[0.0]]
        index = [0] * len(regions)
    else:
        names = sorted(set(regions))
        between = (rtt_matrix_ms(names) / 2e3).tolist()
        position = {name: i for i, name in enumerate(names)}
        index = [position[r] for r in regions]
    access = np.asarray(access_s, dtype=np.float64).tolist()

    def latency_s(src: int, dst: int) -> float:
        if explicit:
            value = explicit.get((src, dst))
            if value is not None:
                return value
        return between[index[src]][index[dst]] + (access[src] + access[dst])  # symmetric in floats

    return latency_s
