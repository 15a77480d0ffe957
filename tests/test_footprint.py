"""Memory and bytes moved per step (p2psim.footprint), and the checks built on them, on hand-computed cases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import p2psim
from p2psim.config import ScenarioError
from p2psim.footprint import (
    ACTIVATION_ACCESSES,
    HOST_LINK_BYTES_S,
    checkpoint_share,
    parameter_bytes,
    step_work,
    training_memory,
    work_time_s,
)
from p2psim.hardware import load_devices

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "scenarios" / "quickstart.toml"


@pytest.mark.parametrize(
    "precision, optimizer, expected",
    [("fp32", "sgd", 8), ("fp32", "momentum", 12), ("fp32", "adam", 16),
     ("bf16", "sgd", 8), ("fp16", "momentum", 12), ("bf16", "adam", 16), ("fp16", "adamw", 16)],
)
def test_bytes_per_parameter_by_precision_and_optimizer(precision, optimizer, expected):
    # fp32: 4 (w) + 4 (g) + 4 K; mixed: 2 (w) + 2 (g) + 4 (master) + 4 K; Adam K = 2 -> 16 B (ZeRO, section 3.1)
    assert sum(parameter_bytes(precision, optimizer)) == expected


def test_training_memory_parts_and_offload():
    need = training_memory(1e9, "fp16", "adam", 4, 1e8, 2.0)
    assert (need.weights, need.gradients, need.optimizer, need.received, need.activations) == (2e9, 2e9, 12e9, 2e9, 4e8)
    assert need.total == pytest.approx(18.4e9)
    offloaded = training_memory(1e9, "fp16", "adam", 4, 1e8, 2.0, activation_share=0.25, offload="optimizer")
    assert offloaded.optimizer == 0.0 and offloaded.activations == 1e8 and offloaded.total == pytest.approx(6.1e9)


def test_checkpoint_share_is_two_over_root_n_and_never_above_one():
    assert checkpoint_share(100) == pytest.approx(0.2)
    assert checkpoint_share(1) == checkpoint_share(4) == 1.0


def test_step_work_counts_parameter_and_activation_traffic_by_hand():
    # mixed precision, momentum (K = 1): w read twice (2 + 2), g written and read (2 + 2), master and momentum
    # read and written (2 x (4 + 4)), half weights written (2) = 26 B per parameter
    work = step_work(1e6, 5e9, "bf16", "momentum", 16, 1000.0)
    assert work.bytes_moved == 26e6 + 16 * 1000.0 * ACTIVATION_ACCESSES
    assert work.flops == 5e9 and work.host_bytes == 0.0
    # checkpointing recomputes the forward: 4/3 the FLOPs; offload: the optimizer's traffic leaves the device,
    # gradient and weights cross the host link (2 + 2 B per parameter)
    off = step_work(1e6, 5e9, "bf16", "momentum", 16, 1000.0, checkpointing=True, offload="optimizer")
    assert off.flops == pytest.approx(5e9 * 4 / 3)
    # recomputation writes and reads the forward's activations once more (2 accesses)
    assert off.bytes_moved == 8e6 + 16 * 1000.0 * (ACTIVATION_ACCESSES + 2) and off.host_bytes == 4e6


def test_work_time_adds_the_host_transfer_to_the_roofline():
    device = load_devices()["rtx_3090"]
    work = step_work(1e9, 0.0, "fp16", "adam", 1, 0.0, offload="optimizer")
    roofline = work.bytes_moved / (device.memory_bandwidth_gbs * 1e9 * device.memory_efficiency)
    assert work_time_s(work, device, "fp16") == pytest.approx(roofline + 4e9 / HOST_LINK_BYTES_S)


def _quickstart(**overrides):
    return p2psim.load_scenario(QUICKSTART, overrides)


def test_memory_check_names_every_device_that_fails_with_need_and_capacity():
    with pytest.raises(ScenarioError) as error:
        _quickstart(**{"workload.params": 1e9, "algorithm.optimizer.name": "adam"})
    message = str(error.value)
    # 1e9 params, fp16 Adam: 16 GB of state + a received 2 GB + 32 x 50 MB of activations = 19.6 GB
    assert error.value.field == "peers.devices" and "19.6 GB per peer with batch 32" in message
    for name, capacity in [("v100_sxm2", 16), ("rtx_3060", 12), ("t4", 16), ("rx_6800xt", 16), ("rx_580", 8),
                           ("apple_m2", 16)]:
        assert f"'{name}' has {capacity}" in message
    for fits in ("h100_sxm", "a100_sxm_80gb", "rtx_4090", "rtx_3090", "rx_7900xtx"):
        assert f"'{fits}'" not in message


def test_offload_and_checkpointing_make_a_model_fit():
    # TinyLlama 1.1B (catalogue: 22 layers, d 2048, context 2048), fp16 Adam, one sequence a step:
    # state 16 x 1.1e9 = 17.6 GB, a received model 2.2 GB, activations 34 x 2048 x 2048 x 22 = 3.14 GB
    llama = {"workload": {"name": "llama_1b"}, "algorithm.optimizer.name": "adam", "data.batch_size": 1}
    with pytest.raises(ScenarioError, match="needs 22.9 GB per peer with batch 1") as error:
        _quickstart(**llama)
    assert "'rtx_4090'" not in str(error.value) and "'v100_sxm2' has 16" in str(error.value)
    # optimizer state and master weights offloaded: 2.2 + 2.2 + 2.2 + 3.14 = 9.74 GB; the RX 580 (8 GB) still fails
    with pytest.raises(ScenarioError, match="needs 9.74 GB") as error:
        _quickstart(**llama, **{"peers.offload": "optimizer"})
    assert "'rx_580' has 8" in str(error.value) and "'v100_sxm2'" not in str(error.value)
    # and checkpointing keeps 2 / sqrt(22) of the activations: 6.6 + 1.34 = 7.94 GB < 8 GB
    scenario = _quickstart(**llama, **{"peers.offload": "optimizer", "peers.activation_checkpointing": True})
    assert scenario.peers.activation_checkpointing


def test_bf16_on_devices_without_it_is_one_error_listing_them():
    with pytest.raises(ScenarioError) as error:
        _quickstart(**{"peers.precision": "bf16"})
    assert error.value.field == "peers.precision"
    assert "'rx_580', 'rx_6800xt', 't4', 'v100_sxm2'" in str(error.value)


def test_offload_names_its_allowed_values():
    with pytest.raises(ScenarioError, match=r"peers.offload: unknown offload 'cpu' \(allowed: none, optimizer\)"):
        _quickstart(**{"peers.offload": "cpu"})


def test_quickstart_h100_step_is_memory_bound_by_hand():
    # ResNet-50 as the quick start declares it, fp16, batch 32, plain SGD (18 B/param), 5 ms overhead:
    # compute 32 x 24.6e9 / (989e12 x 0.25) = 3.18 ms; memory (25.6e6 x 18 + 32 x 5e7 x 8) / (3350e9 x 0.8)
    from p2psim.budget import model_cost, peer_step_times

    scenario = _quickstart()
    memory_s = (25.6e6 * 18 + 32 * 5e7 * ACTIVATION_ACCESSES) / (3350e9 * 0.8)
    assert memory_s > 32 * 24.6e9 / (989e12 * 0.25)
    assert peer_step_times(scenario, model_cost(scenario))["h100_sxm"][1] == pytest.approx(memory_s + 0.005)
    assert math.isclose(memory_s, 0.004948, rel_tol=1e-3)


def test_checkpointing_a_task_model_counts_its_layers_and_recomputes_the_forward():
    from p2psim.budget import model_cost
    from p2psim.stepmodel import memory_need, model_layers, scenario_work, timing_activation_bytes

    path = QUICKSTART.parent / "transformer_lm.toml"
    plain = p2psim.load_scenario(path)
    checkpointed = p2psim.load_scenario(path, {"peers.activation_checkpointing": True})
    # layers with parameters of their own: token and position embeddings, 6 per block x 2 blocks
    # (LayerNorm, qkv, projection, LayerNorm, MLP in, MLP out), the final LayerNorm and the head = 16
    assert model_layers(plain.task.model()) == 16  # so checkpointing keeps 2 / sqrt(16) = 1/2
    cost = model_cost(plain)
    args = (cost.timing_params, cost.timing_flops_per_step, timing_activation_bytes(plain))
    base, ckpt = scenario_work(plain, *args), scenario_work(checkpointed, *args)
    assert ckpt.flops == pytest.approx(base.flops * 4 / 3)
    # checkpointing saves memory, not traffic: the recomputed forward writes and reads its activations again
    assert ckpt.bytes_moved - base.bytes_moved == pytest.approx(16 * timing_activation_bytes(plain) * 2)  # batch 16
    kept = [memory_need(s, cost.timing_params, 16, 1000.0).activations for s in (plain, checkpointed)]
    assert kept == [16000.0, 8000.0]
