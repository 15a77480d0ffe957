"""One seed convention: a scenario's seed derives one named generator per random stream.

Streams are independent and stable: adding a stream never shifts another, because
each is keyed by its name (and optional indices), not by the order of creation.
"""

from __future__ import annotations

import zlib

import numpy as np
from numpy.random.bit_generator import ISeedSequence

from .lazy import torch

__all__ = ["stream", "streams", "torch_generator"]


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


def streams(seed: int, name: str, count: int) -> list[np.random.Generator]:
    """`[stream(seed, name, i) for i in range(count)]`, the same generators, their seeds hashed in one vectorised pass.

    numpy's SeedSequence hashes entropy and spawn key word by word in scalar loops, ~40 us a
    generator: seconds for 100,000 peers. This is its hash (numpy/random/bit_generator.pyx:
    the pool of 4 words, `mix_entropy`, `generate_state(4, uint64)`) on a column per stream;
    PCG64 is then seeded from the words as numpy would seed it.

    >>> float(streams(3, "batches", 5)[4].random()) == float(stream(3, "batches", 4).random())
    True
    """
    if count > 2**32:
        raise ValueError(f"streams: at most 2**32 indices (one spawn-key word each), got {count}")
    head = _words(seed)
    head += [0] * (_POOL - len(head))  # numpy pads the run entropy to the pool when there is a spawn key
    entropy = [np.full(count, word, dtype=np.uint64) for word in (*head, *_words(_key(name)))]
    entropy.append(np.arange(count, dtype=np.uint64))
    hash_const = [_INIT_A]

    def hashmix(value: np.ndarray) -> np.ndarray:
        value = value ^ np.uint64(hash_const[0])
        hash_const[0] = hash_const[0] * _MULT_A & _MASK
        value = value * np.uint64(hash_const[0]) & np.uint64(_MASK)
        return value ^ (value >> np.uint64(16))

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = (np.uint64(_MIX_MULT_L) * x - np.uint64(_MIX_MULT_R) * y) & np.uint64(_MASK)  # mod 2**64, then 2**32
        return result ^ (result >> np.uint64(16))

    pool = [hashmix(word) for word in entropy[:_POOL]]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for word in entropy[_POOL:]:
        for dst in range(_POOL):
            pool[dst] = mix(pool[dst], hashmix(word))
    state, const = [], _INIT_B
    for i in range(8):  # generate_state(4, uint64): 8 uint32 words, read in little-endian pairs
        value = pool[i % _POOL] ^ np.uint64(const)
        const = const * _MULT_B & _MASK
        value = value * np.uint64(const) & np.uint64(_MASK)
        state.append(value ^ (value >> np.uint64(16)))
    words = np.stack([state[2 * j] | (state[2 * j + 1] << np.uint64(32)) for j in range(4)], axis=1)
    return [np.random.Generator(np.random.PCG64(_HashedSeed(row))) for row in words]


_POOL = 4  # numpy's DEFAULT_POOL_SIZE, and its hash constants (bit_generator.pyx)
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _MASK = 0xCA01F9DD, 0x4973F715, 0xFFFFFFFF


def _words(value: int) -> list[int]:
    """A non-negative int as numpy coerces it for a SeedSequence: little-endian 32-bit words, at least one."""
    if value < 0:
        raise ValueError(f"a seed must be >= 0, got {value}")
    words = [value & _MASK]
    while value > _MASK:
        value >>= 32
        words.append(value & _MASK)
    return words


class _HashedSeed:
    """A SeedSequence stand-in holding the PCG64 seed words `streams` hashed: numpy's PCG64 asks it for them once."""

    __slots__ = ("_state",)

    def __init__(self, state: np.ndarray):
        self._state = state

    def generate_state(self, n_words: int, dtype: type = np.uint32) -> np.ndarray:
        if self._state is None or n_words != 4 or np.dtype(dtype) != np.uint64:
            raise ValueError("_HashedSeed gives PCG64's seed once only: generate_state(4, np.uint64)")
        state, self._state = self._state, None  # seeded: ~100 B a generator not kept
        return state


ISeedSequence.register(_HashedSeed)


def torch_generator(seed: int, name: str, *index: int) -> torch.Generator:
    """Torch CPU generator for the stream `name`, seeded from the same convention."""
    value = int(stream(seed, name, *index).integers(0, 2**63 - 1))
    return torch.Generator().manual_seed(value)
