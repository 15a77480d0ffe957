"""Message payloads as rows of one pooled tensor: what was sent, as it was when it left.

DESIGN decision 4: a message carries a copy of the sender's rows taken at send time.
Copies live in a `RowPool` with the parameters' layout, so a message in flight costs
one row of a preallocated tensor (no per-message Python tensor), and the slot is
reused once the message has been delivered. The pool grows by doubling when more
messages are in flight than it has rows; memory stays bounded by the peak in flight.
"""

from __future__ import annotations

from .lazy import torch

__all__ = ["RowPool", "RowViews"]


class RowViews:
    """`tensor[i]` for the rows of a tensor, each view made at its first use and kept.

    Indexing a tensor costs microseconds, a list nanoseconds: the engine and the algorithms read a few rows per event.

    >>> rows = torch.zeros(3, 2); views = RowViews(rows)
    >>> views[1].add_(1.0) is views[1], rows.tolist()
    (True, [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    """

    __slots__ = ("_tensor", "_views")

    def __init__(self, tensor: torch.Tensor):
        self._tensor = tensor
        self._views: list[torch.Tensor | None] = [None] * len(tensor)

    def __getitem__(self, i: int) -> torch.Tensor:
        view = self._views[i]
        if view is None:
            view = self._views[i] = self._tensor[i]
        return view


class RowPool:
    """A growable `[capacity, n_params]` tensor of payload rows with a free list.

    >>> pool = RowPool(3, capacity=1)
    >>> a = pool.store(torch.ones(3)); b = pool.store(torch.zeros(3))
    >>> pool.capacity, pool.in_use, pool.row(a).tolist()
    (2, 2, [1.0, 1.0, 1.0])
    >>> pool.release(a); pool.in_use
    1
    """

    def __init__(
        self, n_params: int, capacity: int = 16, dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
    ):
        """`dtype`: the rows' (None: float32)."""
        self._rows = torch.empty(capacity, n_params, dtype=torch.float32 if dtype is None else dtype, device=device)
        self._views = RowViews(self._rows)
        self._capacity = capacity  # a Python int: read at every store, where a torch shape costs microseconds
        self._free = list(range(capacity - 1, -1, -1))
        self._held: list[int] = []  # released while `hold_released`: reusable after `recycle`
        self.hold_released = False  # deferred numerics: a slot's row may still be read by ops not yet run
        self.in_use = 0  # rows holding a payload not yet released, or held (a counter: read at every store)
        self.peak_in_use = 0

    @property
    def capacity(self) -> int:
        """Rows allocated."""
        return self._capacity

    @property
    def rows(self) -> torch.Tensor:
        """The whole pool tensor (replaced when the pool grows: index it by slot, do not keep it)."""
        return self._rows

    def store(self, row: torch.Tensor) -> int:
        """Copy `row` into a free slot (growing the pool if none is free) and return the slot."""
        slot = self.reserve()
        self._views[slot].copy_(row)
        return slot

    def reserve(self) -> int:
        """A free slot, its row not yet written (growing the pool if none is free): deferred numerics fill it later."""
        if not self._free:
            old = self.capacity
            grown = torch.empty(2 * old, self._rows.shape[1], dtype=self._rows.dtype, device=self._rows.device)
            grown[:old] = self._rows
            self._rows = grown
            self._views = RowViews(grown)
            self._capacity = 2 * old
            self._free = list(range(2 * old - 1, old - 1, -1))
        slot = self._free.pop()
        in_use = self.in_use = self.in_use + 1
        if in_use > self.peak_in_use:
            self.peak_in_use = in_use
        return slot

    def row(self, slot: int) -> torch.Tensor:
        """The stored row (a view: valid until the slot is released)."""
        return self._views[slot]

    def release(self, slot: int) -> None:
        """Give the slot back for reuse (after the next `recycle` while `hold_released`)."""
        if self.hold_released:
            self._held.append(slot)
        else:
            self._free.append(slot)
            self.in_use -= 1

    def recycle(self) -> None:
        """Make the slots released while `hold_released` reusable."""
        self._free.extend(self._held)
        self.in_use -= len(self._held)
        self._held = []
