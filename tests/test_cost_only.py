"""Cost-only mode (engine.numerics = "none"): the eager run's events without its numerics, and the workload catalogue."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2psim import Scenario, ScenarioError, run
from p2psim.algorithms.base import IMPLEMENTATIONS
from p2psim.scenario import WorkloadSpec
from p2psim.testing import round_number_scenario, simulate
from p2psim.workloads import load_workloads

LIBRARY = sorted(name for name, cls in IMPLEMENTATIONS.items() if cls.__module__.startswith("p2psim.algorithms."))
MODEL_COLUMNS = {"loss", "accuracy", "peers_loss", "peers_accuracy", "train_loss", "consensus_distance",
                 "consensus_distance_max", "suboptimality"}
EVENT_FACTS = ("status", "stop_reason", "sim_time_s", "samples", "steps", "gradients_computed", "messages")


def world_dict(algorithm: str, numerics: str, **overrides) -> dict:
    """Four peers of two speeds on the round-number link; durations as in p2psim.testing."""
    return round_number_scenario(
        {"h100_sxm": 2, "rx_580": 2},
        {"name": "costonly", "algorithm.name": algorithm, "engine.numerics": numerics, "stop.sim_time_s": 20.0},
        overrides,
    )


@pytest.mark.parametrize("algorithm", LIBRARY)
def test_cost_only_replays_the_eager_runs_events_exactly(algorithm):
    eager = run(Scenario.from_dict(world_dict(algorithm, "eager")), baselines=False)
    cost = run(Scenario.from_dict(world_dict(algorithm, "none")), baselines=False)
    facts_eager, facts_cost = eager.manifest["runs"]["p2p"], cost.manifest["runs"]["p2p"]
    assert {k: facts_eager.get(k) for k in EVENT_FACTS} == {k: facts_cost.get(k) for k in EVENT_FACTS}
    assert facts_cost["gradients_computed"] > 0
    shared = [c for c in cost.history.columns]
    assert not MODEL_COLUMNS & set(cost.history.columns)
    assert set(shared) <= set(eager.history.columns)
    pd_eq = eager.history[shared].equals(cost.history[shared])  # same record times, steps, bytes, utilisation, energy
    assert pd_eq, (eager.history[shared], cost.history[shared])
    per_peer = ["steps", "bytes_sent", "bytes_received", "computing_fraction"]
    assert eager.peers[per_peer].equals(cost.peers[per_peer])
    assert "loss" not in cost.peers and "accuracy" not in cost.peers


def test_cost_only_runs_with_no_data_and_is_named_in_every_output(tmp_path):
    data = world_dict("adpsgd", "none")
    data["task"]["n_samples"] = 10  # fewer samples than peers x batch: no data is held, so no complaint
    result = run(Scenario.from_dict(data), baselines=False, out=tmp_path / "run")
    text = result.format_summary()
    assert text.startswith("cost-only run")
    assert "loss=" not in text and "computing=" in text
    assert "no numerics (cost-only)" in result.manifest["timing_source"]
    assert result.summary()["numerics"] == "none" and result.summary()["metric"] is None
    assert "loss" not in (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")


def test_diloco_round_takes_the_hand_computed_time_and_utilisation():
    # Server (peer 0) and one worker, both H100s: a step is 1 s, a model 4e6 B is 4 s + 0.05 s on the link.
    # A round: the model goes out (4.05 s), H = 3 local steps (3 s), the delta comes back (4.05 s): 11.1 s.
    data = round_number_scenario(
        {"h100_sxm": 2},
        {"algorithm": {"name": "diloco", "lr": 0.05, "local_steps": 3}, "engine.numerics": "none",
         "stop.sim_time_s": 50.0},
    )
    world = simulate(data)
    rounds = world.algorithm.rounds
    assert [r.started_at for r in rounds[:4]] == pytest.approx([0.0, 11.1, 22.2, 33.3], abs=1e-9)
    assert [r.ended_at for r in rounds[:4]] == pytest.approx([11.1, 22.2, 33.3, 44.4], abs=1e-9)
    # The worker computed 3 s in each of 4 rounds, then from 44.4 + 4.05 to the stop at 50 s (one step done).
    worker = world._peer_rows()[1]
    assert worker["computing_fraction"] == pytest.approx((4 * 3.0 + (50.0 - 48.45)) / 50.0, abs=1e-12)
    assert world.peer_steps.tolist() == [0, 13]


def test_stop_by_tokens_counts_samples_of_the_workloads_sequence_length():
    data = world_dict("adpsgd", "none", **{"stop": {"tokens": 10 * 1000 + 1}})
    data["workload"]["tokens_per_sample"] = 1000
    result = run(Scenario.from_dict(data), baselines=False)
    facts = result.manifest["runs"]["p2p"]
    assert facts["stop_reason"] == "tokens"
    assert facts["samples"] >= 11 and facts["samples"] - 11 < 4  # stops at the first step that reaches 11 samples
    assert (result.history["tokens"] == result.history["samples"] * 1000).all()


def test_stop_by_tokens_needs_a_sequence_length():
    data = world_dict("adpsgd", "none", **{"stop": {"tokens": 100}})
    with pytest.raises(ScenarioError, match="stop.tokens"):
        Scenario.from_dict(data)


def test_a_target_accuracy_has_no_meaning_without_numerics():
    data = world_dict("adpsgd", "none", **{"metrics.target_accuracy": 0.5})
    with pytest.raises(ScenarioError, match="metrics.target_accuracy"):
        Scenario.from_dict(data)


def test_catalogue_language_model_costs_follow_the_cited_formulas():
    spec = WorkloadSpec(name="llama2_7b")
    n, layers, d, vocab, tokens = 6.74e9, 32, 4096, 32000, 4096
    per_token = 6 * (n - vocab * d) + 12 * layers * d * tokens  # PaLM Appendix B, input embedding excluded
    assert spec.flops_per_sample == pytest.approx(tokens * per_token, rel=1e-12)
    assert spec.params == n and spec.tokens_per_sample == tokens
    assert spec.activation_bytes_per_sample == 34 * tokens * d * layers  # Korthikanti et al. 2022
    shorter = WorkloadSpec(name="llama2_7b", tokens_per_sample=1024)
    assert shorter.flops_per_sample == pytest.approx(1024 * (6 * (n - vocab * d) + 12 * layers * d * 1024), rel=1e-12)
    assert WorkloadSpec(name="resnet50").flops_per_sample == 2.454e10
    assert WorkloadSpec(name="resnet50").tokens_per_sample is None


def test_catalogue_holds_the_sizes_the_issue_asks_for_each_with_sources():
    workloads = load_workloads()
    sizes = sorted(w.params for w in workloads.values() if w.kind == "llm")
    assert [round(p / 1e9) for p in sizes] == [1, 7, 10, 69]
    assert all(w.sources for w in workloads.values())


def test_an_uncatalogued_workload_needs_its_flops_and_params():
    with pytest.raises(ScenarioError, match="flops_per_sample: is required unless name is a catalogue workload"):
        WorkloadSpec(name="my model", params=1e6)


def test_a_7b_model_does_not_fit_an_rx_580_and_the_check_says_so():
    data = world_dict("diloco", "none", workload={"name": "llama2_7b"}, **{"data.batch_size": 1})
    with pytest.raises(ScenarioError, match="rx_580"):
        Scenario.from_dict(data)


@pytest.mark.slow
def test_ten_thousand_peers_run_cost_only():
    data = round_number_scenario(
        {"rx_580": 10_000},
        {"name": "tenk", "engine.numerics": "none", "topology": {"kind": "random_regular", "degree": 4},
         "algorithm": {"name": "gossip", "lr": 0.05}, "stop": {"steps": 50_000}, "metrics.eval_interval_s": 60.0},
    )
    result = run(Scenario.from_dict(data), baselines=False)
    facts = result.manifest["runs"]["p2p"]
    assert facts["status"] == "finished" and facts["steps"] >= 50_000 and facts["messages"] > 0
    assert not MODEL_COLUMNS & set(result.history.columns)
    assert np.isfinite(result.history["computing_fraction"]).all()
    assert not math.isnan(result.summary()["runs"]["p2p"]["computing_fraction"])


def test_a_cost_only_figure_shows_utilisation_and_bytes_not_loss():
    from p2psim.plots import figure_for

    result = run(Scenario.from_dict(world_dict("adpsgd", "none")), baselines=False)
    figure = figure_for(result)
    left, right = figure.axes
    assert left.get_ylabel().startswith("computing fraction") and right.get_ylabel() == "bytes sent [GB]"
    assert "(cost-only)" in figure._suptitle.get_text()
