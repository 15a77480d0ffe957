"""Device catalogue and the compute-time model: a roofline over the step's FLOPs and the bytes it moves.

The catalogue lives in `p2psim/data/devices.toml`, each number with its source
(DESIGN decision 2). A step lasts the longer of its FLOPs over peak x compute
efficiency and its bytes moved over memory bandwidth x memory efficiency, plus an
overhead. FLOPs and activation sizes are counted from the real model and batch
(`counting.py`), so a step's duration follows the work it does; `footprint.py` turns
them into bytes. Nothing here imports torch: `p2psim devices` reads the catalogue only.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping

from .data import check_sources, read_catalogue

if TYPE_CHECKING:  # `p2psim devices` reads the catalogue without numpy
    import numpy as np

__all__ = [
    "DEVICE_KINDS",
    "PRECISIONS",
    "Device",
    "device_sources",
    "format_device_table",
    "host_memory_bytes",
    "load_devices",
    "peak_flops",
    "step_time_factors",
    "step_time_s",
    "step_time_terms",
    "supported_precisions",
]

PRECISIONS = ("fp32", "fp16", "bf16")
DEVICE_KINDS = ("datacenter_gpu", "consumer_gpu", "apple_gpu", "cpu", "edge")


@dataclass(frozen=True)
class Device:
    """One device of the catalogue: peak throughput, memory, power and default utilisation."""

    name: str
    label: str
    kind: str
    year: int
    fp32_tflops: float
    fp16_tflops: float  # mixed-precision fp16 training (FP32 accumulate), as torch runs it
    bf16_tflops: float  # 0: no bf16 hardware, and bf16 is refused
    memory_gb: float
    memory_bandwidth_gbs: float
    board_power_w: float
    idle_power_w: float
    utilisation: float  # compute efficiency: achieved fraction of the peak
    sources: tuple[str, ...]
    memory_efficiency: float = 0.8  # achieved fraction of memory_bandwidth_gbs, from the device class ([kinds])


def _parse_device(
    name: str, entry: Mapping[str, Any], sources: Mapping[str, str], memory_efficiency: Mapping[str, float] | None = None
) -> Device:
    """Build one Device from its TOML table, rejecting missing, unknown or bad fields."""
    where = f"devices.toml: devices.{name}"
    expected = {f.name for f in fields(Device)} - {"name", "memory_efficiency"}
    missing, unknown = expected - entry.keys(), entry.keys() - expected
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {"name": name, "label": str(entry["label"]), "kind": str(entry["kind"])}
    values["year"] = int(entry["year"])
    for field in ("fp32_tflops", "fp16_tflops", "memory_gb", "memory_bandwidth_gbs", "board_power_w", "idle_power_w"):
        values[field] = float(entry[field])
        if values[field] <= 0:
            raise ValueError(f"{where}.{field}: must be > 0, got {values[field]}")
    values["bf16_tflops"] = float(entry["bf16_tflops"])
    if values["bf16_tflops"] < 0:
        raise ValueError(f"{where}.bf16_tflops: must be >= 0 (0: no bf16 hardware), got {values['bf16_tflops']}")
    values["utilisation"] = float(entry["utilisation"])
    values["sources"] = tuple(entry["sources"])
    if values["kind"] not in DEVICE_KINDS:
        raise ValueError(f"{where}.kind: {values['kind']!r} is not one of {', '.join(DEVICE_KINDS)}")
    if not 0 < values["utilisation"] <= 1:
        raise ValueError(f"{where}.utilisation: must be in (0, 1], got {values['utilisation']}")
    values["sources"] = check_sources(where, values["sources"], sources)
    if memory_efficiency is not None:
        if values["kind"] not in memory_efficiency:
            raise ValueError(f"{where}.kind: {values['kind']!r} has no [kinds.{values['kind']}] table")
        values["memory_efficiency"] = memory_efficiency[values["kind"]]
    return Device(**values)


def _parse_kinds(kinds: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, float]:
    """Memory efficiency by device class, each in (0, 1] and sourced."""
    out = {}
    for kind, entry in kinds.items():
        where = f"devices.toml: kinds.{kind}"
        if kind not in DEVICE_KINDS or set(entry) != {"memory_efficiency", "sources"}:
            raise ValueError(f"{where}: needs a kind of {', '.join(DEVICE_KINDS)} with memory_efficiency and sources")
        check_sources(where, tuple(entry["sources"]), sources)
        out[kind] = float(entry["memory_efficiency"])
        if not 0 < out[kind] <= 1:
            raise ValueError(f"{where}.memory_efficiency: must be in (0, 1], got {out[kind]}")
    return out


@functools.cache
def _catalogue() -> tuple[dict[str, Device], dict[str, str]]:
    """Read and validate devices.toml once."""
    data = read_catalogue("devices.toml")
    sources = {key: str(value) for key, value in data["sources"].items()}
    kinds = _parse_kinds(data["kinds"], sources)
    devices = {name: _parse_device(name, entry, sources, kinds) for name, entry in data["devices"].items()}
    return devices, sources


def load_devices() -> dict[str, Device]:
    """The device catalogue by name (a fresh dict over cached, frozen devices).

    >>> load_devices()["h100_sxm"].fp16_tflops
    989.0
    """
    return dict(_catalogue()[0])


def device_sources() -> dict[str, str]:
    """The [sources] table of devices.toml: source id -> reference text."""
    return dict(_catalogue()[1])


def supported_precisions(device: Device) -> tuple[str, ...]:
    """The precisions `device` trains in: all but bf16 where it has no bf16 hardware.

    >>> supported_precisions(load_devices()["v100_sxm2"])
    ('fp32', 'fp16')
    """
    return tuple(p for p in PRECISIONS if p != "bf16" or device.bf16_tflops > 0)


def peak_flops(device: Device, precision: str) -> float:
    """Dense peak FLOP/s of `device` training at `precision`; bf16 on a device without it is an error.

    fp16 and bf16 mean mixed-precision training with FP32 accumulation, the rate torch
    gets (devices.toml says per device where that is not the native half rate).

    >>> peak_flops(load_devices()["a100_sxm_80gb"], "bf16")
    312000000000000.0
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision not in supported_precisions(device):
        raise ValueError(f"device {device.name!r} has no {precision} hardware "
                         f"(allowed: {', '.join(supported_precisions(device))})")
    return {"fp32": device.fp32_tflops, "fp16": device.fp16_tflops, "bf16": device.bf16_tflops}[precision] * 1e12


def step_time_terms(
    flops: float,
    bytes_moved: float,
    device: Device,
    precision: str,
    utilisation: float | None = None,
    memory_efficiency: float | None = None,
) -> tuple[float, float]:
    """(compute seconds, memory seconds) of a step: flops / (peak x utilisation), bytes / (bandwidth x efficiency).

    Both efficiencies default to the catalogue's (utilisation per device, memory
    efficiency per device class).

    >>> step_time_terms(78e12, 1.0195e12, load_devices()["a100_sxm_80gb"], "bf16", 0.25, 0.5)
    (1.0, 1.0)
    """
    utilisation = device.utilisation if utilisation is None else utilisation
    memory_efficiency = device.memory_efficiency if memory_efficiency is None else memory_efficiency
    for name, value in (("utilisation", utilisation), ("memory_efficiency", memory_efficiency)):
        if not 0 < value <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    if flops < 0 or bytes_moved < 0:
        raise ValueError(f"flops and bytes_moved must be >= 0, got {flops} and {bytes_moved}")
    compute_s = flops / (peak_flops(device, precision) * utilisation)
    memory_s = bytes_moved / (device.memory_bandwidth_gbs * 1e9 * memory_efficiency)
    return compute_s, memory_s


def step_time_s(
    flops: float,
    device: Device,
    precision: str,
    utilisation: float | None = None,
    overhead_s: float = 0.0,
    bytes_moved: float = 0.0,
    memory_efficiency: float | None = None,
) -> float:
    """Seconds for a step on `device`: the roofline max(compute, memory) of `step_time_terms`, plus overhead_s.

    A step is as slow as the slower of its arithmetic and its memory traffic (Williams,
    Waterman & Patterson, "Roofline", CACM 2009); `bytes_moved` 0 leaves compute alone.

    >>> step_time_s(78e12, load_devices()["a100_sxm_80gb"], "bf16", utilisation=0.25)
    1.0
    """
    if overhead_s < 0:
        raise ValueError(f"overhead_s must be >= 0, got {overhead_s}")
    return max(step_time_terms(flops, bytes_moved, device, precision, utilisation, memory_efficiency)) + overhead_s


@functools.cache
def host_memory_bytes() -> float:
    """Physical memory of the machine running the simulation, the budget every array of a run shares."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume a 16 GB laptop
        return 16e9


def format_device_table(devices: Mapping[str, Device] | None = None) -> str:
    """Plain-text aligned table of devices (the catalogue by default), for `p2psim devices`.

    Below the table, after a blank line, one line ``ID: reference`` for each source id
    the table uses, in the order of the catalogue's [sources] table.

    >>> lines = format_device_table({"t4": load_devices()["t4"]}).splitlines()
    >>> lines[1].split()[-4:], lines[2], lines[3]
    (['D6,', 'A1,', 'U1,', 'P1'], '', 'D6: NVIDIA T4: https://www.nvidia.com/en-us/data-center/tesla-t4/')
    """
    if devices is None:
        devices = load_devices()
    header = ("name", "label", "year", "fp32 TFLOPS", "fp16 TFLOPS", "bf16 TFLOPS", "memory GB", "GB/s", "power W",
              "utilisation", "memory eff.", "sources")
    rows = [header] + [
        (
            name,
            d.label,
            str(d.year),
            f"{d.fp32_tflops:g}",
            f"{d.fp16_tflops:g}",
            f"{d.bf16_tflops:g}" if d.bf16_tflops > 0 else "none",
            f"{d.memory_gb:g}",
            f"{d.memory_bandwidth_gbs:g}",
            f"{d.board_power_w:g}",
            f"{d.utilisation:.2f}",
            f"{d.memory_efficiency:.2f}",
            ", ".join(d.sources),
        )
        for name, d in devices.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = set(range(2, 11))
    lines = [
        "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    used = {source for d in devices.values() for source in d.sources}
    references = [f"{key}: {text}" for key, text in device_sources().items() if key in used]
    return "\n".join([line.rstrip() for line in lines] + [""] + references)


def step_time_factors(
    rng: np.random.Generator, distribution: str, jitter: float, size: int, pareto_alpha: float | None = None
) -> list[float]:
    """`size` mean-one random factors on steps' modelled durations, drawn in one call (the same values one at a time).

    "lognormal": exp(jitter z - jitter^2 / 2), z standard normal (1 when jitter is 0, without a draw).
    "exponential": an Exp(1) draw, so steps are memoryless, as the Poisson clocks of
    asynchronous gossip theory assume (Boyd et al., "Randomized gossip algorithms", 2006).
    "pareto": heavy-tailed steps, a Pareto draw of shape alpha > 1 scaled to mean one,
    (1 + Lomax(alpha)) (alpha - 1) / alpha; its variance is infinite for alpha <= 2. Why tails
    matter: Dean & Barroso, "The tail at scale", CACM 56(2), 2013 (the shape is yours to set).
    """
    if distribution == "exponential":
        return rng.exponential(size=size).tolist()
    if distribution == "pareto":
        assert pareto_alpha is not None and pareto_alpha > 1
        scale = (pareto_alpha - 1.0) / pareto_alpha
        return ((1.0 + rng.pareto(pareto_alpha, size)) * scale).tolist()
    if jitter == 0:
        return [1.0] * size
    return [math.exp(jitter * z - 0.5 * jitter**2) for z in rng.standard_normal(size).tolist()]
