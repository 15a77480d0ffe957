"""Multinomial logistic regression on a Gaussian mixture: a convex task with labels to skew.

Class k has mean class_separation * u_k, with u_k a random unit vector, and unit within-class
covariance; random directions in 20 dimensions are nearly orthogonal, so two class means lie
about class_separation * sqrt(2) within-class standard deviations apart. Classes are
equally frequent (up to one sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from p2psim.seeding import stream
from p2psim.tasks.base import (
    Task,
    TaskData,
    cross_entropy,
    register_task,
    require,
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

    n_samples: int = 2000
    n_features: int = 20
    n_classes: int = 4
    class_separation: float = 2.0
    eval_fraction: float = 0.2

    def __post_init__(self) -> None:
        require(self, "n_features", self.n_features >= 1, "must be >= 1")
        require(self, "n_classes", self.n_classes >= 2, "must be >= 2")
        require(self, "n_samples", self.n_samples >= 2 * self.n_classes, "must be >= 2 * n_classes")
        require(self, "class_separation", self.class_separation >= 0, "must be >= 0")
        require(self, "eval_fraction", 0 < self.eval_fraction < 1, "must be in (0, 1)")

    def build(self, seed: int) -> TaskData:
        """Draw the mixture, split it stratified, and draw the initial parameters."""
        rng = stream(seed, "data")
        directions = rng.standard_normal((self.n_classes, self.n_features))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        labels = rng.permutation(np.arange(self.n_samples) % self.n_classes).astype(np.int64)
        noise = rng.standard_normal((self.n_samples, self.n_features))
        x = (self.class_separation * directions[labels] + noise).astype(np.float32)
        train, held_out = train_eval_split(self.n_samples, self.eval_fraction, rng, labels)
        model = torch.nn.Linear(self.n_features, self.n_classes, device="meta")
        return TaskData.from_split(model, seed, x, labels, (train, held_out), cross_entropy, n_classes=self.n_classes)
