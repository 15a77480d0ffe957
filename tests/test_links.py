"""Tests of access-link profiles, regions and inter-region RTTs (p2psim.links)."""

import itertools
import math
import sys
from importlib import resources

import numpy as np
import pytest

from p2psim.links import (
    link_sources,
    load_link_profiles,
    load_regions,
    region_rtt_ms,
    region_rtt_source,
    region_sources,
    rtt_matrix_ms,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

LINKS = {"nvlink", "infiniband", "datacenter_ethernet", "fibre", "cable", "dsl", "mobile", "mobile_5g"}
REGIONS = {
    "us_east", "us_west", "south_america", "eu_west", "eu_central",
    "asia_east", "asia_southeast", "asia_south", "oceania",
}  # fmt: skip


def _regions_toml():
    text = resources.files("p2psim").joinpath("data/regions.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_link_profiles_are_complete_and_sourced():
    profiles, sources = load_link_profiles(), link_sources()
    assert LINKS <= profiles.keys()
    for name, link in profiles.items():
        assert link.name == name
        assert link.sources and all(s in sources for s in link.sources), name
        assert link.up_mbps > 0 and link.down_mbps > 0 and link.latency_ms > 0


def test_link_units():
    profiles = load_link_profiles()
    assert profiles["nvlink"].up_mbps == 450 * 8000  # 450 GB/s per direction in Mbit/s
    assert profiles["fibre"].latency_ms == 9 / 2  # one-way, from the 9 ms fixed median RTT
    assert profiles["cable"].down_mbps > profiles["cable"].up_mbps  # asymmetric
    assert profiles["infiniband"].latency_ms < profiles["fibre"].latency_ms < profiles["dsl"].latency_ms


def test_regions_are_complete_and_sourced():
    regions, sources = load_regions(), region_sources()
    assert len(regions) >= 9 and REGIONS <= regions.keys()
    for name, region in regions.items():
        assert region.name == name and region.label
        assert -90 <= region.lat <= 90 and -180 <= region.lon <= 180
        assert region.sources and all(s in sources for s in region.sources)


def test_every_measured_rtt_is_sourced_and_returned():
    data, sources = _regions_toml(), region_sources()
    assert len(data["rtt"]) >= 9
    for entry in data["rtt"]:
        assert entry["sources"] and all(s in sources for s in entry["sources"])
        assert region_rtt_ms(entry["a"], entry["b"]) == entry["rtt_ms"]
        assert region_rtt_ms(entry["b"], entry["a"]) == entry["rtt_ms"]
        assert region_rtt_source(entry["a"], entry["b"]).startswith("measured:")


def test_known_measured_pairs():
    assert region_rtt_ms("eu_west", "eu_central") == 19.6
    assert region_rtt_ms("us_east", "us_west") == 72.0
    assert region_rtt_ms("eu_west", "us_east") == 80.0
    assert region_rtt_ms("asia_east", "us_west") == 89.0


def test_rtt_is_symmetric_and_positive():
    names = list(load_regions())
    for a, b in itertools.product(names, repeat=2):
        assert region_rtt_ms(a, b) == region_rtt_ms(b, a)
        assert region_rtt_ms(a, b) > 0


def test_same_region_rtt_is_the_same_metro_assumption():
    assert 1 <= region_rtt_ms("oceania", "oceania") <= 5
    assert region_rtt_source("oceania", "oceania").startswith("assumption:")


def _haversine_km(lat1, lon1, lat2, lon2, radius_km):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius_km * math.asin(math.sqrt(h))


def test_unmeasured_pair_is_derived_from_the_great_circle():
    model = _regions_toml()["model"]
    regions = load_regions()
    a, b = regions["asia_south"], regions["asia_southeast"]  # Mumbai - Singapore, not measured
    distance_km = _haversine_km(a.lat, a.lon, b.lat, b.lon, model["earth_radius_km"])
    assert 3800 < distance_km < 4000  # Mumbai - Singapore is about 3,900 km
    expected = 2 * distance_km / model["fibre_km_per_ms"] * model["route_inflation"]
    assert region_rtt_ms("asia_south", "asia_southeast") == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2 * distance_km / 200 * 1.5, rel=1e-12)
    assert region_rtt_source("asia_south", "asia_southeast").startswith("derived: great-circle")


def test_rtt_matrix_matches_pairwise_lookups():
    names = ["us_east", "eu_west", "oceania", "asia_south"]
    matrix = rtt_matrix_ms(names)
    assert matrix.shape == (4, 4) and matrix.dtype == np.float64
    assert np.array_equal(matrix, matrix.T)
    for (i, a), (j, b) in itertools.product(enumerate(names), repeat=2):
        assert matrix[i, j] == region_rtt_ms(a, b)


def test_unknown_region_names_the_allowed_ones():
    with pytest.raises(ValueError, match="mars.*allowed:.*us_east.*oceania"):
        region_rtt_ms("mars", "us_east")
    with pytest.raises(ValueError, match="allowed"):
        region_rtt_source("us_east", "mars")
    with pytest.raises(ValueError, match="allowed"):
        rtt_matrix_ms(["us_east", "mars"])


def test_latency_is_half_the_region_rtt_plus_both_access_latencies_unless_the_edge_says():
    import networkx as nx
    import numpy as np

    from p2psim.links import latency_function, region_rtt_ms

    graph = nx.path_graph(3)
    graph.edges[1, 2]["latency_ms"] = 7.0
    access_s = np.array([0.004, 0.010, 0.001])
    latency = latency_function(graph, ["us_east", "eu_west", "eu_west"], access_s)
    assert latency(0, 1) == pytest.approx(region_rtt_ms("us_east", "eu_west") / 2e3 + 0.014)
    assert latency(1, 0) == latency(0, 1)
    assert latency(1, 2) == pytest.approx(0.007)  # the edge's own latency replaces the model
    colocated = latency_function(graph, [None, None, None], access_s)
    assert colocated(0, 2) == pytest.approx(0.005)


def test_every_region_has_a_sourced_fixed_line_profile_and_estimates_say_so():
    profiles, sources = load_link_profiles(), link_sources()
    for region in load_regions():
        link = profiles[f"fixed_{region}"]
        assert link.up_mbps > 0 and link.down_mbps >= link.up_mbps * 0.9, region  # downloads are not slower
        global_median = (link.up_mbps, link.down_mbps) == (52.8, 97.6)
        assert global_median == ("A6" in link.sources), region  # the global median stands in only as a marked estimate
        assert ("estimate" in link.label) == ("A6" in link.sources)
        assert all(s in sources for s in link.sources)
    assert profiles["fixed_global"].up_mbps == 52.8  # Ookla, Jan 2025
    assert profiles["fibre"].up_mbps / profiles["fixed_global"].up_mbps == pytest.approx(5.21, abs=0.01)
    assert "Singapore" in profiles["fibre"].label
