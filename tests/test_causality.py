"""A message carries what was sent, as it was when it left (DESIGN decision 4), and staleness is measured."""

from __future__ import annotations

import pytest
import torch

from p2psim import Scenario, run
from p2psim.algorithms import Algorithm, AlgorithmConfig, register_algorithm
from p2psim.build import build_run
from p2psim.engine import World
from p2psim.testing import round_number_scenario, simulate


def tiny(peers: dict, **overrides) -> dict:
    """Least squares with round-number timings: an H100 step is 1 s; a 1e6-param model is 4 s on the wire."""
    return round_number_scenario(peers, {"name": "causality"}, overrides)


@register_algorithm
class _SendThenChange(Algorithm):
    """Peer 0 sends its row at t = 0, then changes it; peer 1 notes what arrives and when."""

    name = "test_send_then_change"
    config_class = type("SendThenChangeConfig", (AlgorithmConfig,), {})
    seen: dict = {}

    def start(self):
        world = self.world
        type(self).seen = {"sent": world.params[0].clone()}
        world.send(0, 1, world.model_bytes, "model", row=world.params[0])
        world.add_to_row(0, torch.ones_like(world.params[0]))
        world.compute(1)

    def on_message(self, message):
        type(self).seen.update(row=message.row.clone(), at=self.world.now, live=self.world.params[0].clone())

    def on_gradient(self, job):
        self.world.consume(job)


def test_the_receiver_gets_the_row_as_it_was_sent_after_the_network_delay():
    simulate(tiny({"h100_sxm": 2}, **{"algorithm.name": "test_send_then_change"}))
    seen = _SendThenChange.seen
    torch.testing.assert_close(seen["row"], seen["sent"], rtol=0, atol=0)
    assert not torch.equal(seen["row"], seen["live"])  # the sender's row had changed meanwhile
    assert seen["at"] == pytest.approx(0.05 + 4e6 / 1e6)  # latency + bytes / bandwidth


def test_causal_adpsgd_merges_the_sent_models_and_pools_payloads_in_bounded_rows():
    setup = build_run(Scenario.from_dict(tiny({"h100_sxm": 4, "rx_580": 4}, **{"topology.kind": "ring"})))
    world = World(setup)
    outcome = world.run()
    # At most one push and one reply in flight per peer: the pool never needs more than 2n rows.
    assert 1 <= outcome.info["payload_rows_peak"] <= 2 * setup.n_peers
    assert world.pool.capacity <= 2 * max(16, outcome.info["payload_rows_peak"])


def test_causal_and_idealised_adpsgd_give_different_models_on_slow_links():
    """The idealised variant merges live rows; on 4-second transfers the causal one cannot see updates in flight."""
    world = {"topology.kind": "ring", "stop.sim_time_s": 60.0}
    causal = run(Scenario.from_dict(tiny({"h100_sxm": 4}, **world)), baselines=False)
    ideal = run(Scenario.from_dict(tiny({"h100_sxm": 4}, **world, **{"algorithm.name": "adpsgd_idealised"})), baselines=False)
    assert causal.history["samples"].tolist() == ideal.history["samples"].tolist()  # same timing
    assert causal.history["loss"].iloc[-1] != ideal.history["loss"].iloc[-1]


@register_algorithm
class _Independent(Algorithm):
    """Each peer steps on its own, never communicating."""

    name = "test_independent"
    config_class = type("IndependentConfig", (AlgorithmConfig,), {})

    def on_gradient(self, job):
        self.world.apply_gradient(job.peer, self.world.consume(job))
        self.world.compute(job.peer)


def test_global_delay_counts_other_peers_updates_and_row_staleness_only_the_own_row():
    # H100: 1 s a step. RX 580: 33.5e12 / (6.2e12 x 0.5) = 10.8 s; meanwhile the H100 applies 10 gradients.
    data = tiny({"h100_sxm": 1, "rx_580": 1}, **{"algorithm.name": "test_independent", "stop.sim_time_s": 11.0})
    data["metrics"] = {"eval_interval_s": 100.0}
    result = run(Scenario.from_dict(data), baselines=False)
    last = result.history.iloc[-1]
    # 10 H100 gradients with delay 0 (nothing else applied meanwhile) and 1 RX 580 gradient with delay 10.
    assert last["global_delay"] == pytest.approx(10 / 11)
    assert last["row_staleness"] == 0.0


def test_a_synchronous_round_has_no_global_delay():
    data = tiny({"h100_sxm": 4}, **{"algorithm.name": "allreduce", "stop.sim_time_s": 40.0})
    history = run(Scenario.from_dict(data), baselines=False).history
    assert history["global_delay"].dropna().eq(0.0).all() and history["global_delay"].notna().any()


def test_divergence_after_the_last_regular_record_is_reported_as_diverged_with_a_baseline_on_its_budget():
    data = tiny({"h100_sxm": 2}, **{"algorithm.lr": 40.0, "stop.sim_time_s": 30.0})
    data["metrics"] = {"eval_interval_s": 1000.0}  # the only regular record is at t = 0
    data["baselines"] = [{"name": "one", "device": "h100_sxm", "lr": 0.01}]
    result = run(Scenario.from_dict(data))
    p2p = result.manifest["runs"]["p2p"]
    assert p2p["status"] == "diverged" and p2p["diverged_at_s"] == pytest.approx(30.0)
    assert result.history.query("run == 'p2p'")["time_s"].tolist() == [0.0]  # the non-finite row is not written
    baseline = result.manifest["runs"]["one"]
    assert baseline["status"] == "finished" and baseline["samples"] >= p2p["samples"]
