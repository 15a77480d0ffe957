"""Compression: what the receiver decodes and the bytes on the wire, by hand; error feedback's identity; validation."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch

from p2psim.algorithms import register_algorithm
from p2psim.algorithms.base import Algorithm, AlgorithmConfig
from p2psim.build import build_run
from p2psim.compression import (
    CompressionSpec,
    Wire,
    int8_,
    random_k_,
    top_k_,
    wire_bytes,
)
from p2psim.config import ScenarioError
from p2psim.engine import World
from p2psim.scenario import Scenario
from p2psim.seeding import torch_generator
from p2psim.testing import round_number_scenario

D = 300  # parameters of the probe's least-squares model (300 features, no bias)


class ProbeConfig(AlgorithmConfig):
    """No options."""


@register_algorithm
class Probe(Algorithm):
    """Peer 0 sends one model row and one update row to peer 1; peer 1 keeps what arrives."""

    name = "test_compression_probe"
    config_class = ProbeConfig
    update_kinds = ("update",)
    sent: ClassVar[dict[str, torch.Tensor]] = {}  # set by `exchange` before each run

    def start(self) -> None:
        self.received: dict[str, tuple[torch.Tensor, float]] = {}
        for kind, row in self.sent.items():
            self.world.send(0, 1, self.world.model_bytes, kind, row=row)

    def on_message(self, message) -> None:
        self.received[message.kind] = (message.row.clone(), message.nbytes)


def exchange(compression: dict | None = None, precision: str = "fp32", seed: int = 0) -> tuple[World, dict]:
    """Send a random model row and a random update row from peer 0 to 1; (world, kind -> (row sent, row decoded, bytes))."""
    data = round_number_scenario({"h100_sxm": 2}, stop={"steps": 10}, **{"algorithm.name": Probe.name})
    del data["workload"]
    data["task"]["n_features"] = D
    data["peers"]["precision"] = precision
    if compression is not None:
        data["network"]["compression"] = compression
    generator = torch.Generator().manual_seed(seed)
    Probe.sent = {"model": torch.randn(D, generator=generator) * 3, "update": torch.randn(D, generator=generator)}
    world = World(build_run(Scenario.from_dict(data)))
    world.run()
    out = {kind: (Probe.sent[kind], *world.algorithm.received[kind]) for kind in Probe.sent}
    return world, out


def test_fp16_and_bf16_exchanges_round_exactly_as_torch_casts_and_send_two_bytes_a_value():
    for kind, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        world, out = exchange({"kind": kind})
        for sent, decoded, nbytes in out.values():
            assert torch.equal(decoded, sent.to(dtype).float())
            assert not torch.equal(decoded, sent)  # the rounding is real
            assert nbytes == 2 * D
        assert world.network.bytes_sent[0] == 2 * 2 * D


def test_half_precision_peers_send_rows_rounded_to_it_and_fp32_peers_send_them_unchanged():
    _, out = exchange(precision="fp16")
    for sent, decoded, nbytes in out.values():
        assert torch.equal(decoded, sent.half().float()) and nbytes == 2 * D
    _, out = exchange(precision="fp32")
    for sent, decoded, nbytes in out.values():
        assert torch.equal(decoded, sent) and nbytes == 4 * D


def test_int8_decodes_codes_times_a_per_chunk_scale_and_counts_one_byte_a_value_plus_a_float_per_chunk():
    row = torch.tensor([1.0, -0.5, 0.25, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    scale_a, scale_b = torch.tensor(1.0) * (1 / 127), torch.tensor(2.0) * (1 / 127)
    expected = torch.cat([torch.tensor([127.0, -64.0, 32.0, 0.0]) * scale_a,  # round(-63.5) = -64: half to even
                          torch.tensor([127.0, 0.0, 0.0, 0.0]) * scale_b, torch.zeros(2)])  # last chunk all zero: scale 0
    assert torch.equal(int8_(row.clone(), chunk=4), expected)
    _, out = exchange({"kind": "int8", "chunk": 64})
    for sent, decoded, nbytes in out.values():
        assert nbytes == D + 4 * math.ceil(D / 64)  # 300 + 20
        for s, q in zip(sent.split(64), decoded.split(64)):
            scale = s.abs().max() * (1 / 127)
            codes = q / scale
            assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= 127 + 1e-3
            assert (q - s).abs().max() <= scale / 2 * (1 + 1e-5)  # round to nearest: at most half a step off
    assert exchange({"kind": "int8"})[1]["model"][2] == D + 4  # the default 2048-value chunk: one scale


def test_top_k_keeps_exactly_the_k_largest_magnitudes_of_updates_and_leaves_models_whole():
    row = torch.tensor([0.1, -5.0, 3.0, -0.2, 4.0, 0.0])
    assert top_k_(row.clone(), 2).tolist() == [0.0, -5.0, 0.0, 0.0, 4.0, 0.0]
    _, out = exchange({"kind": "top_k", "ratio": 0.1})
    sent, decoded, nbytes = out["update"]
    largest = sent.abs().topk(30).indices
    assert torch.equal(decoded[largest], sent[largest])
    assert torch.count_nonzero(decoded) == 30
    assert decoded.abs().min() == 0 and sent.abs()[decoded == 0].max() < sent.abs()[largest].min()
    assert nbytes == 30 * 4 + math.ceil(D / 8)  # 30 fp32 values + a 38-byte bitmap (< 30 x 4 B indices)
    sent, decoded, nbytes = out["model"]
    assert torch.equal(decoded, sent) and nbytes == 4 * D


def test_sparsified_values_travel_at_the_peers_precision_with_uint32_indices_where_smaller_than_a_bitmap():
    _, out = exchange({"kind": "top_k", "k": 5}, precision="fp16")
    sent, decoded, nbytes = out["update"]
    kept = decoded != 0
    assert torch.equal(decoded[kept], sent[kept].half().float())
    assert nbytes == 5 * 2 + 5 * 4  # 5 fp16 values + 5 uint32 indices (< 38-byte bitmap)
    assert out["model"][2] == 2 * D


def test_random_k_keeps_k_values_as_sent_and_its_unbiased_scaling_averages_back_to_the_row():
    _, out = exchange({"kind": "random_k", "k": 7})
    sent, decoded, nbytes = out["update"]
    kept = decoded != 0
    assert int(kept.sum()) == 7 and torch.equal(decoded[kept], sent[kept])
    assert nbytes == 7 * 4 + 7 * 4
    row, generator = torch.tensor([1.0, -2.0, 3.0, 0.5, 4.0]), torch_generator(0, "test")
    draws = torch.stack([random_k_(row.clone(), 2, generator, unbiased=True) for _ in range(4000)])
    assert set(draws[draws != 0].div(row.repeat(4000, 1)[draws != 0]).tolist()) == {2.5}  # n / k
    assert torch.allclose(draws.mean(dim=0), row, rtol=0.1)  # 5 sigma; the mean is 0.4 x row without the scaling


def test_error_feedback_sends_c_of_x_plus_residual_and_keeps_exactly_what_it_dropped():
    for spec in (CompressionSpec("top_k", ratio=0.05, error_feedback=True), CompressionSpec("int8", chunk=16, error_feedback=True),
                 CompressionSpec("random_k", k=9, error_feedback=True)):
        wire = Wire(spec, "fp32", D, 4.0 * D, seed=1)
        generator = torch.Generator().manual_seed(2)
        old = torch.zeros(D)
        for _ in range(5):
            x = torch.randn(D, generator=generator)
            sent = x.clone()
            wire.encode_(3, sent, update=True)
            new = wire.residual(3)
            assert torch.equal(sent + new, x + old)  # sent + residual = input + old residual, exactly
            assert not torch.equal(sent, x + old)
            old = new.clone()
        assert wire.residual(0) is None  # only senders have one


def test_wire_bytes_at_a_declared_workload_follow_its_parameter_count():
    spec = CompressionSpec("top_k", ratio=0.001)
    wire = Wire(spec, "fp32", n_params=6, model_bytes=4e6, seed=0)
    assert wire.encode_(0, torch.arange(6.0), update=True) == 1000 * 4 + 1000 * 4 == wire_bytes(spec, 1e6)
    assert wire.encode_(0, torch.arange(6.0), update=False) == 4e6


@pytest.mark.parametrize(
    "algorithm, compression, precision, field, words",
    [
        ("dpsgd", {"kind": "top_k", "ratio": 0.1}, "fp32", "network.compression.kind", "sends whole models"),
        ("gossip", {"kind": "int8", "error_feedback": True}, "fp32", "network.compression.error_feedback", "whole models"),
        ("choco", {"kind": "top_k", "ratio": 0.1, "error_feedback": True}, "fp32", "network.compression.error_feedback",
         "already keeps"),
        ("dpsgd", {"kind": "fp16"}, "bf16", "network.compression.kind", "precision = 'fp32'"),
        ("allreduce", {"kind": "int8"}, "fp32", "network.compression.kind", "sends no parameter rows"),
        ("async_ps", {"kind": "top_k", "k": 10}, "fp32", "network.compression.k", "give ratio"),
        ("dpsgd", {"kind": "zip"}, "fp32", "network.compression.kind", "allowed: none, fp16, bf16, int8, top_k, random_k"),
        ("dpsgd", {"kind": "int8", "ratio": 0.1}, "fp32", "network.compression.ratio", "only of: top_k, random_k"),
        ("sync_ps", {"kind": "top_k"}, "fp32", "network.compression.ratio", "exactly one of ratio, k"),
        ("dpsgd", {"kind": "none", "error_feedback": True}, "fp32", "network.compression.error_feedback", "needs a compressor"),
        ("choco", {"kind": "top_k", "ratio": 0.0}, "fp32", "network.compression.ratio", "must be in (0, 1]"),
    ],
)
def test_compression_that_makes_no_sense_is_refused_naming_the_field(algorithm, compression, precision, field, words):
    data = round_number_scenario({"h100_sxm": 4}, **{"algorithm.name": algorithm, "topology.kind": "ring"})
    data["network"]["compression"] = compression
    data["peers"]["precision"] = precision
    with pytest.raises(ScenarioError) as error:
        Scenario.from_dict(data)
    assert error.value.field == field and words in str(error.value)


def test_a_scenario_without_compression_resolves_without_the_table():
    scenario = Scenario.from_dict(round_number_scenario({"h100_sxm": 2}))
    assert "compression" not in scenario.to_dict()["network"]
    spec = Scenario.from_dict(round_number_scenario({"h100_sxm": 2}, **{
        "algorithm.name": "async_ps", "network.compression": {"kind": "top_k", "ratio": 0.01, "error_feedback": True}}))
    assert Scenario.from_dict(spec.to_dict()) == spec
