"""Linear least squares with a known optimum and chosen conditioning: the task theory speaks of.

Features are x = z diag(s) Q^T with z ~ N(0, I), s_j^2 spaced geometrically from 1 down to
1 / condition_number and Q a random rotation, so the Hessian of the loss, X^T X / n, is close
to Q diag(s^2) Q^T: its condition number is roughly `condition_number` (exactly so as
n_samples -> infinity) and its eigenvectors are not the coordinate axes. Targets are
y = x w + noise * N(0, 1) with w ~ N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2psim.config import bounded, check_ranges
from p2psim.lazy import torch
from p2psim.seeding import stream
from p2psim.tasks.base import (
    LinearChain,
    Task,
    TaskData,
    TaskSizes,
    register_task,
    require_split,
    split_sizes,
    train_eval_split,
)

__all__ = ["LeastSquares", "half_mse"]


def half_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 * mean squared error of outputs [batch, 1] against targets [batch]."""
    return 0.5 * torch.mean((output.squeeze(-1) - target) ** 2)


@register_task
@dataclass(frozen=True)
class LeastSquares(Task):
    """min_w 0.5 * mean((x w - y)^2) on synthetic data; initial w like torch's Linear init.

    >>> task = LeastSquares(n_samples=100, n_features=3).build(seed=0)
    >>> task.n_params, tuple(task.x_train.shape), tuple(task.x_eval.shape)
    (3, (80, 3), (20, 3))
    """

    name = "least_squares"

    n_samples: int = bounded(2000, low=2, high=10**8)
    # the build draws a d x d rotation and solves for the optimum: O(d^3), ~10 min at 10^4 on one core
    n_features: int = bounded(20, low=1, high=10**4)
    noise: float = bounded(0.1, low=0, high=1e6)  # targets stay far from float32 overflow when squared
    eval_fraction: float = bounded(0.2, low=0, high=1, low_open=True, high_open=True)
    condition_number: float = bounded(10.0, low=1, high=1e12)

    def __post_init__(self) -> None:
        check_ranges(self)
        require_split(self, [self.n_samples])

    def model(self) -> torch.nn.Module:
        """Linear(n_features, 1) without bias, on the meta device."""
        return torch.nn.Linear(self.n_features, 1, bias=False, device="meta")

    def linear_chain(self) -> LinearChain:
        """One Linear layer without bias."""
        return LinearChain((self.n_features, 1), bias=False)

    def sizes(self) -> TaskSizes:
        """Counts of the split; the build's QR and least-squares solve cost O(d^3 + n d^2)."""
        (n_train,), (n_eval,) = split_sizes([self.n_samples], self.eval_fraction)
        n, d = self.n_samples, self.n_features
        return TaskSizes(
            n_train=n_train, n_eval=n_eval, n_features=d, n_classes=None, train_class_counts=None,
            build_draws=d * d + n * d + n + d,
            build_flops=12.0 * d**3 + 6.0 * n * d * d,  # QR (~4 d^3), rotation (2 n d^2), SVD solve (~4 n d^2 + 8 d^3)
            build_bytes=40.0 * n * d + 24.0 * d * d,  # float64 draws, rotated copy, float32 copy, solver workspace
        )

    def build(self, seed: int) -> TaskData:
        """Generate the data, split it, and compute the exact training optimum."""
        rng = stream(seed, "data")
        d = self.n_features
        scales = self.condition_number ** (-0.5 * np.linspace(0.0, 1.0, d))
        rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
        x = (rng.standard_normal((self.n_samples, d)) * scales) @ rotation.T
        w_true = rng.standard_normal(d)
        y = x @ w_true + self.noise * rng.standard_normal(self.n_samples)
        x, y = x.astype(np.float32), y.astype(np.float32)
        train, held_out = train_eval_split(self.n_samples, self.eval_fraction, rng)
        # The optimum of the float32 data actually trained on, solved in float64.
        x_fit, y_fit = x[train].astype(np.float64), y[train].astype(np.float64)
        w_star = np.linalg.lstsq(x_fit, y_fit, rcond=None)[0]
        optimum_loss = float(0.5 * np.mean((x_fit @ w_star - y_fit) ** 2))
        return TaskData.from_split(self.model(), seed, x, y, (train, held_out), half_mse, n_classes=None, optimum_loss=optimum_loss)
