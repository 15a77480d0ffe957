"""Device catalogue and the compute-time model: a step lasts its FLOPs over peak x utilisation.

The catalogue lives in `p2psim/data/devices.toml`, each number with its source
(DESIGN decision 2). FLOPs and activation sizes are counted from the real model
and batch, so a step's duration follows the work it does.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from .data import check_sources, read_catalogue

__all__ = [
    "DEVICE_KINDS",
    "PRECISIONS",
    "Device",
    "activation_bytes_per_sample",
    "count_training_flops",
    "device_sources",
    "format_device_table",
    "host_memory_bytes",
    "load_devices",
    "peak_flops",
    "step_time_factors",
    "step_time_s",
    "training_memory_bytes",
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
    fp16_tflops: float
    memory_gb: float
    memory_bandwidth_gbs: float
    board_power_w: float
    idle_power_w: float
    utilisation: float
    sources: tuple[str, ...]


def _parse_device(name: str, entry: Mapping[str, Any], sources: Mapping[str, str]) -> Device:
    """Build one Device from its TOML table, rejecting missing, unknown or bad fields."""
    where = f"devices.toml: devices.{name}"
    expected = {f.name for f in fields(Device)} - {"name"}
    missing, unknown = expected - entry.keys(), entry.keys() - expected
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {"name": name, "label": str(entry["label"]), "kind": str(entry["kind"])}
    values["year"] = int(entry["year"])
    for field in ("fp32_tflops", "fp16_tflops", "memory_gb", "memory_bandwidth_gbs", "board_power_w", "idle_power_w"):
        values[field] = float(entry[field])
        if values[field] <= 0:
            raise ValueError(f"{where}.{field}: must be > 0, got {values[field]}")
    values["utilisation"] = float(entry["utilisation"])
    values["sources"] = tuple(entry["sources"])
    if values["kind"] not in DEVICE_KINDS:
        raise ValueError(f"{where}.kind: {values['kind']!r} is not one of {', '.join(DEVICE_KINDS)}")
    if not 0 < values["utilisation"] <= 1:
        raise ValueError(f"{where}.utilisation: must be in (0, 1], got {values['utilisation']}")
    values["sources"] = check_sources(where, values["sources"], sources)
    return Device(**values)


@functools.cache
def _catalogue() -> tuple[dict[str, Device], dict[str, str]]:
    """Read and validate devices.toml once."""
    data = read_catalogue("devices.toml")
    sources = {key: str(value) for key, value in data["sources"].items()}
    devices = {name: _parse_device(name, entry, sources) for name, entry in data["devices"].items()}
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


def peak_flops(device: Device, precision: str) -> float:
    """Dense peak FLOP/s of `device` at `precision` (fp16 and bf16 share the half-precision rate).

    >>> peak_flops(load_devices()["a100_sxm_80gb"], "bf16")
    312000000000000.0
    """
    if precision == "fp32":
        return device.fp32_tflops * 1e12
    if precision in ("fp16", "bf16"):
        return device.fp16_tflops * 1e12
    raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def step_time_s(
    flops: float,
    device: Device,
    precision: str,
    utilisation: float | None = None,
    overhead_s: float = 0.0,
) -> float:
    """Seconds for a step of `flops` on `device`: flops / (peak x utilisation) + overhead_s.

    `utilisation` defaults to the device's catalogue value (DESIGN decision 2).

    >>> step_time_s(78e12, load_devices()["a100_sxm_80gb"], "bf16", utilisation=0.25)
    1.0
    """
    if utilisation is None:
        utilisation = device.utilisation
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
    if flops < 0 or overhead_s < 0:
        raise ValueError(f"flops and overhead_s must be >= 0, got {flops} and {overhead_s}")
    return flops / (peak_flops(device, precision) * utilisation) + overhead_s


def _leaf_tensors(model: torch.nn.Module, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies of `params` for a counting pass: parameters require grad, buffers are cloned.

    Cloning buffers keeps a counting pass (e.g. batch-norm running statistics) from
    changing the caller's tensors.
    """
    trainable = {name for name, _ in model.named_parameters()}
    return {
        name: tensor.detach().requires_grad_(True) if name in trainable else tensor.detach().clone()
        for name, tensor in params.items()
    }


def count_training_flops(
    model: torch.nn.Module,
    params: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    """FLOPs of one forward and backward pass of `model` with `params` on one batch.

    Counted by torch.utils.flop_counter.FlopCounterMode, which counts matrix
    products, convolutions and attention as 2 x multiply-accumulates and does not
    count elementwise work (activations, normalisation, the loss, the optimizer).
    The pass runs through torch.func.functional_call, so `model` may be a template
    on the "meta" device while `params` (parameters, and buffers if any) are real.
    The backward computes the parameters' gradients only, as training does, never
    the inputs' gradient (even when `inputs` requires grad).

    >>> model = torch.nn.Linear(64, 10, bias=False)
    >>> params = dict(model.named_parameters())
    >>> x, y = torch.zeros(32, 64), torch.zeros(32, dtype=torch.long)
    >>> count_training_flops(model, params, x, y, torch.nn.functional.cross_entropy)
    81920.0
    """
    tensors = _leaf_tensors(model, params)
    trainable = [tensors[name] for name, _ in model.named_parameters() if name in tensors]
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        outputs = functional_call(model, tensors, (inputs,))
        torch.autograd.grad(loss(outputs, targets), trainable)
    return float(counter.get_total_flops())


def _output_bytes(output: Any) -> int:
    """Bytes of every tensor in a module output (a tensor or nested tuples, lists, dicts)."""
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, (tuple, list)):
        return sum(_output_bytes(item) for item in output)
    if isinstance(output, dict):
        return sum(_output_bytes(item) for item in output.values())
    return 0


def activation_bytes_per_sample(
    model: torch.nn.Module, params: dict[str, torch.Tensor], inputs: torch.Tensor
) -> float:
    """Estimated activation memory kept for backward, per sample: bytes of every leaf module's output.

    A forward pass (functional_call, so `model` may live on "meta") with a hook on
    each module without children sums their outputs' numel x element size, then
    divides by the batch size (the first dimension of `inputs`).

    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> activation_bytes_per_sample(model, dict(model.named_parameters()), torch.zeros(4, 8))
    136.0
    """
    total_bytes = 0

    def record(module: torch.nn.Module, args: Any, output: Any) -> None:
        nonlocal total_bytes
        total_bytes += _output_bytes(output)

    leaves = [module for module in model.modules() if next(module.children(), None) is None]
    handles = [module.register_forward_hook(record) for module in leaves]
    try:
        with torch.no_grad():
            functional_call(model, _leaf_tensors(model, params), (inputs,))
    finally:
        for handle in handles:
            handle.remove()
    return total_bytes / inputs.shape[0]


def training_memory_bytes(
    n_params: float, bytes_per_element: int, batch_size: int, activation_bytes_per_sample: float
) -> float:
    """Bytes a peer needs to train: 3 x n_params x bytes_per_element + batch_size x activation bytes.

    The three parameter-sized tensors are the weights, their gradient and one
    received model copy; optimizer state (e.g. momentum) is not included.

    >>> training_memory_bytes(1e6, 4, 32, 1000.0)
    12032000.0
    """
    return 3 * n_params * bytes_per_element + batch_size * activation_bytes_per_sample


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
    >>> lines[1].split()[-3:], lines[2], lines[3]
    (['D6,', 'A1,', 'U1'], '', 'D6: NVIDIA T4: https://www.nvidia.com/en-us/data-center/tesla-t4/')
    """
    if devices is None:
        devices = load_devices()
    header = ("name", "label", "year", "fp32 TFLOPS", "fp16 TFLOPS", "memory GB", "power W", "utilisation", "sources")
    rows = [header] + [
        (
            name,
            d.label,
            str(d.year),
            f"{d.fp32_tflops:g}",
            f"{d.fp16_tflops:g}",
            f"{d.memory_gb:g}",
            f"{d.board_power_w:g}",
            f"{d.utilisation:.2f}",
            ", ".join(d.sources),
        )
        for name, d in devices.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {2, 3, 4, 5, 6, 7}
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
