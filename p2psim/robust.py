"""Robust aggregation: rules that combine k received vectors so that a few arbitrary ones cannot steer the result.

Each rule takes the received vectors as the rows of a `[k, d]` tensor and returns one
`[d]` vector; `Aggregation` names a rule and its parameters in a scenario
(`[algorithm.aggregation]`), and `aggregate` applies it. The rules and their claims:
- `mean`: no robustness; one input can move it anywhere.
- `median`: coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust
  Distributed Learning: Towards Optimal Statistical Rates", ICML 2018,
  https://arxiv.org/abs/1803.01498); breakdown point 1/2: robust while f < k/2.
- `trimmed_mean`: per coordinate, drop the f largest and f smallest values and average the
  rest (Yin et al. 2018); robust while the Byzantine inputs are at most f, and k > 2f.
- `krum` / `multi_krum`: score each input by the summed squared distances to its k - f - 2
  nearest others; Krum returns the best-scoring input, Multi-Krum the mean of the m best
  (Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries: Byzantine
  Tolerant Gradient Descent", NeurIPS 2017); the guarantee needs k > 2f + 2.
- `centered_clip`: v <- v + (1/k) sum_i clip_tau(x_i - v), `iterations` times, from the
  previous aggregate (Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
  Optimization", ICML 2021, https://arxiv.org/abs/2012.10333); each input moves v by at most
  tau / k per iteration, and its fixed point solves sum_i clip_tau(x_i - v) = 0.
`clipped_gossip_step` is ClippedGossip's merge for the decentralized case (He, Karimireddy,
Jaggi, "Byzantine-Robust Decentralized Learning via ClippedGossip", 2022,
https://arxiv.org/abs/2202.01545): x_i + sum_j W_ij clip_tau(x_j - x_i).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ScenarioError, bounded, check_ranges
from .lazy import torch

__all__ = [
    "RULES",
    "Aggregation",
    "aggregate",
    "centered_clip",
    "clip",
    "clipped_gossip_step",
    "coordinate_median",
    "krum_scores",
    "multi_krum",
    "trimmed_mean",
]

RULES = ("mean", "median", "trimmed_mean", "krum", "multi_krum", "centered_clip")


@dataclass(frozen=True)
class Aggregation:
    """A robust aggregation rule and its parameters (f: the Byzantine inputs it is built to tolerate)."""

    rule: str = "mean"
    f: int = bounded(0, low=0, high=10**6, why="trimmed per side (trimmed_mean); assumed Byzantine (krum, multi_krum)")
    m: int | None = bounded(None, low=1, high=10**6, why="inputs multi_krum averages; default k - f")
    tau: float = bounded(1.0, low=0, high=1e12, low_open=True, why="centered_clip's clipping radius")
    iterations: int = bounded(1, low=1, high=1000, why="centered_clip's L; the paper finds L = 1 enough")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.rule not in RULES:
            raise ScenarioError("rule", f"unknown rule {self.rule!r} (allowed: {', '.join(RULES)})")
        if self.m is not None and self.rule != "multi_krum":
            raise ScenarioError("m", f"is a parameter of rule 'multi_krum' only, not of {self.rule!r}")

    def check_inputs(self, k: int, field: str) -> None:
        """Raise `ScenarioError` on `field` unless the rule is defined on k inputs with this f (and m)."""
        if self.rule == "trimmed_mean" and k <= 2 * self.f:
            raise ScenarioError(field, f"trimmed_mean drops f = {self.f} per side and needs more than {2 * self.f} inputs, got {k}")
        if self.rule in ("krum", "multi_krum") and k < self.f + 3:
            raise ScenarioError(field, f"{self.rule} scores k - f - 2 >= 1 neighbours and needs k >= f + 3 = {self.f + 3} inputs, got {k}")
        if self.m is not None and self.m > k:
            raise ScenarioError(field, f"multi_krum averages m = {self.m} inputs, more than the {k} it receives")


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """Per coordinate, the median of the rows (the mean of the two middle values for an even count).

    >>> coordinate_median(torch.tensor([[1.0, 9.0], [2.0, 0.0], [7.0, 4.0], [3.0, 5.0]])).tolist()
    [2.5, 4.5]
    """
    ordered = x.sort(dim=0).values
    k = x.shape[0]
    return (ordered[(k - 1) // 2] + ordered[k // 2]) / 2


def trimmed_mean(x: torch.Tensor, f: int) -> torch.Tensor:
    """Per coordinate, the mean after dropping the f largest and the f smallest values.

    >>> trimmed_mean(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), 1).tolist()
    [2.5]
    """
    ordered = x.sort(dim=0).values
    return ordered[f : x.shape[0] - f].mean(dim=0)


def krum_scores(x: torch.Tensor, f: int) -> torch.Tensor:
    """Each row's Krum score: the sum of its squared distances to its k - f - 2 nearest other rows."""
    k = x.shape[0]
    # direct differences, not the Gram identity: identical rows are exactly 0 apart, so ties stay ties
    distances = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist").square()
    distances.fill_diagonal_(float("inf"))
    return distances.sort(dim=1).values[:, : k - f - 2].sum(dim=1)


def multi_krum(x: torch.Tensor, f: int, m: int = 1) -> torch.Tensor:
    """The mean of the m rows with the lowest Krum scores (m = 1: Krum), ties to the lower index."""
    chosen = torch.sort(krum_scores(x, f), stable=True).indices[:m]
    return x.index_select(0, chosen.sort().values).mean(dim=0)


def clip(v: torch.Tensor, tau: float) -> torch.Tensor:
    """Each row of v scaled to a Euclidean norm of at most tau: v min(1, tau / ||v||)."""
    norms = v.norm(dim=-1, keepdim=True)
    return v * torch.clamp(tau / norms.clamp_min(torch.finfo(v.dtype).tiny), max=1.0)


def centered_clip(x: torch.Tensor, center: torch.Tensor, tau: float, iterations: int = 1) -> torch.Tensor:
    """Centred clipping: v <- v + mean_i clip_tau(x_i - v), `iterations` times, starting from `center`.

    >>> centered_clip(torch.tensor([[0.0], [0.0], [10.0]]), torch.zeros(1), 1.0, 200).tolist()  # 2(0 - v) + 1 = 0
    [0.5]
    """
    v = center.clone()
    for _ in range(iterations):
        v = v + clip(x - v, tau).mean(dim=0)
    return v


def clipped_gossip_step(own: torch.Tensor, received: torch.Tensor, weights: torch.Tensor, tau: float) -> torch.Tensor:
    """ClippedGossip's merge: own + sum_j w_j clip_tau(received_j - own) (the self weight takes the rest)."""
    return own + (weights.unsqueeze(1) * clip(received - own, tau)).sum(dim=0)


def aggregate(x: torch.Tensor, spec: Aggregation, center: torch.Tensor | None = None) -> torch.Tensor:
    """Combine the rows of `x` by `spec`'s rule; `center` is centered_clip's start (default: zeros)."""
    rule = spec.rule
    if rule == "mean":
        return x.mean(dim=0)
    if rule == "median":
        return coordinate_median(x)
    if rule == "trimmed_mean":
        return trimmed_mean(x, spec.f)
    if rule == "krum":
        return multi_krum(x, spec.f, 1)
    if rule == "multi_krum":
        return multi_krum(x, spec.f, spec.m if spec.m is not None else x.shape[0] - spec.f)
    start = torch.zeros_like(x[0]) if center is None else center
    return centered_clip(x, start, spec.tau, spec.iterations)
