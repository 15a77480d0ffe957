"""An MLP on scikit-learn's digits (1797 8x8 images, 10 classes): a small real, non-convex task.

The data ship inside scikit-learn (``sklearn.datasets.load_digits``), so nothing is downloaded.
Pixels (0..16) are scaled to [0, 1] by dividing by 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits

from p2psim.seeding import stream
from p2psim.tasks.base import (
    Task,
    TaskData,
    cross_entropy,
    register_task,
    require,
    train_eval_split,
)

__all__ = ["DigitsMLP"]

N_FEATURES = 64  # 8 x 8 pixels
N_CLASSES = 10


def mlp(widths: tuple[int, ...]) -> torch.nn.Sequential:
    """Linear layers of the given widths with ReLU between them, on the meta device."""
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out, device="meta"), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


@register_task
@dataclass(frozen=True)
class DigitsMLP(Task):
    """64 -> hidden... -> 10 ReLU MLP with cross-entropy; init like torch's Linear.

    >>> task = DigitsMLP(hidden=(32,)).build(seed=0)
    >>> task.n_params, task.n_classes, len(task.x_train) + len(task.x_eval)
    (2410, 10, 1797)
    """

    name = "digits_mlp"

    hidden: tuple[int, ...] = (64,)
    eval_fraction: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))  # a TOML array arrives as a list
        require(self, "hidden", all(width >= 1 for width in self.hidden), "widths must be >= 1")
        require(self, "eval_fraction", 0 < self.eval_fraction < 1, "must be in (0, 1)")

    def build(self, seed: int) -> TaskData:
        """Load the digits, split them stratified, and draw the initial parameters."""
        digits = load_digits()
        x = (digits.data / 16.0).astype(np.float32)
        labels = digits.target.astype(np.int64)
        rng = stream(seed, "data")
        train, held_out = train_eval_split(len(labels), self.eval_fraction, rng, labels)
        model = mlp((N_FEATURES, *self.hidden, N_CLASSES))
        return TaskData.from_split(model, seed, x, labels, (train, held_out), cross_entropy, n_classes=N_CLASSES)
