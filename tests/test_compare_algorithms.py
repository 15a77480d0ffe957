"""The algorithm comparison runs at smoke size and tabulates what it ran, baselines included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "compare_algorithms.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_algorithms", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_registered_algorithm_is_in_the_comparison():
    from p2psim.algorithms.base import IMPLEMENTATIONS

    compare = load_script()
    ran = {settings["name"] for settings in compare.SETTINGS.values()}
    registered = {name for name, cls in IMPLEMENTATIONS.items() if cls.__module__.startswith("p2psim.algorithms")}
    assert registered - {"allreduce"} <= ran  # all-reduce runs as the baselines


def test_the_comparison_runs_at_smoke_size_and_resumes(tmp_path):
    compare = load_script()
    args = ["--smoke", "--workers", "1", "--out", str(tmp_path), "--algorithms", "adpsgd", "fedavg"]
    out = compare.main(args)
    table = pd.read_csv(out / "table.csv")
    assert set(table["world"]) == {"home", "datacenter"}
    assert {"adpsgd", "fedavg", "1x H100", "8x H100 cluster"} <= set(table["algorithm"])
    assert (table["seeds"] == 1).all()
    assert (out / "figure.pdf").exists() and (out / "table.md").read_text().startswith("Regenerate:")
    written = {path: path.stat().st_mtime_ns for path in (out / "runs").glob("*.csv")}
    assert len(written) == 4
    compare.main(args)  # a second call finds every run done and recomputes only the table
    assert {path: path.stat().st_mtime_ns for path in (out / "runs").glob("*.csv")} == written
