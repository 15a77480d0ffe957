"""One seed convention: a scenario's seed derives one named generator per random stream.

Streams are independent and stable: adding a stream never shifts another, because
each is keyed by its name (and optional indices), not by the order of creation.
"""

from __future__ import annotations

import zlib

import numpy as np

from .lazy import torch

__all__ = ["stream", "torch_generator"]


def _key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def stream(seed: int, name: str, *index: int) -> np.random.Generator:
    """Numpy generator for the stream `name` (and `index`, e.g. a peer) of `seed`.

    >>> float(stream(0, "data").random()) == float(stream(0, "data").random())
    True
    >>> float(stream(0, "data").random()) == float(stream(0, "init").random())
    False
    """
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(_key(name), *index))
    return np.random.Generator(np.random.PCG64(sequence))


def torch_generator(seed: int, name: str, *index: int) -> torch.Generator:
    """Torch CPU generator for the stream `name`, seeded from the same convention."""
    value = int(stream(seed, name, *index).integers(0, 2**63 - 1))
    return torch.Generator().manual_seed(value)
