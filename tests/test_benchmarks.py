"""The benchmark suite (benchmarks/run_all.py): its floor is computed as stated, and --quick runs on the CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SPEC = importlib.util.spec_from_file_location("run_all", Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py")
run_all = importlib.util.module_from_spec(SPEC)
sys.modules["run_all"] = run_all  # its dataclasses look their module up there
SPEC.loader.exec_module(run_all)


def test_the_floor_evaluates_every_gradient_in_calls_of_n_rows():
    assert run_all.floor_calls(10, 4) == [4, 4, 2]
    assert run_all.floor_calls(8, 4) == [4, 4]
    assert run_all.floor_calls(3, 64) == [3]


def test_the_floor_times_exactly_those_calls_on_rows_of_the_tasks_batch():
    """A fake gradient records its calls: one warm-up row, then 7 gradients of 3 rows a call, batch 5, on task data."""
    from p2psim.tasks.least_squares import LeastSquares

    task = LeastSquares(n_samples=50, n_features=4).build(seed=0)
    calls = []

    def fake(params, x, y):
        calls.append((params.shape[0], tuple(x.shape), tuple(y.shape)))
        return params, torch.zeros(params.shape[0])

    seconds = run_all.batched_floor_s(task, gradients=7, rows=3, batch=5, evaluate=fake)
    assert seconds >= 0
    assert calls == [(1, (1, 5, 4), (1, 5))] + [(3, (3, 5, 4), (3, 5))] * 2 + [(1, (1, 5, 4), (1, 5))]


def test_the_warm_run_a_floor_row_times_repeats_the_cold_one_exactly():
    """floor_row times a second run of its scenario: it must be the same work, event for event, as the first."""
    import json

    scenario = run_all.world_scenario(8, "datacenter", "digits", "adpsgd", 1, "cpu", "deferred")
    _, cold, first = run_all._timed_run(scenario)
    _, warm, second = run_all._timed_run(scenario)
    assert json.dumps(first.history) == json.dumps(second.history) and torch.equal(cold.params, warm.params)
    assert run_all._events(cold) == run_all._events(warm) > 8


@pytest.mark.slow
def test_the_quick_suite_runs_on_the_cpu_and_every_table_has_its_rows():
    results = run_all.main(["--quick", "--only", "floor", "fedavg", "events", "scale"])
    assert [row["peers"] for row in results["floor"]] == [16, 48, 16, 48]
    assert all(row["ratio"] > 0 and row["gradients"] > 0 for row in results["floor"])
    assert [row["implementation"].split()[0] for row in results["fedavg"]] == ["p2psim", "torch", "hand-written", "Flower"]
    assert results["fedavg"][-1]["rounds"].startswith("not installed")
    assert results["events"][0]["events"] > results["events"][0]["messages"] > 0
    assert [row["status"] for row in results["scale"]] == ["finished", "finished"]


def test_flowers_script_is_told_the_whole_job_and_defaults_to_run_alls():
    """Every FedAvgJob field goes to fedavg_flower.py, whose own defaults (read from its source) are the job's."""
    import ast
    import dataclasses

    job = run_all.FedAvgJob(clients=7, rounds=3, local_steps=2, batch=4, lr=0.5, hidden=9, seed=11)
    arguments = run_all.flower_arguments(job)
    assert dict(zip(arguments[::2], arguments[1::2])) == {
        "--clients": "7", "--rounds": "3", "--local-steps": "2", "--batch": "4", "--lr": "0.5", "--hidden": "9", "--seed": "11"}
    source = (Path(run_all.__file__).parent / "fedavg_flower.py").read_text()
    defaults = {
        call.args[0].value: next(k.value.value for k in call.keywords if k.arg == "default")
        for call in ast.walk(ast.parse(source))
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument" and call.args[0].value != "--cpus"
    }
    expected = {f"--{f.name.replace('_', '-')}": f.default for f in dataclasses.fields(run_all.FedAvgJob)}
    assert defaults == expected


def test_flowers_row_is_the_json_line_after_its_logs():
    stdout = 'INFO : [ROUND 1/2]\n{"implementation": "Flower simulation (Ray)", "wall_s": 1.5, "accuracy": 0.9}\n'
    assert run_all.flower_row(stdout) == {"implementation": "Flower simulation (Ray)", "wall_s": 1.5, "accuracy": 0.9}


def test_without_flower_its_row_says_not_installed():
    row = run_all.fedavg_flower(run_all.FedAvgJob(), None)
    assert row["implementation"] == run_all.FLOWER and row["rounds"].startswith("not installed")
    assert "wall_s" not in row
