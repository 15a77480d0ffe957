"""A small decoder-only transformer trained on the bytes of a text: a real language-modelling task.

Byte-level (vocabulary 256), so any text works without a tokenizer. The default corpus
is the source of a fixed list of Python standard-library modules, read from this
interpreter's own installation (``sysconfig.get_paths()["stdlib"]``), so nothing is
downloaded; that text is under the Python Software Foundation License
(https://docs.python.org/3/license.html), and it differs between Python versions, so a
history is reproducible on the same interpreter. ``corpus`` names any other file instead.

A sample is a window of ``context`` input bytes and the ``context`` bytes that follow
each (next-byte targets); windows do not overlap. The loss is the mean cross-entropy per
byte in nats, so perplexity = exp(loss) and bits per byte = loss / ln 2; the history's
"accuracy" is next-byte accuracy. Normalisation is LayerNorm (per sample, no running
statistics), so per-row vmapped gradients are exact.
"""

from __future__ import annotations

import functools
import os
import sysconfig
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
    param_shapes,
    register_task,
    require,
    require_split,
    split_sizes,
    train_eval_split,
)

__all__ = ["STDLIB_MODULES", "TransformerLM", "lm_loss", "transformer_param_count"]

VOCAB = 256  # bytes
MLP_RATIO = 4  # hidden width of each block's MLP over the model width (GPT-2, Radford et al. 2019)
INIT_STD = 0.02  # normal init of weights and embeddings (GPT-2)
# Default corpus, in this order: large, stable, pure-Python modules present in every CPython 3.11+
STDLIB_MODULES = ("argparse.py", "inspect.py", "typing.py", "dataclasses.py", "pathlib.py", "textwrap.py",
                  "string.py", "functools.py", "enum.py", "logging/__init__.py", "collections/__init__.py")


def _corpus_files(corpus: str) -> tuple[Path, ...]:
    """The file named by ``corpus``, or the standard-library modules of the default corpus."""
    if corpus:
        return (Path(corpus),)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return tuple(stdlib / name for name in STDLIB_MODULES if (stdlib / name).is_file())


def _available_bytes(files: tuple[Path, ...]) -> int:
    return sum(os.stat(path).st_size for path in files)


def transformer_param_count(layers: int, width: int, context: int, vocab: int = VOCAB) -> int:
    """Parameters by closed form: embeddings, 12 d^2 + 13 d per block, final LayerNorm, untied head.

    Each block: LayerNorm (2d), query-key-value (3d^2 + 3d), output projection (d^2 + d),
    LayerNorm (2d), MLP (4d^2 + 4d and 4d^2 + d).

    >>> transformer_param_count(layers=1, width=8, context=4, vocab=10)
    1090
    """
    d = width
    return vocab * d + context * d + layers * (12 * d * d + 13 * d) + 2 * d + vocab * d + vocab


def gpt2_init(model: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
    """Flat parameters: weights and embeddings ~ N(0, 0.02^2), biases 0, LayerNorm gains 1 (GPT-2)."""
    pieces = []
    for name, param in model.named_parameters():
        owner = model.get_submodule(name.rpartition(".")[0])
        draw = torch.empty(param.numel(), dtype=torch.float32)
        if isinstance(owner, torch.nn.LayerNorm):
            draw.fill_(1.0 if name.endswith("weight") else 0.0)
        elif name.endswith("bias"):
            draw.zero_()
        else:
            draw.normal_(0.0, INIT_STD, generator=generator)
        pieces.append(draw)
    return torch.cat(pieces)


def lm_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per byte (nats) of logits [..., length, 256] against bytes [..., length]."""
    return torch.nn.functional.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


@functools.lru_cache(maxsize=4)
def _read(files: tuple[Path, ...], n_bytes: int) -> np.ndarray:
    """The first `n_bytes` of the files' concatenation, as uint8 (cached: the text is read once)."""
    data = b"".join(path.read_bytes() for path in files)[:n_bytes]
    return np.frombuffer(data, dtype=np.uint8)


@register_task
@dataclass(frozen=True)
class TransformerLM(Task):
    """Decoder-only byte transformer (pre-norm, GELU, learned positions, untied head) on a text.

    >>> task = TransformerLM(layers=1, width=16, heads=2, context=8, corpus_bytes=4000).build(seed=0)
    >>> task.n_params, task.n_classes, tuple(task.x_train.shape[1:])
    (11888, 256, (8,))
    """

    name = "transformer_lm"

    layers: int = bounded(2, low=1, high=64)
    width: int = bounded(32, low=1, high=8192)  # defaults: a 43k-parameter model that trains in seconds
    heads: int = bounded(4, low=1, high=8192)  # must divide width
    context: int = bounded(32, low=2, high=8192)  # bytes a position may attend to; the length of a sample
    corpus: str = ""  # path of a text file; empty: the standard-library sources (STDLIB_MODULES)
    corpus_bytes: int = bounded(20_000, low=16, high=2**31)  # the corpus's first bytes used (all, if fewer)
    eval_fraction: float = bounded(0.1, low=0, high=1, low_open=True, high_open=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        require(self, "heads", self.width % self.heads == 0, f"must divide width ({self.width})")
        if self.corpus and not Path(self.corpus).is_file():
            raise ScenarioError("corpus", f"must name a readable text file (or be empty for the stdlib sources), got {self.corpus!r}")
        if not self.corpus and not _corpus_files(""):
            raise ScenarioError("corpus", f"none of {STDLIB_MODULES} is under {sysconfig.get_paths()['stdlib']}; name a text file")
        require(self, "context", self._windows() >= 2,
                f"leaves {self._windows()} windows of context + 1 bytes in {self._n_bytes()} corpus bytes; needs 2")
        require_split(self, [self._windows()])

    def _n_bytes(self) -> int:
        return min(self.corpus_bytes, _available_bytes(_corpus_files(self.corpus)))

    def _windows(self) -> int:
        """Non-overlapping samples: window i holds bytes [i * context, (i + 1) * context] (inputs and targets)."""
        return (self._n_bytes() - 1) // self.context

    def model(self) -> torch.nn.Module:
        """The transformer template on the meta device."""
        from p2psim.tasks.transformer_model import ByteTransformer  # torch modules: loaded when a model is made

        return ByteTransformer(self.layers, self.width, self.heads, self.context)

    def sizes(self) -> TaskSizes:
        """Window counts of the split; the build reads the bytes and holds int64 inputs and targets.

        ``n_classes`` is None although the model predicts one of 256 bytes: a sample has a
        target per position, not one label, so label-skewed partitions do not apply (iid only).
        """
        train, held_out = split_sizes([self._windows()], self.eval_fraction)
        return TaskSizes(
            n_train=train[0], n_eval=held_out[0], n_features=self.context, n_classes=None,
            train_class_counts=None, build_draws=self._windows(), build_flops=0.0,
            build_bytes=2.0 * self._n_bytes() + 16.0 * self._windows() * self.context,  # bytes read, int64 x and y
            sample_bytes=16.0 * self.context,  # int64 inputs and next-byte targets
        )

    def build(self, seed: int) -> TaskData:
        """Read the corpus, cut it into windows, split them at random, and draw GPT-2-style initial parameters."""
        text = _read(_corpus_files(self.corpus), self._n_bytes())
        n, t = self._windows(), self.context
        starts = np.arange(n)[:, None] * t + np.arange(t + 1)[None, :]
        windows = text[starts].astype(np.int64)
        train, held_out = train_eval_split(n, self.eval_fraction, stream(seed, "data"))
        model = self.model()
        return TaskData(
            model=model,
            param_shapes=param_shapes(model),
            initial_params=gpt2_init(model, torch_generator(seed, "init")),
            x_train=torch.from_numpy(windows[train, :-1]),
            y_train=torch.from_numpy(windows[train, 1:]),
            x_eval=torch.from_numpy(windows[held_out, :-1]),
            y_eval=torch.from_numpy(windows[held_out, 1:]),
            n_classes=VOCAB,
            optimum_loss=None,
            loss=lm_loss,
            perplexity=True,
        )
