"""What a training step holds in device memory and moves through it, by arithmetic on the model's sizes.

Bytes per parameter follow ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054, section 3.1):
fp32 training holds fp32 weights and gradients (4 + 4 B) and K x 4 B of optimizer state;
mixed precision (fp16, bf16) holds half-precision weights and gradients (2 + 2 B), an
fp32 master copy (4 B) and the fp32 state, so Adam (K = 2) needs 16 B per parameter.
A peer also holds one received model (at the wire precision) to merge, and its batch's
activations. The same sizes give the bytes a step moves through memory, the second
side of `hardware.step_time_s`'s roofline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .hardware import Device, step_time_s

__all__ = [
    "ACTIVATION_ACCESSES",
    "HOST_LINK_BYTES_S",
    "OFFLOADS",
    "OPTIMIZER_STATES",
    "MemoryNeed",
    "StepWork",
    "checkpoint_share",
    "parameter_bytes",
    "step_work",
    "training_memory",
    "work_time_s",
]

OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2}  # fp32 tensors per parameter
OFFLOADS = ("none", "optimizer")
HALF = {"fp32": False, "fp16": True, "bf16": True}
# Device-memory accesses per activation byte in one step: the forward writes each output and the next
# op reads it (2); the backward reads the saved tensor and the incoming gradient and writes the outgoing
# one (3); normalisation layers make about three more passes (statistics, then the normalisation, in both
# directions). [assumption: 8; tests/validation/test_published_throughput.py holds the ResNet-50 rates
# this gives to MLPerf's and NVIDIA's published per-GPU throughput]
ACTIVATION_ACCESSES = 8
RECOMPUTE_FACTOR = 4 / 3  # checkpointing runs the forward (1 of the 3 forward-equivalents of a step) twice
RECOMPUTE_ACCESSES = 2  # ... and writes and reads its activations again (memory is saved, not traffic)
# Offload moves gradients to the host and weights back each step over PCIe 4.0 x16, ~32 GB/s per direction
# (PCI-SIG, https://pcisig.com/specifications; profiles.md section 2a) [assumption: every offloading device]
HOST_LINK_BYTES_S = 32e9


def parameter_bytes(precision: str, optimizer: str) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state incl. any fp32 master copy) in bytes per parameter.

    >>> parameter_bytes("bf16", "adam")
    (2.0, 2.0, 12.0)
    >>> parameter_bytes("fp32", "sgd")
    (4.0, 4.0, 0.0)
    """
    half = HALF[precision]
    element = 2.0 if half else 4.0
    return element, element, (4.0 if half else 0.0) + 4.0 * OPTIMIZER_STATES[optimizer]


def checkpoint_share(n_layers: int) -> float:
    """Share of activations kept with checkpointing over sqrt(n) segments: 2 / sqrt(n), at most 1.

    Chen, Xu, Zhang & Guestrin, "Training Deep Nets with Sublinear Memory Cost",
    arXiv:1604.06174 (2016): segment inputs (sqrt(n) of n layers) plus one segment
    recomputed during the backward.

    >>> checkpoint_share(16)
    0.5
    """
    return min(1.0, 2.0 / math.sqrt(max(n_layers, 1)))


@dataclass(frozen=True)
class MemoryNeed:
    """Device bytes a peer needs to train, part by part."""

    weights: float
    gradients: float
    optimizer: float  # fp32 master copy and optimizer state (0 when offloaded to the host)
    received: float  # one received model, to merge
    activations: float

    @property
    def total(self) -> float:
        """All parts together."""
        return self.weights + self.gradients + self.optimizer + self.received + self.activations

    def describe(self) -> str:
        """The parts in GB, for an error message."""
        parts = [("weights", self.weights), ("gradients", self.gradients), ("optimizer state", self.optimizer),
                 ("a received model", self.received), ("activations", self.activations)]
        return " + ".join(f"{name} {value / 1e9:.3g}" for name, value in parts)


def training_memory(
    n_params: float,
    precision: str,
    optimizer: str,
    samples: int,
    activation_bytes_per_sample: float,
    wire_bytes_per_param: float,
    activation_share: float = 1.0,
    offload: str = "none",
) -> MemoryNeed:
    """Device memory to train `n_params` on `samples` at once; `activation_share` < 1 with checkpointing.

    >>> need = training_memory(1e9, "bf16", "adam", 1, 0.0, 2.0)
    >>> need.total / 1e9, need.optimizer / 1e9
    (18.0, 12.0)
    """
    weights, gradients, state = parameter_bytes(precision, optimizer)
    return MemoryNeed(
        weights=n_params * weights,
        gradients=n_params * gradients,
        optimizer=0.0 if offload == "optimizer" else n_params * state,
        received=n_params * wire_bytes_per_param,
        activations=samples * activation_bytes_per_sample * activation_share,
    )


@dataclass(frozen=True)
class StepWork:
    """What one local step does: FLOPs, bytes through device memory, bytes over the host link."""

    flops: float
    bytes_moved: float
    host_bytes: float


def step_work(
    n_params: float,
    flops_per_step: float,
    precision: str,
    optimizer: str,
    batch: int,
    activation_bytes_per_sample: float,
    checkpointing: bool = False,
    offload: str = "none",
) -> StepWork:
    """FLOPs and bytes of one step, activations given at the step's precision.

    Parameters: weights read in the forward and the backward, the gradient written and
    read, and the optimizer reading and writing its state and master copy (and writing
    the half-precision weights). Activations: `ACTIVATION_ACCESSES` per byte.
    Checkpointing recomputes the forward (`RECOMPUTE_FACTOR`, `RECOMPUTE_ACCESSES`); offload sends the
    gradient to the host and takes the weights back, and the host runs the optimizer.

    >>> step_work(1e6, 1e9, "fp32", "sgd", 10, 100.0)
    StepWork(flops=1000000000.0, bytes_moved=24008000.0, host_bytes=0.0)
    """
    weights, gradients, state = parameter_bytes(precision, optimizer)
    per_param = 2 * weights + 2 * gradients
    host_bytes = 0.0
    if offload == "optimizer":
        host_bytes = n_params * (gradients + weights)
    else:
        per_param += 2 * state + weights + (0.0 if HALF[precision] else weights)  # fp32 reads w (no master) and writes it
    accesses = ACTIVATION_ACCESSES + (RECOMPUTE_ACCESSES if checkpointing else 0)
    activations = batch * activation_bytes_per_sample * accesses
    return StepWork(
        flops=flops_per_step * (RECOMPUTE_FACTOR if checkpointing else 1.0),
        bytes_moved=n_params * per_param + activations,
        host_bytes=host_bytes,
    )


def work_time_s(
    work: StepWork,
    device: Device,
    precision: str,
    utilisation: float | None = None,
    memory_efficiency: float | None = None,
    overhead_s: float = 0.0,
) -> float:
    """Seconds of one step: the roofline of `hardware.step_time_s`, plus the host transfer, plus overhead."""
    transfer_s = work.host_bytes / HOST_LINK_BYTES_S
    return step_time_s(work.flops, device, precision, utilisation, overhead_s + transfer_s,
                       bytes_moved=work.bytes_moved, memory_efficiency=memory_efficiency)
