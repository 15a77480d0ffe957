"""The standard figures: the model's metric and the peers' consensus distance against simulated time."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from .result import MAIN_RUN, Result

__all__ = ["figure_for", "figure_name", "plot_result", "time_axis"]


def time_axis(seconds_max: float) -> tuple[float, str]:
    """Divisor and label for a simulated-time axis that reads well at this span."""
    if seconds_max >= 3 * 3600:
        return 3600.0, "simulated time [h]"
    if seconds_max >= 180:
        return 60.0, "simulated time [min]"
    return 1.0, "simulated time [s]"


def figure_for(result: Result, metric: str | None = None) -> plt.Figure:
    """`metric` (accuracy if recorded, else loss) of every run, and the peers' consensus distance, against time.

    A cost-only run has no model metric: its figure is the peers' computing fraction and the bytes sent.
    """
    history = result.history
    if result.scenario.engine.cost_only:
        return _cost_only_figure(result)
    metric = metric or ("accuracy" if "accuracy" in history else "loss")
    if metric not in history:
        raise ValueError(f"metric {metric!r} was not recorded (recorded: {', '.join(history.columns[1:])})")
    scale, label = time_axis(float(history["time_s"].max()))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for number, run in enumerate(result.runs):  # colours follow the run's place: p2p first, baselines in scenario order
        rows = result.run_history(run)
        # a dot on every recorded tick: the lines between them are not data (the p2p run records every few minutes)
        style = {"color": f"C{number}", "marker": ".", "markersize": 4}
        style.update({"linewidth": 2.2} if run == MAIN_RUN else {"linestyle": "--", "linewidth": 1.6})
        name = f"p2p: averaged model ({result.manifest['runs'][run]['status']})" if run == MAIN_RUN else run
        _plot_records(left, rows, metric, scale, label=name, **style)
        if run == MAIN_RUN:
            _plot_records(left, rows, f"peers_{metric}", scale, label="p2p: mean of peers' own models",
                          color="C7", linewidth=1.0, marker=".", markersize=3)
    left.set_xscale("symlog", linthresh=1.0 / scale)  # linear below one simulated second
    left.set_xlabel(label + " (symlog; dots: recorded ticks)")
    left.set_ylabel(f"{metric} (held-out set)")  # of both p2p models drawn, and of the baselines
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    main = result.run_history()
    main = main[main["time_s"] > 0]  # at t = 0 all peers are equal: zero has no place on a log axis
    right.plot(main["time_s"] / scale, main["consensus_distance"], label="mean over peers")
    right.plot(main["time_s"] / scale, main["consensus_distance_max"], label="max over peers", linestyle=":")
    distances = main[["consensus_distance", "consensus_distance_max"]].to_numpy()
    if (distances > 0).any():  # one peer, or all peers equal, has only zeros: a log axis would warn
        right.set_yscale("log")
    right.set_xlabel(label)
    right.set_ylabel("consensus distance  ||x_i - mean x||^2")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    title = f"{result.scenario.name}: {result.scenario.peers.count} peers, {result.scenario.algorithm.name}"
    figure.suptitle(title + f"\ntimings {result.manifest['timing_source']}", fontsize=9)
    return figure


def _cost_only_figure(result: Result) -> plt.Figure:
    """Computing fraction (per recording interval, mean over peers) and bytes sent of every run, against time."""
    scale, label = time_axis(float(result.history["time_s"].max()))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for number, run in enumerate(result.runs):
        rows = result.run_history(run)
        rows = rows[rows["time_s"] > 0]  # the t = 0 record covers no interval
        style = {"color": f"C{number}", "marker": ".", "markersize": 4, "label": run}
        left.step(rows["time_s"] / scale, rows["computing_fraction"], where="pre", **style)
        right.plot(rows["time_s"] / scale, rows["bytes_sent"] / 1e9, **style)
    left.set_ylabel("computing fraction (mean over peers, per interval)")
    right.set_ylabel("bytes sent [GB]")
    for axis in (left, right):
        axis.set_xlabel(label + " (dots: recorded ticks)")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    title = f"{result.scenario.name} (cost-only): {result.scenario.peers.count} peers, {result.scenario.algorithm.name}"
    figure.suptitle(title + f"\ntimings {result.manifest['timing_source']}", fontsize=9)
    return figure


def _plot_records(axis: plt.Axes, rows, column: str, scale: float, **style) -> None:
    """Records joined by a line from the first one after t = 0; the t = 0 record alone (no line across a log axis's decades)."""
    start, later = rows[rows["time_s"] == 0], rows[rows["time_s"] > 0]
    axis.plot(later["time_s"] / scale, later[column], **style)
    marker = {k: v for k, v in style.items() if k in ("color", "marker", "markersize")}
    axis.plot(start["time_s"] / scale, start[column], linestyle="none", **marker)


def figure_name(metric: str | None = None) -> str:
    """A result folder's figure file: ``figure.png`` for the default metric, ``figure-<metric>.png`` for one asked for."""
    return "figure.png" if metric is None else f"figure-{metric}.png"


def plot_result(result: Result, path: str | Path, metric: str | None = None) -> Path:
    """Write `figure_for(result, metric)` to a PNG file."""
    figure = figure_for(result, metric)
    path = Path(path)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return path
