"""Where the numerics run: the scenario's `engine.device` resolved to a torch device, and a task moved onto it.

Rows (parameters, snapshots, optimizer state, payloads) and the task's data live on one
device; results on CPU and GPU agree to float32 rounding (reduction order differs), not
bit for bit. "auto" takes the GPU where torch sees one, else the CPU.
"""

from __future__ import annotations

import dataclasses

from .config import ScenarioError
from .lazy import torch
from .scenario import TORCH_DEVICES
from .tasks import TaskData

__all__ = ["resolve_device", "task_on"]


def resolve_device(name: str) -> torch.device:
    """The torch device for `engine.device`; asking for "cuda" where torch sees no GPU is a scenario error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name not in TORCH_DEVICES:
        raise ScenarioError("engine.device", f"unknown device {name!r} (allowed: {', '.join(TORCH_DEVICES)})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ScenarioError(
            "engine.device",
            f"'cuda' asked for, but torch {torch.__version__} sees no CUDA GPU here; use 'cpu' or 'auto'",
        )
    return torch.device(name)


def task_on(task: TaskData, device: torch.device) -> TaskData:
    """The task with its initial parameters and data on `device` (the task itself where it is there already)."""
    if task.initial_params.device == device:
        return task
    moved = {
        name: getattr(task, name).to(device) for name in ("initial_params", "x_train", "y_train", "x_eval", "y_eval")
    }
    return dataclasses.replace(task, **moved)
