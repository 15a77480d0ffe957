"""The standard figure: a fixed colour per run, recorded ticks marked, labels that name what is drawn; `plot --metric` never overwrites."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from p2psim.cli import main  # noqa: E402
from p2psim.plots import figure_for, figure_name  # noqa: E402
from p2psim.result import Result  # noqa: E402

from test_summary import hand_made  # noqa: E402


def saved(tmp_path) -> Result:
    result = hand_made()
    result.manifest["scenario_hash"] = result.scenario.hash()
    result.save(tmp_path / "run")
    return Result.load(tmp_path / "run")


def test_a_loaded_result_lists_p2p_first_although_its_manifest_sorts_the_runs(tmp_path):
    loaded = saved(tmp_path)
    assert list(loaded.manifest["runs"]) == ["1x H100", "p2p"]  # json written with sorted keys
    assert loaded.runs == ["p2p", "1x H100"]


def test_colours_follow_the_runs_and_every_record_is_marked(tmp_path):
    for result in (hand_made(), saved(tmp_path)):
        left = figure_for(result).axes[0]
        lines = {line.get_label(): line for line in left.get_lines()}
        assert lines["p2p: averaged model (finished)"].get_color() == "C0"
        assert lines["1x H100"].get_color() == "C1"
        assert all(line.get_marker() == "." for line in lines.values())
        matplotlib.pyplot.close("all")


def test_the_y_label_names_no_single_model_when_two_are_drawn():
    left = figure_for(hand_made()).axes[0]
    assert left.get_ylabel() == "accuracy (held-out set)"
    labels = [line.get_label() for line in left.get_lines()]
    assert "p2p: averaged model (finished)" in labels and "p2p: mean of peers' own models" in labels


def test_plot_with_a_metric_writes_its_own_file(tmp_path):
    saved(tmp_path)
    folder = tmp_path / "run"
    assert main(["plot", str(folder)]) == 0
    before = (folder / "figure.png").read_bytes()
    assert main(["plot", str(folder), "--metric", "loss"]) == 0
    assert (folder / "figure-loss.png").exists()
    assert (folder / "figure.png").read_bytes() == before
    assert figure_name() == "figure.png" and figure_name("loss") == "figure-loss.png"


def test_no_line_joins_the_start_to_the_first_record_across_the_log_axis():
    left = figure_for(hand_made()).axes[0]
    p2p = next(line for line in left.get_lines() if line.get_label() == "p2p: averaged model (finished)")
    assert p2p.get_xdata().tolist() == [300.0 / 60, 600.0 / 60]  # minutes; t = 0 is drawn as a lone dot
    assert any(line.get_linestyle() == "None" and line.get_xdata().tolist() == [0.0] for line in left.get_lines())
