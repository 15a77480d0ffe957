"""Deferred numerics (p2psim.dataflow): the eager history and event order, with the numerics run in batched waves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2psim import Scenario, run
from p2psim.algorithms.base import IMPLEMENTATIONS, register_algorithm
from p2psim.config import ScenarioError
from p2psim.dataflow import Dataflow, RowHandle
from p2psim.optim import OptimizerSpec, RowOptimizer
from p2psim.payloads import RowPool
from p2psim.scenario import set_dotted

ALGORITHM_NAMES = sorted(name for name, cls in IMPLEMENTATIONS.items() if cls.__module__.startswith("p2psim.algorithms"))
SHORT_RUN = {"diloco": {"algorithm.local_steps": 4}, "diloco_async": {"algorithm.local_steps": 4}}
COUNTS = ["time_s", "samples", "steps", "bytes_sent"]  # value-independent columns: equal exactly
TRACE: list[tuple[float, int, str]] = []


def _traced(base: type) -> str:
    """Register a subclass of `base` that logs (time, peer, event) for every hook call; return its name."""
    name = f"dataflow_traced_{base.name}"
    if name not in IMPLEMENTATIONS:

        class Traced(base):
            config_class = type(f"DataflowTraced{base.__name__}Config", (base.config_class,), {})

            def on_gradient(self, job):
                TRACE.append((self.world.now, job.peer, "gradient"))
                super().on_gradient(job)

            def on_message(self, message):
                TRACE.append((self.world.now, message.dst, f"{message.kind} from {message.src}"))
                super().on_message(message)

        Traced.name = name
        register_algorithm(Traced)
    return name


def tiny(algorithm: str, numerics: str, batch: bool) -> dict:
    """Six unequal peers on a ring of home links, least squares, a short run (as tests/test_algorithms.py)."""
    data = {
        "name": "dataflow",
        "seed": 5,
        "task": {"name": "least_squares", "n_samples": 600, "n_features": 6},
        "data": {"batch_size": 8},
        "peers": {"devices": {"h100_sxm": 2, "rtx_3060": 2, "rx_580": 2}, "links": {"fibre": 4, "cable": 2}, "jitter": 0.2},
        "topology": {"kind": "ring"},
        "algorithm": {"name": _traced(IMPLEMENTATIONS[algorithm]), "lr": 0.05},
        "stop": {"samples": 960},
        "metrics": {"eval_interval_samples": 160},
        "engine": {"numerics": numerics, "batch_gradients": batch},
    }
    for dotted, value in SHORT_RUN.get(algorithm, {}).items():
        set_dotted(data, dotted, value)
    return data


def traced(data: dict):
    TRACE.clear()
    result = run(Scenario.from_dict(data), baselines=False)
    return list(TRACE), result


# batching on and off for the deferrable algorithms; the others fall back to eager, one case suffices
CASES = [
    pytest.param(name, batch, id=f"{name}-{'batched' if batch else 'one-at-a-time'}")
    for name in ALGORITHM_NAMES
    for batch in ((True, False) if IMPLEMENTATIONS[name].numerics_deferrable else (True,))
]


@pytest.mark.parametrize(("name", "batch"), CASES)
def test_deferred_numerics_give_the_eager_history_and_event_order(name, batch):
    eager_trace, eager = traced(tiny(name, "eager", batch))
    deferred_trace, deferred = traced(tiny(name, "deferred", batch))
    # algorithms that read or compute row values are not deferrable: "deferred" falls back to eager for them
    expected = "deferred" if IMPLEMENTATIONS[name].numerics_deferrable else "eager"
    assert deferred.manifest["runs"]["p2p"]["numerics"] == expected
    assert eager.manifest["runs"]["p2p"]["numerics"] == "eager"
    assert deferred_trace == eager_trace and len(eager_trace) > 20
    a, b = eager.history.drop(columns="run"), deferred.history.drop(columns="run")
    assert list(a.columns) == list(b.columns)
    assert a[COUNTS].equals(b[COUNTS])
    # float32: vmapped gradients of other batch compositions may round differently (as engine.batch_gradients)
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=1e-7)
    facts = deferred.manifest["runs"]["p2p"]
    assert facts["status"] == "finished" and facts["gradients_computed"] == eager.manifest["runs"]["p2p"]["gradients_computed"]


def equal_peers(numerics: str) -> dict:
    """Sixteen equal peers on a ring (jittered steps): AD-PSGD's k-th gradients depend on no later ones."""
    return {
        "name": "equal-peers",
        "seed": 5,
        "task": {"name": "least_squares", "n_samples": 640, "n_features": 6},
        "data": {"batch_size": 8},
        "peers": {"devices": {"rtx_3060": 16}, "links": {"fibre": 16}, "jitter": 0.3},
        "topology": {"kind": "ring"},
        "algorithm": {"name": "adpsgd", "lr": 0.05},
        "stop": {"samples": 16 * 8 * 8},
        "metrics": {"eval_interval_s": 1e6},
        "engine": {"numerics": numerics},
    }


def test_deferred_numerics_evaluate_equal_peers_gradients_in_waves_of_every_peer():
    eager = run(Scenario.from_dict(equal_peers("eager")), baselines=False).manifest["runs"]["p2p"]
    deferred = run(Scenario.from_dict(equal_peers("deferred")), baselines=False).manifest["runs"]["p2p"]
    assert deferred["gradients_computed"] == eager["gradients_computed"]
    assert eager["mean_gradient_batch"] < 16  # eager evaluates what is pending when a result is first due
    assert deferred["mean_gradient_batch"] == 16  # deferred: each wave holds all 16 peers' next gradients


def test_an_unknown_numerics_mode_names_the_field_and_the_choices():
    data = tiny("adpsgd", "lazy", True)
    with pytest.raises(ScenarioError, match="deferred") as error:
        Scenario.from_dict(data)
    assert "numerics" in error.value.field


def gossip_dataflow(n: int, d: int, fake_gradient) -> tuple[torch.Tensor, RowPool, RowOptimizer, Dataflow, list[int]]:
    params = torch.arange(n * d, dtype=torch.float32).reshape(n, d)
    pool = RowPool(d, capacity=1)
    optimizer = RowOptimizer(OptimizerSpec(), n, d)
    sizes: list[int] = []
    flow = Dataflow(params, pool, optimizer, fake_gradient, True, sizes, max_rows=64)
    return params, pool, optimizer, flow, sizes


class Job:
    batch = np.zeros(1, dtype=np.int64)
    started_at = 0.0
    grad = None
    loss = float("nan")
    finite = True


def test_a_chain_of_steps_runs_in_waves_of_every_peer_and_equals_the_hand_computation():
    # gradient g(x) = 2 x, as a vmapped call would return it for each row; four peers, two steps each, lr 0.25:
    # x <- x - 0.25 (2 x) = x / 2, twice, then peer 0 takes half of peer 3's row as it was when sent.
    calls: list[torch.Tensor] = []

    def fake(rows, batches):
        calls.append(rows.clone())
        return 2 * rows, [0.0] * len(batches), [True] * len(batches)

    params, pool, _, flow, sizes = gossip_dataflow(4, 3, fake)
    start = params.clone()
    for _ in range(2):
        for peer in range(4):
            job = Job()
            flow.gradient(peer, job)
            flow.step(peer, job.grad, 0.25)
            flow.consumed(job)
    slot = flow.store(params[3])
    flow.lerp(0, flow.payload(slot), 0.5)
    pool.release(slot)
    flow.step(3, RowHandle(0, 1), 1.0)  # x_3 <- x_3 - x_1: after the payload copy, which must see the old x_3
    assert params.equal(start)  # nothing has run yet
    flow.flush()
    assert sizes == [4, 4]  # two waves of four gradients, not eight calls
    quarter = start / 4
    expected = quarter.clone()
    expected[0] = torch.lerp(quarter[0], quarter[3], 0.5)
    expected[3] = quarter[3] - quarter[1]
    assert params.equal(expected)
    assert flow.pending == 0


def test_gradients_computed_before_a_flush_and_applied_after_it_keep_the_rows_they_read():
    # g(x) = 2 x, lr 0.25: a step halves the row its gradient read. One wave computes the four gradients; peer 0
    # applies its own before the flush, peers 1-3 after it (their rows outlive the wave), once x_1 has become x_2.
    def fake(rows, batches):
        return 2 * rows, [0.0] * len(batches), [True] * len(batches)

    params, _, _, flow, sizes = gossip_dataflow(4, 3, fake)
    start = params.clone()
    jobs = [Job() for _ in range(4)]
    for peer, job in enumerate(jobs):
        flow.gradient(peer, job)
    flow.step(0, jobs[0].grad, 0.25)
    flow.consumed(jobs[0])
    flow.flush()
    flow.copy(1, params[2])
    for peer in (1, 2, 3):
        flow.step(peer, jobs[peer].grad, 0.25)
        flow.consumed(jobs[peer])
    flow.flush()
    assert sizes == [4]
    expected = start / 2
    expected[1] = start[2] - start[1] / 2
    assert params.equal(expected)
    assert flow.peak_gradient_rows == 4  # the wave's output; after the first flush, its three unused rows are kept alone


def test_ops_on_disjoint_rows_batch_and_a_pair_average_equals_the_eager_one_bitwise():
    def never(rows, batches):
        raise AssertionError("no gradient recorded")

    params, _, _, flow, _ = gossip_dataflow(6, 5, never)
    torch.manual_seed(0)
    params.copy_(torch.randn(6, 5))
    eager = params.clone()
    for a, b in ((0, 1), (2, 3), (4, 5), (1, 2)):
        flow.average((a, b))
        first, second = eager[a], eager[b]
        first.add_(second).mul_(0.5)
        second.copy_(first)
    flow.lerp(5, params[0], 0.3)
    eager[5].lerp_(eager[0], 0.3)
    flow.flush()
    assert params.equal(eager)


def test_a_tensor_the_algorithm_computed_is_refused_with_the_flag_to_set():
    params, _, _, flow, _ = gossip_dataflow(2, 3, None)
    with pytest.raises(TypeError, match="numerics_deferrable"):
        flow.lerp(0, params[1] * 2, 0.5)
    with pytest.raises(TypeError, match="numerics_deferrable"):
        flow.copy(0, params[:, 0])  # a column, not a row


@pytest.mark.parametrize("wire", [{"peers.precision": "fp16"}, {"network.compression": {"kind": "bf16"}}])
def test_a_rounding_wire_is_deferred_too_and_gives_the_eager_history(wire):
    histories = {}
    for numerics in ("eager", "deferred"):
        data = tiny("gossip", numerics, True)
        for dotted, value in wire.items():
            set_dotted(data, dotted, value)
        result = run(Scenario.from_dict(data), baselines=False)
        assert result.manifest["runs"]["p2p"]["numerics"] == numerics
        histories[numerics] = result.history.drop(columns="run")
    np.testing.assert_allclose(histories["eager"].to_numpy(float), histories["deferred"].to_numpy(float), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("lr", "interval_s", "reason"),
    [(50.0, 2.0, "loss beyond divergence_factor x initial loss"), (1e6, 400.0, "non-finite gradient")],
    ids=["loss-at-a-record", "non-finite-gradient-between-records"],
)
def test_a_diverging_run_diverges_when_and_where_the_eager_one_does(lr, interval_s, reason):
    from p2psim.testing import round_number_scenario

    outcomes = {}
    for numerics in ("eager", "deferred"):
        data = round_number_scenario(
            {"h100_sxm": 4},
            {"algorithm.lr": lr, "topology.kind": "ring", "stop.sim_time_s": 500.0, "metrics.eval_interval_s": interval_s},
            **{"engine.numerics": numerics},
        )
        outcomes[numerics] = run(Scenario.from_dict(data), baselines=False)
    eager, deferred = (outcomes[m].manifest["runs"]["p2p"] for m in ("eager", "deferred"))
    assert eager["status"] == deferred["status"] == "diverged"
    assert eager["divergence"] == reason  # deferred: found at the next record, reported at the gradient's own time
    assert deferred["numerics"] == "deferred"
    for fact in ("diverged_at_s", "diverged_peers", "divergence"):
        assert deferred[fact] == eager[fact], fact
    a, b = (outcomes[m].history.drop(columns="run").to_numpy(float) for m in ("eager", "deferred"))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("fedavg", {"algorithm.optimizer": {"name": "momentum"}, "algorithm.reset_optimizer": True}),
        ("fedavg", {"algorithm.optimizer": {"name": "adam"}, "algorithm.reset_optimizer": False}),
        ("diloco", {"algorithm.optimizer": {"name": "adamw", "weight_decay": 0.01}, "algorithm.reset_optimizer": True}),
    ],
    ids=["fedavg-momentum-reset", "fedavg-adam-kept", "diloco-adamw-reset"],
)
def test_optimizer_state_resets_are_ordered_in_the_log_as_eager_runs_them(name, overrides):
    runs = {}
    for numerics in ("eager", "deferred"):
        data = tiny(name, numerics, True)
        for dotted, value in overrides.items():
            set_dotted(data, dotted, value)
        runs[numerics] = traced(data)
    (eager_trace, eager), (deferred_trace, deferred) = runs["eager"], runs["deferred"]
    assert deferred.manifest["runs"]["p2p"]["numerics"] == "deferred"
    assert deferred_trace == eager_trace
    a, b = eager.history.drop(columns="run"), deferred.history.drop(columns="run")
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=1e-7)


def test_the_algorithms_own_rows_take_the_eager_values_bitwise():
    # a server's round by hand: sum = 0; sum += 2 x_1; sum += 3 x_2; mean = sum / 5; delta = mean - x_0;
    # avg = mean of three gradients; one outer momentum step on a row of its own; a reset of peer 1's momentum
    from p2psim.dataflow import EagerRows

    def fake(rows, batches):
        return 2 * rows, [0.0] * len(batches), [True] * len(batches)

    torch.manual_seed(1)
    start = torch.randn(4, 5)
    results = []
    for mode in ("eager", "deferred"):
        params, _, optimizer, flow, _ = gossip_dataflow(4, 5, fake)
        optimizer = RowOptimizer(OptimizerSpec(name="momentum"), 4, 5)
        flow._optimizer = optimizer
        params.copy_(start)
        rows = EagerRows(params, optimizer) if mode == "eager" else flow
        outer = RowOptimizer(OptimizerSpec(name="nesterov", momentum=0.5), 1, 5)
        total, mean, delta, average = rows.new(4)
        model = rows.new(1)
        rows.accumulate(total, params[0], 1.0)
        rows.zero(total)
        rows.accumulate(total, params[1], 2.0)
        rows.accumulate(total, params[2], 3.0)
        rows.divide(mean, total, 5.0)
        rows.subtract(delta, mean, params[0])
        rows.mean_of(average, [params[1], params[2], params[3]])
        rows.assign(model[0], params[3])
        for _ in range(2):
            rows.optimizer_step(outer, model, 0, delta, 0.1)
        optimizer.step(params, 1, torch.ones(5), 0.1) if mode == "eager" else flow.step(1, params[2], 0.1)
        rows.reset_optimizer(1)
        assert int(optimizer._t[1]) == 0  # the count is reset when recorded
        if mode == "deferred":
            assert params.equal(start) and not model.any()  # nothing ran yet
            flow.flush()
        results.append((total, mean, delta, average, model, optimizer._buffer[1].clone()))
    eager, deferred = results
    for a, b in zip(eager, deferred):
        assert a.equal(b)
    total, mean, delta, average, model, buffer = eager
    torch.testing.assert_close(total, start[1] * 2 + start[2] * 3)  # eager's fused add may round the last bit apart
    assert mean.equal(total / 5) and delta.equal(mean - start[0])
    assert average.equal(torch.stack([start[1], start[2], start[3]]).mean(dim=0))
    assert not buffer.any()  # zeroed by the reset, after the step that filled it
    # nesterov at lr 0.1, mu 0.5: b1 = d, x1 = x0 - 0.1 (d + 0.5 d); b2 = 1.5 d, x2 = x1 - 0.1 (d + 0.75 d)
    expected = start[3] - 0.1 * (delta + 0.5 * delta)
    expected = expected - 0.1 * (delta + 0.5 * (0.5 * delta + delta))
    torch.testing.assert_close(model[0], expected)


def test_a_write_to_a_world_row_through_the_algorithm_rows_interface_is_refused():
    params, _, _, flow, _ = gossip_dataflow(2, 3, None)
    with pytest.raises(TypeError, match="rows.new"):
        flow.zero(params[0])


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("sync_ps", {"algorithm.aggregation": {"rule": "median"}}, "eager"),
        ("sync_ps", {"algorithm.aggregation": {"rule": "mean"}}, "deferred"),
        ("async_ps", {"algorithm.dc_lambda": 0.04}, "eager"),
        ("async_ps", {"algorithm.staleness_aware": True}, "deferred"),
        ("sgp", {"algorithm.tau": 1}, "deferred"),
    ],
    ids=["sync_ps-median", "sync_ps-mean", "async_ps-delay-compensation", "async_ps-staleness-aware", "sgp-overlap"],
)
def test_options_that_read_values_fall_back_to_eager_and_the_others_defer(name, overrides, expected):
    data = tiny(name, "deferred", True)
    for dotted, value in overrides.items():
        set_dotted(data, dotted, value)
    deferred = run(Scenario.from_dict(data), baselines=False)
    assert deferred.manifest["runs"]["p2p"]["numerics"] == expected
    data["engine"]["numerics"] = "eager"
    eager = run(Scenario.from_dict(data), baselines=False)
    a, b = eager.history.drop(columns="run"), deferred.history.drop(columns="run")
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=1e-7)


def test_finite_flags_come_from_row_sums_and_from_the_entries_where_a_sum_overflows():
    from p2psim.dataflow import evaluate_gradients

    class Task:
        x_train = torch.zeros(4, 1)
        y_train = torch.zeros(4)

    rows = torch.ones(4, 3)
    rows[1, 2] = float("inf")
    rows[2, 0] = float("nan")
    rows[3] = 3e38  # every entry finite, their float32 sum is not

    def gradients(params, x, y):
        return params.clone(), params[:, 0]

    _, _, finite = evaluate_gradients(gradients, Task, rows, [np.array([i]) for i in range(4)])
    assert finite == [True, False, False, True]
