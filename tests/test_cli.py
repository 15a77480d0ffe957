"""The command line: `p2psim run | plot | devices | validate`, in-process, plus one real subprocess.

Bad input must end with exit status 2 and one line on stderr naming the field, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

import p2psim
from p2psim.cli import main
from p2psim.hardware import device_sources, load_devices
from p2psim.plots import figure_for, plot_result

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]

TINY = """\
name = "tiny"
seed = 1

[task]
name = "least_squares"
n_samples = 200
n_features = 5

[peers]
devices = { h100_sxm = 2, rx_580 = 2 }
links = { fibre = 4 }

[topology]
kind = "ring"

[algorithm]
name = "adpsgd"
lr = 0.1

[stop]
samples = 100000

[metrics]
eval_interval_s = 100.0

[[baselines]]
name = "one"
device = "h100_sxm"
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {text!r}"
    assert "Traceback" not in text
    return lines[0]


def test_validate_good_file(tiny, capsys):
    assert main(["validate", str(tiny)]) == 0
    out, err = capsys.readouterr()
    assert "valid" in out and "4 peers" in out and "adpsgd" in out
    assert err == ""


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ("rx_580 = 2", "gtx_9999 = 2", ["peers.devices", "unknown device 'gtx_9999'"]),
        ("lr = 0.1", 'lr = "fast"', ["algorithm.lr", "'fast'"]),
        ("lr = 0.1", "lr = -1", ["algorithm.lr", "positive"]),
        ("lr = 0.1", "lr = 0.1\nmomentum = 0.9", ["algorithm", "unknown key 'momentum'"]),
        ('kind = "ring"', 'kind = "erdos_renyi"\np = 0.0', ["topology", "disconnected", "'adpsgd'"]),
        ("links = { fibre = 4 }", "links = { lab = 4 }\n[[network.links]]\nname = \"lab\"\nup_mbps = -10.0\ndown_mbps = 10.0",
         ["network.links[0].up_mbps", "must be in [0.001, 1e9]", "-10"]),
        ("[stop]\nsamples = 100000", "", ["stop", "is required"]),
        ('name = "least_squares"', 'name = "least_squares', ["not valid TOML"]),
    ],
    ids=["unknown-device", "lr-string", "lr-negative", "unknown-key", "disconnected", "negative-bandwidth",
         "missing-stop", "bad-toml"],
)
def test_validate_bad_file_exits_2_with_one_line(tmp_path, capsys, old, new, fragments):
    assert old in TINY
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace(old, new))
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    line = _one_line(err)
    assert line.startswith("p2psim: invalid scenario: ")
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert "valid (" not in out


def test_validate_missing_file_and_directory(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in _one_line(capsys.readouterr().err)
    assert main(["validate", str(tmp_path)]) == 2
    assert "cannot read" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "setting, fragments",
    [
        ("algorithm.lrr=0.1", ["algorithm", "unknown key 'lrr'"]),
        ("nosuch=1", ["unknown key 'nosuch'"]),
        ("stop.samples=many", ["stop.samples", "integer", "'many'"]),
        ("baselines.3.count=2", ["baselines.3", "no such list item"]),
        ("algorithm.lr.x.y=1", ["algorithm.lr.x.y", "cannot set a key inside a value"]),
        ("algorithm.lr", ["--set", "key=value"]),
    ],
)
def test_set_with_bad_key_exits_2_naming_it(tiny, tmp_path, capsys, setting, fragments):
    for command in (["validate", str(tiny)], ["run", str(tiny), "--quiet", "--out", str(tmp_path / "never")]):
        assert main([*command, "--set", setting]) == 2
        line = _one_line(capsys.readouterr().err)
        for fragment in fragments:
            assert fragment in line, f"{fragment!r} not in {line!r}"
    assert not (tmp_path / "never").exists()  # nothing is written for a scenario that cannot run


def test_set_overrides_are_applied_in_validate(tiny, capsys):
    assert main(["validate", str(tiny), "--set", "peers.devices={ t4 = 6 }", "--set", "peers.links.fibre=6"]) == 0
    assert "6 peers" in capsys.readouterr().out


def test_run_writes_result_folder_and_plot(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written next to the tests
    out = tmp_path / "result"
    status = main(
        ["run", str(tiny), "--quiet", "--out", str(out),
         "--set", "stop.samples=256", "--set", "metrics.eval_interval_s=0.01", "--set", "algorithm.lr=0.05"]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "p2p: finished" in printed and "one: finished" in printed
    assert str(out) in printed
    for name in ("scenario.toml", "manifest.json", "history.csv", "peers.csv", "utilisation.csv", "figure.png"):
        assert (out / name).is_file(), name
    assert (out / "figure.png").read_bytes()[:8] == PNG_SIGNATURE
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("timings: from task 'least_squares' itself") and "p2p: finished" in summary

    loaded = p2psim.Result.load(out)
    # the overrides are in the stored, resolved scenario; nothing else moved
    assert loaded.scenario.stop.samples == 256
    assert loaded.scenario.metrics.eval_interval_s == 0.01
    assert loaded.scenario.algorithm.lr == 0.05
    assert loaded.scenario == p2psim.load_scenario(tiny).with_overrides(
        {"stop.samples": 256, "metrics.eval_interval_s": 0.01, "algorithm.lr": 0.05}
    )

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == loaded.manifest
    assert manifest["runs"]["p2p"]["status"] == "finished"
    assert manifest["runs"]["one"]["status"] == "finished"
    assert manifest["runs"]["p2p"]["samples"] >= 256
    assert manifest["scenario_hash"] == loaded.scenario.hash()
    assert manifest["seed"] == 1
    for key in ("git_commit", "git_dirty"):
        assert key in manifest
    assert manifest["git_commit"] is None or len(manifest["git_commit"]) == 40
    assert manifest["git_dirty"] in (True, False, None)

    # the same scenario run again in-process gives the history stored on disk
    again = p2psim.run(loaded.scenario)
    pd.testing.assert_frame_equal(again.history, loaded.history, check_exact=True)
    assert set(loaded.history["run"]) == {"p2p", "one"}
    assert list(loaded.peers["device"].value_counts().sort_index()) == [2, 2]

    # `plot` redraws it
    png = tmp_path / "loss.png"
    assert main(["plot", str(out), "--metric", "loss", "--output", str(png)]) == 0
    assert capsys.readouterr().out.strip() == str(png)
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert png.stat().st_size > 1000
    assert not (tmp_path / "results").exists()


def test_plot_of_non_result_folder_exits_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "manifest.json" in _one_line(capsys.readouterr().err)


def test_devices_table_then_its_sources(capsys):
    assert main(["devices"]) == 0
    table, references = capsys.readouterr().out.rstrip("\n").split("\n\n")
    lines = table.splitlines()
    assert lines[0].split()[0] == "name"
    first_column = [line.split()[0] for line in lines[1:]]
    assert "h100_sxm" in first_column and "rx_580" in first_column
    assert first_column == list(load_devices())  # every catalogue device, one row each
    used = {source for device in load_devices().values() for source in device.sources}
    sources = device_sources()
    assert references.splitlines() == [f"{key}: {text}" for key, text in sources.items() if key in used]
    assert f"D1: {sources['D1']}" in references.splitlines()  # the H100's datasheet, cited as D1 in the table


def _one_peer_result(tmp_path) -> Path:
    """A finished least-squares (regression) run of a single peer: no accuracy, consensus distance all zero."""
    out = tmp_path / "one-peer"
    scenario = {
        "name": "one-peer",
        "task": {"name": "least_squares", "n_samples": 200, "n_features": 5},
        "peers": {"devices": {"h100_sxm": 1}, "links": {"fibre": 1}},
        "topology": {"kind": "complete"},
        "algorithm": {"name": "adpsgd", "lr": 0.1},
        "stop": {"samples": 256},
        "metrics": {"eval_interval_s": 0.01},
    }
    p2psim.run(scenario, out=out)
    return out


def test_plot_of_absent_metric_exits_2_with_one_line(tmp_path, capsys):
    out = _one_peer_result(tmp_path)
    assert main(["plot", str(out), "--metric", "accuracy"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "'accuracy' was not recorded" in line and "loss" in line


def test_plot_with_zero_consensus_distance_uses_linear_axis_without_warning(tmp_path):
    result = p2psim.Result.load(_one_peer_result(tmp_path))
    assert (result.history["consensus_distance_max"] == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a log axis has no positive value
        figure = figure_for(result)
        plot_result(result, tmp_path / "figure.png")
    assert figure.axes[1].get_yscale() == "linear"
    assert figure.axes[0].get_ylabel() == "loss (held-out set)"
    plt.close(figure)


def test_os_errors_exit_2_with_one_line(tiny, tmp_path, capsys, monkeypatch):
    import p2psim.runner

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "data.csv")

    monkeypatch.setattr(p2psim.runner, "_simulate", unreadable)
    assert main(["run", str(tiny), "--quiet", "--out", str(tmp_path / "never")]) == 2
    assert "Permission denied" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "error",
    [
        p2psim.SimulationError("peer 3 at t=1.5 s: adpsgd.on_message failed: KeyError: 7"),
        ValueError("first line\nsecond line"),
        MemoryError(),
    ],
    ids=["simulation-error", "value-error", "memory-error"],
)
def test_a_bug_exits_1_asking_to_report_it_with_the_traceback_in_a_file(tiny, tmp_path, capsys, monkeypatch, error):
    """A crash of the simulation is p2psim's bug, not bad input: exit 1, one line, the traceback saved."""
    import p2psim.runner

    def crash(*args, **kwargs):
        raise error

    monkeypatch.setattr(p2psim.runner, "_simulate", crash)
    assert main(["run", str(tiny), "--quiet", "--out", str(tmp_path / "never")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"p2psim: internal error, a bug in p2psim: {type(error).__name__}: ")
    assert "Please report it" in line and "Traceback" not in line
    saved = Path(line.rsplit(" ", 1)[1])
    assert "Traceback" in saved.read_text() and type(error).__name__ in saved.read_text()
    saved.unlink()


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["fly"])
    assert caught.value.code == 2


def test_subprocess_validate_bad_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("rx_580 = 2", "gtx_9999 = 2"))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "p2psim", "validate", str(path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    line = _one_line(done.stderr)
    assert "peers.devices" in line and "'gtx_9999'" in line and "h100_sxm" in line


def test_scenario_warnings_print_as_one_line_each_and_validation_still_succeeds(tiny, capsys):
    assert main(["validate", str(tiny), "--set", "data.batch_size=64"]) == 0
    out, err = capsys.readouterr()
    assert "valid (" in out
    assert err.splitlines() == [
        "p2psim: warning: data.batch_size: 64 is larger than the shard of 4 of 4 peers (smallest: 40 samples): "
        "their batches are drawn with replacement"
    ]


def test_validation_of_a_large_regression_builds_nothing(tiny, capsys, monkeypatch):
    """A least-squares task of 5000 features took 135 s to validate; its sizes are arithmetic."""
    import p2psim.validation

    def no_build(*args, **kwargs):
        raise AssertionError("validation built the task")

    monkeypatch.setattr(p2psim.validation, "build_task", no_build)
    assert main(["validate", str(tiny), "--set", "task.n_features=5000"]) == 0
    assert capsys.readouterr().err == ""


def test_long_builds_are_announced_before_they_start(tiny, capsys, monkeypatch):
    import p2psim.validation

    monkeypatch.setattr(p2psim.validation, "LONG_S", -1.0)  # announce every build
    assert main(["validate", str(tiny), "--set", 'task={name="logistic"}', "--set", "data.partition=k_labels",
                 "--set", "data.labels_per_peer=2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("p2psim: building the ring graph over 4 peers (estimated ")
    # the split needs the class counts only (TaskSizes), so no task is built: only the split is announced
    assert err[1].startswith("p2psim: splitting the labels of task 'logistic' among 4 peers (estimated ")
