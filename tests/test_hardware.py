"""Tests of the device catalogue and the compute-time model (p2psim.hardware)."""

from dataclasses import fields

import pytest
import torch

from p2psim.counting import activation_bytes_per_sample, count_training_flops
from p2psim.hardware import (
    DEVICE_KINDS,
    PRECISIONS,
    Device,
    _parse_device,
    device_sources,
    format_device_table,
    load_devices,
    peak_flops,
    step_time_s,
    step_time_terms,
    supported_precisions,
)

REQUIRED = {
    "h200_sxm", "h100_sxm", "h100_pcie", "a100_sxm_80gb", "a100_sxm_40gb", "v100_sxm2", "l4", "t4",
    "rtx_4090", "rtx_3090", "rtx_3060", "gtx_1080ti", "mi300x", "rx_7900xtx", "rx_6800xt", "rx_580",
    "apple_m2", "ryzen_7950x", "rpi5", "epyc_milan_2vcpu",
}  # fmt: skip


def test_catalogue_has_the_required_devices():
    devices = load_devices()
    assert len(devices) >= 12
    assert REQUIRED <= devices.keys()
    assert all(name == device.name for name, device in devices.items())


def test_every_device_is_sourced_and_sane():
    sources = device_sources()
    for device in load_devices().values():
        assert device.sources, device.name
        assert all(s in sources and sources[s] for s in device.sources), device.name
        assert device.kind in DEVICE_KINDS
        assert 0 < device.utilisation <= 1
        assert 0 < device.idle_power_w < device.board_power_w, device.name
        assert device.fp32_tflops > 0 and device.fp16_tflops > 0 and device.memory_gb > 0


def test_known_datasheet_values():
    devices = load_devices()
    assert devices["h100_sxm"].fp16_tflops == 989.0  # dense, half the datasheet's sparse 1,979
    assert devices["h200_sxm"].fp32_tflops == devices["h100_sxm"].fp32_tflops  # same compute die
    # fp16 training on Pascal runs at the FP32 rate (FP32 accumulate), not the native 1/64 half rate
    assert devices["gtx_1080ti"].fp16_tflops == devices["gtx_1080ti"].fp32_tflops
    assert devices["v100_sxm2"].idle_power_w == 53.0  # measured


def test_load_devices_returns_a_fresh_dict():
    load_devices().pop("h100_sxm")
    assert "h100_sxm" in load_devices()


def test_unknown_field_in_the_toml_is_rejected_by_name():
    entry = {f.name: 1 for f in fields(Device) if f.name not in ("name", "memory_efficiency")}
    entry.update(kind="cpu", label="x", utilisation=0.5, sources=["S"], speed_ghz=5)
    with pytest.raises(ValueError, match="speed_ghz"):
        _parse_device("x", entry, {"S": "a source"})


def test_peak_flops_by_precision():
    device = load_devices()["a100_sxm_80gb"]
    assert peak_flops(device, "fp32") == 19.5e12
    assert peak_flops(device, "fp16") == peak_flops(device, "bf16") == 312e12
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        peak_flops(device, "fp8")
    assert PRECISIONS == ("fp32", "fp16", "bf16")


@pytest.mark.parametrize("name", ["v100_sxm2", "t4", "gtx_1080ti", "rx_580", "rx_6800xt"])
def test_bf16_is_refused_where_the_hardware_has_none(name):
    device = load_devices()[name]
    assert supported_precisions(device) == ("fp32", "fp16")
    with pytest.raises(ValueError, match=f"'{name}' has no bf16 hardware \\(allowed: fp32, fp16\\)"):
        peak_flops(device, "bf16")


def test_bf16_runs_where_the_hardware_has_it():
    devices = load_devices()
    for name in ("h100_sxm", "a100_sxm_80gb", "l4", "rtx_3090", "rtx_4090", "mi300x", "rx_7900xtx"):
        assert peak_flops(devices[name], "bf16") == peak_flops(devices[name], "fp16"), name


def test_roofline_takes_the_slower_side_by_hand():
    # H100 SXM, bf16: 989e12 FLOP/s x 0.5 = 494.5e12 FLOP/s; 3350e9 B/s x 0.8 = 2680e9 B/s
    device = load_devices()["h100_sxm"]
    compute_s, memory_s = step_time_terms(494.5e12, 2680e9 * 3, device, "bf16", utilisation=0.5, memory_efficiency=0.8)
    assert compute_s == pytest.approx(1.0) and memory_s == pytest.approx(3.0)
    assert step_time_s(494.5e12, device, "bf16", 0.5, 0.1, bytes_moved=2680e9 * 3, memory_efficiency=0.8) == pytest.approx(3.1)
    # the same bytes with 4x the FLOPs: compute-bound, 4 s
    assert step_time_s(4 * 494.5e12, device, "bf16", 0.5, bytes_moved=2680e9 * 3, memory_efficiency=0.8) == pytest.approx(4.0)


def test_memory_efficiency_comes_from_the_device_class():
    devices = load_devices()
    assert devices["h100_sxm"].memory_efficiency == devices["v100_sxm2"].memory_efficiency == 0.8
    assert devices["ryzen_7950x"].memory_efficiency == 0.7 and devices["rpi5"].memory_efficiency == 0.5
    # defaults: the catalogue's efficiencies; a bandwidth-bound step on an RX 580: 256e9 x 0.8 B/s
    assert step_time_terms(0.0, 204.8e9, devices["rx_580"], "fp32")[1] == pytest.approx(1.0)


def test_step_time_ratio_is_the_effective_throughput_ratio():
    devices = load_devices()
    fast, slow = devices["h100_sxm"], devices["rx_580"]
    flops = 3.7e12
    ratio = step_time_s(flops, slow, "fp32") / step_time_s(flops, fast, "fp32")
    expected = (fast.fp32_tflops * fast.utilisation) / (slow.fp32_tflops * slow.utilisation)
    assert ratio == pytest.approx(expected, rel=1e-12)  # equal up to float rounding


def test_step_time_closed_form_and_overhead():
    device = load_devices()["rtx_4090"]
    assert step_time_s(165.2e12, device, "fp16", utilisation=0.5) == pytest.approx(2.0)
    base = step_time_s(1e12, device, "fp32")
    assert base == pytest.approx(1e12 / (82.6e12 * device.utilisation))
    assert step_time_s(1e12, device, "fp32", overhead_s=0.25) == pytest.approx(base + 0.25)


def test_step_time_rejects_bad_utilisation():
    device = load_devices()["t4"]
    for utilisation in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="utilisation"):
            step_time_s(1e9, device, "fp32", utilisation=utilisation)


def _linear_case(requires_grad_inputs: bool):
    with torch.device("meta"):
        template = torch.nn.Linear(64, 10, bias=False)
    params = {"weight": torch.randn(10, 64)}
    inputs = torch.randn(32, 64, requires_grad=requires_grad_inputs)
    targets = torch.randint(0, 10, (32,))
    return template, params, inputs, targets


@pytest.mark.parametrize("requires_grad_inputs", [False, True])
def test_count_training_flops_linear_closed_form(requires_grad_inputs):
    # Forward: one [32, 64] x [64, 10] matmul = 2 * 32 * 64 * 10 FLOPs (2 per multiply-add).
    # Backward: the weight gradient, grad_out^T [10, 32] x inputs [32, 64] = 2 * 32 * 64 * 10.
    # No input gradient (another 2 * 32 * 64 * 10): gradients are taken for the
    # parameters only, even when the inputs require grad. Softmax and the loss are
    # elementwise and not counted by FlopCounterMode.
    template, params, inputs, targets = _linear_case(requires_grad_inputs)
    flops = count_training_flops(template, params, inputs, targets, torch.nn.functional.cross_entropy)
    assert flops == 2 * (2 * 32 * 64 * 10)
    assert not params["weight"].requires_grad and params["weight"].grad is None


def test_count_training_flops_scales_with_batch_and_leaves_buffers_alone():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 3))
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    before = model[1].running_mean.clone()

    def flops(batch):
        inputs, targets = torch.randn(batch, 8), torch.randint(0, 3, (batch,))
        return count_training_flops(model, tensors, inputs, targets, torch.nn.functional.cross_entropy)

    # Linear(8,16): forward + weight grad; Linear(16,3): forward + weight grad + input grad.
    assert flops(4) == 4 * 2 * (2 * 8 * 16 + 3 * 16 * 3)
    assert flops(8) == 2 * flops(4)
    assert torch.equal(model[1].running_mean, before)


def test_activation_bytes_per_sample_counts_leaf_outputs():
    with torch.device("meta"):
        template = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    params = {name: torch.randn(p.shape) for name, p in template.named_parameters()}
    per_sample = activation_bytes_per_sample(template, params, torch.randn(5, 8))
    assert per_sample == (16 + 16 + 2) * 4  # float32 outputs of the three leaves
    params64 = {name: t.double() for name, t in params.items()}
    assert activation_bytes_per_sample(template, params64, torch.randn(5, 8, dtype=torch.float64)) == 2 * per_sample


def test_format_device_table_lists_every_device_aligned():
    table, references = format_device_table().split("\n\n")
    lines = table.splitlines()
    devices = load_devices()
    assert len(lines) == len(devices) + 1
    assert lines[0].split()[:3] == ["name", "label", "year"]
    column = lines[0].index("sources")
    for line, (name, device) in zip(lines[1:], devices.items()):
        assert line.startswith(name)
        assert line[column:] == ", ".join(device.sources)
    used = {source for device in devices.values() for source in device.sources}
    assert references.splitlines() == [f"{key}: {text}" for key, text in device_sources().items() if key in used]
    subset = format_device_table({"t4": devices["t4"]}).splitlines()
    assert len(subset) == 2 + 1 + 4 and "NVIDIA T4" in subset[1] and " none " in subset[1]  # no bf16
    assert subset[3:] == [f"{key}: {device_sources()[key]}" for key in ("D6", "A1", "U1", "P1")]  # only the ids it uses


def test_fp16_rate_is_at_least_the_fp32_rate():
    for device in load_devices().values():
        assert device.fp16_tflops >= device.fp32_tflops, device.name


def test_activations_count_attention_and_residuals_between_layers_by_hand():
    """A 1-layer byte transformer, d = 16, 2 heads, T = 8, batch 3, float32 (4 B an element), per sample:

    leaf outputs: block LayerNorm, qkv (3), projection, LayerNorm, MLP in (4), MLP out = 11 T d; token
    embedding T d, positions T d once per batch (/3), final LayerNorm T d, head 256 T. Between the
    leaves: scores q k^T, their scaling, the causal mask's sum and the softmax (4 H T^2), the attended
    values T d, GELU 4 T d, two residual sums 2 T d, and the token + position sum T d.
    """
    from p2psim.tasks.transformer_lm import TransformerLM

    d, heads, t = 16, 2, 8
    model = TransformerLM(layers=1, width=d, heads=heads, context=t, corpus_bytes=4000).model()
    params = {name: torch.empty(p.shape, device="meta") for name, p in model.named_parameters()}
    leaves = 11 * t * d + t * d + t * d / 3 + t * d + 256 * t
    between = 4 * heads * t * t + t * d + 4 * t * d + 2 * t * d + t * d
    assert activation_bytes_per_sample(model, params, torch.empty(3, t, device="meta")) == pytest.approx(
        4 * (leaves + between))
