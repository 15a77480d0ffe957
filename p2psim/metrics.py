"""What the history records about the models, and how it is computed.

Losses and accuracies are measured on the task's held-out set, for the averaged
model and for every peer's own model (one batched forward pass over the rows).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, vmap

from .tasks import TaskData

__all__ = ["Evaluator", "consensus_distance", "consensus_distance_streamed"]


def consensus_distance(params: torch.Tensor) -> tuple[float, float]:
    """Mean and max over peers of the squared distance of a peer's parameters to their average.

    >>> consensus_distance(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    (1.0, 1.0)
    """
    rows = params.double()  # exact zero for equal rows: a float64 mean of float32 copies is exact
    deviation = rows - rows.mean(dim=0, keepdim=True)
    squared = deviation.pow(2).sum(dim=1)
    return float(squared.mean()), float(squared.max())


def consensus_distance_streamed(params: torch.Tensor, chunk: int = 4096) -> tuple[float, float]:
    """`consensus_distance` in the parameters' dtype, `chunk` rows at a time: O(chunk x d) extra memory.

    Rows are taken relative to the first row before averaging, so equal rows give exactly 0
    and large common offsets cancel before any rounding; the per-chunk sums add up in float64.

    >>> consensus_distance_streamed(torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]]), chunk=2)
    (2.6666666666666665, 4.0)
    """
    n = params.shape[0]
    reference = params[0]
    mean = torch.zeros_like(reference)
    for start in range(0, n, chunk):
        mean.add_((params[start : start + chunk] - reference).sum(dim=0))
    mean.div_(n).add_(reference)
    total, largest = 0.0, 0.0
    for start in range(0, n, chunk):
        squared = (params[start : start + chunk] - mean).pow(2).sum(dim=1)
        total += float(squared.sum())
        largest = max(largest, float(squared.max()))
    return total / n, largest


class Evaluator:
    """Loss and accuracy of parameter rows on the held-out set, `chunk` rows at a time."""

    def __init__(self, task: TaskData, chunk: int = 64):
        self.task = task
        self.chunk = chunk

        def loss_and_correct(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            output = functional_call(task.model, task.unflatten(flat), (x,))
            if task.n_classes is None:
                correct = torch.zeros((), dtype=output.dtype)
            else:
                correct = (output.argmax(dim=-1) == y).to(output.dtype).mean()
            return task.loss(output, y), correct

        self._single = loss_and_correct
        self._rows = vmap(loss_and_correct, in_dims=(0, None, None))

    @torch.no_grad()
    def rows(self, params: torch.Tensor, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy of each row of `params` ([k, d]) on the eval set (or on `x`, `y`)."""
        x = self.task.x_eval if x is None else x
        y = self.task.y_eval if y is None else y
        losses, accuracies = [], []
        for start in range(0, params.shape[0], self.chunk):
            loss, accuracy = self._rows(params[start : start + self.chunk], x, y)
            losses.append(loss)
            accuracies.append(accuracy)
        return torch.cat(losses), torch.cat(accuracies)

    @torch.no_grad()
    def single(self, flat: torch.Tensor, train: bool = False) -> tuple[float, float]:
        """Loss and accuracy of one parameter vector on the eval set (or the training set)."""
        x, y = (self.task.x_train, self.task.y_train) if train else (self.task.x_eval, self.task.y_eval)
        loss, accuracy = self._single(flat, x, y)
        return float(loss), float(accuracy)
