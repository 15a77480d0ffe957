"""What a run will allocate and how long it will take, by arithmetic, before anything is built.

Validation compares these numbers with the machine (memory) and with what a run can
record (history rows), so that a scenario too large or too slow fails with an estimate
instead of a MemoryError, a hang or a crash deep inside torch. Every figure here is an
estimate from sizes alone; none builds the task's data or the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .build import bytes_per_element
from .config import MAX_HISTORY_ROWS
from .hardware import load_devices
from .netmodel import TcpSpec, loss_limited_rate
from .scenario import LinkSpec, Scenario, TopologySpec, mix_counts
from .stepmodel import activations_at_precision, device_step_s, scenario_work
from .tasks import Task, TaskSizes
from .tasks.base import BUILD_RATES, LinearChain

__all__ = [
    "HOST_STEP_S",
    "MAX_HISTORY_ROWS",
    "MemoryTerm",
    "ModelCost",
    "end_time_lower_s",
    "first_message_lower_s",
    "tcp_transfer_lower_s",
    "gradient_steps_upper",
    "graph_build_s",
    "graph_edges",
    "host_seconds",
    "chain_costs",
    "memory_terms",
    "model_cost",
    "peer_step_times",
]

HOST_STEP_S = 5e-5  # host time per simulated gradient step besides its FLOPs: events, sampling, indexing [assumption]
ROW_COPIES = 5  # parameter-sized rows per peer: weights, snapshot, gradient, two optimizer moments (Adam)
GRAPH_BYTES_PER_EDGE = 300.0  # networkx keeps each edge as two dict entries [assumption: ~250 B measured]
GRAPH_S_PER_EDGE = 1e-5  # topology._graph dedupes, sorts and inserts ~1e5 edges/s (complete(3000): ~45 s, measured)
GRAPH_S_PER_PAIR = 1e-7  # G(n, p) draws one random number per pair of peers [assumption]


@dataclass(frozen=True)
class ModelCost:
    """The task's real model (numerics, memory) and what the timings and messages stand for."""

    n_params: int
    flops_per_sample: float  # real model, forward and backward
    activation_bytes_per_sample: float  # real model
    timing_flops_per_step: float  # the workload's if declared, else the real model's, for one local batch
    timing_params: float
    timing_activation_bytes_per_sample: float
    model_bytes: float  # one model message on the wire


def chain_costs(chain: LinearChain) -> tuple[float, float]:
    """(training FLOPs, activation bytes) per sample of a chain of Linear layers, by arithmetic.

    Counted as `counting.count_training_flops` counts (matrix products only, 2 x MACs):
    forward and weight gradient 2 x in x out each, and the input's gradient too except
    for the first layer, whose input needs none; activations are every layer's float32
    output and every elementwise activation's between two, as
    `counting.activation_bytes_per_sample` sums them (tests/test_cli_imports.py checks both).

    >>> chain_costs(LinearChain((8, 16, 2)))  # 4 x 8 x 16 + 6 x 16 x 2 FLOPs; 4 B x (16 + 16 + 2)
    (704.0, 136.0)
    """
    pairs = list(zip(chain.widths[:-1], chain.widths[1:]))
    flops = sum((4.0 if i == 0 else 6.0) * fan_in * fan_out for i, (fan_in, fan_out) in enumerate(pairs))
    activations = 4.0 * (sum(chain.widths[1:]) + sum(chain.widths[1:-1]))
    return flops, activations


def model_cost(scenario: Scenario) -> ModelCost:
    """By arithmetic for a task that is a chain of Linear layers; otherwise counted on the meta template (imports torch)."""
    task, batch = scenario.task, scenario.data.batch_size
    chain = task.linear_chain()
    if chain is not None:
        n_params, (flops, activations) = chain.n_params, chain_costs(chain)
    else:
        n_params, flops, activations = _counted_costs(task)
    workload = scenario.workload
    timing_params = workload.params if workload else float(n_params)
    return ModelCost(
        n_params=n_params,
        flops_per_sample=flops,
        activation_bytes_per_sample=activations,
        timing_flops_per_step=(workload.flops_per_sample if workload else flops) * batch,
        timing_params=timing_params,
        timing_activation_bytes_per_sample=workload.activation_bytes_per_sample if workload else activations,
        model_bytes=timing_params * bytes_per_element(scenario.peers.precision),
    )


def _counted_costs(task: Task) -> tuple[int, float, float]:
    """(parameters, training FLOPs, activation bytes) per sample, counted by torch on the meta template: no memory, no data."""
    import torch

    from .counting import activation_bytes_per_sample, count_training_flops

    model = task.model()
    params = {name: torch.empty(p.shape, device="meta") for name, p in model.named_parameters()}
    x = torch.empty(1, task.sizes().n_features, device="meta")
    y = torch.empty(1, device="meta")
    # FlopCounterMode counts matrix products only, so an elementwise stand-in loss counts like the real one
    flops = count_training_flops(model, params, x, y, lambda output, _: output.float().sum())
    return sum(math.prod(p.shape) for p in model.parameters()), flops, activation_bytes_per_sample(model, params, x)


def peer_step_times(scenario: Scenario, cost: ModelCost) -> dict[str, tuple[int, float]]:
    """Device name -> (peers on it, modelled seconds of one local step without jitter)."""
    peers, catalogue = scenario.peers, load_devices()
    work = scenario_work(scenario, cost.timing_params, cost.timing_flops_per_step,
                         activations_at_precision(scenario, cost.timing_activation_bytes_per_sample))
    return {
        name: (count, device_step_s(scenario, catalogue[name], work))
        for name, count in mix_counts(peers.devices, peers.count, "peers.devices").items()
        if count > 0
    }


def _steps_per_s(steps: dict[str, tuple[int, float]]) -> float:
    """Local steps per simulated second of all peers computing without pause (mean jitter factor 1)."""
    return sum(count / seconds if seconds > 0 else math.inf for count, seconds in steps.values())


def end_time_lower_s(scenario: Scenario, steps: dict[str, tuple[int, float]]) -> float:
    """Simulated seconds a run lasts at least: its stop, reached by computing alone, never waiting."""
    stop, rate = scenario.stop, _steps_per_s(steps)
    bounds = [math.inf if stop.sim_time_s is None else stop.sim_time_s]
    limit = scenario.sample_limit()  # stop.samples, or stop.tokens in samples
    if limit is not None:
        bounds.append(limit[0] / scenario.data.batch_size / rate)
    if stop.steps is not None:
        bounds.append(stop.steps / rate)
    return min(bounds)


def gradient_steps_upper(scenario: Scenario, steps: dict[str, tuple[int, float]]) -> float:
    """Gradient steps a run computes at most: its stop, plus one step under way on every peer."""
    stop, batch = scenario.stop, scenario.data.batch_size
    bounds = [math.inf if stop.sim_time_s is None else stop.sim_time_s * _steps_per_s(steps)]
    limit = scenario.sample_limit()
    if limit is not None:
        bounds.append(math.ceil(limit[0] / batch))
    if stop.steps is not None:
        bounds.append(stop.steps)
    return min(bounds) + scenario.peers.count


def host_seconds(scenario: Scenario, cost: ModelCost, n_steps: float) -> float:
    """Host seconds to compute `n_steps` gradients of the real model (`BUILD_RATES` flops, `HOST_STEP_S`); cost-only: events only."""
    numerics = 0.0 if scenario.engine.cost_only else scenario.data.batch_size * cost.flops_per_sample
    per_step = HOST_STEP_S + numerics / BUILD_RATES["flops_per_s"]
    return n_steps * per_step


def first_message_lower_s(scenario: Scenario, cost: ModelCost, links: dict[str, LinkSpec]) -> tuple[float, str]:
    """Simulated seconds before any model message can have arrived, and the fastest link's name.

    A lower bound under every network option. A message of the model's bytes plus
    `message_overhead_bytes` leaves no faster than the fastest profile's min(up, down) (x TCP's
    goodput factor) and arrives after the least latency a path can have: twice the smallest
    access latency, or the smallest explicit edge latency (x TCP's latency factor; an edge
    list's file is not read, so there it is 0). Slow start can only add time; it is counted
    round trip by round trip at that least latency, where windows grow fastest. With
    bandwidth variability a link's log-normal factor has no upper bound, so the transfer term
    is dropped and the bound is the latency alone.
    """
    network = scenario.network
    names = [name for name, count in mix_counts(scenario.peers.links, scenario.peers.count, "peers.links").items() if count]
    best = max(names, key=lambda name: min(links[name].up_mbps, links[name].down_mbps))
    latency_s = 2 * min(links[name].latency_ms for name in names) / 1e3
    topology = scenario.topology
    if topology.kind == "edge_list":
        latency_s = 0.0
    elif topology.kind == "edges" and topology.edges and len(topology.edges[0]) == 3:
        latency_s = min(latency_s, min(edge[2] for edge in topology.edges) / 1e3)
    tcp = network.tcp
    wait_s = latency_s * (tcp.latency_factor if tcp is not None else 1.0)
    if network.variability is not None:
        return wait_s, best
    rate_bytes_s = min(links[best].up_mbps, links[best].down_mbps) * 1e6 / 8 * (tcp.bandwidth_factor if tcp else 1.0)
    nbytes = cost.model_bytes + network.message_overhead_bytes
    if tcp is None:
        return wait_s + nbytes / rate_bytes_s, best
    return wait_s + tcp_transfer_lower_s(nbytes, rate_bytes_s, 2 * latency_s, tcp), best


def tcp_transfer_lower_s(nbytes: float, rate_bytes_s: float, rtt_s: float, tcp: TcpSpec) -> float:
    """Seconds to serialise `nbytes` at most `rate_bytes_s`, within TCP's window and loss-limited caps at `rtt_s`.

    As `network.Network` runs a flow alone on its links: in slow start the rate is at most
    window / RTT, the window doubling every RTT from its initial size, under the ceiling
    min(max window / RTT, Mathis's rate). No RTT: no window limits.

    Seven round trips carry 14.6 kB x (2^7 - 1) = 1.85 MB; the eighth window, 1.87 MB, the remaining 1.15 MB:

    >>> round(tcp_transfer_lower_s(3e6, 1e9, 0.1, TcpSpec()), 4)  # 0.7 s + 1.1458e6 / 1.8688e7 B/s
    0.7613
    """
    if rtt_s == 0.0:
        return nbytes / rate_bytes_s
    ceiling = min(rate_bytes_s, tcp.max_window_bytes / rtt_s, loss_limited_rate(tcp.mss_bytes, rtt_s, tcp.loss_rate))
    window = float(tcp.initial_window_segments * tcp.mss_bytes) if tcp.slow_start else math.inf
    elapsed, left = 0.0, nbytes
    while True:
        rate = min(ceiling, window / rtt_s)
        if rate >= ceiling or left <= rate * rtt_s:
            return elapsed + left / rate
        elapsed, left, window = elapsed + rtt_s, left - rate * rtt_s, 2 * window


def graph_edges(topology: TopologySpec, n: int) -> float:
    """Edges the graph will have (expected, for random families) over `n` peers."""
    kind = topology.kind
    pairs = n * (n - 1) / 2
    if kind == "complete":
        return pairs
    if kind == "erdos_renyi":
        return (topology.p or 0.0) * pairs
    if kind == "random_regular":
        return n * (topology.degree or 0) / 2
    if kind == "watts_strogatz":
        return n * (topology.k or 0) / 2
    if kind in ("hypercube", "exponential"):
        return n * max(1, math.ceil(math.log2(max(n, 2))))
    if kind == "edges":
        return len(topology.edges or ())
    return 2.0 * n  # ring, torus, star; an edge list is bounded by its file's size


def graph_build_s(topology: TopologySpec, n: int) -> float:
    """Estimated host seconds to build the graph: G(n, p) visits every pair, the others every edge."""
    work = graph_edges(topology, n) * GRAPH_S_PER_EDGE
    if topology.kind == "erdos_renyi":
        work += n * (n - 1) / 2 * GRAPH_S_PER_PAIR
    return work


@dataclass(frozen=True)
class MemoryTerm:
    """One part of a run's host memory: bytes, the field that sets it, and what it is."""

    bytes: float
    field: str
    what: str


def memory_terms(scenario: Scenario, sizes: TaskSizes, cost: ModelCost, baseline: int | None = None) -> list[MemoryTerm]:
    """The host memory of the peer-to-peer run (or of baseline number `baseline`), part by part, largest first.

    A baseline runs after the peer-to-peer run, on `count` devices sharing the global batch
    on a complete graph, so each is measured on its own.
    """
    n, batch, topology, who = scenario.peers.count, scenario.data.batch_size, scenario.topology, "peers.count"
    if baseline is not None:
        spec = scenario.baselines[baseline]
        n, batch = spec.count, max(1, batch * n // spec.count)
        topology, who = TopologySpec(kind="complete"), f"baselines[{baseline}].count"
    graph = MemoryTerm(graph_edges(topology, n) * GRAPH_BYTES_PER_EDGE, "topology" if baseline is None else who,
                       f"the {topology.kind} graph over {n} peers")
    if scenario.engine.cost_only:  # no data, no rows, no gradients: the graph and the events' bookkeeping
        return [graph]
    sample_bytes = sizes.stored_sample_bytes
    data = max(sizes.build_bytes, (sizes.n_train + sizes.n_eval) * sample_bytes)
    terms = [
        MemoryTerm(data, _size_field(scenario.task), f"the task's data ({sizes.n_train + sizes.n_eval} samples "
                   f"x {sizes.n_features} features, and its build)"),
        MemoryTerm(ROW_COPIES * 4.0 * n * cost.n_params, who,
                   f"{n} parameter rows ({cost.n_params} params x 4 B x {ROW_COPIES} copies)"),
        MemoryTerm(n * batch * (sample_bytes + cost.activation_bytes_per_sample),
                   "data.batch_size" if baseline is None else who,
                   f"one batched gradient of every peer ({n} x {batch} samples with their activations)"),
        MemoryTerm((min(n, 64) * sizes.n_eval + sizes.n_train) * cost.activation_bytes_per_sample,
                   "task.hidden" if hasattr(scenario.task, "hidden") else "task",
                   "evaluation of 64 peers at a time on the held-out set, and of the average on the training set"),
        graph,
    ]
    return sorted(terms, key=lambda term: -term.bytes)


def _size_field(task: Task) -> str:
    """The task option that sets its data's size: n_samples where it has one."""
    return "task.n_samples" if hasattr(task, "n_samples") else "task"
