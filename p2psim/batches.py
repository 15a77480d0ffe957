"""Each local step's mini-batch: sample indices drawn from the peer's own stream, a block of steps at a time.

A peer's batches are `batch_size` uniform draws (with replacement) from its shard, from
its stream `stream(seed, "batches", peer)`. Numpy's bounded integer draws keep no state
between calls beyond the bit generator's, so one draw of k x batch_size integers gives the
k batches of k single draws, the same integers in the same order: drawing a block of
steps at once (`FIRST_BLOCK` steps, doubling up to `MAX_BLOCK`) changes no batch and saves
most calls' fixed cost (5-15 us a call on the project's 2-core CPU, its internal `np.prod`
included).
"""

from __future__ import annotations

import numpy as np

from .seeding import streams

__all__ = ["BatchDraws"]

FIRST_BLOCK = 4  # steps in a peer's first block (512 B at batch 16): a run of a few steps draws once a peer
MAX_BLOCK = 8  # steps at most in a block (1 KiB at batch 16: 100 MB at 100,000 peers)


class BatchDraws:
    """Each peer's next mini-batch of sample indices (into the task's training set), in the order of its steps.

    >>> draws = BatchDraws([np.arange(10), np.arange(10, 20)], 3, seed=0)
    >>> rng = streams(0, "batches", 2)[1]
    >>> all((draws.next(1) == 10 + rng.integers(0, 10, 3)).all() for _ in range(40))
    True
    """

    def __init__(self, partitions: list[np.ndarray], batch_size: int, seed: int):
        n = len(partitions)
        self._partitions = partitions
        self._batch_size = batch_size
        self._rngs = streams(seed, "batches", n)  # stream(seed, "batches", i), hashed at once
        self._blocks: list[np.ndarray | None] = [None] * n
        self._offsets = [0] * n  # where the peer's next batch starts in its block
        self._steps = [0] * n  # steps in the peer's last block

    def next(self, peer: int) -> np.ndarray:
        """`peer`'s next batch (a view into its block: read it, do not write it)."""
        start = self._offsets[peer]
        end = start + self._batch_size
        block = self._blocks[peer]
        if block is None or end > len(block):
            steps = self._steps[peer] = min(2 * self._steps[peer], MAX_BLOCK) or FIRST_BLOCK
            local = self._partitions[peer]
            block = self._blocks[peer] = local[self._rngs[peer].integers(0, len(local), steps * self._batch_size)]
            start, end = 0, self._batch_size
        self._offsets[peer] = end
        return block[start:end]
