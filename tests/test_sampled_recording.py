"""`metrics.sample_peers`: the history evaluates a stated, seeded subset of the peers' own models, named as such."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from p2psim import Scenario, ScenarioError, run
from p2psim.build import build_run
from p2psim.engine import World, sampled_peers
from p2psim.metrics import Evaluator, consensus_distance, consensus_distance_streamed


def tiny(sample: int | None = None) -> dict:
    """Eight peers on a ring, logistic regression, a short AD-PSGD run."""
    return {
        "name": "sampled",
        "seed": 4,
        "task": {"name": "logistic", "n_samples": 800, "n_features": 6},
        "data": {"batch_size": 8},
        "peers": {"devices": {"h100_sxm": 4, "rtx_3060": 4}, "links": {"fibre": 8}, "jitter": 0.2},
        "topology": {"kind": "ring"},
        "algorithm": {"name": "adpsgd", "lr": 0.05},
        "stop": {"samples": 640},
        "metrics": {"eval_interval_samples": 160, **({"sample_peers": sample} if sample is not None else {})},
    }


def test_the_sample_is_seeded_sorted_distinct_and_all_peers_when_it_covers_them():
    first = sampled_peers(list(range(100)), 10, seed=7)
    assert first == sampled_peers(list(range(100)), 10, seed=7) and first != sampled_peers(list(range(100)), 10, seed=8)
    assert first == sorted(set(first)) and len(first) == 10
    assert sampled_peers(list(range(5)), 5, seed=0) is None and sampled_peers(list(range(5)), None, seed=0) is None


def test_sampled_columns_are_the_mean_over_exactly_the_sampled_peers_own_models():
    full = run(Scenario.from_dict(tiny()), baselines=False)
    sampled = run(Scenario.from_dict(tiny(3)), baselines=False)
    assert "peers_loss_sampled" in sampled.history and "peers_loss" not in sampled.history
    peers = sampled_peers(list(range(8)), 3, seed=4)
    # recording does not change the run: the final per-peer losses are the same models' losses
    own = full.peers.set_index("peer")["loss"]
    last = sampled.history.iloc[-1]
    assert last["peers_loss_sampled"] == pytest.approx(own.loc[peers].mean(), rel=1e-6)
    assert sampled.peers.set_index("peer")["loss"].drop(index=peers).isna().all()
    for column in ("loss", "consensus_distance", "samples", "time_s", "bytes_sent"):
        np.testing.assert_allclose(sampled.history[column], full.history[column], rtol=1e-5, atol=1e-9, err_msg=column)


def test_streamed_consensus_distance_equals_the_float64_one_and_is_zero_for_equal_rows():
    rows = torch.randn(1000, 37, generator=torch.Generator().manual_seed(0)) + 100.0  # a large common offset
    exact = consensus_distance(rows)
    streamed = consensus_distance_streamed(rows, chunk=64)
    assert streamed == pytest.approx(exact, rel=1e-5)
    assert consensus_distance_streamed(torch.full((300, 5), 0.1), chunk=7) == (0.0, 0.0)


def test_sample_peers_out_of_range_names_the_field():
    with pytest.raises(ScenarioError, match="sample_peers"):
        Scenario.from_dict(tiny(0))
