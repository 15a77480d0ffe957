"""Sweeps: one base scenario, the fields to vary, one tidy table of every run's history.

A sweep file (TOML) names a base scenario and its axes, each a scenario field by its
dotted path: a ``[grid]`` (every combination), a ``[zip]`` (lists taken together), a
``[random]`` table of distributions sampled ``samples`` times, and ``seeds`` as
replicates; ``[set]`` changes the base for every run. Runs are the product of the three,
times the seeds.

Each run's result folder is named by the hash of its resolved scenario, so a sweep started
again skips what has finished; a run that fails is written as a result with its error,
and the others go on. The runs go to any `concurrent.futures.Executor`
(`p2psim.executors`); the table is rebuilt from the folders, so it does not depend on the
order in which runs finished, nor on how often the sweep was interrupted.

Mixes (``peers.devices``, ``peers.links``, ``peers.regions``) follow two rules in a sweep:
setting ``peers.count`` turns every mix given as counts into fractions of the base's total
first, so the mix scales with the peer count; and setting one entry to a share (a number
with a decimal point, ``peers.devices.rx_580 = 0.3``) keeps the shares set and gives the
entries not set the rest, in their base proportions. An integer entry is a count, as in a
scenario file.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pandas as pd

from .config import ScenarioError, ScenarioWarning
from .result import MAIN_RUN, read_csv_exact, read_manifest, write_folder, write_manifest
from .overrides import MIXES, apply_overrides
from .scenario import Scenario, load_scenario
from .seeding import stream

__all__ = ["DISTRIBUTIONS", "MIXES", "Plan", "SweepProgress", "SweepSpec", "apply_overrides", "execute_run", "load_sweep", "plan", "sweep"]

DISTRIBUTIONS = ("uniform", "log_uniform", "integers", "choice")
TABLE = "table.csv"

SweepProgress = Callable[[int, int, int], None]
"""Called as progress(runs_done, runs_total, runs_failed) as runs finish (and once at the start)."""


@dataclass(frozen=True)
class SweepSpec:
    """A base scenario and the axes to vary over it."""

    base: Scenario
    name: str = "sweep"
    fixed: Mapping[str, Any] = field(default_factory=dict)  # [set]: every run
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    zip: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    random: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # field -> {distribution: arguments}
    samples: int = 0  # random draws; each is combined with every grid and zip point
    random_seed: int = 0
    seeds: tuple[int, ...] | None = None  # replicates: the scenario's seed
    baselines: bool = True

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for table in ("fixed", "grid", "zip", "random"):
            for key in getattr(self, table):
                if key in seen or (key == "seed" and self.seeds is not None):
                    raise ScenarioError(f"{_TABLE_NAMES[table]}.{key}", "is set twice (each field belongs to one table)")
                seen.add(key)
        for table in ("grid", "zip"):
            for key, values in getattr(self, table).items():
                if not isinstance(values, (list, tuple)) or not values:
                    raise ScenarioError(f"{table}.{key}", f"must be a non-empty list of values, got {values!r}")
                _check_mix_values(f"{table}.{key}", key, values)
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ScenarioError("zip", f"lists must have one length, got {sorted(lengths)}")
        for key, dist in self.random.items():
            _check_distribution(f"random.{key}", dist)
        if self.random and self.samples < 1:
            raise ScenarioError("random.samples", f"must be >= 1 when [random] names fields, got {self.samples}")
        if self.seeds is not None and (not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds)):
            raise ScenarioError("seeds", f"must be a non-empty list of non-negative integers, got {self.seeds!r}")

    @property
    def axes(self) -> list[str]:
        """The varied fields, in table order: grid, zip, random, then seed."""
        return [*self.grid, *self.zip, *self.random, *(["seed"] if self.seeds is not None else [])]


_TABLE_NAMES = {"fixed": "set", "grid": "grid", "zip": "zip", "random": "random"}


def _check_mix_values(where: str, key: str, values: Sequence[Any]) -> None:
    """A mix entry's values are all shares or all counts: `0` among `0.1, 0.2` is a count by mistake."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "peers" and parts[1] in MIXES:
        kinds = {type(v) for v in values}
        if kinds == {int, float}:
            raise ScenarioError(where, "mixes counts (integers) and shares (numbers with a decimal point): write 0.0, not 0")


def _check_distribution(where: str, dist: Any) -> None:
    if not isinstance(dist, Mapping) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ScenarioError(where, f"must be one distribution as {{name = arguments}} (allowed: {', '.join(DISTRIBUTIONS)}), got {dist!r}")
    kind, args = next(iter(dist.items()))
    if not isinstance(args, (list, tuple)) or not args:
        raise ScenarioError(f"{where}.{kind}", f"must be a non-empty list, got {args!r}")
    if kind != "choice":
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args) or not args[0] <= args[1]:
            raise ScenarioError(f"{where}.{kind}", f"must be [low, high] numbers with low <= high, got {args!r}")
        if kind == "log_uniform" and args[0] <= 0:
            raise ScenarioError(f"{where}.{kind}", f"needs low > 0, got {args[0]!r}")
        if kind == "integers" and not all(isinstance(a, int) for a in args):
            raise ScenarioError(f"{where}.{kind}", f"must be [low, high] integers (both included), got {args!r}")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file; its `base` path is relative to the file's folder.

    Keys of ``[set]``, ``[grid]`` and ``[zip]`` are dotted field paths, quoted
    (``"peers.count" = [32, 64]``) or as TOML dotted keys (``peers.count = [32, 64]``).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError("", f"sweep file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError("", f"{path} is not valid TOML: {error}") from None
    allowed = {"name", "base", "baselines", "seeds", "set", "grid", "zip", "random"}
    for key in data:
        if key not in allowed:
            raise ScenarioError(key, f"unknown sweep key (allowed: {', '.join(sorted(allowed))})")
    if not isinstance(data.get("base"), str):
        raise ScenarioError("base", "is required: the base scenario's TOML file, relative to the sweep file")
    random = dict(data.get("random", {}))
    samples = random.pop("samples", 0)
    random_seed = random.pop("seed", 0)
    seeds = data.get("seeds")
    return SweepSpec(
        base=load_scenario(path.parent / data["base"]),
        name=data.get("name", path.stem),
        fixed=_flatten(data.get("set", {})),
        grid=_flatten(data.get("grid", {})),
        zip=_flatten(data.get("zip", {})),
        random=_flatten(random, lambda v: not any(isinstance(x, Mapping) for x in v.values())),  # {name = args}
        samples=samples,
        random_seed=random_seed,
        seeds=tuple(seeds) if isinstance(seeds, list) else seeds,
        baselines=data.get("baselines", True),
    )


def _flatten(table: Mapping[str, Any], is_leaf: Callable[[Mapping], bool] = lambda _: False, prefix: str = "") -> dict[str, Any]:
    """Nested tables (TOML dotted keys) as one level of dotted paths, down to values or tables that `is_leaf`."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if not isinstance(value, Mapping) or is_leaf(value):
            flat[dotted] = value
        else:
            flat.update(_flatten(value, is_leaf, f"{dotted}."))
    return flat


@dataclass(frozen=True)
class Plan:
    """One run of a sweep: its place, the values of the axes, and its resolved scenario."""

    index: int
    values: dict[str, Any]
    scenario: Scenario

    @property
    def folder_name(self) -> str:
        """`<name>-<hash>`, as `p2psim run` names its folders."""
        return f"{self.scenario.name}-{self.scenario.hash()}"


def plan(spec: SweepSpec) -> list[Plan]:
    """Every run of the sweep, resolved and validated before any runs: bad input fails early."""
    grid = [dict(zip(spec.grid, combo)) for combo in itertools.product(*spec.grid.values())] or [{}]
    n_zip = len(next(iter(spec.zip.values()))) if spec.zip else 1
    zipped = [{key: values[i] for key, values in spec.zip.items()} for i in range(n_zip)]
    drawn = _draw(spec) or [{}]
    seeds = [{"seed": s} for s in spec.seeds] if spec.seeds is not None else [{}]
    base = spec.base.to_dict()
    plans = []
    for i, parts in enumerate(itertools.product(grid, zipped, drawn, seeds)):
        values = {k: v for part in parts for k, v in part.items()}
        try:
            scenario = Scenario.from_dict(apply_overrides(base, {**spec.fixed, **values}))
        except ScenarioError as error:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ScenarioError(error.field, f"{error.reason} (sweep run {i}: {shown})") from None
        plans.append(Plan(i, values, scenario if spec.baselines else scenario.with_overrides({"baselines": []})))
    hashes = [p.scenario.hash() for p in plans]
    if len(set(hashes)) < len(hashes):
        raise ScenarioError("", "two runs of the sweep resolve to the same scenario: an axis changes nothing")
    return plans


def _draw(spec: SweepSpec) -> list[dict[str, Any]]:
    """`spec.samples` draws of the random axes; each axis has its own stream, so adding one shifts no other."""
    columns = {}
    for key, dist in spec.random.items():
        (kind, args), = dist.items()
        rng = stream(spec.random_seed, f"sweep:{key}")
        if kind == "uniform":
            draws = [float(x) for x in rng.uniform(args[0], args[1], spec.samples)]
        elif kind == "log_uniform":
            draws = [float(math.exp(x)) for x in rng.uniform(math.log(args[0]), math.log(args[1]), spec.samples)]
        elif kind == "integers":
            draws = [int(x) for x in rng.integers(args[0], args[1], spec.samples, endpoint=True)]
        else:
            draws = [args[int(j)] for j in rng.integers(0, len(args), spec.samples)]
        columns[key] = draws
    return [{key: columns[key][j] for key in columns} for j in range(spec.samples)] if columns else []


def execute_run(scenario: Mapping[str, Any], folder: str, baselines: bool) -> str:
    """Simulate one scenario on one thread and write its result folder; returns its status.

    Any exception inside the run is that run's result, written as a folder with status
    ``failed`` and the error, so the sweep goes on and a resumed sweep does not repeat it.
    """
    from .executors import single_thread
    from .provenance import manifest
    from .runner import run

    single_thread()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScenarioWarning)  # the parent's plan() validated this run and warned once
        resolved = Scenario.from_dict(scenario)
        try:
            result = run(resolved, baselines=baselines)
        except Exception as error:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
            facts = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            with write_folder(folder, resolved.hash(), force=True) as partial:
                resolved.save(partial / "scenario.toml")
                write_manifest(partial, manifest(resolved, {MAIN_RUN: facts}, ""))
            return "failed"
    result.save(folder, force=True)  # the folder is this scenario's by its name; whatever is there is stale
    return result.status


def _complete(folder: Path, scenario_hash: str) -> dict[str, Any] | None:
    """The manifest of a finished run of this scenario in `folder`, or None."""
    manifest = read_manifest(folder)
    return manifest if manifest is not None and manifest.get("scenario_hash") == scenario_hash else None


def sweep(
    spec: SweepSpec | str | Path,
    *,
    out: str | Path | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    progress: SweepProgress | None = None,
    retry_failed: bool = False,
) -> pd.DataFrame:
    """Run every run of `spec` not already finished under `out`; return (and write) the tidy table.

    `executor` is ``"local"`` (a process pool), ``"ray"``, ``"dask"``, or any
    `concurrent.futures.Executor`. Runs are written to ``out/runs/<name>-<hash>/``, the table
    to ``out/table.csv`` (and ``table.parquet`` with pyarrow); `out` defaults to
    ``results/sweeps/<sweep name>``. With `retry_failed`, runs recorded as failed run again.
    """
    from .executors import open_executor

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ScenarioError("workers", f"must be an integer >= 1, got {workers!r}")
    spec = load_sweep(spec) if isinstance(spec, (str, Path)) else spec
    out = Path(out) if out is not None else Path("results") / "sweeps" / spec.name
    runs_dir = out / "runs"
    plans = plan(spec)
    _remove_incomplete(runs_dir, plans)
    lost: dict[int, str] = {}
    statuses = {p.index: _status(runs_dir / p.folder_name, p.scenario.hash()) for p in plans}
    todo = [p for p in plans if statuses[p.index] is None or (retry_failed and statuses[p.index] == "failed")]
    reused = set(statuses) - {p.index for p in todo}
    finished, failed = len(reused), sum(statuses[i] == "failed" for i in reused)
    if progress is not None:
        progress(finished, len(plans), failed)
    if todo:
        with open_executor(executor, workers or min(len(todo), os.cpu_count() or 1)) as pool:
            futures = {
                pool.submit(execute_run, p.scenario.to_dict(), str(runs_dir / p.folder_name), spec.baselines): p
                for p in todo
            }
            for future in as_completed(futures):
                try:
                    status = future.result()
                except Exception as error:  # noqa: BLE001 - the worker itself was lost: not recorded, so retried on resume
                    lost[futures[future].index] = f"worker lost: {type(error).__name__}: {error}"
                    status = "failed"
                finished += 1
                failed += status == "failed"
                if progress is not None:
                    progress(finished, len(plans), failed)
    table = _table(spec, plans, runs_dir, lost)
    _write_table(table, out)
    return table


def _status(folder: Path, scenario_hash: str) -> str | None:
    """Status of the finished run of this scenario in `folder`; None if there is none."""
    manifest = _complete(folder, scenario_hash)
    return None if manifest is None else manifest["runs"][MAIN_RUN]["status"]


def _remove_incomplete(runs_dir: Path, plans: list[Plan]) -> None:
    """Folders a killed sweep left half-written (marked ``.incomplete-``/``.replaced-``) for runs of this sweep."""
    if not runs_dir.is_dir():
        return
    names = {p.folder_name for p in plans}
    for path in runs_dir.iterdir():
        stem, _, mark = path.name.rpartition(".")
        if stem in names and mark.startswith(("incomplete-", "replaced-")):
            shutil.rmtree(path, ignore_errors=True)


def _table(spec: SweepSpec, plans: list[Plan], runs_dir: Path, lost: Mapping[int, str]) -> pd.DataFrame:
    """A row per run x recorded tick (one row for a run without history), the axes as columns."""
    frames = []
    for p in plans:
        folder = runs_dir / p.folder_name
        manifest = _complete(folder, p.scenario.hash())
        head = {key: _cell(p.values[key]) for key in spec.axes}
        head["scenario_hash"] = p.scenario.hash()
        if manifest is None:
            frames.append(pd.DataFrame([{**head, "run": MAIN_RUN, "status": "failed", "error": lost.get(p.index, "not run")}]))
            continue
        runs = manifest["runs"]
        history_path = folder / "history.csv"
        if history_path.exists():
            history = read_csv_exact(history_path)
        else:
            history = pd.DataFrame({"run": [MAIN_RUN]})
        history.insert(1, "status", history["run"].map(lambda r: runs[r]["status"]))
        history.insert(2, "error", history["run"].map(lambda r: runs[r].get("error")))
        for i, (key, value) in enumerate(head.items()):
            history.insert(i, key, value)
        frames.append(history)
    return pd.concat(frames, ignore_index=True)


def _cell(value: Any) -> Any:
    """An axis value as a table cell: lists and tables as their JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict, tuple)) else value


def _write_table(table: pd.DataFrame, out: Path) -> None:
    """table.csv (and table.parquet with pyarrow), each replaced by a rename so a reader never sees half of one."""
    import importlib.util

    out.mkdir(parents=True, exist_ok=True)
    partial = out / f"{TABLE}.incomplete"
    table.to_csv(partial, index=False)
    os.replace(partial, out / TABLE)
    if importlib.util.find_spec("pyarrow") is not None:
        partial = out / "table.parquet.incomplete"
        table.to_parquet(partial, index=False)
        os.replace(partial, out / "table.parquet")
