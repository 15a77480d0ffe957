"""Ctrl-C during a run: a partial result marked "interrupted" (the history so far), not a traceback."""

from __future__ import annotations

import signal

import p2psim
from p2psim.testing import round_number_scenario


def interrupted_at_second_record(tmp_path, **overrides):
    data = round_number_scenario({"h100_sxm": 2}, {"stop.sim_time_s": 100.0, **overrides})
    data["baselines"] = [{"name": "1x H100", "device": "h100_sxm"}]
    records = []

    def progress(run_name: str, time_s: float, fraction: float) -> None:
        records.append((run_name, time_s))
        if len(records) == 2:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers to the main thread

    return p2psim.run(data, out=tmp_path / "run", progress=progress), records


def test_ctrl_c_stops_the_run_after_the_running_hook_and_keeps_its_history(tmp_path):
    result, records = interrupted_at_second_record(tmp_path)
    assert result.status == "interrupted"
    facts = result.manifest["runs"]["p2p"]
    assert facts["stop_reason"] == f"interrupted at t={facts['sim_time_s']:.6g} s (Ctrl-C)"
    assert 5.0 < facts["sim_time_s"] < 6.0  # the second record is at t = 5 s; the next hook ends the run
    history = result.history
    assert set(history["run"]) == {"p2p"}  # no baseline starts after Ctrl-C
    assert history["time_s"].tolist() == [0.0, 5.0, facts["sim_time_s"]]  # and the final record, not the 100 s stop
    assert p2psim.Result.load(tmp_path / "run").status == "interrupted"  # saved, and loads as such


def test_the_previous_ctrl_c_handler_is_back_after_the_run(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    interrupted_at_second_record(tmp_path)
    assert signal.getsignal(signal.SIGINT) is before
