"""The bill in a run's summary: totals, to the target accuracy, per sample, and against each baseline."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["bill_entry", "bill_lines"]

MEASURES = ("energy_kwh", "co2_operational_g", "co2_embodied_g", "cost_usd")


def bill_entry(history: pd.DataFrame, facts: dict[str, Any], target: float | None) -> dict[str, Any]:
    """A run's bill for `Result.summary`: totals (to the run's end), per sample, and at the first tick reaching `target`."""
    energy = facts.get("energy")
    if not energy:
        return {}
    entry: dict[str, Any] = {m: energy[m] for m in MEASURES}
    entry["start_utc"] = energy["start_utc"]
    entry["wait_h"] = energy["wait_h"]
    samples = facts.get("samples") or 0
    for m in MEASURES:
        entry[f"{m}_per_sample"] = energy[m] / samples if samples else math.nan
    if target is not None and "accuracy" in history and "energy_kwh" in history:
        reached = history[history["accuracy"] >= target]
        for m in MEASURES:
            entry[f"{m}_to_target"] = float(reached[m].iloc[0]) if len(reached) else math.nan
    return entry


def bill_lines(run: str, entry: dict[str, Any], main: dict[str, Any] | None, target: float | None) -> list[str]:
    """Summary lines: the run's bill, and for a baseline the peer-to-peer run's bill as a multiple of it."""
    if "energy_kwh" not in entry:
        return []
    pad = " " * 18
    text = (
        f"{pad}bill: {entry['energy_kwh']:.3g} kWh, {entry['co2_operational_g']:.3g} g CO2 "
        f"(+{entry['co2_embodied_g']:.3g} g embodied), {entry['cost_usd']:.3g} USD; "
        f"per 1k samples {1e3 * entry['energy_kwh_per_sample']:.3g} kWh, {1e3 * entry['co2_operational_g_per_sample']:.3g} g CO2"
    )
    if entry["wait_h"]:
        text += f"; started {entry['wait_h']:g} h late for less CO2 ({entry['start_utc']})"
    lines = [text]
    if target is not None and "energy_kwh_to_target" in entry:
        if math.isnan(entry["energy_kwh_to_target"]):
            lines.append(f"{pad}to acc>={target:g}: never reached")
        else:
            lines.append(
                f"{pad}to acc>={target:g}: {entry['energy_kwh_to_target']:.3g} kWh, "
                f"{entry['co2_operational_g_to_target']:.3g} g CO2 (+{entry['co2_embodied_g_to_target']:.3g} g embodied), "
                f"{entry['cost_usd_to_target']:.3g} USD"
            )
    if main is not None and "energy_kwh" in main:
        to_target = all(not math.isnan(e.get("energy_kwh_to_target", math.nan)) for e in (main, entry))
        suffix = "_to_target" if to_target else "_per_sample"
        ratios = [main[f"{m}{suffix}"] / entry[f"{m}{suffix}"] if entry[f"{m}{suffix}"] else math.nan
                  for m in ("energy_kwh", "co2_operational_g", "cost_usd")]
        where = f"to acc>={target:g}" if to_target else "per sample"
        lines.append(f"{pad}p2p / this run {where}: {ratios[0]:.3g}x the kWh, {ratios[1]:.3g}x the CO2, {ratios[2]:.3g}x the cost")
    return lines
