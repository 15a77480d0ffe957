"""Topology builders against closed forms: degrees, mixing matrices and spectral gaps."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from p2psim import topology
from p2psim.topology import (
    BUILDERS,
    TOPOLOGY_PARAMS,
    build_topology,
    complete,
    edges_of,
    erdos_renyi,
    exponential,
    from_edge_list,
    from_edges,
    from_networkx,
    hypercube,
    mixing_matrix,
    random_regular,
    ring,
    spectral_gap,
    star,
    torus,
    watts_strogatz,
)

# One instance of every family, with the parameters each needs.
EXAMPLES = {
    "ring": (12, {}),
    "torus": (12, {}),
    "complete": (7, {}),
    "star": (9, {}),
    "hypercube": (16, {}),
    "erdos_renyi": (20, {"p": 0.3}),
    "random_regular": (20, {"degree": 3}),
    "watts_strogatz": (20, {"k": 4, "p": 0.2}),
    "exponential": (13, {}),
}


def degrees(graph: nx.Graph) -> set[int]:
    return {d for _, d in graph.degree}


def test_examples_cover_every_builder():
    assert set(EXAMPLES) == set(BUILDERS)
    assert set(TOPOLOGY_PARAMS) == set(BUILDERS) | {"edge_list", "edges"}


# --- spectral gaps from closed forms ---------------------------------------------------


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8, 11, 16, 33, 64, 101])
def test_ring_metropolis_gap(n):
    # W = (I + A) / 3 is circulant with eigenvalues 1/3 + 2/3 cos(2 pi k / n). lambda_2 is
    # k = 1. lambda_n is -1/3 (n even) or 1/3 - 2/3 cos(pi / n) (n odd), so |lambda_n| <= 1/3,
    # while lambda_2 >= 1/3 for n >= 4; n = 3 gives W = J/3, whose gap is 1, as the formula says.
    assert spectral_gap(mixing_matrix(ring(n))) == pytest.approx(2 / 3 * (1 - math.cos(2 * math.pi / n)), abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 25])
def test_complete_gap_is_one(n):
    W = mixing_matrix(complete(n))
    np.testing.assert_allclose(W, np.full((n, n), 1 / n), rtol=0, atol=1e-15)
    assert spectral_gap(W) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6])
def test_hypercube_metropolis_gap(d):
    # W = (I + A) / (d + 1), adjacency eigenvalues d - 2k: lambda_2 = -lambda_n = (d - 1) / (d + 1).
    assert spectral_gap(mixing_matrix(hypercube(2**d))) == pytest.approx(2 / (d + 1), abs=1e-12)


@pytest.mark.parametrize("n", [3, 5, 10, 40])
def test_star_metropolis_gap(n):
    # Spectrum {1, 1 - 1/n (n - 2 times), 0}: the trace fixes the last eigenvalue at 0.
    assert spectral_gap(mixing_matrix(star(n))) == pytest.approx(1 / n, abs=1e-12)


@pytest.mark.parametrize("rows, cols", [(3, 3), (3, 5), (4, 4), (4, 6), (5, 5)])
def test_torus_metropolis_gap(rows, cols):
    # W = (I + A) / 5 with adjacency eigenvalues 2 cos(2 pi a / rows) + 2 cos(2 pi b / cols).
    eig = sorted(
        (1 + 2 * math.cos(2 * math.pi * a / rows) + 2 * math.cos(2 * math.pi * b / cols)) / 5
        for a in range(rows)
        for b in range(cols)
    )
    expected = 1 - max(abs(eig[-2]), abs(eig[0]))
    assert spectral_gap(mixing_matrix(torus(rows * cols, rows=rows))) == pytest.approx(expected, abs=1e-12)


def test_uniform_rule_on_star():
    # Max-degree weights 1/n on a star: W = I - L/n, Laplacian eigenvalues {0, 1 (n-2 times), n}.
    n = 6
    W = mixing_matrix(star(n), rule="uniform")
    assert W[1, 1] == pytest.approx(1 - 1 / n, abs=1e-15)
    assert W[0, 0] == pytest.approx(1 / n, abs=1e-15)
    assert spectral_gap(W) == pytest.approx(1 / n, abs=1e-12)


def test_disconnected_graph_has_zero_gap():
    graph = nx.Graph()
    graph.add_nodes_from(range(4))
    graph.add_edges_from([(0, 1), (2, 3)])
    assert spectral_gap(mixing_matrix(graph)) == pytest.approx(0.0, abs=1e-12)


# --- mixing matrices -----------------------------------------------------------------


@pytest.mark.parametrize("rule", ["metropolis", "uniform"])
@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_mixing_matrix_is_symmetric_doubly_stochastic(kind, rule):
    n, params = EXAMPLES[kind]
    graph = build_topology(kind, n, seed=3, **params)
    W = mixing_matrix(graph, rule=rule)
    assert W.shape == (n, n)
    assert np.array_equal(W, W.T)
    assert (W >= 0).all()
    assert np.diag(W).min() > 0
    np.testing.assert_allclose(W.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    off_diagonal = W - np.diag(np.diag(W))
    assert np.array_equal(off_diagonal > 0, nx.to_numpy_array(graph, nodelist=range(n)) > 0)
    assert 0.0 <= spectral_gap(W) <= 1.0 + 1e-12


def test_metropolis_weight_uses_larger_degree():
    W = mixing_matrix(star(5))
    assert W[0, 3] == pytest.approx(1 / 5)
    assert W[3, 3] == pytest.approx(4 / 5)


# --- degrees and node labels ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_nodes_are_zero_to_n_minus_one(kind):
    n, params = EXAMPLES[kind]
    graph = build_topology(kind, n, seed=0, **params)
    assert list(graph.nodes) == list(range(n))
    assert nx.number_of_selfloops(graph) == 0


def test_degrees():
    assert degrees(ring(10)) == {2}
    assert degrees(torus(12)) == {4}
    assert degrees(torus(15, rows=5)) == {4}
    assert degrees(complete(6)) == {5}
    assert sorted(d for _, d in star(6).degree) == [1, 1, 1, 1, 1, 5]
    assert star(6).degree[0] == 5
    for d in range(6):
        assert degrees(hypercube(2**d)) == {d}
    assert degrees(random_regular(30, 5, seed=1)) == {5}


@pytest.mark.parametrize("n, degree", [(2, 1), (4, 3), (5, 4), (8, 5), (10, 6), (12, 6), (16, 7), (17, 8)])
def test_exponential_degree(n, degree):
    # Neighbours of 0 are the distinct residues +/- 2^k mod n, e.g. n = 16: 1, 2, 4, 8, 12, 14, 15.
    assert degrees(exponential(n)) == {degree}


def test_torus_layout():
    graph = torus(12)  # 3 x 4: node r * 4 + c
    assert sorted(graph[5]) == [1, 4, 6, 9]
    assert sorted(graph[0]) == [1, 3, 4, 8]
    assert sorted(torus(12, rows=4)[0]) == [1, 2, 3, 9]


def test_hypercube_neighbours_differ_in_one_bit():
    assert sorted(hypercube(16)[5]) == [1, 4, 7, 13]


def test_watts_strogatz_without_rewiring_is_a_ring_lattice():
    graph = watts_strogatz(10, 4, 0.0, seed=0)
    assert sorted(graph[0]) == [1, 2, 8, 9]


# --- seeds ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["erdos_renyi", "random_regular", "watts_strogatz"])
def test_seed_fixes_the_graph(kind):
    n, params = EXAMPLES[kind]
    edges = lambda seed: list(build_topology(kind, n, seed=seed, **params).edges)  # noqa: E731
    assert edges(7) == edges(7)
    assert edges(7) != edges(8)
    assert edges(np.random.default_rng(7)) == edges(np.random.default_rng(7))


def test_generator_seed_is_consumed():
    rng = np.random.default_rng(0)
    assert list(erdos_renyi(20, 0.3, seed=rng).edges) != list(erdos_renyi(20, 0.3, seed=rng).edges)


def test_block_bits_draw_what_networkx_draws():
    # getrandbits of every width, in a mixed order, from the same generator state
    from networkx.utils.misc import PythonRandomViaNumpyBits

    widths = [k for _ in range(40) for k in (0, 1, 5, 8, 9, 16, 17, 31, 32, 33, 64, 65, 100)]
    reference = PythonRandomViaNumpyBits(np.random.default_rng(3))
    blocked = topology._BlockBits(np.random.default_rng(3))
    blocked.BLOCK = 7  # refills in the middle of multi-word draws
    assert [blocked.getrandbits(k) for k in widths] == [reference.getrandbits(k) for k in widths]


@pytest.mark.parametrize(
    "n, degree, seed",
    [(10, 3, 5), (64, 4, 5), (999, 6, 2), (3000, 4, 3), (40, 20, 0), (40, 20, 3), (12, 9, 0), (8, 1, 0), (7, 0, 0)],
)
def test_random_regular_is_networkx_graph(n, degree, seed):
    # networkx's own graph for the same generator, edge for edge and in order; the dense cases
    # fail several pairings (up to 12) before one succeeds, and exercise the check for a free pair
    expected = topology._graph(n, nx.random_regular_graph(degree, n, seed=np.random.default_rng(seed)).edges)
    graph = random_regular(n, degree, seed=np.random.default_rng(seed))
    assert list(graph.nodes) == list(expected.nodes)
    assert list(graph.edges) == list(expected.edges)


# --- files and foreign graphs --------------------------------------------------------


def test_from_edge_list(tmp_path):
    path = tmp_path / "overlay.txt"
    path.write_text("# measured overlay\n0 1 12.5\n1 2 3  # slow link\n\n2 0 7\n")
    graph = from_edge_list(path)
    assert list(graph.nodes) == [0, 1, 2]
    assert graph.edges[0, 1]["latency_ms"] == 12.5
    assert graph.edges[2, 1]["latency_ms"] == 3.0
    assert from_edge_list(path, n=5).number_of_nodes() == 5
    assert build_topology("edge_list", 3, path=path).edges[0, 2]["latency_ms"] == 7.0


@pytest.mark.parametrize(
    "text, match",
    [
        ("0 1\n1 1\n", "self-loop"),
        ("0 1\n1 0\n", "twice"),
        ("0 1 5\n1 2\n", "every edge or on none"),
        ("0 x\n", "integers"),
        ("0 1 -3\n", "latency_ms"),
        ("0 1 2 3\n", "expected"),
        ("0 3\n", "outside"),
    ],
)
def test_from_edge_list_errors(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        from_edge_list(path, n=3)


def test_from_networkx_relabels_in_sorted_order():
    graph = nx.Graph()
    graph.add_edge("c", "a", latency_ms=4.0, colour="red")
    graph.add_edge("b", "c")
    result = from_networkx(graph)
    assert list(result.nodes) == [0, 1, 2]
    assert sorted(result.edges) == [(0, 2), (1, 2)]
    assert result.edges[0, 2] == {"latency_ms": 4.0}
    assert result.edges[1, 2] == {}


def test_mixing_matrix_rejects_foreign_labels():
    with pytest.raises(ValueError, match="from_networkx"):
        mixing_matrix(nx.path_graph(["a", "b"]))


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hypercube(6), "power of two"),
        (lambda: torus(14), "rows x cols"),
        (lambda: torus(12, rows=2), "rows=2"),
        (lambda: torus(12, rows=5), "rows=5"),
        (lambda: ring(2), "n must be"),
        (lambda: random_regular(5, 3), "even"),
        (lambda: random_regular(5, 5), "degree"),
        (lambda: watts_strogatz(10, 3, 0.1), "even integer"),
        (lambda: erdos_renyi(10, 1.5), r"\[0, 1\]"),
        (lambda: build_topology("mesh", 8), "unknown topology 'mesh'; known: ring, torus"),
        (lambda: build_topology("ring", 8, p=0.1), r"unknown parameter\(s\) \['p'\]; allowed: \[\]"),
        (lambda: build_topology("erdos_renyi", 8), r"missing parameter\(s\) \['p'\]"),
        (lambda: build_topology("edge_list", 8), "missing parameter 'path'"),
        (lambda: mixing_matrix(ring(4), rule="laplacian"), "unknown mixing rule"),
        (lambda: spectral_gap(np.array([[0.5, 0.5], [0.0, 1.0]])), "symmetric"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_module_exports_exist():
    assert all(hasattr(topology, name) for name in topology.__all__)


def test_any_networkx_graph_can_be_held_inline_in_a_scenario():
    import tomllib

    import p2psim
    from p2psim.build import build_run
    from p2psim.scenario import TopologySpec

    petersen = nx.petersen_graph()
    spec = TopologySpec.from_networkx(petersen)
    assert spec.kind == "edges" and len(spec.edges) == 15
    data = {
        "task": {"name": "least_squares", "n_samples": 200, "n_features": 3},
        "peers": {"devices": {"rtx_4090": 10}, "links": {"fibre": 10}},
        "topology": {"kind": "edges", "edges": [list(edge) for edge in spec.edges]},
        "algorithm": {"name": "adpsgd", "lr": 0.1},
        "stop": {"steps": 10},
        "metrics": {"eval_interval_s": 1.0},
    }
    scenario = p2psim.Scenario.from_dict(data)
    assert p2psim.Scenario.from_dict(tomllib.loads(scenario.to_toml())) == scenario
    built = build_run(scenario)
    assert nx.is_isomorphic(built.graph, petersen)
    # The Petersen graph is 3-regular with adjacency eigenvalues 3, 1, -2: Metropolis W = (I + A) / 4.
    assert spectral_gap(mixing_matrix(built.graph)) == pytest.approx(1 - 2 / 4)


def test_edge_rows_carry_latency_and_reject_bad_rows():
    graph = from_edges(3, [[0, 1, 12.5], [1, 2, 3.0]])
    assert graph.edges[0, 1]["latency_ms"] == 12.5
    assert edges_of(graph) == [[0, 1, 12.5], [1, 2, 3.0]]
    with pytest.raises(ValueError, match="self-loop"):
        from_edges(3, [[1, 1]])
    with pytest.raises(ValueError, match="outside"):
        from_edges(3, [[0, 5]])
