"""The CLI starts fast: describing, listing and validating import neither torch, scikit-learn nor simpy (issue 12).

Each check runs in a fresh interpreter (`python -c`), since this test process has loaded
everything already; it fails as soon as someone adds an eager import on those paths.
The arithmetic that replaces building (a task's Linear chain, label splits sized from
class counts) is checked against what torch counts and what the run splits.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import p2psim
from p2psim.budget import chain_costs
from p2psim.build import build_task, partitions_of, peer_partitions
from p2psim.scenario import load_scenario
from p2psim.stepmodel import model_layers
from p2psim.tasks import DigitsMLP, LeastSquares, Logistic
from p2psim.validation import validate_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "experiments" / "scenarios"  # transformer_lm.toml loads torch: its model is counted on the meta device
QUICKSTART = SCENARIOS / "quickstart.toml"
HEAVY = ("torch", "sklearn", "simpy")


LOADED = f"[m for m in {HEAVY!r} if m in sys.modules]"  # an expression, evaluated in the fresh interpreter


def _in_fresh_python(code: str) -> object:
    """Run `code` in a new interpreter (its own output discarded) and return what it leaves in `result`, via JSON."""
    probe = (
        "import contextlib, io, json, sys, warnings\nwarnings.simplefilter('ignore')\nresult = None\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "print(json.dumps(result))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _cli(*argv: str) -> str:
    return f"try:\n    status = main({list(argv)!r})\nexcept SystemExit as exit:\n    status = exit.code\nassert status == 0, status"


def test_importing_listing_and_validating_load_no_torch_sklearn_or_simpy():
    """Step by step in one interpreter (modules only accumulate): the first step that loads one of them is named."""
    steps = {
        "import p2psim": "import p2psim\nfrom p2psim.cli import main",
        "p2psim --help": _cli("--help"),
        "p2psim devices": _cli("devices"),
        "p2psim grids": _cli("grids"),
        "p2psim algorithms": _cli("algorithms"),
        "p2psim validate quickstart.toml": _cli("validate", str(QUICKSTART)),
        "p2psim validate diloco.toml": _cli("validate", str(SCENARIOS / "diloco.toml")),
        "p2psim validate least_squares_ring.toml": _cli("validate", str(SCENARIOS / "least_squares_ring.toml")),
        "import the description's modules": "import p2psim.scenario, p2psim.validation, p2psim.algorithms, p2psim.tasks",
    }
    code = "result = {}\n" + "".join(f"{body}\nresult[{name!r}] = {LOADED}\n" for name, body in steps.items())
    assert _in_fresh_python(code) == {name: [] for name in steps}


@pytest.mark.parametrize("first", ["import p2psim", "import p2psim.sweep", "from p2psim.sweep import load_sweep"])
def test_p2psim_sweep_is_the_function_whichever_import_comes_first(first):
    """The submodule p2psim.sweep and the function share a name; importing the submodule must not shadow the function."""
    code = (f"{first}\nimport p2psim, sys\nimport p2psim.sweep\nfrom p2psim import sweep\n"
            "assert callable(p2psim.sweep) and p2psim.sweep is sweep is sys.modules['p2psim.sweep'].sweep, p2psim.sweep\n"
            f"from p2psim.sweep import load_sweep\nassert p2psim.sweep is sweep\nresult = {LOADED}")
    assert _in_fresh_python(code) == []


def test_public_names_resolve_lazily_to_their_definitions():
    import p2psim.engine
    import p2psim.result
    import p2psim.runner
    import p2psim.sweep

    assert p2psim.run is p2psim.runner.run and p2psim.Result is p2psim.result.Result
    assert p2psim.sweep is sys.modules["p2psim.sweep"].sweep and p2psim.SimulationError is p2psim.engine.SimulationError
    assert set(p2psim.__all__) <= set(dir(p2psim))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        p2psim.not_a_name  # noqa: B018


@pytest.mark.slow  # a short run; tests/test_boundary.py runs p2psim.run in the default suite
def test_p2psim_run_works_through_the_lazy_package(tmp_path):
    scenario = load_scenario(QUICKSTART, {"peers.count": 4, "peers.devices": {"rx_580": 4}, "peers.links": {"fibre": 4},
                                          "peers.regions": {}, "topology": {"kind": "ring"}, "data.partition": "iid", "stop": {"samples": 256},
                                          "baselines": [], "metrics.eval_interval_s": 5.0, "metrics.target_accuracy": None})
    result = p2psim.run(scenario, out=tmp_path / "run")
    assert result.status == "finished" and result.history["samples"].iloc[-1] >= 256


def test_the_lazy_stand_in_imports_at_first_use_and_then_holds_what_it_read():
    from p2psim.lazy import lazy_module

    sys.modules.pop("tabnanny", None)
    stand_in = lazy_module("tabnanny")
    assert "tabnanny" not in sys.modules and "NannyNag" not in vars(stand_in)
    assert stand_in.NannyNag is sys.modules["tabnanny"].NannyNag  # imported by the first read ...
    assert vars(stand_in)["NannyNag"] is stand_in.NannyNag  # ... and held: later reads are plain module lookups


CHAIN_TASKS = [DigitsMLP(hidden=(64,)), DigitsMLP(hidden=(32, 16, 8)), Logistic(n_features=7, n_classes=3),
               LeastSquares(n_features=5)]


@pytest.mark.parametrize("task", CHAIN_TASKS, ids=lambda task: f"{task.name}")
def test_a_linear_chain_counts_what_torch_counts_on_the_model(task):
    """Parameters, FLOPs, activation bytes and layers by arithmetic equal torch's counts on the meta model."""
    import torch

    from p2psim.counting import activation_bytes_per_sample, count_training_flops

    chain, model = task.linear_chain(), task.model()
    params = {name: torch.empty(p.shape, device="meta") for name, p in model.named_parameters()}
    x, y = torch.empty(1, chain.widths[0], device="meta"), torch.empty(1, device="meta")
    counted = (count_training_flops(model, params, x, y, lambda output, _: output.float().sum()),
               activation_bytes_per_sample(model, params, x))
    assert chain_costs(chain) == counted
    assert chain.n_params == sum(p.numel() for p in model.parameters())
    assert chain.layers == model_layers(model)


@pytest.mark.parametrize(("changes", "seed"), [
    ({"data.partition": "dirichlet", "data.alpha": 0.1}, 0),
    ({"data.partition": "dirichlet", "data.alpha": 0.05, "peers.count": 64, "peers.devices": {"rx_580": 64},
      "peers.links": {"fibre": 64}, "peers.regions": {}}, 3),
    ({"data.partition": "k_labels", "data.labels_per_peer": 2}, 1),
    ({"data.partition": "k_labels", "data.labels_per_peer": 3, "task": {"name": "logistic", "n_classes": 5}}, 2),
])
def test_shard_sizes_from_class_counts_are_the_runs(changes, seed):
    """Validation sizes a label split from the class counts alone; the run, splitting the real labels, gets the same sizes."""
    scenario = load_scenario(QUICKSTART, {**changes, "seed": seed, "baselines": []})
    counts = scenario.task.sizes().train_class_counts
    labels = np.repeat(np.arange(len(counts)), counts)
    from_counts = [len(part) for part in partitions_of(scenario, labels, len(labels))]
    built = [len(part) for part in peer_partitions(scenario, build_task(scenario.task, scenario.seed))]
    assert from_counts == built and sum(built) == sum(counts)


def test_a_task_without_class_counts_is_built_and_warns_as_the_counts_do(monkeypatch):
    """The fallback: a task whose sizes state no class counts is built to split its labels; the outcome is the same."""
    scenario = load_scenario(QUICKSTART, {"baselines": []})
    builds, build = [], DigitsMLP.build
    monkeypatch.setattr(DigitsMLP, "build", lambda self, seed: builds.append(seed) or build(self, seed))

    def warnings_of_validation() -> list[str]:
        build_task.cache_clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            validate_scenario(scenario)
        return [str(w.message) for w in caught]

    from_counts = warnings_of_validation()
    assert builds == [] and any("shard of" in message for message in from_counts)
    sizes = DigitsMLP.sizes
    monkeypatch.setattr(DigitsMLP, "sizes", lambda self: dataclasses.replace(sizes(self), train_class_counts=None))
    assert warnings_of_validation() == from_counts and builds == [scenario.seed]
