"""experiments/network_model.py: its table from a hand-made history, and the whole script at smoke size (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "network_model.py"


def load_script():
    spec = importlib.util.spec_from_file_location("network_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_model_changes_the_network_only():
    experiment = load_script()
    scenarios = {model: experiment.scenario_for(model, 0, smoke=True) for model in experiment.MODELS}
    plain = scenarios["max_min"].to_dict()
    for model, scenario in scenarios.items():
        data = scenario.to_dict()
        assert {key for key in data if data[key] != plain.get(key)} <= {"network", "name"}
    assert scenarios["equal_share"].network.sharing == "equal_share" and scenarios["equal_share"].network.tcp is None
    assert scenarios["max_min_tcp"].network.tcp is not None and scenarios["max_min"].network.tcp is None


def test_the_table_takes_medians_over_seeds_and_the_first_tick_at_target():
    experiment = load_script()
    rows = []
    for seed, (end_s, hit_s) in enumerate([(7200.0, 3600.0), (10800.0, None), (3600.0, 1800.0)]):
        rows.append({"model": "m", "seed": seed, "time_s": 0.0, "accuracy": 0.1, "bytes_sent": 0.0, "messages": 9})
        if hit_s is not None:
            rows.append({"model": "m", "seed": seed, "time_s": hit_s, "accuracy": 0.95, "bytes_sent": 1e9, "messages": 9})
        final = 0.92 if hit_s is not None else 0.85
        rows.append({"model": "m", "seed": seed, "time_s": end_s, "accuracy": final, "bytes_sent": 2e9 * (seed + 1),
                     "messages": 10 * (seed + 1)})
    (row,) = experiment.summary_table(pd.DataFrame(rows), 0.9).to_dict("records")
    assert (row["seeds"], row["reached"]) == (3, 2)
    assert (row["end_h_median"], row["end_h_min"], row["end_h_max"]) == (2.0, 1.0, 3.0)
    assert row["to_target_h_median"] == 0.75  # of 1 h and 0.5 h; the seed that never reached it is not counted
    assert (row["GB_median"], row["messages_median"]) == (4.0, 20.0)
    assert "| m | 2/3 | 2 [1, 3] | 0.75 [0.5, 1] |" in experiment.markdown(pd.DataFrame([row]), 0.9, "cmd")
    assert row["final_accuracy_median"] == 0.92 and row["final_accuracy_min"] == 0.85


@pytest.mark.slow
def test_the_experiment_runs_at_smoke_size(tmp_path):
    experiment = load_script()
    out = experiment.main(["--smoke", "--out", str(tmp_path)])
    table = pd.read_csv(out / "table.csv")
    assert list(table["model"]) == list(experiment.MODELS)
    assert (out / "figure.pdf").exists() and (out / "table.md").read_text().startswith("Regenerate:")
    history = pd.read_csv(out / "history.csv")
    assert set(history["model"]) == set(experiment.MODELS) and (history["status"] == "finished").all()
