"""`run(scenario) -> Result`: the public entry point; the CLI only wraps it.

The peer-to-peer run goes first; each baseline is then derived from it (same task,
data, seed and sample budget, centralized devices with all-reduce) and goes through
the same engine (DESIGN decision 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .admission import admit
from .baselines import baseline_scenario
from .bill import bill_run
from .build import build_run, model_shape
from .engine import simulate
from .provenance import manifest
from .result import MAIN_RUN, Result
from .scenario import Scenario, load_scenario
from .validation import validate_scenario

__all__ = ["Progress", "baseline_scenario", "run", "timing_source"]

Progress = Callable[[str, float, float], None]
"""Called as progress(run_name, sim_time_s, fraction_done) at each recording tick."""

def _as_scenario(scenario: Scenario | str | Path | Mapping[str, Any]) -> Scenario:
    if isinstance(scenario, Scenario):
        validate_scenario(scenario)
        return scenario
    if isinstance(scenario, Mapping):
        return Scenario.from_dict(scenario)
    return load_scenario(scenario)


def run(
    scenario: Scenario | str | Path | Mapping[str, Any],
    *,
    baselines: bool = True,
    out: str | Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Result:
    """Validate and simulate `scenario` (object, dict or TOML path), then its baselines.

    With `out`, the result folder is written there, atomically; a folder holding another
    scenario's result is replaced only with `force`. A diverged or stalled run is a
    result, reported in `Result.status`, not an exception; so is a run stopped by Ctrl-C
    (status "interrupted": the history so far, and no baseline after it).
    """
    scenario = _as_scenario(scenario) if baselines else replace(_as_scenario(scenario), baselines=())  # the folder's scenario is what ran
    admitted, admission = admit(scenario)  # energy.admission: the carbon-aware choice of peers
    records = [_simulate(MAIN_RUN, admitted, progress)]
    if admission:
        records[0].info["admission"] = admission
    budget = records[0].info["samples"]
    for spec in scenario.baselines:
        if records[-1].info["status"] == "interrupted":  # Ctrl-C: keep what ran, start nothing more
            break
        records.append(_simulate(spec.name, baseline_scenario(scenario, spec, budget), progress))
    result = Result(
        scenario=scenario,
        history=pd.concat([r.history for r in records], ignore_index=True),
        peers=records[0].peers,
        manifest=manifest(scenario, {r.name: r.info for r in records}, timing_source(scenario)),
        utilisation=pd.concat([r.utilisation for r in records], ignore_index=True),
    )
    if out is not None:
        result.save(out, force=force)
    return result


@dataclass
class _Record:
    """One run's outputs as tables, named."""

    name: str
    info: dict[str, Any]
    history: pd.DataFrame
    peers: pd.DataFrame
    utilisation: pd.DataFrame


def _simulate(name: str, scenario: Scenario, progress: Progress | None) -> _Record:
    """One run through the engine, its outputs as tables with a `run` column."""
    setup = build_run(scenario)
    report = None if progress is None else (lambda time_s, fraction: progress(name, time_s, fraction))
    outcome = simulate(setup, report)
    info = {
        **outcome.info,
        "model_bytes": setup.model_bytes,
        "flops_per_step": setup.flops_per_step,
        "devices": sorted({d.name for d in setup.devices}),
    }
    bill = bill_run(setup, outcome)  # kWh, CO2 and cost from the recorded utilisation
    info["energy"] = bill.facts
    history = pd.DataFrame(outcome.history).assign(**bill.history)
    workload = scenario.workload
    if workload is not None and workload.tokens_per_sample is not None and len(history):
        history.insert(history.columns.get_loc("samples") + 1, "tokens", history["samples"] * workload.tokens_per_sample)
    history.insert(0, "run", name)
    utilisation = pd.DataFrame(
        {
            "run": name,
            "time_s": np.repeat([t for t, _ in outcome.utilisation], setup.n_peers),
            "peer": np.tile(np.arange(setup.n_peers), len(outcome.utilisation)),
            "computing_fraction": np.concatenate([u for _, u in outcome.utilisation]) if outcome.utilisation else [],
        }
    )
    return _Record(name, info, history, pd.DataFrame(outcome.peers).assign(**bill.peers), utilisation)


def timing_source(scenario: Scenario) -> str:
    """Where the run's durations come from: the declared workload or the task's real model."""
    n_params, flops = model_shape(scenario)
    batch = scenario.data.batch_size
    if scenario.workload is not None:
        w = scenario.workload
        return (
            f"from the declared workload {w.name!r} ({w.params:.3g} params, {w.flops_per_sample:.3g} FLOP/sample); "
            + ("no numerics (cost-only)" if scenario.engine.cost_only else f"numerics from task {scenario.task.name!r}")
        )
    source = f"from task {scenario.task.name!r} itself ({n_params:.3g} params, {flops / batch:.3g} FLOP/sample)"
    return source + ("; no numerics (cost-only)" if scenario.engine.cost_only else "")
