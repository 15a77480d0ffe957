"""Workload catalogue: what one training sample of a large model costs, for runs that only time it.

The catalogue lives in `p2psim/data/workloads.toml`, each figure with its source. A
language model is given by its architecture and its costs follow from formulas cited
there (FLOPs: PaLM Appendix B; activations: Korthikanti et al. 2022); a sample is one
sequence of `tokens_per_sample` tokens (the context length by default).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

from .data import check_sources, read_catalogue

__all__ = [
    "WORKLOAD_KINDS",
    "Workload",
    "llm_activation_bytes_per_sample",
    "llm_flops_per_token",
    "load_workloads",
    "workload_sources",
]

WORKLOAD_KINDS = ("llm", "cnn")
LLM_FIELDS = ("layers", "d_model", "vocab", "context")


def llm_flops_per_token(params: float, layers: int, d_model: int, vocab: int, tokens_per_sample: int) -> float:
    """Training FLOPs per token: 6 (N - V d) + 12 L d T (PaLM, Appendix B; the input embedding is a lookup).

    >>> llm_flops_per_token(1e9, 10, 1000, 1000, 100)
    6006000000.0
    """
    return 6.0 * (params - vocab * d_model) + 12.0 * layers * d_model * tokens_per_sample


def llm_activation_bytes_per_sample(layers: int, d_model: int, tokens_per_sample: int) -> float:
    """Activation bytes kept for backward per sequence: 34 T d L (Korthikanti et al. 2022, selective recomputation).

    >>> llm_activation_bytes_per_sample(2, 10, 5)
    3400.0
    """
    return 34.0 * tokens_per_sample * d_model * layers


@dataclass(frozen=True)
class Workload:
    """One catalogue entry: a model's size and, for language models, its architecture."""

    name: str
    label: str
    kind: str
    params: float
    sources: tuple[str, ...]
    layers: int | None = None
    d_model: int | None = None
    vocab: int | None = None
    context: int | None = None
    flops_per_sample: float | None = None  # cnn: given; llm: from the architecture and tokens per sample
    activation_bytes_per_sample: float | None = None

    def costs(self, tokens_per_sample: int | None = None) -> tuple[float, float, int | None]:
        """(training FLOPs per sample, activation bytes per sample, tokens per sample) at that context length."""
        if self.kind != "llm":
            return float(self.flops_per_sample), float(self.activation_bytes_per_sample), tokens_per_sample
        tokens = self.context if tokens_per_sample is None else tokens_per_sample
        flops = tokens * llm_flops_per_token(self.params, self.layers, self.d_model, self.vocab, tokens)
        return flops, llm_activation_bytes_per_sample(self.layers, self.d_model, tokens), tokens


def _parse(name: str, entry: Mapping[str, Any], sources: Mapping[str, str]) -> Workload:
    where = f"workloads.toml: workloads.{name}"
    kind = str(entry.get("kind"))
    if kind not in WORKLOAD_KINDS:
        raise ValueError(f"{where}.kind: {kind!r} is not one of {', '.join(WORKLOAD_KINDS)}")
    needed = {"label", "kind", "params", "sources"} | (
        set(LLM_FIELDS) if kind == "llm" else {"flops_per_sample", "activation_bytes_per_sample"}
    )
    missing, unknown = needed - entry.keys(), entry.keys() - needed
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
    values = {key: entry[key] for key in needed - {"sources"}}
    return Workload(name=name, sources=check_sources(where, tuple(entry["sources"]), sources), **values)


@functools.cache
def _catalogue() -> tuple[dict[str, Workload], dict[str, str]]:
    data = read_catalogue("workloads.toml")
    sources = {key: str(value) for key, value in data["sources"].items()}
    return {name: _parse(name, entry, sources) for name, entry in data["workloads"].items()}, sources


def load_workloads() -> dict[str, Workload]:
    """The workload catalogue by name.

    >>> round(load_workloads()["llama2_7b"].costs()[0] / 4096 / 1e9, 1)  # GFLOP per token
    46.1
    """
    return dict(_catalogue()[0])


def workload_sources() -> dict[str, str]:
    """The [sources] table of workloads.toml: source id -> reference text."""
    return dict(_catalogue()[1])
