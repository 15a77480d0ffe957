"""Results a reviewer can trust: atomic folders, refused mixtures, package versions, runs reproduced."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import p2psim
from p2psim.cli import main
from p2psim.provenance import dependency_versions
from p2psim.reproduce import compare_histories, reproduce
from p2psim.result import Result

LINK = {"name": "test_link", "up_mbps": 8.0, "down_mbps": 8.0, "latency_ms": 25.0}


def tiny(**overrides) -> p2psim.Scenario:
    """Three least-squares peers for 12 simulated seconds, and one single-device baseline."""
    scenario = p2psim.Scenario.from_dict(
        {
            "name": "tiny",
            "seed": 5,
            "task": {"name": "least_squares", "n_samples": 300, "n_features": 4},
            "data": {"batch_size": 4},
            "workload": {"name": "round numbers", "flops_per_sample": 8.375e12, "params": 1e6},
            "peers": {"devices": {"h100_sxm": 2, "rx_580": 1}, "links": {"test_link": 3}, "step_overhead_s": 0.0},
            "network": {"links": [LINK]},
            "topology": {"kind": "complete"},
            "algorithm": {"name": "adpsgd", "lr": 0.05},
            "stop": {"sim_time_s": 12.0},
            "metrics": {"eval_interval_s": 3.0},
            "baselines": [{"name": "one", "device": "h100_sxm"}],
        }
    )
    return scenario.with_overrides(overrides) if overrides else scenario


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Result, object]:
    folder = tmp_path_factory.mktemp("stored") / "result"
    return p2psim.run(tiny(), out=folder), folder


def test_a_saved_result_loads_back_exactly_and_lists_every_file_in_its_manifest(stored):
    result, folder = stored
    loaded = Result.load(folder)
    pd.testing.assert_frame_equal(loaded.history, result.history)
    assert loaded.scenario.hash() == result.manifest["scenario_hash"] == tiny().hash()
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert sorted(files) == ["history.csv", "peers.csv", "scenario.toml", "summary.txt", "utilisation.csv"]
    assert not [p for p in folder.parent.iterdir() if p != folder]  # no partial folder left beside it


def test_the_manifest_lists_the_whole_dependency_closure(stored):
    packages = stored[0].manifest["packages"]
    for direct in ("torch", "numpy", "simpy", "networkx", "pandas", "matplotlib", "scikit-learn", "tqdm", "tomli-w"):
        assert packages[direct] == metadata.version(direct)
    for transitive in ("pyparsing", "scipy", "threadpoolctl"):  # matplotlib's and scikit-learn's own
        assert packages[transitive] == metadata.version(transitive)
    assert "pytest" not in packages  # an extra, not a dependency
    assert packages == dependency_versions()


def test_a_folder_with_files_from_another_result_is_refused(stored, tmp_path):
    _, folder = stored
    other = p2psim.run(tiny(seed=6), baselines=False, out=tmp_path / "other")
    mixed = shutil.copytree(folder, tmp_path / "mixed")
    shutil.copy(tmp_path / "other" / "history.csv", mixed / "history.csv")
    with pytest.raises(ValueError, match="history.csv is not the file its manifest.json was written with"):
        Result.load(mixed)
    # without checksums (a hand-edited manifest), the scenario's hash still catches a swapped scenario
    swapped = shutil.copytree(folder, tmp_path / "swapped")
    shutil.copy(tmp_path / "other" / "scenario.toml", swapped / "scenario.toml")
    manifest = json.loads((swapped / "manifest.json").read_text())
    del manifest["files"]
    (swapped / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"scenario.toml has hash {other.manifest['scenario_hash']} but manifest.json says"):
        Result.load(swapped)


def test_writing_over_another_scenarios_result_needs_force(stored, tmp_path):
    result, folder = stored
    target = shutil.copytree(folder, tmp_path / "target")
    other = p2psim.run(tiny(seed=6), baselines=False)
    with pytest.raises(FileExistsError, match="holds the result of another scenario .* pass force=True"):
        other.save(target)
    assert Result.load(target).scenario.hash() == result.scenario.hash()  # untouched
    result.save(target)  # the same scenario's result is replaced without asking
    other.save(target, force=True)
    assert Result.load(target).scenario.seed == 6 and not [p for p in tmp_path.iterdir() if "." in p.name]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a p2psim result folder"):
        other.save(tmp_path / "notes", force=True)  # force never replaces what is not a result
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_a_save_that_dies_half_way_leaves_the_old_result(stored, tmp_path, monkeypatch):
    result, folder = stored
    target = shutil.copytree(folder, tmp_path / "target")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill between two files

    monkeypatch.setattr(pd.DataFrame, "to_csv", dies)
    with pytest.raises(KeyboardInterrupt):
        result.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["target"]


def test_a_folder_left_by_a_kill_is_marked_incomplete_and_does_not_load(stored, tmp_path, monkeypatch):
    result, _ = stored
    import p2psim.result as module

    monkeypatch.setattr(module.shutil, "rmtree", lambda *a, **k: None)  # as if killed before cleaning up
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        result.save(tmp_path / "r")
    (left,) = tmp_path.iterdir()
    assert left.name.startswith("r.incomplete-") and not (tmp_path / "r").exists()
    with pytest.raises(FileNotFoundError, match="not a p2psim result folder"):
        Result.load(left)


def test_a_stored_result_reproduces_bit_for_bit(stored):
    result, folder = stored
    outcome = reproduce(folder)
    assert outcome.identical and outcome.within_tolerance and outcome.largest_abs_difference == 0.0
    assert outcome.rows == len(result.history) and set(result.history["run"]) == {"p2p", "one"}
    assert outcome.environment == {}
    assert "bit for bit: yes" in outcome.format()


def test_the_first_differing_tick_is_named_with_the_tolerance_verdict(stored):
    result, _ = stored
    new = result.history.copy()
    p2p = new.index[new["run"] == "p2p"]
    new.loc[p2p[2], "loss"] *= 1 + 1e-12  # within tolerance
    new.loc[p2p[3], "consensus_distance"] += 0.5  # beyond it
    outcome = compare_histories(result.history, new, rtol=1e-6, atol=1e-9)
    assert not outcome.identical and not outcome.within_tolerance
    first, beyond = outcome.first_difference, outcome.first_beyond_tolerance
    assert (first.run, first.tick, first.columns) == ("p2p", 2, ("loss",))
    assert first.time_s == result.history.loc[p2p[2], "time_s"] == 6.0  # ticks every 3 s from 0
    assert first.stored == (result.history.loc[p2p[2], "loss"],) and first.new == (new.loc[p2p[2], "loss"],)
    assert (beyond.tick, beyond.columns) == (3, ("consensus_distance",))
    assert outcome.largest_abs_difference == pytest.approx(0.5)
    text = outcome.format()
    assert "first differing tick: run 'p2p', tick 2 (time_s = 6): loss" in text
    assert "within rtol=1e-06, atol=1e-09: no; first tick beyond it: run 'p2p', tick 3 (time_s = 9)" in text


def test_a_missing_tick_or_column_is_a_difference(stored):
    result, _ = stored
    shorter = result.history.iloc[:-1]
    outcome = compare_histories(result.history, shorter)
    assert outcome.first_difference.run == "one" and outcome.first_difference.new[0] is None
    renamed = result.history.rename(columns={"loss": "LOSS"})
    first = compare_histories(result.history, renamed).first_difference
    assert (first.tick, first.columns) == (0, ("loss", "LOSS"))
    nan_equal = result.history.copy()
    assert compare_histories(result.history, nan_equal).identical
    assert np.isnan(result.history["row_staleness"]).any()  # NaN cells compare equal to NaN


def test_the_cli_reproduces_a_folder_and_refuses_to_overwrite_another_result_without_force(stored, tmp_path, capsys):
    _, folder = stored
    assert main(["reproduce", str(folder)]) == 0
    assert "bit for bit: yes" in capsys.readouterr().out
    path = tiny().save(tmp_path / "tiny.toml")
    out = str(tmp_path / "out")
    assert main(["run", str(path), "--out", out, "--no-baselines", "--quiet"]) == 0
    assert main(["run", str(path), "--out", out, "--no-baselines", "--quiet", "--set", "seed=6"]) == 2
    assert "holds the result of another scenario" in capsys.readouterr().err
    assert main(["run", str(path), "--out", out, "--no-baselines", "--quiet", "--set", "seed=6", "--force"]) == 0
    assert Result.load(out).scenario.seed == 6


def test_the_constraints_file_pins_every_package_a_run_imports():
    path = Path(__file__).resolve().parents[1] / "constraints.txt"
    pinned = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name] = version
    missing = set(dependency_versions()) - set(pinned) - {"p2psim"}
    assert not missing, f"constraints.txt lacks {sorted(missing)}: pin the versions results are made with"
    assert pinned["torch"] == "2.13.0"  # the README's commands name this release
