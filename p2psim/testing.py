"""Scenarios with round-number timings for tests and notebooks: an H100 step is 1 s, a 1e6-parameter model
4 s on the test link plus 50 ms.

Timings follow by hand: a step is 4 samples x 8.375e12 FLOP = 33.5e12 FLOP, 1 s on an H100 at fp32
(67 TFLOPS, devices.toml) and the utilisation 0.5 set here; a message of P fp32 parameters takes
4 P / 1e6 s on `LINK` plus its 50 ms latency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from p2psim.build import build_run
from p2psim.engine import RunSetup, World
from p2psim.scenario import Scenario, set_dotted
from p2psim.tasks.base import TaskData

__all__ = ["LINK", "gradient", "quadratic", "quadratic_world", "round_number_scenario", "simulate"]

# 8 Mbit/s = exactly 1e6 bytes/s each way, and 25 ms access latency at each end: 50 ms one way.
LINK = {"name": "test_link", "up_mbps": 8.0, "down_mbps": 8.0, "latency_ms": 25.0}


def round_number_scenario(devices: dict[str, int], /, *changes: Mapping[str, Any], **overrides: Any) -> dict:
    """A least-squares scenario dict on `devices` (all on `LINK`) whose durations are round numbers.

    `changes` (mappings of dotted path to value) apply in order, then `overrides`, by `set_dotted`:
    a caller's own defaults go first, its caller's overrides after, so the later wins.
    """
    data = {
        "seed": 3,
        "task": {"name": "least_squares", "n_samples": 400, "n_features": 5},
        "data": {"batch_size": 4},
        "workload": {"name": "round numbers", "flops_per_sample": 8.375e12, "params": 1e6},
        "peers": {
            "devices": dict(devices),
            "links": {LINK["name"]: sum(devices.values())},
            "utilisation": {name: 0.5 for name in devices},
            "step_overhead_s": 0.0,
        },
        "network": {"links": [dict(LINK)]},
        "topology": {"kind": "complete"},
        "algorithm": {"name": "adpsgd", "lr": 0.05},
        "stop": {"sim_time_s": 19.0},
        "metrics": {"eval_interval_s": 5.0},
    }
    for change in (*changes, overrides):
        for dotted, value in change.items():
            set_dotted(data, dotted, value)
    return data


def simulate(data: dict) -> World:
    """Build the scenario dict `data` and run it to its stop; the finished world, to inspect."""
    world = World(build_run(Scenario.from_dict(data)))
    world.run()
    return world


def quadratic(setup: RunSetup, a: float = 0.5) -> RunSetup:
    """The same run on f(w) = h w^2 / 2 with h = a^2: least squares whose every sample is x = a, y = 0.

    Every batch then has the same gradient h w, so the run is deterministic and 1-D theory applies.
    """
    task = setup.task
    quadratic_task = dataclasses.replace(
        task,
        x_train=torch.full_like(task.x_train, a),
        y_train=torch.zeros_like(task.y_train),
        x_eval=torch.full_like(task.x_eval, a),
        y_eval=torch.zeros_like(task.y_eval),
        optimum_loss=0.0,
    )
    return dataclasses.replace(setup, task=quadratic_task)


def quadratic_world(data: dict, b: np.ndarray) -> World:
    """Peer i holds f_i(x) = (x - b_i)^2 / 2: least squares in one feature, one sample (x=1, y=b_i) per peer.

    Every batch repeats that sample, so each gradient is exactly x - b_i (deterministic, full batch).
    """
    setup = build_run(Scenario.from_dict(data))
    n = len(b)
    ones, targets = torch.ones(n, 1), torch.as_tensor(b, dtype=torch.float32)
    setup.task = dataclasses.replace(
        setup.task, x_train=ones, y_train=targets, x_eval=ones, y_eval=targets,
        initial_params=torch.zeros(1), optimum_loss=None,
    )
    setup.partitions = [np.array([i]) for i in range(n)]
    return World(setup)


def gradient(task: TaskData, params: torch.Tensor, batch: np.ndarray) -> torch.Tensor:
    """The mini-batch gradient at `params`, by autograd, independently of the engine's vmap."""
    index = torch.from_numpy(batch)
    flat = params.clone().requires_grad_(True)
    out = torch.func.functional_call(task.model, task.unflatten(flat), (task.x_train[index],))
    return torch.autograd.grad(task.loss(out, task.y_train[index]), flat)[0]
