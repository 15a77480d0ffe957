"""Calibration files: measured compute and memory efficiencies per device, which scenarios may use.

`p2psim calibrate` writes one (``[devices.<name>]`` with `utilisation` and/or
`memory_efficiency`, and where they were measured); a scenario names it in
`peers.calibration`. A device's efficiencies are then, first to last: the scenario's
`peers.utilisation`, the calibration file's, the catalogue's.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from .config import ScenarioError
from .hardware import load_devices

__all__ = ["EFFICIENCIES", "device_efficiencies", "read_calibration", "write_calibration"]

EFFICIENCIES = ("utilisation", "memory_efficiency")
NOTES = ("measured", "task", "batch_size", "precision", "host", "torch", "date", "predicted_step_s", "measured_step_s")


def read_calibration(path: str, field: str = "peers.calibration") -> dict[str, dict[str, float]]:
    """Device name -> {efficiency: value} of a calibration file; every problem is a ScenarioError naming `field`."""
    return {name: dict(values) for name, values in _read(str(Path(path)), field).items()}


@functools.lru_cache(maxsize=8)
def _read(path: str, field: str) -> dict[str, tuple[tuple[str, float], ...]]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError(field, f"cannot read calibration file {path!r}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(field, f"calibration file {path!r} is not TOML: {error}") from None
    devices = data.get("devices")
    if not isinstance(devices, dict) or set(data) != {"devices"}:
        raise ScenarioError(field, f"calibration file {path!r} must hold only [devices.<name>] tables")
    catalogue = load_devices()
    out = {}
    for name, entry in devices.items():
        where = f"{path}: devices.{name}"
        if name not in catalogue:
            raise ScenarioError(field, f"{where}: unknown device (allowed: {', '.join(catalogue)})")
        unknown = set(entry) - set(EFFICIENCIES) - set(NOTES)
        if unknown:
            raise ScenarioError(field, f"{where}: unknown keys {sorted(unknown)} (allowed: {', '.join(EFFICIENCIES + NOTES)})")
        values = []
        for key in EFFICIENCIES:
            if key in entry:
                value = entry[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                    raise ScenarioError(field, f"{where}.{key}: must be a number in (0, 1], got {value!r}")
                values.append((key, float(value)))
        out[name] = tuple(values)
    return out


def device_efficiencies(
    device: str, utilisation: Mapping[str, float], calibration: str
) -> tuple[float | None, float | None]:
    """(utilisation, memory efficiency) of `device`: the scenario's override, else the file's, else None (catalogue)."""
    measured = read_calibration(calibration)[device] if calibration and device in read_calibration(calibration) else {}
    return utilisation.get(device, measured.get("utilisation")), measured.get("memory_efficiency")


def write_calibration(path: str | Path, device: str, values: Mapping[str, Any]) -> None:
    """Add or replace `device`'s table in the calibration file at `path` (created if missing)."""
    path = Path(path)
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {"devices": {}}
    data.setdefault("devices", {})[device] = dict(values)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    _read.cache_clear()
