"""What a task gives the engine: a model template, flat initial parameters, data and a pure loss.

The engine keeps every peer's parameters as a row of one tensor (DESIGN decision 5) and
evaluates ``f(flat, x, y) = task.loss(functional_call(model, task.unflatten(flat), (x,)), y)``
under ``torch.func.vmap(torch.func.grad(f))``; everything here serves that call.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Callable, ClassVar, TypeVar

import numpy as np
import torch

from p2psim.config import ScenarioError

from ..seeding import torch_generator

__all__ = [
    "TASKS",
    "Task",
    "TaskData",
    "cross_entropy",
    "linear_init",
    "param_shapes",
    "register_task",
    "require",
    "train_eval_split",
]


@dataclass(frozen=True, eq=False)
class TaskData:
    """A built task: a meta-device model template, its flat initial parameters, data and loss.

    ``eq=False``: tensors have no truth value, so two TaskData compare by identity.
    """

    model: torch.nn.Module
    param_shapes: tuple[tuple[str, tuple[int, ...]], ...]
    initial_params: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    n_classes: int | None
    optimum_loss: float | None
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector."""
        return sum(math.prod(shape) for _, shape in self.param_shapes)

    @classmethod
    def from_split(
        cls,
        model: torch.nn.Module,
        seed: int,
        x: np.ndarray,
        y: np.ndarray,
        split: tuple[np.ndarray, np.ndarray],
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        n_classes: int | None,
        optimum_loss: float | None = None,
    ) -> TaskData:
        """A task from a linear-layer model and data split into (train, eval) indices; init from the seed."""
        train, held_out = split
        return cls(
            model=model,
            param_shapes=param_shapes(model),
            initial_params=linear_init(model, torch_generator(seed, "init")),
            x_train=torch.from_numpy(x[train]),
            y_train=torch.from_numpy(y[train]),
            x_eval=torch.from_numpy(x[held_out]),
            y_eval=torch.from_numpy(y[held_out]),
            n_classes=n_classes,
            optimum_loss=optimum_loss,
            loss=loss,
        )

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views of a flat parameter vector, in flattening order; works under vmap."""
        params, offset = {}, 0
        for name, shape in self.param_shapes:
            size = math.prod(shape)
            params[name] = flat[offset : offset + size].view(shape)
            offset += size
        return params


class Task(abc.ABC):
    """Base of task configurations: a frozen dataclass subclass whose fields are the options."""

    name: ClassVar[str]

    @abc.abstractmethod
    def build(self, seed: int) -> TaskData:
        """Data from ``stream(seed, "data")``; initial params from ``torch_generator(seed, "init")``."""


TASKS: dict[str, type[Task]] = {}

TaskType = TypeVar("TaskType", bound=type[Task])


def register_task(cls: TaskType) -> TaskType:
    """Class decorator: make a task available by its ``name`` (as scenarios refer to it)."""
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} is already registered by {TASKS[cls.name].__name__}")
    TASKS[cls.name] = cls
    return cls


def require(task: Task, field: str, ok: bool, requirement: str) -> None:
    """Fail early naming the option; a scenario prefixes the path, giving ``task.<field>``."""
    if not ok:
        raise ScenarioError(field, f"{requirement}, got {getattr(task, field)!r}")


def param_shapes(model: torch.nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of each parameter, in ``named_parameters`` order: the flattening order."""
    return tuple((name, tuple(p.shape)) for name, p in model.named_parameters())


def linear_init(model: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
    """Flat parameters drawn like torch's default Linear init, from `generator` only.

    torch's ``kaiming_uniform_(a=sqrt(5))`` weight and its bias bound both reduce to
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch/nn/modules/linear.py, reset_parameters).
    """
    pieces = []
    for name, param in model.named_parameters():
        owner = model.get_submodule(name.rpartition(".")[0])
        if not isinstance(owner, torch.nn.Linear):
            raise TypeError(f"linear_init: parameter {name!r} belongs to a {type(owner).__name__}")
        bound = 1.0 / math.sqrt(owner.in_features)
        draw = torch.empty(param.numel(), dtype=torch.float32)
        pieces.append(draw.uniform_(-bound, bound, generator=generator))
    return torch.cat(pieces)


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits [batch, classes] against int64 labels [batch]."""
    return torch.nn.functional.cross_entropy(output, target)


def train_eval_split(
    n_samples: int,
    eval_fraction: float,
    rng: np.random.Generator,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 (train, eval) indices; stratified by `labels` when given.

    Each class (or the whole set) sends round(eval_fraction * size) of its samples,
    at random, to the held-out set, so class proportions match in both parts.
    """
    groups = [np.arange(n_samples)] if labels is None else [
        np.flatnonzero(labels == c) for c in np.unique(labels)
    ]
    held_out = []
    for group in groups:
        n_eval = int(round(eval_fraction * len(group)))
        held_out.append(rng.permutation(group)[:n_eval])
    eval_idx = np.sort(np.concatenate(held_out)).astype(np.int64)
    train_mask = np.ones(n_samples, dtype=bool)
    train_mask[eval_idx] = False
    if len(eval_idx) == 0 or len(eval_idx) == n_samples:
        raise ValueError(
            f"eval_fraction {eval_fraction} of {n_samples} samples leaves an empty train or eval set"
        )
    return np.flatnonzero(train_mask).astype(np.int64), eval_idx
