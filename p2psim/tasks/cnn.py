"""A small CNN image classifier: scikit-learn's digits by default, or CIFAR-10 from a folder the user names.

Digits (1797 8x8 greyscale images, 10 classes) ship inside scikit-learn; CIFAR-10 is read
from the standard "python version" pickle batches (``data_batch_1`` ... ``data_batch_5``,
https://www.cs.toronto.edu/~kriz/cifar.html) in ``cifar_dir``: every ``data_batch_*``
present is pooled and split stratified by ``eval_fraction``. Nothing is downloaded.
The pickles are unpickled, so name only a folder you trust.

Each block is Conv2d(3x3, same padding) -> GroupNorm -> ReLU -> MaxPool(2). GroupNorm, not
BatchNorm: it normalises each sample on its own and keeps no running statistics, so the
engine's vmap over peers' rows gives every peer its exact gradient.
"""

from __future__ import annotations

import functools
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2psim.config import ScenarioError, bounded, check_ranges
from p2psim.lazy import torch
from p2psim.seeding import stream, torch_generator
from p2psim.tasks.base import (
    Task,
    TaskData,
    TaskSizes,
    cross_entropy,
    param_shapes,
    register_task,
    require,
    require_split,
    split_sizes,
    train_eval_split,
)

__all__ = ["CNN", "cnn_param_count", "load_cifar10"]

DATASETS = {"digits": (1, 8), "cifar10": (3, 32)}  # channels, side in pixels
N_CLASSES = 10
DIGITS_CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # images of each digit in load_digits()


def cnn_param_count(in_channels: int, side: int, channels: tuple[int, ...], n_classes: int = N_CLASSES) -> int:
    """Parameters by closed form: 9 c_in c + c (conv) + 2 c (GroupNorm) per block, then the linear head.

    >>> cnn_param_count(1, 8, (4, 8))
    690
    """
    total, c_in = 0, in_channels
    for c in channels:
        total += 9 * c_in * c + c + 2 * c
        c_in = c
    features = c_in * (side // 2 ** len(channels)) ** 2
    return total + features * n_classes + n_classes


def _batch_files(folder: str) -> tuple[Path, ...]:
    path = Path(folder)
    return tuple(sorted(path.glob("data_batch_*"))) if path.is_dir() else ()


@functools.lru_cache(maxsize=4)
def load_cifar10(files: tuple[Path, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [n, 3072] in [0, 1] (channel-major, as stored) and int64 labels from pickle batches."""
    images, labels = [], []
    for path in files:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3 * 32 * 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return (np.concatenate(images) / np.float32(255.0)).astype(np.float32), np.concatenate(labels)


def torch_default_init(model: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
    """Flat parameters like torch's defaults: conv and linear ~ U(+-1/sqrt(fan_in)), GroupNorm gain 1, bias 0.

    torch's ``kaiming_uniform_(a=sqrt(5))`` and its bias bound both reduce to that uniform
    (torch/nn/modules/conv.py and linear.py, reset_parameters).
    """
    pieces = []
    for name, param in model.named_parameters():
        owner = model.get_submodule(name.rpartition(".")[0])
        draw = torch.empty(param.numel(), dtype=torch.float32)
        if isinstance(owner, torch.nn.GroupNorm):
            draw.fill_(1.0 if name.endswith("weight") else 0.0)
        else:
            fan_in = math.prod(owner.weight.shape[1:])
            draw.uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=generator)
        pieces.append(draw)
    return torch.cat(pieces)


@register_task
@dataclass(frozen=True)
class CNN(Task):
    """Conv blocks of the given channel counts, then Linear to 10 classes, with cross-entropy.

    >>> task = CNN(channels=(4, 8), groups=2).build(seed=0)
    >>> task.n_params, task.n_classes, tuple(task.x_train.shape[1:])
    (690, 10, (64,))
    """

    name = "cnn"

    dataset: str = "digits"  # "digits" (shipped with scikit-learn) or "cifar10" (from cifar_dir)
    cifar_dir: str = ""  # folder holding CIFAR-10's python pickle batches data_batch_*
    channels: tuple[int, ...] = bounded((16, 32), low=1, high=4096)  # each block's channels; each halves the side
    groups: int = bounded(4, low=1, high=4096)  # GroupNorm groups; must divide every channel count
    eval_fraction: float = bounded(0.2, low=0, high=1, low_open=True, high_open=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))  # a TOML array arrives as a list
        check_ranges(self)
        require(self, "dataset", self.dataset in DATASETS, f"must be one of {', '.join(DATASETS)}")
        side = DATASETS[self.dataset][1]
        require(self, "channels", 1 <= len(self.channels) <= int(math.log2(side)),
                f"must list 1 to {int(math.log2(side))} blocks: each halves the {side}x{side} image")
        require(self, "groups", all(c % self.groups == 0 for c in self.channels), f"must divide every channel count {self.channels}")
        if self.dataset == "cifar10" and not _batch_files(self.cifar_dir):
            raise ScenarioError(
                "cifar_dir", f"must be a folder holding CIFAR-10's python batches data_batch_1 ... data_batch_5 "
                f"(cifar-10-python.tar.gz, extracted), got {self.cifar_dir!r}")
        require_split(self, list(self._class_counts()))

    def _class_counts(self) -> tuple[int, ...]:
        if self.dataset == "digits":
            return DIGITS_CLASS_COUNTS
        labels = load_cifar10(_batch_files(self.cifar_dir))[1]  # the pickles hold the labels with the pixels
        return tuple(int(n) for n in np.bincount(labels, minlength=N_CLASSES))

    def model(self) -> torch.nn.Module:
        """The CNN template on the meta device; it takes flat images [batch, channels x side x side]."""
        c_in, side = DATASETS[self.dataset]
        layers: list[torch.nn.Module] = [torch.nn.Unflatten(1, (c_in, side, side))]
        for c in self.channels:
            layers += [torch.nn.Conv2d(c_in, c, 3, padding=1, device="meta"), torch.nn.GroupNorm(self.groups, c, device="meta"),
                       torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            c_in, side = c, side // 2
        return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(c_in * side * side, N_CLASSES, device="meta"))

    def sizes(self) -> TaskSizes:
        """Counts of the stratified split (CIFAR-10's from its labels); the build holds float32 pixels."""
        c_in, side = DATASETS[self.dataset]
        counts = self._class_counts()
        train, held_out = split_sizes(list(counts), self.eval_fraction)
        n_features = c_in * side * side
        return TaskSizes(
            n_train=sum(train), n_eval=sum(held_out), n_features=n_features, n_classes=N_CLASSES,
            train_class_counts=tuple(train), build_draws=sum(counts), build_flops=0.0,
            build_bytes=(1.0 + 4.0 + 4.0) * sum(counts) * n_features,  # uint8 read, float32 pixels, their split copy
        )

    def build(self, seed: int) -> TaskData:
        """Load the images, split them stratified, and draw torch-default initial parameters."""
        if self.dataset == "digits":
            from sklearn.datasets import load_digits  # scikit-learn loads when the task is built, not when named

            digits = load_digits()
            x, labels = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
        else:
            x, labels = load_cifar10(_batch_files(self.cifar_dir))
        train, held_out = train_eval_split(len(labels), self.eval_fraction, stream(seed, "data"), labels)
        model = self.model()
        return TaskData(
            model=model,
            param_shapes=param_shapes(model),
            initial_params=torch_default_init(model, torch_generator(seed, "init")),
            x_train=torch.from_numpy(x[train]),
            y_train=torch.from_numpy(labels[train]),
            x_eval=torch.from_numpy(x[held_out]),
            y_eval=torch.from_numpy(labels[held_out]),
            n_classes=N_CLASSES,
            optimum_loss=None,
            loss=cross_entropy,
        )
