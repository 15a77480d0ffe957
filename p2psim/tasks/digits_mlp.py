"""An MLP on scikit-learn's digits (1797 8x8 images, 10 classes): a small real, non-convex task.

The data ship inside scikit-learn (``sklearn.datasets.load_digits``), so nothing is downloaded.
Pixels (0..16) are scaled to [0, 1] by dividing by 16.
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

__all__ = ["DigitsMLP"]

N_FEATURES = 64  # 8 x 8 pixels
N_CLASSES = 10
CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # images of each digit in load_digits()
MAX_LAYERS = 64


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

    hidden: tuple[int, ...] = bounded((64,), low=1, high=2**20)  # each width; the memory check bounds their product
    eval_fraction: float = bounded(0.2, low=0, high=1, low_open=True, high_open=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))  # a TOML array arrives as a list
        check_ranges(self)
        require(self, "hidden", len(self.hidden) <= MAX_LAYERS, f"must have at most {MAX_LAYERS} layers")
        require_split(self, list(CLASS_COUNTS))

    def model(self) -> torch.nn.Module:
        """The MLP template on the meta device."""
        return mlp(self.linear_chain().widths)

    def linear_chain(self) -> LinearChain:
        """64 inputs, the hidden widths, 10 outputs, ReLU between two layers."""
        return LinearChain((N_FEATURES, *self.hidden, N_CLASSES))

    def sizes(self) -> TaskSizes:
        """Counts of the stratified split of the 1797 images; loading them costs next to nothing."""
        train, held_out = split_sizes(list(CLASS_COUNTS), self.eval_fraction)
        return TaskSizes(
            n_train=sum(train), n_eval=sum(held_out), n_features=N_FEATURES, n_classes=N_CLASSES,
            train_class_counts=tuple(train), build_draws=sum(CLASS_COUNTS), build_flops=0.0,
            build_bytes=24.0 * sum(CLASS_COUNTS) * N_FEATURES,
        )

    def build(self, seed: int) -> TaskData:
        """Load the digits, split them stratified, and draw the initial parameters."""
        from sklearn.datasets import load_digits  # scikit-learn loads when the task is built, not when named

        digits = load_digits()
        x = (digits.data / 16.0).astype(np.float32)
        labels = digits.target.astype(np.int64)
        rng = stream(seed, "data")
        train, held_out = train_eval_split(len(labels), self.eval_fraction, rng, labels)
        return TaskData.from_split(self.model(), seed, x, labels, (train, held_out), cross_entropy, n_classes=N_CLASSES)
