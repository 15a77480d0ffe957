"""A scenario's modelled local step: its work (`footprint`) on each device (`hardware`), at its efficiencies.

Build (the run's step times), budget (validation's estimates) and calibrate (the
prediction a measurement is compared with) all go through here, so they agree.
"""

from __future__ import annotations

from .calibration import device_efficiencies
from .config import ScenarioError
from .footprint import (
    MemoryNeed,
    StepWork,
    checkpoint_share,
    parameter_bytes,
    step_work,
    training_memory,
    work_time_s,
)
from .hardware import Device
from .lazy import torch
from .scenario import Scenario
from .workloads import load_workloads

__all__ = ["activations_at_precision", "device_step_s", "memory_need", "model_layers", "scenario_work",
           "timing_activation_bytes", "timing_layers"]

COUNTED_ELEMENT_BYTES = 4  # the task models run in float32; their activations are counted at 4 B an element


def _element_bytes(precision: str) -> float:
    return parameter_bytes(precision, "sgd")[0]


def model_layers(model: torch.nn.Module) -> int:
    """Modules holding parameters of their own (linear, convolution, normalisation, embedding): the layers."""
    return sum(1 for module in model.modules() if next(module.parameters(recurse=False), None) is not None)


def timing_layers(scenario: Scenario) -> int | None:
    """Layers of what the timings stand for: the task's model, or a catalogue workload's (None if unknown)."""
    workload = scenario.workload
    if workload is None:
        chain = scenario.task.linear_chain()  # a chain of Linear layers is counted without torch
        return chain.layers if chain is not None else model_layers(scenario.task.model())
    entry = load_workloads().get(workload.name)
    return getattr(entry, "layers", None)


def activations_at_precision(scenario: Scenario, counted_bytes_per_sample: float) -> float:
    """Activation bytes per sample at the scenario's precision.

    A declared workload's are taken as declared; the task model's, counted in float32,
    scale with the precision's element size (mixed precision keeps 16-bit activations).
    """
    if scenario.workload is not None:
        return float(scenario.workload.activation_bytes_per_sample or 0.0)
    return counted_bytes_per_sample * _element_bytes(scenario.peers.precision) / COUNTED_ELEMENT_BYTES


def timing_activation_bytes(scenario: Scenario) -> float:
    """Activation bytes per sample at the scenario's precision of what timings stand for (counted on "meta": no data)."""
    if scenario.workload is not None:
        return activations_at_precision(scenario, 0.0)
    from .counting import activation_bytes_per_sample  # counting imports torch; a run has it loaded already

    model = scenario.task.model()
    params = {name: torch.empty(p.shape, device="meta") for name, p in model.named_parameters()}
    x = torch.empty(1, scenario.task.sizes().n_features, device="meta")
    return activations_at_precision(scenario, activation_bytes_per_sample(model, params, x))


def _activation_share(scenario: Scenario) -> float:
    if not scenario.peers.activation_checkpointing:
        return 1.0
    layers = timing_layers(scenario)
    if layers is None:
        raise ScenarioError("peers.activation_checkpointing",
                            f"needs the layer count of workload {scenario.workload.name!r}; name a catalogue workload with one")
    return checkpoint_share(layers)


def scenario_work(scenario: Scenario, n_params: float, flops_per_step: float, activation_bytes_per_sample: float) -> StepWork:
    """One local step's FLOPs and bytes; activations at the scenario's precision (`activations_at_precision`)."""
    peers = scenario.peers
    return step_work(
        n_params, flops_per_step, peers.precision, scenario.algorithm.optimizer.name, scenario.data.batch_size,
        activation_bytes_per_sample, checkpointing=peers.activation_checkpointing, offload=peers.offload,
    )


def memory_need(scenario: Scenario, n_params: float, samples: int, activation_bytes_per_sample: float) -> MemoryNeed:
    """Device memory a peer needs for `samples` at once (activations at the scenario's precision)."""
    peers = scenario.peers
    return training_memory(
        n_params, peers.precision, scenario.algorithm.optimizer.name, samples, activation_bytes_per_sample,
        _element_bytes(peers.precision), _activation_share(scenario), peers.offload,
    )


def device_step_s(scenario: Scenario, device: Device, work: StepWork) -> float:
    """Modelled seconds of one local step on `device`, without jitter."""
    peers = scenario.peers
    utilisation, memory_efficiency = device_efficiencies(device.name, peers.utilisation, peers.calibration)
    return work_time_s(work, device, peers.precision, utilisation, memory_efficiency, peers.step_overhead_s)
