"""p2psim calibrate: counted work by hand, the prediction it is compared with, and calibration files in scenarios."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import p2psim
from p2psim.budget import model_cost, peer_step_times
from p2psim.calibrate import Calibration, calibrate, write_result
from p2psim.calibration import read_calibration, write_calibration
from p2psim.cli import main
from p2psim.config import ScenarioError
from p2psim.tasks.logistic import Logistic

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "scenarios" / "quickstart.toml"
EPYC = "epyc_milan_2vcpu"  # 0.1568 TFLOPS fp32 x 0.15; 12.6 GB/s x 0.7


def test_calibrate_counts_the_step_by_hand_and_predicts_its_roofline():
    result = calibrate(Logistic(), "cpu", EPYC, batch_size=8, steps=2, warmup=1)
    # Linear(20 -> 4), 84 params: forward 2 x 8 x 20 x 4 and weight gradient as much = 2560 FLOPs;
    # fp32 SGD moves 24 B per parameter; the 4 logits (16 B) per sample, 8 accesses each
    assert result.n_params == 84 and result.flops_per_step == 2560.0
    assert result.bytes_moved_per_step == 84 * 24 + 8 * 16 * 8
    assert result.predicted_compute_s == pytest.approx(2560 / (0.1568e12 * 0.15))
    assert result.predicted_memory_s == pytest.approx(3040 / (12.6e9 * 0.7))
    assert result.bound == "memory" and result.measured_step_s > 0
    name, value = result.measured_efficiency()
    assert name == "memory_efficiency" and value == pytest.approx(3040 / 12.6e9 / result.measured_step_s)


def _result(measured_step_s: float) -> Calibration:
    return Calibration(task="logistic", device=EPYC, torch_device="cpu", host="test", precision="fp32",
                       optimizer="sgd", batch_size=8, n_params=84, flops_per_step=2560.0, bytes_moved_per_step=3040.0,
                       predicted_compute_s=2560 / (0.1568e12 * 0.15), predicted_memory_s=3040 / (12.6e9 * 0.7),
                       measured_step_s=measured_step_s)


def test_written_efficiency_sets_the_scenarios_step_time(tmp_path):
    path = tmp_path / "calibration.toml"
    write_calibration(path, "rx_580", {"utilisation": 0.4})  # twice the catalogue's 0.2
    write_calibration(path, "h100_sxm", {"utilisation": 0.5, "memory_efficiency": 0.4})
    assert read_calibration(str(path)) == {"rx_580": {"utilisation": 0.4},
                                           "h100_sxm": {"utilisation": 0.5, "memory_efficiency": 0.4}}
    plain = p2psim.load_scenario(QUICKSTART)
    calibrated = p2psim.load_scenario(QUICKSTART, {"peers.calibration": str(path), "peers.utilisation": {"h100_sxm": 0.1}})
    before, after = peer_step_times(plain, model_cost(plain)), peer_step_times(calibrated, model_cost(calibrated))
    overhead = plain.peers.step_overhead_s
    # the RX 580's step is compute-bound (fp16 at 6.2 TFLOPS): twice the utilisation, half the time
    assert after["rx_580"][1] - overhead == pytest.approx((before["rx_580"][1] - overhead) / 2)
    # the H100's is memory-bound; peers.utilisation (0.1) wins over the file's 0.5: max of the two sides
    flops = 32 * plain.workload.flops_per_sample
    assert after["h100_sxm"][1] - overhead == pytest.approx(
        max(flops / (989e12 * 0.1), 2 * (before["h100_sxm"][1] - overhead)))
    assert after["a100_sxm_80gb"] == before["a100_sxm_80gb"]  # not in the file


@pytest.mark.parametrize(
    "content, fragment",
    [("[devices.nope]\nutilisation = 0.5\n", "unknown device"),
     ("[devices.rx_580]\nutilisation = 1.5\n", "must be a number in (0, 1]"),
     ("[devices.rx_580]\nspeed = 2\n", "unknown keys ['speed']"),
     ("utilisation = 0.5\n", "only [devices.<name>] tables")],
)
def test_bad_calibration_file_names_the_field(tmp_path, content, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ScenarioError) as caught:
        p2psim.load_scenario(QUICKSTART, {"peers.calibration": str(path)})
    assert caught.value.field == "peers.calibration" and fragment in str(caught.value)


def test_missing_calibration_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read calibration file"):
        p2psim.load_scenario(QUICKSTART, {"peers.calibration": str(tmp_path / "absent.toml")})


def test_write_result_refuses_an_efficiency_above_one(tmp_path):
    fast = _result(measured_step_s=1e-9)  # faster than the catalogue's bandwidth allows
    with pytest.raises(ValueError, match="not in \\(0, 1\\]"):
        write_result(tmp_path / "c.toml", fast)
    name, value = write_result(tmp_path / "c.toml", dataclasses.replace(fast, measured_step_s=3040 / 12.6e9 * 4))
    assert (name, value) == ("memory_efficiency", pytest.approx(0.25))
    assert read_calibration(str(tmp_path / "c.toml"))[EPYC]["memory_efficiency"] == pytest.approx(0.25)


def test_cli_calibrate_prints_the_table_and_writes_the_file(tmp_path, capsys):
    path = tmp_path / "c.toml"
    assert main(["calibrate", "logistic", "--as", EPYC, "--steps", "1", "--batch-size", "4", "--set", "n_features=8",
                 "--write", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["task", "device", "precision"] and "logistic" in out
    assert EPYC in read_calibration(str(path))
    assert main(["calibrate", "logistic", "--steps", "1"]) == 2  # a CPU needs --as
    assert "--as" in capsys.readouterr().err


def test_calibrate_all_script_runs_at_smoke_size(tmp_path):
    import runpy
    import sys

    script = Path(__file__).resolve().parents[1] / "experiments" / "calibrate_all.py"
    argv, sys.argv = sys.argv, [str(script), "--as", EPYC, "--smoke", "--out", str(tmp_path / "c.csv")]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert done.value.code == 0
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("task,device")
