"""The payload pool counts its rows in use through growth, held releases and recycling; row views are made once."""

import torch

from p2psim.payloads import RowPool, RowViews


def test_in_use_counts_stored_and_held_rows_until_recycled():
    pool = RowPool(2, capacity=2)
    slots = [pool.store(torch.full((2,), float(i))) for i in range(5)]  # grows 2 -> 4 -> 8
    assert (pool.capacity, pool.in_use, pool.peak_in_use) == (8, 5, 5)
    assert [pool.row(s).tolist() for s in slots] == [[float(i)] * 2 for i in range(5)]
    pool.release(slots[0])
    assert pool.in_use == 4
    pool.hold_released = True
    pool.release(slots[1]); pool.release(slots[2])
    assert pool.in_use == 4  # held: their rows may still be read
    pool.recycle()
    assert pool.in_use == 2 and pool.peak_in_use == 5
    assert len({pool.reserve() for _ in range(6)}) == 6 and pool.in_use == 8 and pool.capacity == 8


def test_row_views_are_made_once_and_write_through():
    rows = torch.zeros(4, 3)
    views = RowViews(rows)
    assert views[2] is views[2]
    views[2].add_(1.0)
    assert rows.sum().item() == 3.0 and rows[2].tolist() == [1.0, 1.0, 1.0]
