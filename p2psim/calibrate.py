"""Time real training steps on the machine at hand and compare them with the compute model's prediction.

`calibrate(task, ...)` builds the task, runs `warmup + steps` real training steps
(forward, backward, optimizer) with torch on "cpu" or "cuda", and takes the median
step. The prediction is the roofline of `hardware.step_time_s` for the catalogue
device it stands for, from the same counted FLOPs and bytes the simulator uses
(`footprint.step_work`), at the catalogue's efficiencies and no overhead. The
measured efficiency is the binding side's time at efficiency 1 over the measured
step: everything else a real step spends (kernel launches, Python, the loss) is
charged to it, so a small model measures low. On CUDA, TF32 is switched off while
timing, so fp32 means the fp32 peak the catalogue states.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from .calibration import write_calibration
from .counting import activation_bytes_per_sample, count_training_flops
from .footprint import parameter_bytes, step_work
from .hardware import PRECISIONS, load_devices, step_time_terms
from .tasks import TASKS, Task

__all__ = ["CUDA_NAMES", "Calibration", "calibrate", "catalogue_device_for", "format_calibrations", "task_from_options",
           "write_result"]

CUDA_NAMES = {  # torch.cuda.get_device_name() fragment -> catalogue device, most specific first
    "H200": "h200_sxm", "H100 PCIe": "h100_pcie", "H100": "h100_sxm", "A100-SXM4-40GB": "a100_sxm_40gb",
    "A100": "a100_sxm_80gb", "V100": "v100_sxm2", "L4": "l4", "T4": "t4", "RTX 4090": "rtx_4090",
    "RTX 3090": "rtx_3090", "RTX 3060": "rtx_3060", "1080 Ti": "gtx_1080ti",
}
OPTIMIZERS = {"sgd": lambda p, lr: torch.optim.SGD(p, lr=lr), "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
              "adam": lambda p, lr: torch.optim.Adam(p, lr=lr)}
AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Calibration:
    """One task's measured and predicted step on one device."""

    task: str
    device: str  # the catalogue device the prediction is for
    torch_device: str
    host: str
    precision: str
    optimizer: str
    batch_size: int
    n_params: int
    flops_per_step: float
    bytes_moved_per_step: float
    predicted_compute_s: float
    predicted_memory_s: float
    measured_step_s: float
    overhead_s: float = 1e-3  # what a scenario adds to every step by default (peers.step_overhead_s)

    @property
    def predicted_step_s(self) -> float:
        """The roofline at the catalogue's efficiencies: the slower side."""
        return max(self.predicted_compute_s, self.predicted_memory_s)

    @property
    def bound(self) -> str:
        """Which side of the roofline binds the prediction."""
        return "compute" if self.predicted_compute_s >= self.predicted_memory_s else "memory"

    def measured_efficiency(self) -> tuple[str, float]:
        """(catalogue field, value): the binding side's time at efficiency 1 over the measured step."""
        device = load_devices()[self.device]
        compute_1, memory_1 = step_time_terms(self.flops_per_step, self.bytes_moved_per_step, device,
                                              self.precision, 1.0, 1.0)
        if self.bound == "compute":
            return "utilisation", compute_1 / self.measured_step_s
        return "memory_efficiency", memory_1 / self.measured_step_s


def catalogue_device_for(torch_device: str) -> str:
    """The catalogue device a CUDA GPU is (by its name); a CPU has no default and must be named."""
    if torch_device == "cuda":
        name = torch.cuda.get_device_name(0)
        for fragment, device in CUDA_NAMES.items():
            if fragment in name:
                return device
        raise ValueError(f"GPU {name!r} is not in the catalogue's known names; name the catalogue device (--as)")
    raise ValueError("on a CPU, name the catalogue device the prediction is for (--as), e.g. epyc_milan_2vcpu")


def _batch(data: Any, batch_size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `batch_size` training samples, repeated if the task has fewer."""
    index = torch.arange(batch_size) % len(data.y_train)
    return data.x_train[index].to(device), data.y_train[index].to(device)


def _timed_steps(data: Any, x: torch.Tensor, y: torch.Tensor, device: str, precision: str, optimizer: str,
                 warmup: int, steps: int) -> list[float]:
    """Wall seconds of each of `steps` training steps after `warmup` untimed ones."""
    params = {name: tensor.detach().clone().to(device).requires_grad_(True)
              for name, tensor in data.unflatten(data.initial_params.clone()).items()}
    step = OPTIMIZERS[optimizer](list(params.values()), 1e-3)
    autocast = torch.autocast(device_type=device, dtype=AUTOCAST[precision]) if precision in AUTOCAST else None
    scaler = torch.amp.GradScaler(device) if precision == "fp16" and device == "cuda" else None
    times = []
    for i in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step.zero_grad(set_to_none=True)
        if autocast is None:
            loss = data.loss(functional_call(data.model, params, (x,)), y)
        else:
            with autocast:
                loss = data.loss(functional_call(data.model, params, (x,)), y)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(step)
            scaler.update()
        else:
            step.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def calibrate(
    task: Task,
    torch_device: str = "cpu",
    device: str | None = None,
    batch_size: int = 32,
    precision: str = "fp32",
    optimizer: str = "sgd",
    steps: int = 10,
    warmup: int = 3,
    seed: int = 0,
) -> Calibration:
    """Measure `task`'s training step on `torch_device` and predict it for catalogue `device`.

    `device` defaults to the catalogue entry of the CUDA GPU at hand (by name).
    """
    device = device or catalogue_device_for(torch_device)
    catalogue = load_devices()
    if device not in catalogue:
        raise ValueError(f"unknown catalogue device {device!r} (allowed: {', '.join(catalogue)})")
    if precision not in PRECISIONS or optimizer not in OPTIMIZERS:
        raise ValueError(f"precision must be one of {PRECISIONS} and optimizer one of {tuple(OPTIMIZERS)}")
    data = task.build(seed)
    x, y = _batch(data, batch_size, "cpu")
    # counted on "meta" (shapes only), as validation counts: no real pass on the host
    params = {name: torch.empty(t.shape, device="meta") for name, t in data.unflatten(data.initial_params.clone()).items()}
    xm, ym = x.to("meta"), y.to("meta")
    flops = count_training_flops(data.model, params, xm, ym, data.loss)
    activations = activation_bytes_per_sample(data.model, params, xm) * parameter_bytes(precision, "sgd")[0] / 4
    work = step_work(float(data.n_params), flops, precision, optimizer, batch_size, activations)
    compute_s, memory_s = step_time_terms(work.flops, work.bytes_moved, catalogue[device], precision)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        xd, yd = x.to(torch_device), y.to(torch_device)
        times = _timed_steps(data, xd, yd, torch_device, precision, optimizer, warmup, steps)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    host = (torch.cuda.get_device_name(0) if torch_device == "cuda"
            else f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
    return Calibration(
        task=task.name, device=device, torch_device=torch_device, host=host, precision=precision,
        optimizer=optimizer, batch_size=batch_size, n_params=data.n_params, flops_per_step=work.flops,
        bytes_moved_per_step=work.bytes_moved, predicted_compute_s=compute_s, predicted_memory_s=memory_s,
        measured_step_s=statistics.median(times),
    )


def format_calibrations(results: list[Calibration]) -> str:
    """A plain-text table: the roofline, with the default step overhead, against the measured step; the efficiency.

    The measured efficiency charges the whole measured step to the binding side (see the module's docstring).
    """
    header = ("task", "device", "precision", "batch", "params", "GFLOP/step", "MB moved", "bound",
              "roofline ms", "+overhead ms", "measured ms", "measured/(roofline+overhead)", "measured efficiency")
    rows = [header]
    for r in results:
        name, value = r.measured_efficiency()
        with_overhead = r.predicted_step_s + r.overhead_s
        rows.append((r.task, r.device, r.precision, str(r.batch_size), f"{r.n_params:,}", f"{r.flops_per_step / 1e9:.3g}",
                     f"{r.bytes_moved_per_step / 1e6:.3g}", r.bound, f"{r.predicted_step_s * 1e3:.3g}",
                     f"{with_overhead * 1e3:.3g}", f"{r.measured_step_s * 1e3:.3g}",
                     f"{r.measured_step_s / with_overhead:.3g}", f"{name} {value:.3g}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def write_result(path: str | Path, result: Calibration) -> tuple[str, float]:
    """Write `result`'s measured efficiency for its device into the calibration file at `path`; return it.

    An efficiency above 1 means the catalogue's peak or bandwidth is too low for this
    machine: it is refused, since a scenario's efficiencies must be in (0, 1].
    """
    name, value = result.measured_efficiency()
    if not 0 < value <= 1:
        raise ValueError(f"measured {name} {value:.3g} is not in (0, 1]: the catalogue's peak or bandwidth for "
                         f"{result.device!r} is below what this machine did; not written")
    notes: Mapping[str, Any] = {
        name: float(f"{value:.4g}"), "measured": "p2psim calibrate", "task": result.task, "batch_size": result.batch_size,
        "precision": result.precision, "host": result.host, "torch": torch.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "predicted_step_s": result.predicted_step_s, "measured_step_s": result.measured_step_s,
    }
    write_calibration(path, result.device, notes)
    return name, value


def task_from_options(name: str, options: Mapping[str, Any]) -> Task:
    """A registered task by name with the given options (its own validation applies)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (allowed: {', '.join(TASKS)})")
    return TASKS[name](**options)

