"""Run a stored result again and say whether its history comes back bit for bit, or within a tolerance.

The comparison goes tick by tick in the stored table's order (the peer-to-peer run, then
each baseline) and names the first tick at which any column differs; where the installed
packages differ from those the result was made with, it names them, since they are the
usual cause (the repo's constraints file pins the versions its results were made with).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .result import MAIN_RUN, Result

__all__ = ["Difference", "Reproduction", "compare_histories", "reproduce"]

RTOL = 1e-6  # default relative tolerance: float32 sums taken in another order differ by ~1e-7 a step
ATOL = 1e-9  # default absolute tolerance, for values that are zero in one history


@dataclass(frozen=True)
class Difference:
    """Where two histories first part: the tick (row within its run) and the columns that differ there."""

    run: str
    tick: int
    time_s: float
    columns: tuple[str, ...]
    stored: tuple[Any, ...]
    new: tuple[Any, ...]

    def describe(self) -> str:
        """One line: run, tick, simulated time and the differing values."""
        values = ", ".join(f"{c}: stored {s!r} new {n!r}" for c, s, n in zip(self.columns, self.stored, self.new))
        return f"run {self.run!r}, tick {self.tick} (time_s = {self.time_s:g}): {values}"


@dataclass(frozen=True)
class Reproduction:
    """The outcome of running a stored result again."""

    rows: int
    columns: int
    rtol: float
    atol: float
    first_difference: Difference | None  # bit for bit
    first_beyond_tolerance: Difference | None
    largest_abs_difference: float  # over numeric cells, NaN against a number counted as infinite
    environment: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # package: (stored, now)

    @property
    def identical(self) -> bool:
        """Whether every cell of the history came back bit for bit."""
        return self.first_difference is None

    @property
    def within_tolerance(self) -> bool:
        """Whether every cell came back within rtol x |stored| + atol."""
        return self.first_beyond_tolerance is None

    def format(self) -> str:
        """A few lines for the CLI and notebooks."""
        lines = [f"history: {self.rows} ticks x {self.columns} columns"]
        if self.identical:
            lines.append("bit for bit: yes")
        else:
            lines.append(f"bit for bit: no; first differing tick: {self.first_difference.describe()}")
            verdict = "yes" if self.within_tolerance else f"no; first tick beyond it: {self.first_beyond_tolerance.describe()}"
            lines.append(
                f"within rtol={self.rtol:g}, atol={self.atol:g}: {verdict} "
                f"(largest absolute difference {self.largest_abs_difference:.3g})"
            )
        if self.environment:
            changed = ", ".join(f"{k} {a or 'absent'} -> {b or 'absent'}" for k, (a, b) in self.environment.items())
            lines.append(f"installed now, unlike when stored: {changed}")
        return "\n".join(lines)


def compare_histories(stored: pd.DataFrame, new: pd.DataFrame, rtol: float = RTOL, atol: float = ATOL) -> Reproduction:
    """Compare two history tables cell by cell, in the stored table's order."""
    columns = list(dict.fromkeys([*stored.columns, *new.columns]))
    rows, common = max(len(stored), len(new)), min(len(stored), len(new))
    exact = np.ones((rows, len(columns)), dtype=bool)  # True where a cell differs; a tick one table lacks differs
    beyond = np.ones_like(exact)
    largest = 0.0
    for j, column in enumerate(columns):
        if column not in stored or column not in new:
            continue
        a, b = stored[column].to_numpy()[:common], new[column].to_numpy()[:common]
        if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
            a, b = a.astype(float), b.astype(float)
            both_nan = np.isnan(a) & np.isnan(b)
            exact[:common, j] = ~((a == b) | both_nan)
            beyond[:common, j] = ~(np.isclose(b, a, rtol=rtol, atol=atol) | both_nan)
            gap = np.where(both_nan, 0.0, np.abs(a - b))
            largest = max(largest, float(np.max(np.where(np.isnan(gap), np.inf, gap), initial=0.0)))
        else:
            same = [bool(x == y) or (_missing(x) and _missing(y)) for x, y in zip(a, b)]
            exact[:common, j] = beyond[:common, j] = ~np.array(same, dtype=bool)
    return Reproduction(
        rows=len(stored),
        columns=len(stored.columns),
        rtol=rtol,
        atol=atol,
        first_difference=_first(exact, columns, stored, new),
        first_beyond_tolerance=_first(beyond, columns, stored, new),
        largest_abs_difference=largest,
    )


def _missing(value: Any) -> bool:
    """None or NaN: an empty cell, equal to another empty cell."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _first(differs: np.ndarray, columns: list[str], stored: pd.DataFrame, new: pd.DataFrame) -> Difference | None:
    """The first row with a differing cell, named by run, tick within the run and simulated time."""
    rows = np.flatnonzero(differs.any(axis=1))
    if not len(rows):
        return None
    row = int(rows[0])
    table = stored if row < len(stored) else new
    run = str(table["run"].iloc[row]) if "run" in table else MAIN_RUN
    tick = int((table["run"].iloc[:row] == run).sum()) if "run" in table else row
    time_s = float(table["time_s"].iloc[row]) if "time_s" in table else float("nan")
    names = tuple(c for c, d in zip(columns, differs[row]) if d)
    return Difference(run, tick, time_s, names, tuple(_cell(stored, c, row) for c in names), tuple(_cell(new, c, row) for c in names))


def _cell(table: pd.DataFrame, column: str, row: int) -> Any:
    """A cell as a Python value; None where the table has no such column or row."""
    if column not in table or row >= len(table):
        return None
    value = table[column].iloc[row]
    return value.item() if isinstance(value, np.generic) else value


def reproduce(result: Result | str | Path, *, rtol: float = RTOL, atol: float = ATOL) -> Reproduction:
    """Run the stored result's scenario again (the same runs: with or without its baselines) and compare."""
    from .provenance import dependency_versions
    from .runner import run

    stored = result if isinstance(result, Result) else Result.load(result)
    again = run(stored.scenario, baselines=len(stored.runs) > 1)
    outcome = compare_histories(stored.history, again.history, rtol, atol)
    then = {"python": stored.manifest.get("python"), **stored.manifest.get("packages", {})}
    now = {"python": sys.version.split()[0], **dependency_versions()}
    changed = {k: (then.get(k), now.get(k)) for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)}
    if "packages" not in stored.manifest:  # written before manifests listed packages: nothing to compare
        changed = {k: v for k, v in changed.items() if k == "python"}
    return Reproduction(**{**outcome.__dict__, "environment": changed})
