"""Each paper figure regenerates at smoke size to its committed CSV, exactly; the shared measure is checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from p2psim.cli import main
from p2psim.figures import ROOT, figure_scripts, interval95, to_target

GOLDEN = ROOT / "experiments" / "golden"


def test_to_target_takes_the_first_recorded_tick_and_nan_for_a_run_that_never_reaches_it():
    table = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "time_s": [0.0, 5.0, 9.0, 0.0, 5.0],
                          "accuracy": [0.1, 0.91, 0.95, 0.1, 0.5], "energy_kwh": [0.0, 2.0, 3.0, 0.0, 1.0]})
    out = to_target(table, 0.9, ["seed"], ("time_s", "energy_kwh"))
    assert out["seed"].tolist() == [0, 1]
    assert out.loc[0, "time_s"] == 5.0 and out.loc[0, "energy_kwh"] == 2.0
    assert math.isnan(out.loc[1, "time_s"])


def test_interval95_is_the_student_t_half_width_and_nan_below_two_values():
    # values 1, 2, 3: sample std 1, t(0.975, 2 dof) = 4.302652729911275, so the half-width is 4.3027 / sqrt(3)
    assert math.isclose(interval95(pd.Series([1.0, 2.0, 3.0, float("nan")])), 4.302652729911275 / 3**0.5, rel_tol=1e-9)
    assert math.isnan(interval95(pd.Series([5.0])))


def test_p2psim_figures_regenerates_every_committed_smoke_csv_exactly(tmp_path, capsys):
    """About 20 s: every figure script at smoke size (10 peers, 1024 samples, 2 seeds)."""
    assert main(["figures", "--smoke", "--out", str(tmp_path)]) == 0
    written = [Path(line) for line in capsys.readouterr().out.split()]
    assert [p.name for p in written] == [f"{s.stem.removeprefix('fig_')}.csv" for s in figure_scripts()]
    for csv in written:
        assert csv.read_text() == (GOLDEN / f"{csv.stem}.smoke.csv").read_text()
        assert (tmp_path / f"{csv.stem}.pdf").stat().st_size > 0
