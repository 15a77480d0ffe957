"""Uniform choices among k drawn a block at a time: the values that `rng.integers(k)` gives one call at a time.

An algorithm picks a random partner at every exchange, and numpy's `Generator.integers(k)`
costs about 2 µs a call, almost all of it argument handling. For k <= 2**32 numpy takes one
32-bit word of the bit generator per try and maps it to [0, k) by Lemire's multiply-shift,
rejecting the rare words that would bias it (numpy/random/src/distributions/distributions.c,
`random_bounded_uint64` -> `buffered_bounded_lemire_uint32`; k = 1 takes no word). Here the
same words are drawn in blocks (`integers(0, 2**32, size)`: the same words in the same order)
and mapped in Python: the same choices, at a few tenths of a microsecond each. The generator
runs ahead of the choices made, so this object must be its only user.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UniformIndices"]

WORD = 0xFFFFFFFF  # a 32-bit word's mask
BLOCK = 1024  # words drawn at once


class UniformIndices:
    """`rng.integers(k)` for k in 1..2**32, call after call, from words drawn a block at a time.

    >>> a, b = np.random.default_rng(5), np.random.default_rng(5)
    >>> draws = UniformIndices(b)
    >>> all(draws.below(k) == a.integers(k) for k in [1, 2, 3, 7, 2**31 + 1, 2**32] * 500)
    True
    """

    __slots__ = ("_next", "_rng", "_words")

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._words: list[int] = []
        self._next = 0

    def below(self, k: int) -> int:
        """A uniform integer in [0, k): the one `rng.integers(k)` would return now."""
        if not 1 < k <= WORD + 1:
            if k == 1:
                return 0  # numpy draws no word for a single choice
            raise ValueError(f"k must be in 1..2**32, got {k}")
        while True:
            i = self._next
            if i == len(self._words):
                i = self._refill()
            self._next = i + 1
            m = self._words[i] * k
            # Lemire's rejection, as numpy does it: a word is biased with probability below k / 2**32
            if m & WORD >= k or m & WORD >= (WORD + 1 - k) % k:
                return m >> 32

    def _refill(self) -> int:
        """Draw the next block of the bit generator's 32-bit words; the index of the first."""
        self._words = self._rng.integers(0, WORD + 1, size=BLOCK, dtype=np.uint64).tolist()
        return 0
