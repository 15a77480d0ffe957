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

from p2psim.config import ScenarioError
from p2psim.lazy import torch

from ..seeding import torch_generator

__all__ = [
    "BUILD_RATES",
    "LinearChain",
    "TASKS",
    "Task",
    "TaskData",
    "TaskSizes",
    "cross_entropy",
    "linear_init",
    "param_shapes",
    "register_task",
    "require",
    "require_split",
    "split_sizes",
    "train_eval_split",
]

# What one host core sustains while building a task, for time estimates only [assumption:
# measured on a 2023 laptop core: numpy draws ~5e7 normals/s, LAPACK ~2e10 FLOP/s, copies ~2e9 B/s]
BUILD_RATES = {"draws_per_s": 5e7, "flops_per_s": 2e10, "bytes_per_s": 2e9}


@dataclass(frozen=True)
class TaskSizes:
    """What a task holds once built, and what building it costs, known by arithmetic before anything is built."""

    n_train: int
    n_eval: int
    n_features: int
    n_classes: int | None
    train_class_counts: tuple[int, ...] | None  # training samples of each label, in label order
    build_draws: float  # random numbers drawn
    build_flops: float  # floating-point operations (linear algebra)
    build_bytes: float  # peak memory of the build
    sample_bytes: float | None = None  # one stored sample (inputs and target); None: float32 features, int64 label

    @property
    def stored_sample_bytes(self) -> float:
        """Bytes of one stored sample: `sample_bytes`, or float32 features and an int64 label."""
        return 4.0 * self.n_features + 8.0 if self.sample_bytes is None else self.sample_bytes

    @property
    def build_s(self) -> float:
        """Estimated seconds to build on one host core (`BUILD_RATES`)."""
        return (
            self.build_draws / BUILD_RATES["draws_per_s"]
            + self.build_flops / BUILD_RATES["flops_per_s"]
            + self.build_bytes / BUILD_RATES["bytes_per_s"]
        )


@dataclass(frozen=True)
class LinearChain:
    """A model made of Linear layers of these widths (input first), one elementwise activation between two.

    What a task's `linear_chain` returns so that validation counts parameters, FLOPs and
    layers by arithmetic, without torch (`budget.chain_costs`).

    >>> LinearChain((64, 32, 10)).n_params  # 64 x 32 + 32, then 32 x 10 + 10
    2410
    """

    widths: tuple[int, ...]
    bias: bool = True

    @property
    def layers(self) -> int:
        """Linear layers in the chain."""
        return len(self.widths) - 1

    @property
    def n_params(self) -> int:
        """Weights, and biases where the layers have them."""
        pairs = zip(self.widths[:-1], self.widths[1:])
        return sum(fan_in * fan_out + (fan_out if self.bias else 0) for fan_in, fan_out in pairs)


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
    perplexity: bool = False  # the loss is a mean cross-entropy per token in nats: the history adds exp(loss)

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

    @abc.abstractmethod
    def model(self) -> torch.nn.Module:
        """The model template on the "meta" device: shapes without memory, so sizes cost nothing."""

    @abc.abstractmethod
    def sizes(self) -> TaskSizes:
        """Sample counts, classes and the build's cost, by arithmetic, so validation need not build."""

    def linear_chain(self) -> LinearChain | None:
        """The model as a chain of Linear layers, if it is one (validation then needs no torch); else None."""
        return None


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


def require_split(task: Task, group_sizes: list[int]) -> None:
    """Fail on ``eval_fraction`` when it would leave the training or the held-out set empty."""
    train, held_out = split_sizes(group_sizes, task.eval_fraction)
    require(
        task, "eval_fraction", sum(train) > 0 and sum(held_out) > 0,
        f"leaves {sum(train)} training and {sum(held_out)} held-out samples of {sum(group_sizes)}; both need one",
    )


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


def split_sizes(group_sizes: list[int], eval_fraction: float) -> tuple[list[int], list[int]]:
    """Training and held-out samples of each group, exactly as `train_eval_split` will draw them.

    >>> split_sizes([5, 5], 0.2)
    ([4, 4], [1, 1])
    """
    held_out = [int(round(eval_fraction * size)) for size in group_sizes]
    return [size - n for size, n in zip(group_sizes, held_out)], held_out


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
    _, n_eval = split_sizes([len(group) for group in groups], eval_fraction)
    held_out = [rng.permutation(group)[:n] for group, n in zip(groups, n_eval)]
    eval_idx = np.sort(np.concatenate(held_out)).astype(np.int64)
    train_mask = np.ones(n_samples, dtype=bool)
    train_mask[eval_idx] = False
    if len(eval_idx) == 0 or len(eval_idx) == n_samples:
        raise ValueError(
            f"eval_fraction {eval_fraction} of {n_samples} samples leaves an empty train or eval set"
        )
    return np.flatnonzero(train_mask).astype(np.int64), eval_idx
