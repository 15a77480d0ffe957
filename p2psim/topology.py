"""Who talks to whom: graph builders, then the mixing matrix and spectral gap that analyse them.

Every builder returns an undirected ``networkx.Graph`` on the nodes ``0..n-1`` (node ``i``
is peer ``i``), with nodes and edges inserted in sorted order so that iteration is
reproducible. Random builders take a ``seed`` of the one ``Seed`` type used everywhere.

References
----------
[1] Xiao & Boyd, "Fast linear iterations for distributed averaging",
    Systems & Control Letters 53 (2004).
[2] Nedić, Olshevsky & Rabbat, "Network topology and communication-computation
    tradeoffs in decentralized optimization", Proceedings of the IEEE 106(5) (2018).
"""

from __future__ import annotations

import inspect
import math
import random
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

__all__ = [
    "BUILDERS",
    "MIXING_RULES",
    "TOPOLOGY_PARAMS",
    "Seed",
    "build_topology",
    "complete",
    "edges_of",
    "erdos_renyi",
    "exponential",
    "from_edge_list",
    "from_edges",
    "from_networkx",
    "hypercube",
    "mixing_matrix",
    "random_regular",
    "ring",
    "spectral_gap",
    "spectral_gap_sparse",
    "sparse_mixing_matrix",
    "star",
    "torus",
    "watts_strogatz",
]

Seed = int | np.random.Generator | None
"""An int, a numpy Generator (used as is), or None (fresh OS entropy: not reproducible)."""

MIXING_RULES: tuple[str, ...] = ("metropolis", "uniform")


def _check_n(n: int, minimum: int = 1) -> int:
    """``n`` as a Python int, after checking it is an integer >= ``minimum``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"n must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _graph(n: int, edges: Iterable[tuple[int, int]]) -> nx.Graph:
    """Graph on 0..n-1 with nodes and (u < v) edges inserted in sorted order, for reproducible iteration."""
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(sorted({(min(u, v), max(u, v)) for u, v in edges if u != v}))
    return graph


def _rng(seed: Seed) -> np.random.Generator:
    """A numpy Generator for networkx, which would otherwise fall back on the global ``random`` for None."""
    return np.random.default_rng(seed)


# --- builders ------------------------------------------------------------------------


def ring(n: int) -> nx.Graph:
    """Cycle ``i ~ i +/- 1 mod n``, the topology of D-PSGD (Lian et al., NeurIPS 2017).

    Metropolis weights are 1/3 everywhere, so the gap is 2/3 (1 - cos(2 pi / n)):

    >>> round(spectral_gap(mixing_matrix(ring(4))), 12)
    0.666666666667
    """
    n = _check_n(n, 3)
    return _graph(n, ((i, (i + 1) % n) for i in range(n)))


def _torus_rows(n: int, rows: int | None) -> int:
    # A side of 2 would wrap onto the same neighbour twice and a side of 1 onto itself,
    # so the graph would not be the 4-regular torus; both sides must be >= 3.
    if rows is None:
        candidates = [r for r in range(3, math.isqrt(n) + 1) if n % r == 0]
        if not candidates:
            raise ValueError(
                f"torus: n={n} cannot be written as rows x cols with rows, cols >= 3 "
                "(a side of 1 or 2 would not wrap around into a 4-regular torus); "
                "choose another n or a ring"
            )
        return candidates[-1]
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)):
        raise ValueError(f"torus: rows must be an integer, got {rows!r}")
    if rows < 3 or n % rows != 0 or n // rows < 3:
        raise ValueError(
            f"torus: rows={rows} must divide n={n} with rows >= 3 and cols = n / rows >= 3 "
            "(a side of 1 or 2 would not wrap around into a 4-regular torus)"
        )
    return int(rows)


def torus(n: int, rows: int | None = None) -> nx.Graph:
    """2-D torus (periodic grid) of ``rows x cols``; node ``r * cols + c`` (Nedić et al. 2018 [2]).

    ``rows=None`` takes the most square factorisation of ``n``. On a 4 x 4 torus the
    Metropolis weights are 1/5 and the eigenvalues (1 + 2 cos a + 2 cos b) / 5 give a gap of 2/5:

    >>> round(spectral_gap(mixing_matrix(torus(16))), 12)
    0.4
    """
    n = _check_n(n)
    n_rows = _torus_rows(n, rows)
    cols = n // n_rows
    edges = []
    for r in range(n_rows):
        for c in range(cols):
            node = r * cols + c
            edges.append((node, ((r + 1) % n_rows) * cols + c))
            edges.append((node, r * cols + (c + 1) % cols))
    return _graph(n, edges)


def complete(n: int) -> nx.Graph:
    """Every peer linked to every other: gossip on it is exact averaging, as all-reduce (Nedić et al. 2018 [2]).

    >>> round(spectral_gap(mixing_matrix(complete(5))), 12)
    1.0
    """
    n = _check_n(n)
    return _graph(n, ((i, j) for i in range(n) for j in range(i + 1, n)))


def star(n: int) -> nx.Graph:
    """Hub 0 linked to every other peer, the parameter-server shape (Nedić et al. 2018 [2]).

    With Metropolis weights the spectrum is {1, 1 - 1/n (n - 2 times), 0}, so the gap is 1/n:

    >>> round(spectral_gap(mixing_matrix(star(10))), 12)
    0.1
    """
    n = _check_n(n)
    return _graph(n, ((0, i) for i in range(1, n)))


def hypercube(n: int) -> nx.Graph:
    """Hypercube of dimension log2 n: ``i ~ i XOR 2^k`` (Harary, Hayes & Wu, Comput. Math. Appl. 15(4), 1988).

    Its adjacency eigenvalues are d - 2k, so with Metropolis weights 1/(d+1) the gap is 2/(d+1):

    >>> round(spectral_gap(mixing_matrix(hypercube(8))), 12)
    0.5
    """
    n = _check_n(n)
    if n & (n - 1):
        raise ValueError(f"hypercube: n must be a power of two, got {n}")
    dimension = n.bit_length() - 1
    return _graph(n, ((i, i ^ (1 << k)) for i in range(n) for k in range(dimension)))


def erdos_renyi(n: int, p: float, seed: Seed = None) -> nx.Graph:
    """G(n, p): each pair linked independently with probability p (Erdős & Rényi 1959; Gilbert 1959).

    May be disconnected; algorithms that need a connected graph check it.

    >>> round(spectral_gap(mixing_matrix(erdos_renyi(6, 1.0, seed=0))), 12)
    1.0
    """
    n = _check_n(n)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"erdos_renyi: p must be in [0, 1], got {p!r}")
    return _graph(n, nx.gnp_random_graph(n, p, seed=_rng(seed)).edges)


def random_regular(n: int, degree: int, seed: Seed = None) -> nx.Graph:
    """Uniform random ``degree``-regular graph (Steger & Wormald, Comb. Probab. Comput. 8, 1999).

    A (n-1)-regular graph is complete, so its gap is 1:

    >>> round(spectral_gap(mixing_matrix(random_regular(6, 5, seed=0))), 12)
    1.0
    """
    n = _check_n(n)
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or not 0 <= degree < n:
        raise ValueError(f"random_regular: degree must be an integer in [0, n-1={n - 1}], got {degree!r}")
    if (n * degree) % 2:
        raise ValueError(f"random_regular: n * degree must be even, got n={n}, degree={degree}")
    bits = _BlockBits(_rng(seed))
    edges = None
    while edges is None:  # a pairing can fail (no suitable pair left); networkx retries until one succeeds
        edges = _regular_pairing(n, int(degree), bits) if degree else set()
    return _graph(n, edges)


def _regular_pairing(n: int, degree: int, bits: random.Random) -> set[tuple[int, int]] | None:
    """One attempt of networkx's `random_regular_graph` (3.6: Steger & Wormald's stub pairing): its edge set or None.

    Kept step for step (shuffles, stub order) so that the same draws give networkx's graph,
    without the intermediate networkx graph it builds (seconds at 100,000 peers).
    """
    edges: set[tuple[int, int]] = set()
    stubs = list(range(n)) * degree
    while stubs:
        potential: dict[int, int] = defaultdict(int)
        bits.shuffle(stubs)
        pairs = iter(stubs)
        for s1, s2 in zip(pairs, pairs):
            if s1 > s2:
                s1, s2 = s2, s1
            if s1 != s2 and (s1, s2) not in edges:
                edges.add((s1, s2))
            else:
                potential[s1] += 1
                potential[s2] += 1
        if potential and not _any_free_pair(edges, potential):
            return None
        stubs = [node for node, count in potential.items() for _ in range(count)]
    return edges


def _any_free_pair(edges: set[tuple[int, int]], nodes: dict[int, int]) -> bool:
    """Whether two of `nodes` may still be joined: networkx's `_suitable`, as written (its swap carries over)."""
    for s1 in nodes:
        for s2 in nodes:
            if s1 == s2:
                break
            if s1 > s2:
                s1, s2 = s2, s1
            if (s1, s2) not in edges:
                return True
    return False


class _BlockBits(random.Random):
    """networkx's view of a numpy Generator as Python's `random` (`PythonRandomViaNumpyBits`), with its bits drawn in blocks.

    networkx's `getrandbits(k)` reads ceil(k / 8) bytes of `Generator.bytes`: the first bytes of
    ceil(k / 32) successive uint32 draws, little-endian, read big-endian. Drawing those uint32s
    64 Ki at a time gives the same values (so the same graph) without a numpy call per bit
    draw, which made a 100,000-peer random regular graph take minutes. Only `getrandbits` is
    provided: every method of `random.Random` that `shuffle` and `choice` use rests on it.
    """

    BLOCK = 1 << 16

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._words: Iterator[int] = iter(())

    def _word(self) -> int:
        """The next uint32 of the generator, byte-swapped (its first byte most significant)."""
        word = next(self._words, None)
        if word is None:
            self._words = iter(self._rng.integers(0, 2**32, size=self.BLOCK, dtype=np.uint32).byteswap().tolist())
            word = next(self._words)
        return word

    def getrandbits(self, k: int) -> int:
        """An int of `k` random bits, as networkx's wrapper of the same generator draws it."""
        if 0 < k <= 32:
            word = next(self._words, None)
            return (self._word() if word is None else word) >> (32 - k)
        numbytes = (k + 7) // 8  # k = 0 still takes one word, as Generator.bytes(0) does
        words = b"".join(self._word().to_bytes(4, "big") for _ in range(max(1, (numbytes + 3) // 4)))
        return int.from_bytes(words[:numbytes], "big") >> (numbytes * 8 - k)

    def random(self) -> float:  # a float draw would interleave with the blocked uint32s: refuse it
        raise NotImplementedError("_BlockBits draws integers only (random_regular uses no floats)")


def watts_strogatz(n: int, k: int, p: float, seed: Seed = None) -> nx.Graph:
    """Small world: a ring lattice to k/2 neighbours each side, each edge rewired with probability p.

    Watts & Strogatz, "Collective dynamics of 'small-world' networks", Nature 393 (1998).
    May be disconnected for p > 0. With p = 0 and k = 2 it is the ring:

    >>> round(spectral_gap(mixing_matrix(watts_strogatz(4, 2, 0.0, seed=0))), 12)
    0.666666666667
    """
    n = _check_n(n, 3)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k % 2 or not 2 <= k < n:
        raise ValueError(f"watts_strogatz: k must be an even integer in [2, n-1={n - 1}], got {k!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"watts_strogatz: p must be in [0, 1], got {p!r}")
    return _graph(n, nx.watts_strogatz_graph(n, int(k), p, seed=_rng(seed)).edges)


def exponential(n: int) -> nx.Graph:
    """Undirected exponential graph ``i ~ i +/- 2^k mod n`` for every 2^k < n.

    Assran et al., "Stochastic Gradient Push for Distributed Deep Learning", ICML 2019;
    Ying et al., "Exponential Graph is Provably Efficient for Decentralized Deep Training",
    NeurIPS 2021. For n = 8 the neighbours are +/-1, +/-2 and 4, and the circulant
    eigenvalues with Metropolis weights 1/6 give a gap of 2/3:

    >>> round(spectral_gap(mixing_matrix(exponential(8))), 12)
    0.666666666667
    """
    n = _check_n(n)
    hops = [1 << k for k in range(max(n - 1, 0).bit_length())]
    return _graph(n, ((i, (i + sign * hop) % n) for i in range(n) for hop in hops for sign in (1, -1)))


def _parse_edge_line(line: str, where: str) -> tuple[int, int, float | None]:
    fields = line.split()
    if len(fields) not in (2, 3):
        raise ValueError(f"{where}: expected 'u v [latency_ms]', got {line!r}")
    try:
        u, v = int(fields[0]), int(fields[1])
    except ValueError:
        raise ValueError(f"{where}: nodes must be integers, got {line!r}") from None
    if len(fields) == 2:
        return u, v, None
    try:
        latency_ms = float(fields[2])
    except ValueError:
        raise ValueError(f"{where}: latency_ms must be a number, got {fields[2]!r}") from None
    if not (math.isfinite(latency_ms) and latency_ms >= 0):
        raise ValueError(f"{where}: latency_ms must be finite and >= 0, got {latency_ms}")
    return u, v, latency_ms


MAX_EDGE_LIST_BYTES = 256 * 2**20  # ~15 million edges of "u v latency" lines: more than any run here can hold


def _read_bounded(path: Path) -> str:
    """A regular file's text, refusing devices, pipes and files over `MAX_EDGE_LIST_BYTES` before reading."""
    status = path.stat()  # a missing file raises FileNotFoundError here
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"{path} is not a regular file (a device, pipe or folder is not an edge list)")
    size = status.st_size
    if size > MAX_EDGE_LIST_BYTES:
        raise ValueError(f"{path} has {size} bytes; an edge list may have at most {MAX_EDGE_LIST_BYTES}")
    with path.open("rb") as file:
        data = file.read(MAX_EDGE_LIST_BYTES + 1)  # a file growing while read is still bounded
    if len(data) > MAX_EDGE_LIST_BYTES:
        raise ValueError(f"{path} grew beyond {MAX_EDGE_LIST_BYTES} bytes while read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: {error}") from None


def from_edge_list(path: str | Path, n: int | None = None) -> nx.Graph:
    """Graph read from lines ``u v [latency_ms]`` ('#' starts a comment), e.g. a measured overlay.

    Nodes are the integers 0..n-1 (``n=None``: one more than the largest node named);
    the optional third column, given on every edge or on none, becomes edge attribute
    ``latency_ms``. Self-loops and repeated edges are errors.
    """
    rows = []
    for number, raw in enumerate(_read_bounded(Path(path)).splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            rows.append(_parse_edge_line(line, f"{path}:{number}"))
    if n is None:
        if not rows:
            raise ValueError(f"{path}: no edges, so n must be given")
        n = 1 + max(max(u, v) for u, v, _ in rows)
    return _graph_from_rows(rows, n, str(path))


def from_edges(n: int, edges: Sequence[Sequence[float]]) -> nx.Graph:
    """Graph on 0..n-1 from rows ``[u, v]`` or ``[u, v, latency_ms]``, as a scenario holds them inline.

    `edges_of` turns any networkx graph into such rows.

    >>> from_edges(3, [[0, 1], [1, 2]]).number_of_edges()
    2
    """
    rows = [_parse_edge_line(" ".join(map(str, edge)), f"edges[{i}]") for i, edge in enumerate(edges)]
    return _graph_from_rows(rows, n, "edges")


def _graph_from_rows(rows: list[tuple[int, int, float | None]], n: int, where: str) -> nx.Graph:
    n = _check_n(n)
    if len({latency is None for _, _, latency in rows}) > 1:
        raise ValueError(f"{where}: give latency_ms on every edge or on none")
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    for u, v, latency_ms in rows:
        if not (0 <= u < n and 0 <= v < n):
            raise ValueError(f"{where}: edge ({u}, {v}) names a node outside 0..{n - 1}")
        if u == v:
            raise ValueError(f"{where}: self-loop on node {u}")
        if graph.has_edge(u, v):
            raise ValueError(f"{where}: edge ({u}, {v}) listed twice")
        graph.add_edge(u, v, **({} if latency_ms is None else {"latency_ms": latency_ms}))
    return graph


def edges_of(graph: nx.Graph) -> list[list[float]]:
    """Rows ``[u, v]`` (or ``[u, v, latency_ms]``) of any undirected simple networkx graph, relabelled 0..n-1.

    >>> edges_of(nx.path_graph(["a", "b", "c"]))
    [[0, 1], [1, 2]]
    """
    relabelled = from_networkx(graph)
    return [
        [u, v, data["latency_ms"]] if "latency_ms" in data else [u, v]
        for u, v, data in sorted(relabelled.edges(data=True))
    ]


def from_networkx(graph: nx.Graph) -> nx.Graph:
    """Copy of an undirected simple graph relabelled 0..n-1 in sorted node order, keeping only ``latency_ms``."""
    if graph.is_directed() or graph.is_multigraph():
        raise ValueError("from_networkx: the graph must be undirected and simple (nx.Graph)")
    if nx.number_of_selfloops(graph):
        raise ValueError("from_networkx: self-loops are not allowed")
    try:
        order = sorted(graph.nodes)
    except TypeError:
        raise ValueError("from_networkx: node labels must be mutually sortable") from None
    index = {node: i for i, node in enumerate(order)}
    edges = sorted(
        ((min(index[u], index[v]), max(index[u], index[v])), data) for u, v, data in graph.edges(data=True)
    )
    result = nx.Graph()
    result.add_nodes_from(range(len(order)))
    for (u, v), data in edges:
        result.add_edge(u, v, **({"latency_ms": data["latency_ms"]} if "latency_ms" in data else {}))
    return result


BUILDERS: dict[str, Callable[..., nx.Graph]] = {
    "ring": ring,
    "torus": torus,
    "complete": complete,
    "star": star,
    "hypercube": hypercube,
    "erdos_renyi": erdos_renyi,
    "random_regular": random_regular,
    "watts_strogatz": watts_strogatz,
    "exponential": exponential,
}

TOPOLOGY_PARAMS: dict[str, tuple[str, ...]] = {
    **{
        kind: tuple(name for name in inspect.signature(builder).parameters if name not in ("n", "seed"))
        for kind, builder in BUILDERS.items()
    },
    "edge_list": ("path",),
    "edges": ("edges",),
}


def build_topology(kind: str, n: int, seed: Seed = None, **params: object) -> nx.Graph:
    """Graph of family ``kind`` on n peers, the one entry point a scenario uses.

    >>> build_topology("watts_strogatz", 8, seed=1, k=4, p=0.1).number_of_nodes()
    8
    """
    if kind not in TOPOLOGY_PARAMS:
        raise ValueError(f"unknown topology {kind!r}; known: {', '.join(TOPOLOGY_PARAMS)}")
    allowed = TOPOLOGY_PARAMS[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"topology {kind!r}: unknown parameter(s) {unknown}; allowed: {list(allowed)}")
    if kind == "edge_list":
        if "path" not in params:
            raise ValueError("topology 'edge_list': missing parameter 'path'")
        return from_edge_list(params["path"], n)
    if kind == "edges":
        if "edges" not in params:
            raise ValueError("topology 'edges': missing parameter 'edges'")
        return from_edges(n, params["edges"])
    builder = BUILDERS[kind]
    signature = inspect.signature(builder)
    missing = [
        name for name in allowed if signature.parameters[name].default is inspect.Parameter.empty and name not in params
    ]
    if missing:
        raise ValueError(f"topology {kind!r}: missing parameter(s) {missing}")
    if "seed" in signature.parameters:
        params["seed"] = seed
    return builder(n, **params)


# --- analysis ------------------------------------------------------------------------


def _edge_array(graph: nx.Graph) -> tuple[int, np.ndarray]:
    """Number of nodes and the [E, 2] edge array, after checking the graph is simple on 0..n-1."""
    n = graph.number_of_nodes()
    if graph.is_directed() or graph.is_multigraph() or nx.number_of_selfloops(graph):
        raise ValueError("mixing_matrix: the graph must be undirected, simple and loop-free")
    if sorted(graph.nodes) != list(range(n)):
        raise ValueError("mixing_matrix: nodes must be 0..n-1; relabel with from_networkx()")
    return n, np.array(list(graph.edges), dtype=np.int64).reshape(-1, 2)


def mixing_matrix(graph: nx.Graph, rule: str = "metropolis") -> np.ndarray:
    """Symmetric doubly stochastic gossip weights W on the graph's edges (Xiao & Boyd 2004 [1]).

    ``metropolis`` (Metropolis–Hastings): W_ij = 1 / (1 + max(d_i, d_j)) on each edge;
    ``uniform`` (max-degree): W_ij = 1 / (1 + d_max) on each edge. The diagonal takes
    what is left of each row, which is always > 0, so W is aperiodic.

    >>> mixing_matrix(ring(3)).round(6).tolist()[0]
    [0.333333, 0.333333, 0.333333]
    """
    n, u, v, weight = _edge_weights(graph, rule)
    W = np.zeros((n, n))
    W[u, v] = weight
    W[v, u] = weight
    W[np.arange(n), np.arange(n)] = 1.0 - W.sum(axis=1)
    return W


def _edge_weights(graph: nx.Graph, rule: str) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """n, and each edge (u, v) with its off-diagonal weight under the mixing `rule`."""
    if rule not in MIXING_RULES:
        raise ValueError(f"unknown mixing rule {rule!r}; known: {', '.join(MIXING_RULES)}")
    n, edges = _edge_array(graph)
    degree = np.bincount(edges.ravel(), minlength=n)
    u, v = edges[:, 0], edges[:, 1]
    if rule == "metropolis":
        weight = 1.0 / (1.0 + np.maximum(degree[u], degree[v]))
    else:
        weight = np.full(len(edges), 1.0 / (1.0 + degree.max(initial=0)))
    return n, u, v, weight


def sparse_mixing_matrix(graph: nx.Graph, rule: str = "metropolis") -> Any:
    """`mixing_matrix` as a scipy CSR array: O(edges) memory, for graphs too large for an n x n array.

    >>> sparse_mixing_matrix(ring(3)).toarray().round(6).tolist()[0]
    [0.333333, 0.333333, 0.333333]
    """
    from scipy import sparse

    n, u, v, weight = _edge_weights(graph, rule)
    diagonal = 1.0 - np.bincount(np.concatenate([u, v]), weights=np.concatenate([weight, weight]), minlength=n)
    nodes = np.arange(n)
    rows, cols = np.concatenate([u, v, nodes]), np.concatenate([v, u, nodes])
    return sparse.csr_array((np.concatenate([weight, weight, diagonal]), (rows, cols)), shape=(n, n))


SPARSE_GAP_TOL = 1e-6  # Lanczos residual bound: the reported gap is within this of the exact one (|lambda| <= 1)
SPARSE_GAP_MAX_MATVECS = 5_000  # a 100,000-peer random 4-regular graph needs about 600 (seconds on one core)


def spectral_gap_sparse(W: Any, tol: float = SPARSE_GAP_TOL) -> float | None:
    """`spectral_gap` of a symmetric doubly stochastic sparse W by Lanczos, never forming an n x n array.

    The largest |eigenvalue| of W - 11^T/n (the consensus direction removed) is
    max(|lambda_2|, |lambda_n|) of W, found by scipy's ARPACK `eigsh` (one BLAS thread)
    with residual tolerance `tol`, so the returned gap is within `tol` of the exact one.
    None when Lanczos does not converge within `SPARSE_GAP_MAX_MATVECS` products (a gap
    near `tol`, as on a ring of 10^5 peers, cannot be resolved).

    >>> abs(spectral_gap_sparse(sparse_mixing_matrix(ring(50))) - 2 / 3 * (1 - math.cos(2 * math.pi / 50))) < 1e-6
    True
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
    from threadpoolctl import threadpool_limits

    n = W.shape[0]
    if n <= 3:  # ARPACK needs Krylov room (k < n - 1); such a matrix is dense anyway
        return spectral_gap(W.toarray())

    def deflated(x: np.ndarray) -> np.ndarray:
        x = x.reshape(n, -1)
        return W @ x - x.mean(axis=0, keepdims=True)

    operator = LinearOperator((n, n), matvec=deflated, matmat=deflated, dtype=np.float64)
    ncv = min(n - 1, 32)
    start = np.random.default_rng(0).standard_normal(n)  # a fixed start vector: the same gap every call
    try:
        with threadpool_limits(1):  # many BLAS threads on tall-thin products cost more than they save
            eigenvalues = eigsh(operator, k=1, which="LM", tol=tol, ncv=ncv, v0=start,
                                maxiter=max(1, SPARSE_GAP_MAX_MATVECS // ncv), return_eigenvectors=False)
    except ArpackNoConvergence:
        return None
    return float(max(0.0, 1.0 - abs(eigenvalues[0])))


def spectral_gap(W: np.ndarray) -> float:
    """1 - max(|lambda_2|, |lambda_n|) of a symmetric doubly stochastic W, eigenvalues sorted descending.

    This is 1 - ||W - 11^T/n||_2: each gossip round shrinks the distance to consensus
    by at least the factor 1 - gap (Xiao & Boyd 2004 [1]). 0 means no convergence
    (a disconnected graph, or a periodic W); 1 means one round averages exactly.
    A single node is already at consensus: gap 1.

    >>> spectral_gap(np.eye(2))
    0.0
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or not np.allclose(W, W.T, rtol=0.0, atol=1e-12):
        raise ValueError(f"spectral_gap: W must be a symmetric square matrix, got shape {W.shape}")
    if W.shape[0] == 1:
        return 1.0
    eigenvalues = np.linalg.eigvalsh(W)  # ascending: lambda_n first, lambda_1 = 1 last
    return float(1.0 - max(abs(eigenvalues[-2]), abs(eigenvalues[0])))
