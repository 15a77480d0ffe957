"""Every registered algorithm: listed with its paper, runs by name, validates its parameters, and
gives the same history whether pending gradients are evaluated together or one at a time."""

from __future__ import annotations

import re

import numpy as np
import pytest

from p2psim import Scenario, ScenarioError, run
from p2psim.algorithms.base import IMPLEMENTATIONS, algorithm_catalogue
from p2psim.scenario import set_dotted

ALGORITHM_NAMES = sorted(name for name, cls in IMPLEMENTATIONS.items() if cls.__module__.startswith("p2psim.algorithms"))


# Settings that let a short run complete its first rounds (DiLoCo's default is the paper's 500 inner steps).
SHORT_RUN = {name: {"algorithm.local_steps": 4} for name in ("diloco", "diloco_async", "diloco_ring")}


def tiny(algorithm: str, **overrides) -> dict:
    """Six unequal peers on a ring of home links, least squares, a short run."""
    data = {
        "name": "every-algorithm",
        "seed": 5,
        "task": {"name": "least_squares", "n_samples": 600, "n_features": 6},
        "data": {"batch_size": 8},
        "peers": {"devices": {"h100_sxm": 2, "rtx_3060": 2, "rx_580": 2}, "links": {"fibre": 4, "cable": 2}, "jitter": 0.2},
        "topology": {"kind": "ring"},
        "algorithm": {"name": algorithm, "lr": 0.05},
        "stop": {"samples": 960},
        "metrics": {"eval_interval_samples": 160},
    }
    for dotted, value in {**SHORT_RUN.get(algorithm, {}), **overrides}.items():
        set_dotted(data, dotted, value)
    return data


def test_every_algorithm_lists_a_summary_and_a_paper_with_its_year():
    rows = {name: (summary, paper) for name, summary, paper in algorithm_catalogue()}
    for name in ALGORITHM_NAMES:
        summary, paper = rows[name]
        assert summary, name
        assert re.search(r"(19|20)\d\d", paper), f"{name}: no year in its paper reference {paper!r}"


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_each_algorithm_runs_by_name_and_lowers_the_loss(name):
    result = run(Scenario.from_dict(tiny(name)), baselines=False)
    history = result.run_history()
    assert result.status == "finished", result.manifest["runs"]["p2p"]
    assert result.manifest["runs"]["p2p"]["samples"] >= 960
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert "spectral_gap_definition" in result.manifest["runs"]["p2p"]


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_each_algorithm_rejects_an_unknown_parameter_by_name(name):
    data = tiny(name, **{"algorithm.no_such_option": 1})
    with pytest.raises(ScenarioError, match="no_such_option") as error:
        Scenario.from_dict(data)
    assert error.value.field.startswith("algorithm")


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_batched_and_one_at_a_time_gradients_give_the_same_history(name):
    """DESIGN decision 5: a gradient depends only on its snapshot and batch, so batching changes no result."""
    batched = run(Scenario.from_dict(tiny(name)), baselines=False).history
    single = run(Scenario.from_dict(tiny(name, **{"engine.batch_gradients": False})), baselines=False).history
    assert list(batched.columns) == list(single.columns)
    assert batched["time_s"].tolist() == single["time_s"].tolist()
    # float32 rounding of a k-row vmapped matmul may differ from k one-row ones
    np.testing.assert_allclose(
        batched.drop(columns="run").to_numpy(float), single.drop(columns="run").to_numpy(float), rtol=1e-4, atol=1e-6
    )


def test_the_cli_lists_every_algorithm_with_its_paper(capsys):
    from p2psim.cli import main

    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    for name in ALGORITHM_NAMES:
        assert re.search(rf"^{name}\s", out, re.MULTILINE), name
    assert "arxiv.org/abs/1710.06952" in out  # AD-PSGD's paper


def test_the_readme_example_algorithm_registers_and_trains():
    """The README's 'Adding an algorithm' block is real code: one class, no other edit."""
    from dataclasses import dataclass
    from pathlib import Path

    from p2psim.algorithms import Algorithm, AlgorithmConfig, register_algorithm

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Adding an algorithm") :]
    start = section.index("```python") + len("```python")
    code = section[start : section.index("```", start)].replace('name = "mine"', 'name = "test_readme_mine"')
    exec(code, {"dataclass": dataclass, "Algorithm": Algorithm, "AlgorithmConfig": AlgorithmConfig, "register_algorithm": register_algorithm})
    history = run(Scenario.from_dict(tiny("test_readme_mine")), baselines=False).run_history()
    assert history["loss"].iloc[-1] < 0.7 * history["loss"].iloc[0]
