"""A run's result: its history as a tidy table, per-peer summary, resolved scenario and provenance.

Saved as a folder: ``scenario.toml`` (resolved), ``manifest.json`` (versions, git commit,
platform, seed, status of the run and of each baseline), ``history.csv`` (one row per
recording tick and run; the ``run`` column names it), ``peers.csv`` (one row per peer of
the peer-to-peer run) and ``utilisation.csv`` (each peer's computing fraction over each
recording interval, one row per tick, run and peer), and ``summary.txt`` (what the CLI
prints, first line: where the timings come from).

A folder is written whole or not at all: into ``<name>.incomplete-<token>`` beside it, then
renamed, so a kill leaves the old complete result or a folder marked incomplete. The
manifest, written last, holds the scenario's hash and each file's SHA-256; `Result.load`
refuses a folder whose files do not match it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bill_report import bill_entry, bill_lines
from .scenario import Scenario, load_scenario

__all__ = ["MAIN_RUN", "Result", "read_csv_exact", "read_manifest", "write_folder", "write_manifest"]

MAIN_RUN = "p2p"
UTILISATION_COLUMNS = ["run", "time_s", "peer", "computing_fraction"]
MANIFEST = "manifest.json"


@dataclass
class Result:
    """History of the peer-to-peer run and its baselines, with everything needed to reproduce it."""

    scenario: Scenario
    history: pd.DataFrame
    peers: pd.DataFrame
    manifest: dict[str, Any]
    utilisation: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UTILISATION_COLUMNS))

    @property
    def status(self) -> str:
        """finished, diverged, stalled or interrupted (Ctrl-C) for the peer-to-peer run."""
        return self.manifest["runs"][MAIN_RUN]["status"]

    @property
    def runs(self) -> list[str]:
        """Run names: the peer-to-peer run first, then the baselines in the scenario's order (the manifest's keys are sorted)."""
        recorded = self.manifest["runs"]
        order = [MAIN_RUN, *(b.name for b in self.scenario.baselines)]
        return [r for r in order if r in recorded] + sorted(r for r in recorded if r not in order)

    def run_history(self, run: str = MAIN_RUN) -> pd.DataFrame:
        """History rows of one run."""
        return self.history[self.history["run"] == run].reset_index(drop=True)

    def save(self, directory: str | Path, *, force: bool = False) -> Path:
        """Write the result folder atomically; returns its path.

        A folder holding the result of the same scenario is replaced; one holding another
        scenario's result needs `force` (CLI: ``--force``); one holding anything else is refused.
        """
        with write_folder(directory, self.manifest["scenario_hash"], force=force) as folder:
            self.scenario.save(folder / "scenario.toml")
            self.history.to_csv(folder / "history.csv", index=False)
            self.peers.to_csv(folder / "peers.csv", index=False)
            self.utilisation.to_csv(folder / "utilisation.csv", index=False)
            (folder / "summary.txt").write_text(self.format_summary() + "\n")  # says where timings come from
            write_manifest(folder, self.manifest)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> Result:
        """Read a result folder written by `save`, refusing one whose files are not the manifest's."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest is None:
            raise FileNotFoundError(f"{directory} is not a p2psim result folder (no readable {MANIFEST})")
        for name, digest in manifest.get("files", {}).items():
            path = directory / name
            if not path.exists() or _sha256(path) != digest:
                raise ValueError(f"{directory}: {name} is not the file its {MANIFEST} was written with (a mixed folder)")
        scenario = load_scenario(directory / "scenario.toml")
        if scenario.hash() != manifest.get("scenario_hash"):
            raise ValueError(
                f"{directory}: scenario.toml has hash {scenario.hash()} but {MANIFEST} says "
                f"{manifest.get('scenario_hash')} (a mixed folder, or one written by a p2psim whose scenarios resolve differently)"
            )
        return cls(
            scenario=scenario,
            history=read_csv_exact(directory / "history.csv"),
            peers=read_csv_exact(directory / "peers.csv"),
            manifest=manifest,
            utilisation=read_csv_exact(directory / "utilisation.csv"),
        )

    def time_to_accuracy(self, target: float, run: str = MAIN_RUN) -> float:
        """First recorded simulated time at which the averaged model reaches `target` accuracy (nan if never)."""
        history = self.run_history(run)
        if "accuracy" not in history:
            return math.nan
        reached = history[history["accuracy"] >= target]
        return float(reached["time_s"].iloc[0]) if len(reached) else math.nan

    def summary(self) -> dict[str, Any]:
        """Per run: final figures, cost per sample, time to target; per baseline: p2p against it, from recorded rows only."""
        cost_only = self.scenario.engine.cost_only  # no model metrics: time, traffic, utilisation, energy
        metric = None if cost_only else "accuracy" if "accuracy" in self.history else "loss"
        target = self.scenario.metrics.target_accuracy
        main = self.run_history()
        out: dict[str, Any] = {"metric": metric, "numerics": self.scenario.engine.numerics, "runs": {}}
        for run in self.runs:
            history = self.run_history(run)
            facts = self.manifest["runs"][run]
            last = history.iloc[-1] if len(history) else None
            samples = facts["samples"]
            entry = {
                "status": facts["status"],
                "sim_time_s": facts["sim_time_s"],
                "samples": samples,
                "time_per_sample_s": facts["sim_time_s"] / samples if samples else math.nan,
                "recorded_at_s": float(last["time_s"]) if last is not None else math.nan,
                "bytes_sent": float(last["bytes_sent"]) if last is not None else math.nan,
                "computing_fraction": _time_weighted(history, "computing_fraction"),
            }
            if not cost_only:
                entry["loss"] = float(last["loss"]) if last is not None else math.nan
                entry["consensus_distance"] = float(last["consensus_distance"]) if last is not None else math.nan
                if last is not None and "perplexity" in last:
                    entry["perplexity"] = float(last["perplexity"])
            if run == MAIN_RUN and "bytes_sent" in self.peers:  # peers.csv counts to the run's end, past its last record
                entry["bytes_sent"] = float(self.peers["bytes_sent"].sum())
            entry["bytes_per_sample"] = entry["bytes_sent"] / samples if samples else math.nan
            if metric == "accuracy" and last is not None:
                entry["accuracy"] = float(last["accuracy"])
            if target is not None:
                entry["time_to_target_s"] = self.time_to_accuracy(target, run)
            if run != MAIN_RUN and len(history) and len(main) and not cost_only:
                entry.update(_against(out["runs"][MAIN_RUN], entry, main, history, metric, target is not None))
            entry.update(bill_entry(history, facts, target))  # kWh, CO2, cost: totals, per sample, to target
            out["runs"][run] = entry
        return out

    def format_summary(self) -> str:
        """The summary as a few lines of text, for the CLI and notebooks: what is measured first, then time to target."""
        summary = self.summary()
        metric = summary["metric"]
        target = self.scenario.metrics.target_accuracy
        lines = []
        if summary["numerics"] == "none":
            lines.append("cost-only run (engine.numerics = \"none\"): time, traffic, utilisation and energy; no model was trained")
        workload = self.manifest.get("timing_source")
        if workload:
            lines.append(f"timings: {workload}")
        # A declared workload times the steps while a small task learns: time to a target is then the
        # small task's samples to it times the large model's time per sample, an assumption, flagged by '*'.
        mark = "*" if self.scenario.workload is not None else ""
        for run, entry in summary["runs"].items():
            text = (
                f"{run:>16}: {entry['status']:<8} t={_duration(entry['sim_time_s']):>9}  samples={entry['samples']:<8} "
                f"{_duration(entry['time_per_sample_s'])}/sample  {_bytes(entry['bytes_per_sample'])}/sample  "
                f"sent={entry['bytes_sent'] / 1e9:.3g} GB "
            )
            recorded = f" loss={entry['loss']:.4f}" if "loss" in entry else f" computing={entry['computing_fraction']:.1%}"
            if "perplexity" in entry and math.isfinite(entry["perplexity"]):
                recorded += f" perplexity={entry['perplexity']:.4g}"
            if "accuracy" in entry:
                recorded += f" acc={entry['accuracy']:.3f}"
            if run == MAIN_RUN and "consensus_distance" in entry:
                recorded += f" consensus={entry['consensus_distance']:.3g}"
            if entry["recorded_at_s"] != entry["sim_time_s"]:
                recorded = f"  last record at t={_duration(entry['recorded_at_s'])}:" + recorded
            lines.append(text + recorded)
            if "time_ratio_at_equal_samples" in entry:
                lines.append(
                    f"{'':>18}p2p against this run at equal samples: {_ratio(entry['time_ratio_at_equal_samples'])} the time per sample, "
                    + (f"{_ratio(entry['bytes_ratio_at_equal_samples'])} the bytes per sample, " if entry["bytes_per_sample"] else "")
                    + f"{metric} {entry['gap_at_equal_samples']:+.4f}"
                )
            if target is not None:
                lines.append(f"{'':>18}t(acc>={target:g}){mark}={_duration(entry['time_to_target_s'])}" + _crossing(entry, mark))
            lines.extend(bill_lines(run, entry, summary["runs"][MAIN_RUN] if run != MAIN_RUN else None, target))
        facts = self.manifest["runs"][MAIN_RUN]
        if facts["status"] == "diverged":
            lines.append(f"p2p run diverged at t={facts['diverged_at_s']:.6g} s, peers {facts['diverged_peers']}")
        if mark and target is not None:
            lines.append(
                f"* every figure to acc>={target:g} (times, and the bills') = task {self.scenario.task.name}'s samples to it x the "
                "declared workload's cost per sample: it assumes the large model learns as fast per sample as the small task; "
                "the figures per sample and at equal samples assume nothing of the kind"
            )
        return "\n".join(lines)


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The folder's manifest, or None where there is none (never written, or not a result folder)."""
    try:
        return json.loads((Path(directory) / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


@contextmanager
def write_folder(directory: str | Path, scenario_hash: str, *, force: bool = False) -> Iterator[Path]:
    """Yield a fresh folder to fill; on success it replaces `directory` by a rename, on error it is removed.

    `directory` may be absent, empty, or a result folder of `scenario_hash` (replaced); another
    scenario's result is replaced only with `force`, and anything else is never touched.
    """
    directory = Path(directory)
    _check_replaceable(directory, scenario_hash, force)
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = directory.with_name(f"{directory.name}.incomplete-{secrets.token_hex(4)}")
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = None
    if directory.exists():
        old = directory.with_name(f"{directory.name}.replaced-{secrets.token_hex(4)}")
        os.rename(directory, old)  # a kill between the two renames leaves both folders, each whole
    os.rename(partial, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_replaceable(directory: Path, scenario_hash: str, force: bool) -> None:
    if not directory.exists() or (directory.is_dir() and not any(directory.iterdir())):
        return
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileExistsError(f"{directory} exists and is not a p2psim result folder; choose another folder")
    if manifest.get("scenario_hash") != scenario_hash and not force:
        raise FileExistsError(
            f"{directory} holds the result of another scenario (hash {manifest.get('scenario_hash')}, "
            f"this one is {scenario_hash}); pass force=True (CLI: --force) to replace it, or choose another folder"
        )


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest last, with the SHA-256 of every file already in `folder`."""
    files = {p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
    text = json.dumps(_jsonable({**manifest, "files": files}), indent=2, sort_keys=True) + "\n"
    (folder / MANIFEST).write_text(text)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_csv_exact(path: str | Path) -> pd.DataFrame:
    """A CSV as written, to the last bit: pandas 2's default float parser may be one unit off in the last place."""
    return pd.read_csv(path, **_EXACT_FLOATS)


# pandas 3 parses floats exactly by default (and deprecates the option)
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def _time_weighted(history: pd.DataFrame, column: str) -> float:
    """A per-interval column's mean over the run's time: each row covers the time since the previous record (NaN if none)."""
    if len(history) < 2 or column not in history:
        return math.nan
    spans = np.diff(history["time_s"].to_numpy())
    total = spans.sum()
    return float((history[column].to_numpy()[1:] * spans).sum() / total) if total > 0 else math.nan


def _gap(main: pd.DataFrame, other: pd.DataFrame, metric: str) -> float:
    """main minus other in `metric` at the largest sample count both runs reached (interpolated between their records)."""
    at = min(main["samples"].iloc[-1], other["samples"].iloc[-1])
    mine = float(np.interp(at, main["samples"], main[metric]))
    theirs = float(np.interp(at, other["samples"], other[metric]))
    return mine - theirs


def _against(mine: dict[str, Any], theirs: dict[str, Any], main: pd.DataFrame, other: pd.DataFrame,
             metric: str, with_target: bool) -> dict[str, Any]:
    """The p2p run against a baseline: ratios per sample, gap at equal samples, and each at the other's time to target."""
    out: dict[str, Any] = {
        "time_ratio_at_equal_samples": _divide(mine["time_per_sample_s"], theirs["time_per_sample_s"]),
        "bytes_ratio_at_equal_samples": _divide(mine["bytes_per_sample"], theirs["bytes_per_sample"]),
        "gap_at_equal_samples": _gap(main, other, metric),
    }
    if with_target and metric == "accuracy":
        out["time_to_target_ratio"] = _divide(mine["time_to_target_s"], theirs["time_to_target_s"])
        out["p2p_at_their_target"] = _recorded_at(main, theirs["time_to_target_s"], mine["sim_time_s"])
        out["theirs_at_p2p_target"] = _recorded_at(other, mine["time_to_target_s"], theirs["sim_time_s"])
    return out


def _recorded_at(history: pd.DataFrame, time_s: float, end_s: float) -> dict[str, float] | None:
    """The run's last recorded row at or before `time_s` (its accuracy, the row's time, whether the run had ended)."""
    if not math.isfinite(time_s):
        return None
    rows = history[history["time_s"] <= time_s]
    if not len(rows):
        return None
    row = rows.iloc[-1]
    return {"at_s": time_s, "accuracy": float(row["accuracy"]), "recorded_at_s": float(row["time_s"]), "ended": bool(end_s <= time_s)}


def _crossing(entry: dict[str, Any], mark: str) -> str:
    """For a baseline: the ratio of times to target, and each run's recorded accuracy at the other's time to target."""
    if "time_to_target_ratio" not in entry:
        return ""
    text = f"; p2p needs {_ratio(entry['time_to_target_ratio'])} its time{mark}"
    for who, seen in (("p2p", entry["p2p_at_their_target"]), ("this run", entry["theirs_at_p2p_target"])):
        if seen is not None:
            record = "ended; final record" if seen["ended"] else "record"
            text += f"; at {_duration(seen['at_s'])} {who} had acc={seen['accuracy']:.3f} ({record} t={_duration(seen['recorded_at_s'])})"
    return text


def _divide(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def _ratio(value: float) -> str:
    return f"{value:.3g}x" if math.isfinite(value) else "n/a"


def _bytes(count: float) -> str:
    if not math.isfinite(count):
        return "n/a B"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.3g} B"


def _duration(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "never"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value
