"""`p2psim run | sweep | reproduce | plot | validate | calibrate | devices | algorithms | grids | figures`: a thin wrapper over the Python API.

Bad input ends with one clear message on stderr and exit status 2, never a traceback.
Exit status 1 means a bug in p2psim itself: one line asks to report it, and the
traceback goes to a file it names. `reproduce` exits 3 when the histories differ
beyond the tolerance. Scenario warnings print as one line each; builds
that validation estimates to take over a second are announced before they start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["InputError", "main"]

LONG_BUILD_S = 1.0  # announce a task build estimated to take longer
DRAWING_COMMANDS = ("run", "plot", "figures")  # they write figures (with matplotlib's file backend)


class InputError(Exception):
    """Bad input outside a scenario (a folder that is not a result, a metric it lacks): exit status 2."""


def _say(line: str) -> None:
    """One line on stderr, prefixed like every message of the command."""
    print(f"p2psim: {line}", file=sys.stderr)


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs; values are read as TOML (numbers, booleans, lists), else kept as strings."""
    from .config import ScenarioError

    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ScenarioError("--set", f"expected key=value, got {pair!r}")
        try:
            overrides[key.strip()] = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = text
    return overrides


def _run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .plots import plot_result
    from .runner import run
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario, _parse_overrides(args.set), progress=_say)
    build_s = scenario.task.sizes().build_s
    if build_s > LONG_BUILD_S:
        _say(f"building task {scenario.task.name!r} (estimated {build_s:.0f} s)")
    out = Path(args.out) if args.out else Path("results") / "runs" / f"{scenario.name}-{scenario.hash()}"
    bars: dict[str, Any] = {}

    def progress(run_name: str, time_s: float, fraction: float) -> None:
        bar = bars.get(run_name)
        if bar is None:
            bar = bars[run_name] = tqdm(total=100, desc=f"{run_name:>16}", unit="%", disable=args.quiet or None, leave=True)
        bar.set_postfix_str(f"t={time_s:.4g} s simulated", refresh=False)
        bar.update(round(100 * fraction) - bar.n)

    result = run(scenario, baselines=not args.no_baselines, out=out, progress=progress, force=args.force)
    for bar in bars.values():
        bar.close()
    print(result.format_summary())
    figure = plot_result(result, out / "figure.png")
    if result.status == "interrupted" or any(r["status"] == "interrupted" for r in result.manifest["runs"].values()):
        print(f"interrupted: partial result written to {out}  (figure: {figure})")
        return 130
    print(f"result written to {out}  (figure: {figure})")
    return 0  # a diverged or stalled run is a result (its status is in the summary), not a failure


def _plot(args: argparse.Namespace) -> int:
    from .plots import figure_name, plot_result
    from .result import Result

    try:
        result = Result.load(args.result)
        path = Path(args.output) if args.output else Path(args.result) / figure_name(args.metric)  # --metric: its own file
        print(plot_result(result, path, args.metric))
    except ValueError as error:  # not a result folder, or a metric it did not record
        raise InputError(str(error)) from None
    return 0


def _algorithms(args: argparse.Namespace) -> int:
    from .algorithms import format_algorithm_table

    print(format_algorithm_table())
    return 0


def _grids(args: argparse.Namespace) -> int:
    from .grids import format_grid_table

    print(format_grid_table())
    return 0


def _devices(args: argparse.Namespace) -> int:
    from .hardware import format_device_table

    print(format_device_table())
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate, format_calibrations, task_from_options, write_result
    from .tasks import TASKS

    names = [n for n, cls in TASKS.items() if cls.__module__.startswith("p2psim.")] if args.task == "all" else [args.task]
    results = []
    try:
        for name in names:
            task = task_from_options(name, _parse_overrides(args.set) if args.task != "all" else {})
            results.append(calibrate(task, args.device, args.as_device, args.batch_size, args.precision,
                                     args.optimizer, args.steps))
    except (ValueError, TypeError) as error:
        raise InputError(str(error)) from None
    print(format_calibrations(results))
    if args.write:
        for result in results:
            try:
                name, value = write_result(args.write, result)
            except ValueError as error:
                raise InputError(str(error)) from None
            print(f"{args.write}: devices.{result.device}.{name} = {value:.3g} (from task {result.task})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario, _parse_overrides(args.set), progress=_say)
    print(f"{args.scenario}: valid ({scenario.peers.count} peers, algorithm {scenario.algorithm.name})")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .sweep import load_sweep, sweep

    spec = load_sweep(args.sweep)
    out = Path(args.out) if args.out else Path("results") / "sweeps" / spec.name
    bar = tqdm(desc=spec.name, unit="run", disable=args.quiet or None)

    def progress(done: int, total: int, failed: int) -> None:
        bar.total = total
        bar.set_postfix_str(f"{failed} failed", refresh=False)
        bar.update(done - bar.n)

    table = sweep(spec, out=out, executor=args.executor, workers=args.workers, progress=progress, retry_failed=args.retry_failed)
    bar.close()
    runs = table[table["run"] == "p2p"].drop_duplicates("scenario_hash")["status"].value_counts()
    print(f"{runs.sum()} runs: " + ", ".join(f"{n} {status}" for status, n in runs.items()) + f"; table: {out / 'table.csv'}")
    return 0  # a failed run is recorded in the table with its error


DIFFERS = 3  # `reproduce`: the histories differ beyond the tolerance (1 is kept for bugs, 2 for bad input)


def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    try:
        outcome = reproduce(args.result, rtol=args.rtol, atol=args.atol)
    except ValueError as error:  # Result.load: a folder whose files are not its manifest's
        raise InputError(str(error)) from None
    print(outcome.format())
    return 0 if outcome.within_tolerance else DIFFERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2psim", description="Peer-to-peer asynchronous SGD in virtual time.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="simulate a scenario and its baselines; write the result folder")
    run.add_argument("scenario", help="scenario TOML file")
    run.add_argument("--out", help="result folder (default: results/runs/<name>-<hash>)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field, e.g. algorithm.lr=0.05")
    run.add_argument("--no-baselines", action="store_true", help="skip the centralized baselines")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--force", action="store_true", help="replace a folder holding another scenario's result")
    run.set_defaults(handler=_run)

    plot = commands.add_parser("plot", help="draw a result folder's figure as PNG")
    plot.add_argument("result", help="result folder written by `p2psim run`")
    plot.add_argument("--metric", choices=["accuracy", "loss"], help="default: accuracy if recorded, else loss")
    plot.add_argument("--output", help="PNG path (default: RESULT/figure.png; with --metric M, RESULT/figure-M.png)")
    plot.set_defaults(handler=_plot)

    devices = commands.add_parser("devices", help="print the device catalogue")
    devices.set_defaults(handler=_devices)

    algorithms = commands.add_parser("algorithms", help="list the algorithms, one line each, with their papers")
    algorithms.set_defaults(handler=_algorithms)

    grids = commands.add_parser("grids", help="print the carbon-intensity, price, PUE, embodied and rental catalogues")
    grids.set_defaults(handler=_grids)

    calibrate = commands.add_parser("calibrate", help="time real training steps here; compare with the compute model")
    calibrate.add_argument("task", help="a task name, or 'all' for every shipped task at its default size")
    calibrate.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where torch runs the steps")
    calibrate.add_argument("--as", dest="as_device", metavar="DEVICE",
                           help="the catalogue device predicted (default on CUDA: the GPU's own; required on CPU)")
    calibrate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a task option, e.g. width=256")
    calibrate.add_argument("--batch-size", type=int, default=32)
    calibrate.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    calibrate.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd")
    calibrate.add_argument("--steps", type=int, default=10, help="timed steps (after 3 untimed); the median is kept")
    calibrate.add_argument("--write", metavar="FILE", help="write the measured efficiency into this calibration file")
    calibrate.set_defaults(handler=_calibrate)

    validate = commands.add_parser("validate", help="check a scenario file without running it")
    validate.add_argument("scenario")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    validate.set_defaults(handler=_validate)

    sweep = commands.add_parser("sweep", help="run a sweep file's runs not yet finished; write one tidy table")
    sweep.add_argument("sweep", help="sweep TOML file")
    sweep.add_argument("--executor", choices=["local", "ray", "dask"], default="local", help="default: a local process pool")
    sweep.add_argument("--workers", type=int, help="runs at once (default: one per CPU)")
    sweep.add_argument("--out", help="sweep folder (default: results/sweeps/<name>)")
    sweep.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(handler=_sweep)

    reproduce = commands.add_parser("reproduce", help="run a result folder again; compare its history tick by tick")
    reproduce.add_argument("result", help="result folder")
    reproduce.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    reproduce.add_argument("--atol", type=float, default=1e-9, help="absolute tolerance (default 1e-9)")
    reproduce.set_defaults(handler=_reproduce)

    from .figures import add_figures_command  # p2psim figures: experiments/fig_*.py, regenerated into results/figures/
    add_figures_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `p2psim` command; returns the exit status."""
    from .config import ScenarioError, ScenarioWarning

    args = _parser().parse_args(argv)
    if args.command in DRAWING_COMMANDS:  # only these load matplotlib: the others start without it
        import matplotlib

        matplotlib.use("Agg")  # figures go to files; no display is needed or assumed
    with warnings.catch_warnings():
        warnings.simplefilter("always", ScenarioWarning)
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *rest: Any, **kwargs: Any) -> None:
            if issubclass(category, ScenarioWarning):
                _say(f"warning: {message}")
            else:
                shown(message, category, *rest, **kwargs)

        warnings.showwarning = show
        try:
            return args.handler(args)
        except ScenarioError as error:
            return _fail(f"invalid scenario: {error}", 2)
        except (InputError, OSError) as error:  # bad input outside a scenario: a missing file, an absent metric
            return _fail(str(error), 2)
        except KeyboardInterrupt:
            return _fail("interrupted", 130)
        except Exception as error:  # anything else is a bug in p2psim (a SimulationError included)
            return _fail(_bug_report(error), 1)


def _bug_report(error: BaseException) -> str:
    """One line asking to report the bug; the traceback goes to a file that the line names."""
    with tempfile.NamedTemporaryFile("w", prefix="p2psim-bug-", suffix=".txt", delete=False) as file:
        traceback.print_exception(error, file=file)
    return (
        f"internal error, a bug in p2psim: {type(error).__name__}: {error}. Please report it with the scenario "
        f"file and the traceback written to {file.name}"
    )


def _fail(message: str, status: int) -> int:
    """Print `message` as one line on stderr; return the exit status."""
    print("p2psim: " + " ".join(line.strip() for line in message.splitlines()), file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
