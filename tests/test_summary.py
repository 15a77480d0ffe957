"""The summary: figures per sample first, time to target flagged when it stands on a declared workload, no interpolation across gaps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import p2psim
from p2psim.result import Result

QUICKSTART = Path(__file__).parent.parent / "experiments" / "scenarios" / "quickstart.toml"


def _rows(run, times, samples, accuracy, sent):
    return pd.DataFrame({
        "run": run, "time_s": times, "samples": samples, "loss": [1.0 - a for a in accuracy], "accuracy": accuracy,
        "peers_loss": 0.5, "peers_accuracy": 0.5, "bytes_sent": sent, "consensus_distance": [0.0, 0.25, 0.5][: len(times)],
        "consensus_distance_max": 1.0,
    })


def hand_made(status="finished", p2p_times=(0.0, 300.0, 600.0), peers_sent=(1e9, 1e9)) -> Result:
    """A p2p run recording at 0, 300 and 600 s, and a one-H100 baseline recording at 0, 1 and 2 s, both to 2000 samples."""
    scenario = p2psim.load_scenario(QUICKSTART)  # target 0.9, timings from a declared workload
    n = len(p2p_times)
    history = pd.concat([
        _rows("p2p", list(p2p_times), [0, 1000, 2000][:n], [0.1, 0.5, 0.95][:n], [0.0, 1e9, 2e9][:n]),
        _rows("1x H100", [0.0, 1.0, 2.0], [0, 1000, 2000], [0.1, 0.92, 0.96], [0.0, 0.0, 0.0]),
    ], ignore_index=True)
    runs = {"p2p": {"status": status, "sim_time_s": 600.0, "samples": 2000},
            "1x H100": {"status": "finished", "sim_time_s": 2.0, "samples": 2000}}
    if status == "diverged":
        runs["p2p"].update(diverged_at_s=600.0, diverged_peers=[0])
    peers = pd.DataFrame({"peer": range(len(peers_sent)), "bytes_sent": list(peers_sent)})
    manifest = {"runs": runs, "timing_source": "from the declared workload 'W'; numerics from task 'T'"}
    return Result(scenario=scenario, history=history, peers=peers, manifest=manifest)


def test_per_sample_figures_and_the_ratio_at_equal_samples():
    summary = hand_made().summary()["runs"]
    assert summary["p2p"]["time_per_sample_s"] == 0.3
    assert summary["p2p"]["bytes_per_sample"] == 1e6
    assert summary["1x H100"]["time_per_sample_s"] == 0.001
    assert summary["1x H100"]["time_ratio_at_equal_samples"] == pytest.approx(300.0)
    assert summary["1x H100"]["gap_at_equal_samples"] == pytest.approx(0.95 - 0.96)


def test_each_run_at_the_others_time_to_target_is_a_recorded_row_not_an_interpolation():
    baseline = hand_made().summary()["runs"]["1x H100"]
    assert baseline["time_to_target_s"] == 1.0
    assert baseline["time_to_target_ratio"] == 600.0
    # at 1 s the p2p run has only its record at t = 0 (interpolating towards 300 s would invent 0.101)
    assert baseline["p2p_at_their_target"] == {"at_s": 1.0, "accuracy": 0.1, "recorded_at_s": 0.0, "ended": False}
    # at 600 s the baseline had ended at 2 s: its final record
    assert baseline["theirs_at_p2p_target"] == {"at_s": 600.0, "accuracy": 0.96, "recorded_at_s": 2.0, "ended": True}
    assert "gap_at_equal_time" not in baseline


def test_time_to_target_is_flagged_as_resting_on_the_workload_and_per_sample_figures_lead():
    text = hand_made().format_summary()
    lines = text.splitlines()
    assert "t(acc>=0.9)*=10 min" in text and "t(acc>=0.9)*=1 s" in text
    assert "p2p needs 600x its time*" in text
    assert "at 1 s p2p had acc=0.100 (record t=0 s)" in text
    assert "at 10 min this run had acc=0.960 (ended; final record t=2 s)" in text
    assert lines[-1].startswith("* every figure to acc>=0.9") and "task digits_mlp's" in lines[-1]
    p2p = lines[1]
    assert p2p.index("0.3 s/sample") < p2p.index("1 MB/sample") < p2p.index("acc=0.950")
    assert "300x the time per sample" in text


def test_without_a_declared_workload_nothing_is_flagged():
    result = hand_made()
    result.scenario = result.scenario.with_overrides({"workload": None})
    text = result.format_summary()
    assert "*" not in text and "t(acc>=0.9)=10 min" in text


def test_a_diverged_run_shows_what_it_sent_to_its_end_and_labels_the_recorded_figures():
    result = hand_made(status="diverged", p2p_times=(0.0,), peers_sent=(3e8, 2e8))
    entry = result.summary()["runs"]["p2p"]
    assert entry["bytes_sent"] == 5e8  # peers.csv counts to the end; the only record (t = 0) says 0
    line = result.format_summary().splitlines()[1]
    assert "sent=0.5 GB" in line
    assert line.index("last record at t=0 s:") < line.index("loss=") < line.index("consensus=0")


def test_a_run_without_baselines_writes_a_scenario_without_them(tmp_path):
    path = Path(__file__).parent.parent / "experiments" / "scenarios" / "least_squares_ring.toml"
    scenario = p2psim.load_scenario(path, {"stop": {"sim_time_s": 1.0}})
    assert scenario.baselines
    p2psim.run(scenario, baselines=False, out=tmp_path / "run")
    loaded = Result.load(tmp_path / "run")
    assert loaded.scenario.baselines == () and loaded.runs == ["p2p"]
