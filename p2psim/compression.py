"""What a parameter row becomes on the wire: rounding, quantization, sparsification, error feedback.

A compressor maps the row a sender hands to `World.send` to the row its receiver decodes
(computed for real: fp16 rounds as torch's ``.half()`` does, top-k zeroes the rest) and
gives the exact bytes of the encoded payload. No header is counted: kind, k, chunk size
and the row's length are fixed by the scenario, so both ends know the layout (framing is
`network.message_overhead_bytes`).

- ``fp16`` / ``bf16``: 2 bytes per value, round to nearest even (IEEE 754; torch's cast).
- ``int8``: symmetric per-chunk quantization, each chunk of ``chunk`` consecutive values
  (default 2048, the block size of Dettmers et al., "8-bit Optimizers via Block-wise
  Quantization", ICLR 2022) sent as round(x / s) in [-127, 127] with one float32 scale
  s = max|x| x fl(1/127) per chunk: n + 4 ceil(n / chunk) bytes. (A multiplication, so that
  CPU and CUDA give the same scale: CUDA divides by a scalar through its reciprocal.)
- ``top_k`` / ``random_k``: the k largest-magnitude (or k uniformly drawn) values, at
  `peers.precision` (rounded to it), and their positions, as uint32 indices (uint64 beyond
  2^32 values) or as a bitmap of ceil(n / 8) bytes, whichever is smaller: both ends know
  k and n, so no flag is sent. ``random_k`` with ``unbiased`` scales kept values by n / k,
  so that E[C(x)] = x (Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory", NeurIPS 2018).
- Error feedback (Seide et al., "1-Bit Stochastic Gradient Descent and its Application to
  Data-Parallel Distributed Training of Speech DNNs", Interspeech 2014; Karimireddy et al.,
  "Error Feedback Fixes SignSGD and other Gradient Compression Schemes", ICML 2019): the
  sender keeps a residual row e; it sends c = C(x + e) and keeps e <- (x + e) - c.

What may be compressed how: a quantizer applies to every row sent; a sparsifier and error
feedback apply only to rows that are gradients or differences (an algorithm's
`update_kinds`): zeroing most coordinates of a whole model destroys it, and a model's
residual added to the next model is meaningless. Rows not compressed travel at
`peers.precision`, rounded to it. With a declared workload the numerics compress the task's
row and the bytes are those of the same format at the workload's parameter count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .config import ScenarioError, bounded, check_ranges
from .lazy import torch
from .seeding import torch_generator

__all__ = [
    "COMPRESSORS",
    "CompressionSpec",
    "Wire",
    "check_compression",
    "int8_",
    "kept_values",
    "random_k_",
    "top_k_",
    "wire_bytes",
]

QUANTIZERS = ("fp16", "bf16", "int8")
SPARSIFIERS = ("top_k", "random_k")
COMPRESSORS = ("none", *QUANTIZERS, *SPARSIFIERS)


class _Roundings(Mapping):
    """16-bit format name -> torch dtype: the names are known without torch, a dtype is read at first use."""

    NAMES = {"fp16": "float16", "bf16": "bfloat16"}

    def __getitem__(self, kind: str) -> torch.dtype:
        return getattr(torch, self.NAMES[kind])

    def __iter__(self) -> Iterator[str]:
        return iter(self.NAMES)

    def __len__(self) -> int:
        return len(self.NAMES)


DTYPES = _Roundings()
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
INT8_CHUNK = 2048  # Dettmers et al. 2022: block-wise 8-bit quantization with blocks of 2048
SCALE_BYTES = 4  # one float32 scale per int8 chunk


@dataclass(frozen=True)
class CompressionSpec:
    """The `[network.compression]` table: which compressor, how much it keeps, and error feedback."""

    kind: str = "none"
    ratio: float | None = bounded(None, low=0, high=1, low_open=True)  # top_k, random_k: share of values kept
    k: int | None = bounded(None, low=1, high=10**13)  # top_k, random_k: values kept (no workload)
    chunk: int | None = bounded(None, low=1, high=2**31 - 1)  # int8: values per float32 scale (default 2048)
    error_feedback: bool = False
    unbiased: bool = False  # random_k: scale kept values by n / k

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.kind not in COMPRESSORS:
            raise ScenarioError("kind", f"unknown compressor {self.kind!r} (allowed: {', '.join(COMPRESSORS)})")
        if self.kind in SPARSIFIERS and (self.ratio is None) == (self.k is None):
            raise ScenarioError("ratio", f"{self.kind} needs exactly one of ratio, k")
        for name, value, kinds in (("ratio", self.ratio, SPARSIFIERS), ("k", self.k, SPARSIFIERS),
                                   ("chunk", self.chunk, ("int8",)), ("unbiased", self.unbiased or None, ("random_k",))):
            if value is not None and self.kind not in kinds:
                raise ScenarioError(name, f"is not an option of kind {self.kind!r} (only of: {', '.join(kinds)})")
        if self.error_feedback and self.kind == "none":
            raise ScenarioError("error_feedback", "needs a compressor: kind 'none' drops nothing to feed back")


def kept_values(spec: CompressionSpec, n: float) -> int:
    """Values a sparsifier keeps of a row of `n`: k, or ceil(ratio x n), at least 1 and at most n."""
    k = spec.k if spec.k is not None else math.ceil(spec.ratio * n)
    return int(min(max(k, 1), n))


def wire_bytes(spec: CompressionSpec, n: float, precision: str = "fp32") -> float:
    """Bytes of one row of `n` values encoded by `spec`, values otherwise at `precision`.

    >>> wire_bytes(CompressionSpec("top_k", ratio=0.01), 10**6)  # 10^4 fp32 values + 10^4 uint32 indices
    80000
    >>> wire_bytes(CompressionSpec("top_k", ratio=0.5), 1000)  # 500 values + a 125-byte bitmap
    2125
    >>> wire_bytes(CompressionSpec("int8"), 4096)  # 4096 bytes + 2 scales
    4104
    """
    if spec.kind in ("fp16", "bf16"):
        return 2 * n
    if spec.kind == "int8":
        return n + SCALE_BYTES * math.ceil(n / (spec.chunk or INT8_CHUNK))
    if spec.kind in SPARSIFIERS:
        k = kept_values(spec, n)
        index_bytes = 4 if n <= 2**32 else 8
        return k * ELEMENT_BYTES[precision] + min(k * index_bytes, math.ceil(n / 8))
    return ELEMENT_BYTES[precision] * n


def int8_(row: torch.Tensor, chunk: int = INT8_CHUNK) -> torch.Tensor:
    """Quantize `row` in place to round(x / s) s, s = max|x| / 127 per chunk of `chunk` values (the last may be shorter)."""
    full = row.numel() // chunk * chunk
    for part in (row[:full].view(-1, chunk), row[full:].view(1, -1)):
        if part.numel():
            scale = part.abs().amax(dim=1, keepdim=True) * (1 / 127)  # not / 127: CUDA divides by a scalar via its reciprocal
            codes = torch.where(scale > 0, torch.round(part / scale), 0.0).clamp_(-127, 127)
            part.copy_(codes * scale)
    return row


def top_k_(row: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the `k` largest-magnitude values of `row` in place, zero the rest."""
    index = row.abs().topk(k, sorted=False).indices
    values = row[index]
    row.zero_()[index] = values
    return row


def random_k_(row: torch.Tensor, k: int, generator: torch.Generator, unbiased: bool = False) -> torch.Tensor:
    """Keep `k` values of `row` drawn uniformly without replacement, in place; times n / k if `unbiased`."""
    index = torch.randperm(row.numel(), generator=generator)[:k]
    values = row[index] * (row.numel() / k) if unbiased else row[index]
    row.zero_()[index] = values
    return row


class Wire:
    """One run's wire format: compresses rows as they are sent and keeps each sender's error-feedback residual."""

    def __init__(self, spec: CompressionSpec | None, precision: str, n_params: int, model_bytes: float, seed: int):
        """`n_params`: the task's row length; `model_bytes`: what an uncompressed model costs on the wire."""
        self.spec = spec or CompressionSpec()
        self.precision = precision
        self._rounding = DTYPES.get(precision)
        self._k = kept_values(self.spec, n_params) if self.spec.kind in SPARSIFIERS else 0
        self._generator = torch_generator(seed, "compression")
        self._residuals: dict[int, torch.Tensor] = {}  # sender -> residual row, made at its first update sent
        self.model_bytes = model_bytes
        wire_params = model_bytes / ELEMENT_BYTES[precision]  # the workload's parameter count if declared
        self.update_bytes = wire_bytes(self.spec, wire_params, precision)
        self.quantized_bytes = self.update_bytes if self.spec.kind in QUANTIZERS else self.model_bytes

    @property
    def identity(self) -> bool:
        """Whether rows travel unchanged (fp32, no compression)."""
        return self.spec.kind == "none" and self._rounding is None

    def encode_(self, src: int, row: torch.Tensor, update: bool) -> float:
        """Turn `row` (sent by `src`) in place into what its receiver decodes; return its bytes on the wire.

        `update`: the row is a gradient or a difference, which a sparsifier and error feedback
        apply to; any other row is a model, which only a quantizer or the precision's rounding touch.
        """
        feedback = update and self.spec.error_feedback
        if feedback:
            residual = self._residuals.get(src)
            if residual is None:
                residual = self._residuals[src] = torch.zeros_like(row)
            residual.add_(row)  # x + e, kept here while row becomes C(x + e)
            row.copy_(residual)
        kind = self.spec.kind
        if kind == "int8":
            int8_(row, self.spec.chunk or INT8_CHUNK)
        elif kind in DTYPES:
            row.copy_(row.to(DTYPES[kind]))
        elif kind in SPARSIFIERS and update:
            if kind == "top_k":
                top_k_(row, self._k)
            else:
                random_k_(row, self._k, self._generator, self.spec.unbiased)
            self._round(row)
        else:
            self._round(row)
        if feedback:
            residual.sub_(row)  # e <- (x + e) - C(x + e)
        if kind in SPARSIFIERS:
            return self.update_bytes if update else self.model_bytes
        return self.quantized_bytes

    def residual(self, src: int) -> torch.Tensor | None:
        """`src`'s error-feedback residual (None before it sent an update with feedback on)."""
        return self._residuals.get(src)

    def _round(self, row: torch.Tensor) -> None:
        if self._rounding is not None:
            row.copy_(row.to(self._rounding))


def check_compression(spec: CompressionSpec | None, precision: str, algorithm: type, workload: bool) -> None:
    """Raise `ScenarioError` where `spec` makes no sense for the algorithm's messages, the precision or a workload."""
    if spec is None or spec.kind == "none":
        return
    field = "network.compression"
    name = algorithm.name
    if not algorithm.carries_rows:
        raise ScenarioError(
            f"{field}.kind",
            f"algorithm {name!r} sends no parameter rows (its chunks are averaged exactly, the bytes alone are modelled), "
            f"so {spec.kind!r} would change the bytes but not the numbers (allowed: none)",
        )
    if spec.kind in DTYPES and precision != "fp32":
        raise ScenarioError(
            f"{field}.kind",
            f"peers.precision = {precision!r} already sends every row rounded to {precision}; {spec.kind!r} needs "
            f"precision = 'fp32' (allowed with {precision}: int8, top_k, random_k, none)",
        )
    if (spec.kind in SPARSIFIERS or spec.error_feedback) and not algorithm.update_kinds:
        from .algorithms.base import IMPLEMENTATIONS

        senders = sorted(n for n, cls in IMPLEMENTATIONS.items() if cls.update_kinds)
        what = spec.kind if spec.kind in SPARSIFIERS else "error feedback"
        raise ScenarioError(
            f"{field}.kind" if spec.kind in SPARSIFIERS else f"{field}.error_feedback",
            f"algorithm {name!r} sends whole models, and {what} applies only to gradients and differences "
            f"(it would zero most of a model, or add one model's residual to the next); "
            f"use a quantizer (fp16, bf16, int8), or an algorithm that sends updates: {', '.join(senders)}",
        )
    if spec.error_feedback and getattr(algorithm, "error_feedback_built_in", False):
        raise ScenarioError(
            f"{field}.error_feedback",
            f"algorithm {name!r} already keeps what compression drops (its public copies); set error_feedback = false",
        )
    if spec.k is not None and workload:
        raise ScenarioError(
            f"{field}.k",
            "counts the task's parameters, but a workload declares another parameter count for the bytes; give ratio",
        )
