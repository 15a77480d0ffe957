"""Deferred numerics: what events do to the rows, recorded now and executed later as batched calls.

DESIGN decision 5, second half. When, who and to whom do not depend on the parameters'
values in most algorithms, so with `engine.numerics = "deferred"` the World records each
row operation (gradient on a row as it was when the computation started, optimizer step,
lerp, add, copy into a payload slot, pair average, group mean) as an op with the rows it
reads and writes (a gradient needs no snapshot: writes recorded after it wait for it), and
`flush` executes them in dependency order: every ready row operation of one kind in one
indexed call and, when only gradients are ready, all of them in one vmapped call (a wave).
Two ops that touch a common row, one of them writing it, are ordered by an edge in the
order they were recorded, so ops ready together commute: the result is the eager one.
A gradient's row is its wave's output, read in place until the gradient is used (no copy
into a pool); rows still unused at the end of a flush are kept, copied out of their wave.
Algorithms keep their own rows (a server's running sum, anchors, an outer optimizer's
model) in `rows.new(k)` and act on them through the same interface in both modes:
`EagerRows` runs each op at once, `Dataflow` records it.
Batched elementwise ops are the eager ops on more rows; only the vmapped gradients of a
different batch composition may round differently (as `engine.batch_gradients` already may).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from .payloads import RowPool

if TYPE_CHECKING:
    from .optim import RowOptimizer

__all__ = ["Dataflow", "EagerRows", "RowHandle", "RowOps", "evaluate_gradients"]

PARAMS, PAYLOADS, GRADIENTS = range(3)  # the buffers rows live in; then the algorithms' own (`new`)
STRIDE = 64  # a row's key is index * STRIDE + buffer: at most STRIDE buffers
COPY, GRADIENT, STEP, LERP, ADD, PAIR, MEAN, ROUND, ZERO, DIVIDE, SUBTRACT, RESET, MEAN_OF = range(13)  # op kinds
GRADIENT_GROUP = (GRADIENT,)


def evaluate_gradients(
    gradients: Callable[..., tuple[torch.Tensor, torch.Tensor]], task: Any, rows: torch.Tensor, batches: list[np.ndarray]
) -> tuple[torch.Tensor, list[float], list[bool]]:
    """Gradients and losses of `rows` (one per batch of sample indices) in one vmapped call, and which are finite."""
    index = torch.from_numpy(np.concatenate(batches)).to(task.x_train.device)
    x = task.x_train.index_select(0, index)
    y = task.y_train.index_select(0, index)
    k = len(batches)
    grads, losses = gradients(rows, x.view(k, -1, *x.shape[1:]), y.view(k, -1, *y.shape[1:]))
    # a row with an infinite or NaN entry sums to one: finite sums clear every row in one cheap reduction
    finite = torch.isfinite(grads.sum(dim=1)).tolist()
    if not all(finite):  # a non-finite entry, or finite ones summing past the float range: look at the entries
        finite = torch.isfinite(grads).all(dim=1).tolist()
    return grads, losses.tolist(), finite


class EagerRows:
    """`Dataflow`'s interface for an algorithm's own rows, each op run at once: eager numerics.

    An algorithm that keeps rows of its own (a server's running sum, anchors) allocates them
    with `world.rows.new(k)` and changes them only through these methods, the same code
    under both numerics; reading their values is what deferral forbids.
    """

    def __init__(self, params: torch.Tensor, optimizer: RowOptimizer):
        self._params = params
        self._optimizer = optimizer

    def new(self, k: int) -> torch.Tensor:
        """`k` zero rows the algorithm keeps."""
        return torch.zeros(k, *self._params.shape[1:], dtype=self._params.dtype, device=self._params.device)

    def zero(self, row: torch.Tensor) -> None:
        """row = 0."""
        row.zero_()

    def assign(self, row: torch.Tensor, value: torch.Tensor) -> None:
        """row = value."""
        row.copy_(value)

    def accumulate(self, row: torch.Tensor, value: torch.Tensor, alpha: float) -> None:
        """row += alpha * value."""
        row.add_(value, alpha=alpha)

    def divide(self, row: torch.Tensor, value: torch.Tensor, divisor: float) -> None:
        """row = value / divisor."""
        torch.div(value, divisor, out=row)

    def subtract(self, row: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
        """row = a - b."""
        torch.sub(a, b, out=row)

    def mean_of(self, row: torch.Tensor, values: list[torch.Tensor]) -> None:
        """row = the mean of `values`."""
        row.copy_(torch.stack(values).mean(dim=0))

    def reset_optimizer(self, peer: int) -> None:
        """Fresh optimizer state for `peer` (`RowOptimizer.reset`)."""
        self._optimizer.reset(peer)

    def optimizer_step(self, optimizer: RowOptimizer, rows: torch.Tensor, i: int, grad: torch.Tensor, lr: float) -> None:
        """`optimizer.step(rows, i, grad, lr)`: an outer optimizer's step on one of the algorithm's own rows."""
        optimizer.step(rows, i, grad, lr)


class RowHandle:
    """A row that holds its value only once the dataflow is flushed: a payload or a gradient, by buffer and index."""

    __slots__ = ("buffer", "index")

    def __init__(self, buffer: int, index: int):
        self.buffer = buffer
        self.index = index

    def __repr__(self) -> str:
        return f"RowHandle({('params', 'payloads', 'gradients')[self.buffer]}, {self.index})"


class _Op:
    """One recorded row operation: its group (kind and scalars), rows, the ops waiting on it."""

    __slots__ = ("group", "rows", "job", "waiting", "after")

    def __init__(self, group: tuple, rows: tuple, job: Any = None):
        self.group = group
        self.rows = rows
        self.job = job
        self.waiting = 0
        self.after: list[_Op] = []


class Dataflow:
    """The op log of one run and its batched executor."""

    def __init__(
        self,
        params: torch.Tensor,
        pool: RowPool,
        optimizer: RowOptimizer,
        gradients: Callable[[torch.Tensor, list[np.ndarray]], tuple[torch.Tensor, list[float], list[bool]]],
        batch_gradients: bool,
        batch_sizes: list[int],
        max_rows: int,
    ):
        self._params = params  # never reallocated by the World: its rows are known by address
        self._params_base = params if params._base is None else params._base
        self._params_address = params.data_ptr()
        self._params_count = len(params)
        self._row_shape = params.shape[1:]
        self._row_bytes = params.stride(0) * params.element_size()
        self._pool = pool
        pool.hold_released = True  # a reused slot would order unrelated peers' ops after each other: reuse after a flush
        self._optimizer = optimizer
        self._gradients = gradients
        self._batch_gradients = batch_gradients
        self._batch_sizes = batch_sizes
        self._max_rows = max_rows  # payload or gradient rows held before a flush is forced (gradients: at most n more)
        self._ops: list[_Op] = []
        self._writer: dict[int, _Op] = {}  # row key -> the last op that wrote it
        self._readers: dict[int, list[_Op]] = {}  # row key -> ops that read it since its last write
        self._consumed: list[int] = []  # gradient slots free once the ops recorded so far have run
        # a computed gradient's row: the output of its wave, read in place (no copy into a pool); slot -> (tensor, row)
        self._gradient_at: dict[int, tuple[torch.Tensor, int]] = {}
        self._slots = 0  # gradient slots handed out: each gradient's own
        self._held = 0  # gradient slots not yet freed: a flush is due at max_rows
        self.peak_gradient_rows = 0  # the most gradient rows held at once (the waves of one flush and those kept)
        self._last_start = -1.0  # when the last gradient recorded started
        self._own: list[torch.Tensor] = []  # the algorithm's rows (`new`): buffer GRADIENTS + 1 + position
        self._own_buffers: dict[int, int] = {}  # id of such a tensor -> its buffer

    @property
    def pending(self) -> int:
        """Ops recorded and not yet executed."""
        return len(self._ops)

    # ----- recording ------------------------------------------------------------------

    def gradient(self, peer: int, job: Any) -> None:
        """Compute `job`'s gradient on `peer`'s row as it is now; `job.grad` becomes the handle of its row."""
        if self._held >= self._max_rows and job.started_at != self._last_start:
            self.flush()  # at an instant's first gradient: those of one instant (a synchronous round's) stay one wave
        self._last_start = job.started_at
        slot = self._slots
        self._slots += 1
        self._held += 1
        job.grad = RowHandle(GRADIENTS, slot)
        # it reads the row where the log stands now: writes recorded later wait for it, so no snapshot copy is needed.
        self._record(GRADIENT_GROUP, (peer, slot), peer * STRIDE + PARAMS, slot * STRIDE + GRADIENTS, job)

    def consumed(self, job: Any) -> None:
        """`job`'s gradient has been used: its row is freed after the next flush."""
        self._consumed.append(job.grad.index)

    def payload(self, slot: int) -> RowHandle:
        """The handle of a message's payload row, as `message.row` (valid while `on_message` runs, like the row)."""
        return RowHandle(PAYLOADS, slot)

    def store(self, row: torch.Tensor | RowHandle) -> int:
        """Copy `row` into a payload slot (as it is at this point of the log); return the slot."""
        buffer, index = self._source(row)
        if self._pool.in_use >= self._max_rows:
            self.flush()
        slot = self._pool.reserve()
        self._record((COPY, PAYLOADS, buffer), (slot, index), index * STRIDE + buffer, slot * STRIDE + PAYLOADS)
        return slot

    def round(self, slot: int, dtype: torch.dtype) -> None:
        """Round the payload in `slot` to `dtype` and back, as the wire does (`p2psim.compression`)."""
        self._record((ROUND, dtype), (slot,), -1, slot * STRIDE + PAYLOADS)

    def step(self, peer: int, grad: torch.Tensor | RowHandle, lr: float) -> None:
        """One step of the optimizer on `peer`'s row with `grad`, at `lr` (its count advanced now)."""
        buffer, index = self._source(grad)
        group = (STEP, lr, self._optimizer.batch_key(self._optimizer.advance(peer)), buffer, PARAMS, self._optimizer)
        self._record(group, (peer, index), index * STRIDE + buffer, peer * STRIDE + PARAMS)

    def lerp(self, peer: int, incoming: torch.Tensor | RowHandle, weight: float) -> None:
        """params[peer] = lerp(params[peer], incoming, weight)."""
        buffer, index = self._source(incoming)
        self._record((LERP, weight, buffer), (peer, index), index * STRIDE + buffer, peer * STRIDE + PARAMS)

    def add(self, peer: int, update: torch.Tensor | RowHandle, alpha: float) -> None:
        """params[peer] += alpha * update."""
        buffer, index = self._source(update)
        self._record((ADD, alpha, buffer, PARAMS), (peer, index), index * STRIDE + buffer, peer * STRIDE + PARAMS)

    def copy(self, peer: int, value: torch.Tensor | RowHandle) -> None:
        """params[peer] = value."""
        buffer, index = self._source(value)
        self._record((COPY, PARAMS, buffer), (peer, index), index * STRIDE + buffer, peer * STRIDE + PARAMS)

    def average(self, peers: tuple[int, ...] | list[int]) -> None:
        """Set the rows `peers` to their mean (a pair: the eager pair average's two in-place ops)."""
        keys = tuple(peer * STRIDE + PARAMS for peer in peers)
        if len(peers) == 2:
            self._add((PAIR,), tuple(peers), (), keys)
        else:
            op = _Op((MEAN,), tuple(peers))
            op.group = (MEAN, id(op))  # run alone: a k-row mean's reduction order is the eager one
            self._link(op, (), keys)

    # ----- the algorithm's own rows (the interface `EagerRows` runs at once) ------------

    def new(self, k: int) -> torch.Tensor:
        """`k` zero rows the algorithm keeps (a server's sum, anchors): its ops on them are recorded like the World's."""
        if GRADIENTS + 1 + len(self._own) >= STRIDE:
            raise ValueError(f"deferred numerics track at most {STRIDE - GRADIENTS - 1} tensors of the algorithm's own rows")
        rows = torch.zeros(k, *self._row_shape, dtype=self._params.dtype, device=self._params.device)
        self._own_buffers[id(rows)] = GRADIENTS + 1 + len(self._own)
        self._own.append(rows)
        return rows

    def zero(self, row: torch.Tensor) -> None:
        """row = 0 (one of the algorithm's own rows)."""
        buffer, index = self._own_row(row)
        self._record((ZERO, buffer), (index,), -1, index * STRIDE + buffer)

    def assign(self, row: torch.Tensor, value: torch.Tensor | RowHandle) -> None:
        """row = value."""
        buffer, index = self._own_row(row)
        source, at = self._source(value)
        self._record((COPY, buffer, source), (index, at), at * STRIDE + source, index * STRIDE + buffer)

    def accumulate(self, row: torch.Tensor, value: torch.Tensor | RowHandle, alpha: float) -> None:
        """row += alpha * value."""
        buffer, index = self._own_row(row)
        source, at = self._source(value)
        self._record((ADD, alpha, source, buffer), (index, at), at * STRIDE + source, index * STRIDE + buffer)

    def divide(self, row: torch.Tensor, value: torch.Tensor | RowHandle, divisor: float) -> None:
        """row = value / divisor."""
        buffer, index = self._own_row(row)
        source, at = self._source(value)
        self._record((DIVIDE, divisor, source, buffer), (index, at), at * STRIDE + source, index * STRIDE + buffer)

    def subtract(self, row: torch.Tensor, a: torch.Tensor | RowHandle, b: torch.Tensor | RowHandle) -> None:
        """row = a - b."""
        buffer, index = self._own_row(row)
        (first, i), (second, j) = self._source(a), self._source(b)
        reads = (i * STRIDE + first, j * STRIDE + second)
        self._add((SUBTRACT, buffer, first, second), (index, i, j), reads, (index * STRIDE + buffer,))

    def mean_of(self, row: torch.Tensor, values: list[torch.Tensor | RowHandle]) -> None:
        """row = the mean of `values` (rows of one buffer, e.g. gradients), reduced as the eager stack's mean."""
        buffer, index = self._own_row(row)
        sources = [self._source(value) for value in values]
        if len({source for source, _ in sources}) != 1:
            raise TypeError("deferred numerics: mean_of takes rows of one kind (all gradients, or all parameters)")
        op = _Op((MEAN_OF,), (index, *(at for _, at in sources)))
        op.group = (MEAN_OF, id(op), sources[0][0], buffer)  # run alone
        self._link(op, tuple(at * STRIDE + source for source, at in sources), (index * STRIDE + buffer,))

    def reset_optimizer(self, peer: int) -> None:
        """Fresh optimizer state for `peer` (`RowOptimizer.reset`): its count now, its state rows when the log runs."""
        self._optimizer.reset_count(peer)
        if self._optimizer.has_state:  # the peer's steps write its row: ordering by that row orders them
            self._record((RESET,), (peer,), -1, peer * STRIDE + PARAMS)

    def optimizer_step(
        self, optimizer: RowOptimizer, rows: torch.Tensor, i: int, grad: torch.Tensor | RowHandle, lr: float
    ) -> None:
        """`optimizer.step(rows, i, grad, lr)` on one of the algorithm's own rows (an outer optimizer's model)."""
        buffer, index = self._own_row(rows[i])
        if index != i:
            raise ValueError("deferred numerics: an optimizer's row index must be the row's index in its tensor")
        source, at = self._source(grad)
        group = (STEP, lr, optimizer.batch_key(optimizer.advance(i)), source, buffer, optimizer)
        self._record(group, (index, at), at * STRIDE + source, index * STRIDE + buffer)

    def _own_row(self, row: torch.Tensor) -> tuple[int, int]:
        """The buffer and index of one of the algorithm's own rows (from `new`)."""
        buffer, index = self._source(row)
        if buffer <= GRADIENTS:
            raise TypeError("deferred numerics: rows.zero/assign/accumulate/... write the algorithm's own rows (rows.new) "
                            "only; the World's rows change through World.set_row and the other World methods")
        return buffer, index

    def _source(self, row: torch.Tensor | RowHandle) -> tuple[int, int]:
        """The buffer and index of a row an algorithm passed: a handle, or a view of one row of `world.params` or of `new`."""
        if type(row) is RowHandle:
            return row.buffer, row.index
        base = getattr(row, "_base", None)
        if base is self._params_base:
            buffer, start, rows = PARAMS, self._params_address, self._params_count
        else:
            buffer = self._own_buffers.get(id(base), -1)
            start, rows = (base.data_ptr(), len(base)) if buffer >= 0 else (0, 0)
        if rows and row.shape == self._row_shape and row.is_contiguous():
            index, rest = divmod(row.data_ptr() - start, self._row_bytes)
            if rest == 0 and 0 <= index < rows:
                return buffer, index
        raise TypeError(
            "deferred numerics track rows of world.params, world.rows.new, message rows and gradients only, not a tensor "
            f"the algorithm computed ({type(row).__name__}): such an algorithm must keep numerics_deferrable = False"
        )

    def _add(self, group: tuple, rows: tuple, reads: tuple, writes: tuple, job: Any = None) -> None:
        self._link(_Op(group, rows, job), reads, writes)

    def _record(self, group: tuple, rows: tuple, read: int, write: int, job: Any = None) -> None:
        """`_add` of an op that reads one row key or none (`read` = -1) and writes one: the same edges, in the same order."""
        op = _Op(group, rows, job)
        writer = self._writer
        waiting = 0
        if read >= 0:
            last = writer.get(read)
            if last is not None:
                last.after.append(op)
                waiting = 1
        last = writer.get(write)
        if last is not None:
            last.after.append(op)
            waiting += 1
        readers = self._readers.pop(write, None)
        if readers is not None:
            for reader in readers:
                reader.after.append(op)
            waiting += len(readers)
        writer[write] = op
        if read >= 0:
            readers = self._readers.get(read)
            if readers is None:
                self._readers[read] = [op]
            else:
                readers.append(op)
        op.waiting = waiting
        self._ops.append(op)

    def _link(self, op: _Op, reads: tuple, writes: tuple) -> None:
        """Order `op` after the last writer of what it touches and after the readers of what it writes."""
        writer, readers = self._writer, self._readers
        waiting = 0
        for key in reads:
            last = writer.get(key)
            if last is not None:
                last.after.append(op)
                waiting += 1
        for key in writes:
            last = writer.get(key)
            if last is not None:
                last.after.append(op)
                waiting += 1
            for reader in readers.pop(key, ()):
                reader.after.append(op)
                waiting += 1
            writer[key] = op
        for key in reads:
            readers.setdefault(key, []).append(op)
        op.waiting = waiting
        self._ops.append(op)

    # ----- execution ------------------------------------------------------------------

    def flush(self) -> None:
        """Execute every recorded op: row operations as soon as ready, gradients in waves when nothing else is."""
        ops, self._ops = self._ops, []
        self._writer, self._readers = {}, {}
        ready: list[_Op] = []
        wave: list[_Op] = []
        for op in ops:
            if op.waiting == 0:
                (wave if op.group[0] == GRADIENT else ready).append(op)
        executed = 0
        while ready or wave:
            if ready:
                groups: dict[tuple, list[_Op]] = {}
                for op in ready:
                    groups.setdefault(op.group, []).append(op)
                done, ready = ready, []
                for group, members in groups.items():
                    self._run(group, members)
            else:
                done, wave = wave, []
                self._run_gradients(done)
            executed += len(done)
            for op in done:
                for follower in op.after:
                    follower.waiting -= 1
                    if follower.waiting == 0:
                        (wave if follower.group[0] == GRADIENT else ready).append(follower)
        assert executed == len(ops), f"dataflow: {len(ops) - executed} ops never became ready (a cycle)"
        self._free_gradients()
        self._pool.recycle()

    def _free_gradients(self) -> None:
        """Drop the consumed gradients' rows; keep the others (computed ahead of their use), copied out of their wave."""
        at = self._gradient_at
        self.peak_gradient_rows = max(self.peak_gradient_rows, len(at))
        for slot in self._consumed:
            del at[slot]
        self._held -= len(self._consumed)
        self._consumed = []
        waves: dict[int, tuple[torch.Tensor, list[int], list[int]]] = {}  # id of an output -> it, rows kept, their slots
        for slot, (tensor, row) in at.items():
            wave = waves.get(id(tensor))
            if wave is None:
                wave = waves[id(tensor)] = (tensor, [], [])
            wave[1].append(row)
            wave[2].append(slot)
        for tensor, rows, slots in waves.values():
            if len(rows) < len(tensor):  # so that no wave's whole output stays alive for a few of its rows
                kept = tensor.index_select(0, self._index(rows))
                at.update((slot, (kept, row)) for row, slot in enumerate(slots))

    def _tensor(self, buffer: int) -> torch.Tensor:
        if buffer > GRADIENTS:
            return self._own[buffer - GRADIENTS - 1]
        if buffer == GRADIENTS:
            raise TypeError("dataflow: gradient rows live in their waves' outputs: read them through _gather")
        return self._params if buffer == PARAMS else self._pool.rows

    def _index(self, rows: Any) -> torch.Tensor:
        """Row indices as a tensor on the rows' device (index ops on a GPU take GPU indices)."""
        return torch.as_tensor(rows, device=self._params.device)

    def _run(self, group: tuple, ops: list[_Op]) -> None:
        """One batched call for the ready ops of one group (one kind, the same scalars and source buffer)."""
        kind = group[0]
        if kind == MEAN:
            index = self._index(ops[0].rows)
            self._params[index] = self._params.index_select(0, index).mean(dim=0)
            return
        if kind == MEAN_OF:
            values = self._gather(group[2], list(ops[0].rows[1:]))
            values = values if values._base is None else values.clone()  # reduced as before: a fresh contiguous copy
            self._tensor(group[3])[ops[0].rows[0]] = values.mean(dim=0)
            return
        first = self._span([op.rows[0] for op in ops])
        if kind == ROUND:
            self._update(PAYLOADS, first, lambda block: block.copy_(block.to(group[1])))
        elif kind == PAIR:
            second = self._span([op.rows[1] for op in ops])
            self._update(PARAMS, first, lambda block: block.add_(self._read(PARAMS, second)).mul_(0.5))
            self._write(PARAMS, second, self._read(PARAMS, first))
        elif kind == ZERO:
            self._update(group[1], first, lambda block: block.zero_())
        elif kind == RESET:
            self._optimizer.zero_states(first)
        elif kind == SUBTRACT:
            a = self._gather(group[2], [op.rows[1] for op in ops])
            b = self._gather(group[3], [op.rows[2] for op in ops])
            self._write(group[1], first, torch.sub(a, b))
        else:
            source = self._gather(group[3] if kind == STEP else group[2], [op.rows[1] for op in ops])
            if kind == COPY:
                self._write(group[1], first, source)
            elif kind == STEP:
                group[5].step_rows(self._tensor(group[4]), first, source, group[1], group[2])
            elif kind == DIVIDE:
                self._write(group[3], first, torch.div(source, group[1]))
            elif kind == LERP:
                self._update(PARAMS, first, lambda block: block.lerp_(source, group[1]))
            else:  # ADD
                self._update(group[3], first, lambda block: block.add_(source, alpha=group[1]))

    def _span(self, rows: list[int]) -> slice | torch.Tensor:
        """Rows as a slice where they are consecutive and ascending (ops then act on a view), else as an index."""
        start, count = rows[0], len(rows)
        if rows[-1] - start == count - 1 and rows == list(range(start, start + count)):
            return slice(start, start + count)
        return self._index(rows)

    def _gather(self, buffer: int, rows: list[int]) -> torch.Tensor:
        """The values of the rows an op group reads (a row may repeat): views where they allow, to read only."""
        if buffer == GRADIENTS:
            return self._gradient_rows(rows)
        first = rows[0]
        if len(rows) > 1 and rows.count(first) == len(rows):  # one row read by all (a model sent to each client)
            row = self._tensor(buffer)[first]
            return row.expand(len(rows), *row.shape)
        return self._read(buffer, self._span(rows))

    def _gradient_rows(self, slots: list[int]) -> torch.Tensor:
        """The computed gradients of `slots`: a view of their wave's output where they are a slice of it, else a copy."""
        locations = [self._gradient_at[slot] for slot in slots]
        tensor = locations[0][0]
        if all(location[0] is tensor for location in locations):
            rows = self._span([row for _, row in locations])
            return tensor[rows] if type(rows) is slice else tensor.index_select(0, rows)
        return torch.stack([tensor[row] for tensor, row in locations])

    def _read(self, buffer: int, rows: slice | torch.Tensor) -> torch.Tensor:
        """The rows' values: a view for a slice (read it only), a copy for an index."""
        tensor = self._tensor(buffer)
        return tensor[rows] if type(rows) is slice else tensor.index_select(0, rows)

    def _write(self, buffer: int, rows: slice | torch.Tensor, values: torch.Tensor) -> None:
        """Set the rows to `values` (other rows, possibly a view of the same tensor)."""
        tensor = self._tensor(buffer)
        if type(rows) is slice:
            tensor[rows].copy_(values)
            return
        if values.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr():
            values = values.clone()  # index_copy_ refuses a source that aliases its target
        tensor.index_copy_(0, rows, values)

    def _update(self, buffer: int, rows: slice | torch.Tensor, change: Callable[[torch.Tensor], Any]) -> None:
        """Apply the in-place `change` to the rows: on their view, or on a copy written back."""
        tensor = self._tensor(buffer)
        if type(rows) is slice:
            change(tensor[rows])
        else:
            block = tensor.index_select(0, rows)
            change(block)
            tensor.index_copy_(0, rows, block)

    def _run_gradients(self, ops: list[_Op]) -> None:
        """A wave: every ready gradient in one vmapped call (or one call each when batching is off)."""
        chunks = [ops] if self._batch_gradients else [[op] for op in ops]
        for chunk in chunks:
            peers = self._span([op.rows[0] for op in chunk])
            grads, losses, finite = self._gradients(self._read(PARAMS, peers), [op.job.batch for op in chunk])
            at = self._gradient_at
            for row, (op, loss, ok) in enumerate(zip(chunk, losses, finite)):
                op.job.loss, op.job.finite = loss, ok
                at[op.rows[1]] = (grads, row)
            self._batch_sizes.append(len(chunk))


RowOps = EagerRows | Dataflow  # what `World.rows` is: the algorithm's own rows and the ops on them, in either mode
