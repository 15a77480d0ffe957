"""`engine.device`: rows and task data on the scenario's torch device; "auto" and a missing GPU behave as stated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2psim import Scenario, ScenarioError, run
from p2psim.algorithms.base import IMPLEMENTATIONS
from p2psim.build import build_run
from p2psim.compute_device import resolve_device
from p2psim.engine import World

GPU = torch.cuda.is_available()
ALGORITHMS = sorted(name for name, cls in IMPLEMENTATIONS.items() if cls.__module__.startswith("p2psim.algorithms"))
GPU_TOLERANCE = dict(rtol=1e-3, atol=1e-5)  # float32, reductions in another order: the stated CPU/GPU agreement


def tiny(algorithm: str = "adpsgd", device: str = "cpu") -> dict:
    """Six unequal peers on a ring, logistic regression, a short run."""
    return {
        "name": "device",
        "seed": 3,
        "task": {"name": "logistic", "n_samples": 600, "n_features": 6},
        "data": {"batch_size": 8},
        "peers": {"devices": {"h100_sxm": 2, "rtx_3060": 2, "rx_580": 2}, "links": {"fibre": 4, "cable": 2}, "jitter": 0.2},
        "topology": {"kind": "ring"},
        "algorithm": {"name": algorithm, "lr": 0.05, **({"local_steps": 4} if algorithm.startswith("diloco") else {})},
        "stop": {"samples": 960},
        "metrics": {"eval_interval_samples": 160},
        "engine": {"device": device},
    }


@pytest.mark.skipif(GPU, reason="this machine has a GPU: 'auto' resolves to it")
def test_auto_resolves_to_the_cpu_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    world = World(build_run(Scenario.from_dict(tiny(device="auto"))))
    assert world.params.device.type == "cpu"


@pytest.mark.skipif(GPU, reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_scenario_error_naming_the_field():
    scenario = Scenario.from_dict(tiny(device="cuda"))  # valid as a description: a GPU machine can run it
    with pytest.raises(ScenarioError, match=r"engine\.device.*sees no CUDA GPU"):
        build_run(scenario)


def test_an_unknown_device_names_the_field_and_the_allowed_values():
    with pytest.raises(ScenarioError, match=r"device.*'tpu'.*cpu, cuda, auto"):
        Scenario.from_dict(tiny(device="tpu"))


def test_on_the_cpu_device_every_row_buffer_is_on_the_cpu_and_the_history_is_the_default_ones():
    explicit = Scenario.from_dict(tiny(device="cpu"))
    default = Scenario.from_dict({k: v for k, v in tiny().items() if k != "engine"})
    world = World(build_run(explicit))
    assert {world.params.device.type, world.pool.row(world.pool.store(world.params[0])).device.type} == {"cpu"}
    a = run(explicit, baselines=False).history
    b = run(default, baselines=False).history
    assert a.equals(b)


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cpu_and_gpu_histories_agree_within_the_stated_tolerance(algorithm):
    """Same events (times, samples, bytes exactly); losses and consensus within float32 rounding."""
    cpu = run(Scenario.from_dict(tiny(algorithm, "cpu")), baselines=False).history
    gpu = run(Scenario.from_dict(tiny(algorithm, "cuda")), baselines=False).history
    assert list(cpu.columns) == list(gpu.columns)
    for column in ("time_s", "samples", "steps", "bytes_sent"):
        np.testing.assert_array_equal(cpu[column], gpu[column])
    for column in ("loss", "peers_loss", "consensus_distance"):
        np.testing.assert_allclose(gpu[column], cpu[column], **GPU_TOLERANCE, err_msg=column)
