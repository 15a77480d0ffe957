"""The engine: exact event traces, asynchrony as DESIGN decision 4 says, batching that changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from p2psim import Scenario, run
from p2psim.algorithms import ADPSGD, ADPSGDIdealised, AllReduce, register_algorithm
from p2psim.algorithms.base import ALGORITHMS
from p2psim.build import build_run
from p2psim.engine import World
from p2psim.metrics import consensus_distance
from p2psim.seeding import stream
from p2psim.testing import round_number_scenario, simulate


def tiny(peers: dict, **overrides) -> dict:
    """A least-squares scenario whose durations are round numbers (see p2psim.testing)."""
    return round_number_scenario(peers, {"name": "tiny"}, overrides)


TRACE: list[tuple[float, int, str]] = []


def _traced(base):
    class Traced(base):
        name = f"traced_{base.name}"
        config_class = type(f"Traced{base.__name__}Config", (base.config_class,), {})

        def on_gradient(self, job):
            TRACE.append((round(self.world.now, 9), job.peer, "gradient"))
            super().on_gradient(job)

        def on_message(self, message):
            TRACE.append((round(self.world.now, 9), message.dst, f"{message.kind} from {message.src}"))
            super().on_message(message)

    if Traced.name not in ALGORITHMS:
        register_algorithm(Traced)
    return Traced


_traced(ADPSGD)
_traced(AllReduce)


def traced_run(data: dict) -> tuple[list, object]:
    TRACE.clear()
    result = run(Scenario.from_dict(data), baselines=False)
    return list(TRACE), result


@pytest.mark.parametrize("numerics", ["eager", "deferred"])
def test_two_peers_produce_the_exact_event_trace(numerics):
    # Peer 0 is an H100 (1 s a step), peer 1 an RX 580 (33.5e12 / (6.2e12 x 0.5) s a step).
    # A model is 1e6 params x 4 B = 4e6 B: 4 s on a 1e6 B/s link, plus 0.05 s of latency.
    # Deferred numerics (p2psim.dataflow) change when the numbers are computed, never the events.
    sequential = {"algorithm.name": "traced_adpsgd", "algorithm.overlap": False, "engine.numerics": numerics}
    trace, _ = traced_run(tiny({"h100_sxm": 1, "rx_580": 1}, **sequential))
    t_b = 33.5e12 / (6.2e12 * 0.5)
    # At 14.15 peer 1 replies while its own model push (started at t_b) is still on its uplink:
    # the two share the uplink (and peer 0's downlink) at 0.5e6 B/s each until the push ends.
    push_left = 4e6 - (14.15 - t_b) * 1e6
    push_done = 14.15 + push_left / 0.5e6
    reply_done = push_done + (4e6 - push_left) / 1e6  # the rest of the reply at the full rate
    expected = [
        (1.0, 0, "gradient"),
        (5.05, 1, "model from 0"),
        (9.1, 0, "reply from 1"),
        (10.1, 0, "gradient"),
        (t_b, 1, "gradient"),
        (14.15, 1, "model from 0"),
        (push_done + 0.05, 0, "model from 1"),
        (reply_done + 0.05, 0, "reply from 1"),
    ]
    assert [(pytest.approx(t, abs=1e-9), p, e) for t, p, e in expected] == trace
    assert reply_done == pytest.approx(t_b + 8.0)  # peer 1's uplink was busy with 8e6 B from t_b on


def test_with_overlap_a_peer_computes_during_its_exchange_and_holds_the_result():
    # Peer 0 sends its push at 1 s and computes on: its second gradient is done at 2 s and
    # waits for the reply (9.1 s); then it is exchanged and the third gradient starts.
    trace, result = traced_run(tiny({"h100_sxm": 1, "rx_580": 1}, **{"algorithm.name": "traced_adpsgd"}))
    assert trace[:5] == [
        (1.0, 0, "gradient"),
        (2.0, 0, "gradient"),
        (5.05, 1, "model from 0"),
        (9.1, 0, "reply from 1"),
        (10.1, 0, "gradient"),
    ]
    sequential, _ = traced_run(
        tiny({"h100_sxm": 1, "rx_580": 1}, **{"algorithm.name": "traced_adpsgd", "algorithm.overlap": False})
    )
    assert sum(e == "gradient" for _, _, e in trace) > sum(e == "gradient" for _, _, e in sequential)


def test_ring_all_reduce_takes_the_closed_form_time():
    # K devices compute 1 s, then 2(K-1) rounds of S/K bytes each: 2(K-1)(L + S/(K B)).
    k = 4
    data = tiny({"h100_sxm": k}, **{"algorithm.name": "traced_allreduce", "stop.sim_time_s": 20.0})
    data["data"]["batch_size"] = 4
    trace, _ = traced_run(data)
    chunk_rounds = [t for t, _, event in trace if event.startswith("chunk")]
    one_allreduce = 2 * (k - 1) * (0.05 + 4e6 / k / 1e6)
    assert max(chunk_rounds[: k * 2 * (k - 1)]) == pytest.approx(1.0 + one_allreduce, abs=1e-9)
    gradients = [t for t, _, event in trace if event == "gradient"]
    assert gradients[:k] == [1.0] * k
    assert gradients[k : 2 * k] == [pytest.approx(2.0 + one_allreduce)] * k


def test_same_seed_same_history_other_seed_not():
    data = tiny({"h100_sxm": 2, "rtx_3060": 2}, **{"topology.kind": "ring", "peers.jitter": 0.2})
    first = run(Scenario.from_dict(data), baselines=False).history
    again = run(Scenario.from_dict(data), baselines=False).history
    data["seed"] = 4
    other = run(Scenario.from_dict(data), baselines=False).history
    assert first.equals(again)
    assert not first["loss"].equals(other["loss"])


def compute_bound(batch_gradients: bool) -> dict:
    """Fast links, unequal devices: many computations overlap, so batches are large."""
    data = tiny(
        {"h100_sxm": 4, "rtx_4090": 4, "rtx_3060": 4, "rx_580": 4},
        **{
            "algorithm.name": "traced_adpsgd",
            "peers.links": {"nvlink": 16},
            "topology.kind": "ring",
            "stop.sim_time_s": 60.0,
            "engine.batch_gradients": batch_gradients,
        },
    )
    return data


def test_batched_and_one_at_a_time_evaluation_give_the_same_history_and_event_order():
    batched_trace, batched = traced_run(compute_bound(True))
    single_trace, single = traced_run(compute_bound(False))
    assert batched_trace == single_trace
    assert batched.manifest["runs"]["p2p"]["mean_gradient_batch"] > 3.0
    assert single.manifest["runs"]["p2p"]["max_gradient_batch"] == 1
    a, b = batched.history.drop(columns="run"), single.history.drop(columns="run")
    assert list(a.columns) == list(b.columns)
    # Tolerance: a k-row vmapped matmul may round differently from k one-row ones (float32).
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=1e-7)


def _gossip_only(base, name: str) -> None:
    """Register `base` without the gradient step as `name`: pairwise gossip from random starting rows."""

    class GossipOnly(base):
        """AD-PSGD's exchanges without the gradient step, from random starting rows."""

        config_class = type(f"{base.__name__}GossipOnlyConfig", (base.config_class,), {})

        def start(self):
            generator = torch.Generator().manual_seed(0)
            self.world.params.copy_(torch.randn(self.world.params.shape, generator=generator))
            self.initial_mean = self.world.params.mean(dim=0).clone()
            self.initial_distance = consensus_distance(self.world.params)[0]
            super().start()

        def _apply(self, job):
            self.world.consume(job)

    GossipOnly.name = name
    register_algorithm(GossipOnly)


_gossip_only(ADPSGDIdealised, "test_gossip_only")  # atomic exchanges
_gossip_only(ADPSGD, "test_causal_gossip_only")  # causal exchanges


def test_causal_gossip_reaches_consensus_and_its_mean_drifts_only_by_overlapping_exchanges():
    data = tiny({"h100_sxm": 8}, **{"algorithm.name": "test_causal_gossip_only", "topology.kind": "ring"})
    data["stop"] = {"sim_time_s": 600.0}
    world = simulate(data)
    algorithm = world.algorithm
    assert consensus_distance(world.params)[0] < 1e-8 * algorithm.initial_distance
    drift = float((world.params.mean(dim=0) - algorithm.initial_mean).norm())
    assert 1e-6 < drift < float(algorithm.initial_distance) ** 0.5  # overlapping exchanges move the mean, boundedly


def test_gossip_without_gradients_preserves_the_mean_and_reaches_consensus():
    data = tiny({"h100_sxm": 8}, **{"algorithm.name": "test_gossip_only", "topology.kind": "ring"})
    data["stop"] = {"sim_time_s": 600.0}
    world = simulate(data)
    algorithm = world.algorithm
    torch.testing.assert_close(world.params.mean(dim=0), algorithm.initial_mean, rtol=0, atol=1e-6)
    assert consensus_distance(world.params)[0] < 1e-8 * algorithm.initial_distance


def test_single_device_all_reduce_is_plain_sgd_on_the_same_batches():
    data = tiny({"h100_sxm": 1}, **{"algorithm.name": "allreduce", "algorithm.lr": 0.1})
    data["stop"] = {"steps": 25}
    setup = build_run(Scenario.from_dict(data))
    world = World(setup)
    world.run()
    task = setup.task
    x = task.initial_params.clone()
    rng = stream(3, "batches", 0)
    local = setup.partitions[0]
    for _ in range(25):
        batch = torch.from_numpy(local[rng.integers(0, len(local), 4)])
        flat = x.clone().requires_grad_(True)
        out = torch.func.functional_call(task.model, task.unflatten(flat), (task.x_train[batch],))
        (grad,) = torch.autograd.grad(task.loss(out, task.y_train[batch]), flat)
        x = x - 0.1 * grad
    torch.testing.assert_close(world.params[0], x, rtol=1e-5, atol=1e-6)


class _ChangeMidway(ADPSGD):
    """Peer 0 computes from t = 0 to 1 s; at 0.5 s its row is changed under it."""

    name = "test_change_midway"
    config_class = type("ChangeMidwayConfig", (ADPSGD.config_class,), {})
    seen: dict = {}

    def start(self):
        world = self.world
        self.start_params = world.params[0].clone()
        world.compute(0)
        world.env.timeout(0.5).callbacks.append(lambda _: world.add_to_row(0, torch.ones_like(world.params[0])))

    def on_gradient(self, job):
        type(self).seen = {"job": job, "start_params": self.start_params}
        self.world.consume(job)
        type(self).seen["staleness"] = float(self.world.peer_staleness[0])


register_algorithm(_ChangeMidway)


def test_a_gradient_is_computed_on_the_parameters_held_when_it_started():
    data = tiny({"h100_sxm": 2}, **{"algorithm.name": "test_change_midway", "stop.sim_time_s": 2.0})
    setup = build_run(Scenario.from_dict(data))
    World(setup).run()
    seen = _ChangeMidway.seen
    job, task = seen["job"], setup.task
    batch = torch.from_numpy(job.batch)

    def gradient_at(params):
        flat = params.clone().requires_grad_(True)
        out = torch.func.functional_call(task.model, task.unflatten(flat), (task.x_train[batch],))
        return torch.autograd.grad(task.loss(out, task.y_train[batch]), flat)[0]

    torch.testing.assert_close(job.grad, gradient_at(seen["start_params"]), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(job.grad, gradient_at(seen["start_params"] + 1.0))
    assert seen["staleness"] == 1.0  # one update reached the row while the gradient was computed


def test_a_diverging_run_is_reported_not_crashed_and_has_no_nan_rows():
    data = tiny({"h100_sxm": 4}, **{"algorithm.lr": 50.0, "topology.kind": "ring", "stop.sim_time_s": 500.0})
    data["metrics"] = {"eval_interval_s": 2.0}
    result = run(Scenario.from_dict(data), baselines=False)
    facts = result.manifest["runs"]["p2p"]
    assert result.status == "diverged"
    assert 0 < facts["diverged_at_s"] < 500.0
    assert facts["diverged_peers"]
    numeric = result.history.drop(columns="run").drop(columns=["row_staleness", "global_delay", "gradient_age_s", "train_loss"])
    assert np.isfinite(numeric.to_numpy(float)).all()


@pytest.mark.parametrize(
    ("stop", "check"),
    [
        ({"steps": 7}, lambda facts: facts["steps"] == 7),
        ({"samples": 20}, lambda facts: facts["samples"] == 20),
        ({"sim_time_s": 3.5}, lambda facts: facts["sim_time_s"] == 3.5),
    ],
)
def test_each_stopping_rule_stops_exactly_where_it_says(stop, check):
    data = tiny({"h100_sxm": 2}, **{"topology.kind": "complete"})
    data["stop"] = stop
    result = run(Scenario.from_dict(data), baselines=False)
    assert check(result.manifest["runs"]["p2p"])
    assert result.status == "finished"


def test_peers_are_rows_and_the_history_measures_what_design_lists():
    result = run(Scenario.from_dict(tiny({"h100_sxm": 2, "rx_580": 2}, **{"topology.kind": "ring"})), baselines=False)
    columns = set(result.history.columns)
    assert {
        "time_s", "samples", "loss", "peers_loss", "consensus_distance", "consensus_distance_max",
        "bytes_sent", "row_staleness", "global_delay", "computing_fraction", "waiting_fraction", "suboptimality",
    } <= columns
    assert result.history["time_s"].diff().dropna().le(5.0 + 1e-9).all()
    facts = result.manifest["runs"]["p2p"]
    # AD-PSGD mixes by random pairwise averages: its gap is E[W]'s at the observed pair rates, at most 1/4
    # on a 4-ring (uniform rates), and 0 here, where this short run used only 2 of the ring's 4 edges.
    assert facts["spectral_gap_definition"].startswith("1 - lambda_2 of E[W]")
    assert 0 <= facts["spectral_gap"] <= 0.25 + 1e-12
    # Bytes follow the declared payload: every message is one 4e6-byte model.
    sent = result.history["bytes_sent"].iloc[-1]
    assert sent == pytest.approx(4e6 * result.manifest["runs"]["p2p"]["messages"])


def test_per_peer_utilisation_per_interval_adds_up_to_each_peers_total(tmp_path):
    data = tiny({"h100_sxm": 2, "rx_580": 2}, **{"topology.kind": "ring", "peers.jitter": 0.3})
    result = run(Scenario.from_dict(data), baselines=False)
    table = result.utilisation
    times = np.sort(table["time_s"].unique())
    assert len(table) == len(times) * 4
    widths = dict(zip(times, np.diff(times, prepend=0.0)))
    busy = table.assign(busy_s=table["computing_fraction"] * table["time_s"].map(widths)).groupby("peer")["busy_s"].sum()
    end = result.manifest["runs"]["p2p"]["sim_time_s"]
    np.testing.assert_allclose(busy.to_numpy() / end, result.peers["computing_fraction"].to_numpy(), rtol=1e-9)
    assert (table["computing_fraction"].between(0.0, 1.0)).all()
    # The slow RX 580s compute a larger share of the time than the H100s.
    assert result.peers.groupby("device")["computing_fraction"].mean()["rx_580"] > result.peers.groupby("device")[
        "computing_fraction"
    ].mean()["h100_sxm"]
    loaded = type(result).load(result.save(tmp_path / "r"))
    assert loaded.utilisation.equals(result.utilisation)


def test_a_run_that_would_record_without_end_stops_as_stalled_with_why(monkeypatch):
    """Validation refuses runs estimated to record too many rows; the engine stops any that slips past."""
    import p2psim.engine as engine

    monkeypatch.setattr(engine, "MAX_HISTORY_ROWS", 6)
    data = tiny({"h100_sxm": 2}, **{"stop.sim_time_s": 1000.0, "metrics.eval_interval_s": 1.0})
    outcome = World(build_run(Scenario.from_dict(data))).run()
    assert outcome.info["status"] == "stalled"
    assert "6 history rows" in outcome.info["stop_reason"]
    assert len(outcome.history) == 6
