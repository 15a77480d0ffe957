"""The README's headline table: mean and 95 % interval over seeds, per run, from per-seed rows."""

from __future__ import annotations

import importlib.util

import pandas as pd

from p2psim.figures import ROOT

spec = importlib.util.spec_from_file_location("headline", ROOT / "experiments" / "headline.py")
headline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(headline)


def test_summary_gives_mean_and_half_width_per_run_and_a_dash_where_no_seed_reached_the_target():
    rows = pd.DataFrame({
        "run": ["p2p", "p2p", "p2p", "1x H100"],
        "seed": [0, 1, 2, 0],
        "accuracy": [0.90, 0.91, 0.92, 0.95],
        "consensus_distance": [0.2, 0.2, 0.2, 0.0],
        "s_per_sample": [0.15, 0.15, 0.15, 1e-4],
        "mb_per_sample": [3e6, 3e6, 3e6, 0.0],
        "time_to_target_h": [3.0, 4.0, 5.0, float("nan")],
    })
    lines = headline.summary(rows).splitlines()
    p2p, h100 = lines[2].split(" | "), lines[3].split(" | ")
    assert p2p[1] == "0.910 ± 0.025 (n=3)"  # std 0.01: 0.01 x 4.3027 / sqrt(3) = 0.0248
    assert p2p[4] == "3 ± 0 (n=3)"  # 3e6 bytes = 3 MB per sample, the same for every seed
    assert p2p[5].startswith("4 ± 2.48")  # hours: mean 4, std 1, t(0.975, 2) / sqrt(3) = 2.484
    assert h100[1] == "0.950 (n=1)" and h100[5] == "— |"
