"""Multinomial logistic regression on a Gaussian mixture: a convex task with labels to skew.

Class k has mean class_separation * u_k, with u_k a random unit vector, and unit within-class
covariance; random directions in 20 dimensions are nearly orthogonal, so two class means lie
about class_separation * sqrt(2) within-class standard deviations apart. Classes are
equally frequent (up to one sample).
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
    cross_entropy,
    register_task,
    require,
    require_split,
    split_sizes,
    train_eval_split,
)

__all__ = ["Logistic"]


@register_task
@dataclass(frozen=True)
class Logistic(Task):
    """Linear(n_features, n_classes) with bias and cross-entropy; init like torch's Linear.

    >>> task = Logistic(n_samples=200, n_features=5, n_classes=3).build(seed=0)
    >>> task.n_params, task.n_classes, sorted(set(task.y_eval.tolist()))
    (18, 3, [0, 1, 2])
    """

    name = "logistic"

    n_samples: int = bounded(2000, low=2, high=10**8)
    n_features: int = bounded(20, low=1, high=10**5)
    n_classes: int = bounded(4, low=2, high=1000)
    class_separation: float = bounded(2.0, low=0, high=1e4)  # logits stay far from float32 overflow
    eval_fraction: float = bounded(0.2, low=0, high=1, low_open=True, high_open=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        require(self, "n_samples", self.n_samples >= 2 * self.n_classes, "must be >= 2 * n_classes")
        require_split(self, self._class_sizes())

    def _class_sizes(self) -> list[int]:
        """Samples of each label: the labels are a permutation of ``arange(n_samples) % n_classes``."""
        base, extra = divmod(self.n_samples, self.n_classes)
        return [base + (label < extra) for label in range(self.n_classes)]

    def model(self) -> torch.nn.Module:
        """Linear(n_features, n_classes) with bias, on the meta device."""
        return torch.nn.Linear(self.n_features, self.n_classes, device="meta")

    def linear_chain(self) -> LinearChain:
        """One Linear layer with bias."""
        return LinearChain((self.n_features, self.n_classes))

    def sizes(self) -> TaskSizes:
        """Counts of the stratified split; the build draws and copies O(n d) numbers."""
        train, held_out = split_sizes(self._class_sizes(), self.eval_fraction)
        n, d = self.n_samples, self.n_features
        return TaskSizes(
            n_train=sum(train), n_eval=sum(held_out), n_features=d, n_classes=self.n_classes,
            train_class_counts=tuple(train),
            build_draws=n * d + n + self.n_classes * d,
            build_flops=4.0 * n * d,
            build_bytes=36.0 * n * d,  # float64 noise and class means, the float32 sum, and its split copies
        )

    def build(self, seed: int) -> TaskData:
        """Draw the mixture, split it stratified, and draw the initial parameters."""
        rng = stream(seed, "data")
        directions = rng.standard_normal((self.n_classes, self.n_features))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        labels = rng.permutation(np.arange(self.n_samples) % self.n_classes).astype(np.int64)
        noise = rng.standard_normal((self.n_samples, self.n_features))
        x = (self.class_separation * directions[labels] + noise).astype(np.float32)
        train, held_out = train_eval_split(self.n_samples, self.eval_fraction, rng, labels)
        return TaskData.from_split(self.model(), seed, x, labels, (train, held_out), cross_entropy, n_classes=self.n_classes)
