"""Mini-batches drawn a block of steps at a time (p2psim.batches): the batches of one draw a step, in order."""

from __future__ import annotations

import numpy as np
import pytest

from p2psim.batches import MAX_BLOCK, BatchDraws
from p2psim.seeding import stream


@pytest.mark.parametrize("shard", [1, 3, 77, 1000])
@pytest.mark.parametrize("batch", [1, 5, 16])
def test_blocks_give_the_batches_of_one_draw_a_step(shard, batch):
    # the engine's former draw: shard[stream(seed, "batches", peer).integers(0, len(shard), batch)] at every step
    partitions = [np.arange(shard) * 10 + peer for peer in range(3)]
    draws = BatchDraws(partitions, batch, seed=7)
    expected = {peer: stream(7, "batches", peer) for peer in range(3)}
    steps = 5 * MAX_BLOCK + 3  # several blocks, the last one partly used
    for step in range(steps):
        for peer in (2, 0, 1) if step % 2 else (1, 2, 0):  # peers interleaved: each stream is its own
            local = partitions[peer]
            assert np.array_equal(draws.next(peer), local[expected[peer].integers(0, len(local), batch)])
