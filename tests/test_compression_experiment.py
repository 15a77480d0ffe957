"""The compression experiment runs at smoke size: bytes follow each compressor's format, and it resumes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "compression.py"


@pytest.mark.slow
def test_the_compression_experiment_runs_at_smoke_size_and_top_k_sends_what_its_format_says(tmp_path):
    spec = importlib.util.spec_from_file_location("compression_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--smoke", "--out", str(tmp_path), "--settings", "choco none", "choco top_k 1%"]
    assert module.main(args) == 0
    table = pd.read_csv(tmp_path / "table.csv").set_index("setting")
    # ResNet-50's 25.6e6 values: fp32 rows of 102.4 MB; top 1 %: 256,000 fp32 values + as many uint32 indices
    # (1.02 MB, less than a 3.2 MB bitmap), in the same rounds
    none, top = table.loc["choco none", "GB_sent"], table.loc["choco top_k 1%", "GB_sent"]
    assert top / none == pytest.approx((256_000 * 4 + 256_000 * 4) / 102_400_000, rel=1e-9)
    assert (tmp_path / "figure.pdf").exists()
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.csv")}
    module.main(args)  # a second call runs nothing
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.csv")} == written
