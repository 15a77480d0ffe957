"""The paper's figures: each is a script in experiments/ (``fig_<name>.py``) with a sweep file; this runs them.

A figure script defines ``make(out_dir, smoke=False) -> Path``: it runs what its sweeps lack
(finished runs are kept, `p2psim.sweep` resumes), writes the figure's small CSV and
``<name>.pdf`` into `out_dir`, and returns the CSV's path. ``to_target`` is the measure the
figures share: each run's first recorded tick at a target accuracy.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tables only pass through here; `p2psim --help` builds this module's parser
    import pandas as pd

__all__ = ["FIGURES_DIR", "add_figures_command", "figure_scripts", "interval95", "make_figures", "to_target"]

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = ROOT / "results" / "figures"


def to_target(table: pd.DataFrame, target: float, by: list[str],
              measures: tuple[str, ...] = ("time_s", "energy_kwh", "co2_operational_g")) -> pd.DataFrame:
    """One row per `by` group (a run): `measures` at its first recorded tick with accuracy >= `target`, NaN if never."""
    reached = table[table["accuracy"] >= target].groupby(by, sort=True)[list(measures)].first()
    runs = table[by].drop_duplicates().set_index(by).sort_index()
    return runs.join(reached).reset_index()


def interval95(values: pd.Series) -> float:
    """Half-width of the 95 % Student-t interval of the mean of `values` (NaNs dropped); NaN below two values."""
    from scipy.stats import t

    values = values.dropna()
    n = len(values)
    return float(t.ppf(0.975, n - 1) * values.std(ddof=1) / n**0.5) if n >= 2 else float("nan")


def figure_scripts(root: Path = ROOT) -> list[Path]:
    """Every figure script: experiments/fig_*.py, in name order."""
    return sorted((root / "experiments").glob("fig_*.py"))


def make_figures(out_dir: str | Path = FIGURES_DIR, *, smoke: bool = False) -> list[Path]:
    """Run each figure script's `make`: missing runs first, then every figure from the stored results; returns the CSVs."""
    written = []
    for script in figure_scripts():
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        written.append(module.make(Path(out_dir), smoke=smoke))
    return written


def add_figures_command(commands: argparse._SubParsersAction) -> None:
    """`p2psim figures [--smoke] [--out DIR]`: the CLI face of `make_figures`."""
    parser = commands.add_parser("figures", help="run the figures' missing runs, then redraw every figure from stored results")
    parser.add_argument("--smoke", action="store_true", help="tiny runs in a temporary folder (what the tests compare)")
    parser.add_argument("--out", type=Path, default=FIGURES_DIR, help="folder for the figures and their CSVs (default: results/figures)")
    parser.set_defaults(handler=lambda args: print(*make_figures(args.out, smoke=args.smoke), sep="\n") or 0)
