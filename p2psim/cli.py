"""`p2psim run | plot | devices | validate`: a thin wrapper over the Python API.

Bad input ends with one clear message on stderr and exit status 2, never a traceback; a
crash inside the simulation (`SimulationError`) ends with one line and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["main"]


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

    scenario = load_scenario(args.scenario, _parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("results") / "runs" / f"{scenario.name}-{scenario.hash()}"
    bars: dict[str, Any] = {}

    def progress(run_name: str, time_s: float, fraction: float) -> None:
        bar = bars.get(run_name)
        if bar is None:
            bar = bars[run_name] = tqdm(total=100, desc=f"{run_name:>16}", unit="%", disable=args.quiet or None, leave=True)
        bar.set_postfix_str(f"t={time_s:.4g} s simulated", refresh=False)
        bar.update(round(100 * fraction) - bar.n)

    result = run(scenario, baselines=not args.no_baselines, out=out, progress=progress)
    for bar in bars.values():
        bar.close()
    print(result.format_summary())
    figure = plot_result(result, out / "figure.png")
    print(f"result written to {out}  (figure: {figure})")
    return 0  # a diverged or stalled run is a result (its status is in the summary), not a failure


def _plot(args: argparse.Namespace) -> int:
    from .plots import plot_result
    from .result import Result

    result = Result.load(args.result)
    path = Path(args.output) if args.output else Path(args.result) / "figure.png"
    print(plot_result(result, path, args.metric))
    return 0


def _devices(args: argparse.Namespace) -> int:
    from .hardware import format_device_table

    print(format_device_table())
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario, _parse_overrides(args.set))
    print(f"{args.scenario}: valid ({scenario.peers.count} peers, algorithm {scenario.algorithm.name})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2psim", description="Peer-to-peer asynchronous SGD in virtual time.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="simulate a scenario and its baselines; write the result folder")
    run.add_argument("scenario", help="scenario TOML file")
    run.add_argument("--out", help="result folder (default: results/runs/<name>-<hash>)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field, e.g. algorithm.lr=0.05")
    run.add_argument("--no-baselines", action="store_true", help="skip the centralized baselines")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    plot = commands.add_parser("plot", help="draw a result folder's figure as PNG")
    plot.add_argument("result", help="result folder written by `p2psim run`")
    plot.add_argument("--metric", choices=["accuracy", "loss"], help="default: accuracy if recorded, else loss")
    plot.add_argument("--output", help="PNG path (default: RESULT/figure.png)")
    plot.set_defaults(handler=_plot)

    devices = commands.add_parser("devices", help="print the device catalogue")
    devices.set_defaults(handler=_devices)

    validate = commands.add_parser("validate", help="check a scenario file without running it")
    validate.add_argument("scenario")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    validate.set_defaults(handler=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `p2psim` command; returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")  # figures go to files; no display is needed or assumed
    from .config import ScenarioError
    from .engine import SimulationError

    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except ScenarioError as error:
        return _fail(f"invalid scenario: {error}", 2)
    except SimulationError as error:  # a crash inside an algorithm: a bug, not bad input
        return _fail(f"simulation failed: {error}", 1)
    except (ValueError, OSError) as error:  # bad input outside a scenario: a missing file, an absent metric
        return _fail(str(error), 2)


def _fail(message: str, status: int) -> int:
    """Print `message` as one line on stderr; return the exit status."""
    print("p2psim: " + " ".join(line.strip() for line in message.splitlines()), file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
