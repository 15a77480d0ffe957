"""Calibration table: every shipped task, at its default size and at a larger one, measured here and predicted.

    python experiments/calibrate_all.py --device cuda --out calibration_cuda.csv
    python experiments/calibrate_all.py --device cpu --as epyc_milan_2vcpu --smoke

Prints one table (predicted vs measured step time per task and precision, with the
measured efficiency) and writes the same rows as CSV. On CUDA the catalogue device is
the GPU's own (by name); fp32 and bf16 are both timed there, fp32 alone on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from p2psim.calibrate import (
    Calibration,
    calibrate,
    format_calibrations,
    task_from_options,
)

# (task, options, batch size): each shipped task's defaults, and larger models where a GPU is not idle on them
DEFAULT = [("least_squares", {}, 32), ("logistic", {}, 32), ("digits_mlp", {}, 32), ("cnn", {}, 32),
           ("transformer_lm", {}, 32)]
LARGE = [("digits_mlp", {"hidden": [4096, 4096]}, 256), ("cnn", {"channels": [64, 128, 256], "groups": 8}, 256),
         ("transformer_lm", {"layers": 6, "width": 512, "heads": 8, "context": 256, "corpus_bytes": 800_000}, 32)]
SMOKE = [("logistic", {}, 8), ("transformer_lm", {"layers": 1, "width": 16, "heads": 2, "context": 8}, 8)]


def rows(results: list[Calibration], sizes: list[str]) -> list[dict]:
    """One CSV row per measurement: its fields, the prediction, the ratio and the measured efficiency."""
    out = []
    for result, size in zip(results, sizes):
        name, value = result.measured_efficiency()
        out.append({**{k: getattr(result, k) for k in Calibration.__dataclass_fields__}, "size": size,
                    "bound": result.bound, "predicted_step_s": result.predicted_step_s,
                    "measured_over_predicted_with_overhead": result.measured_step_s / (result.predicted_step_s + result.overhead_s),
                    "efficiency_field": name, "measured_efficiency": value})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--as", dest="as_device", help="catalogue device (default on CUDA: the GPU's own)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--sizes", choices=["default", "large", "all"], default="all", help="which sizes to time")
    parser.add_argument("--smoke", action="store_true", help="two tiny tasks, two steps (a test of the script)")
    parser.add_argument("--out", help="CSV file for the rows")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = ["fp32", "bf16"] if args.device == "cuda" else ["fp32"]
    plan = [(t, o, b, "smoke") for t, o, b in SMOKE] if args.smoke else (
        [(t, o, b, "default") for t, o, b in DEFAULT if args.sizes != "large"]
        + [(t, o, b, "large") for t, o, b in LARGE if args.sizes != "default"])
    results, sizes = [], []
    for precision in precisions:
        for task, options, batch, size in plan:
            results.append(calibrate(task_from_options(task, options), args.device, args.as_device, batch, precision,
                                     "sgd", 2 if args.smoke else args.steps))
            sizes.append(size)
            print(f"{task} ({size}, {precision}): measured {results[-1].measured_step_s * 1e3:.3g} ms", file=sys.stderr)
    print(format_calibrations(results))
    if args.out:
        table = rows(results, sizes)
        with Path(args.out).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
