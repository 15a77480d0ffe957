"""Callbacks at a virtual time, queued in simpy exactly as `env.timeout(delay)` queues its event.

The engine and the network schedule a few callbacks per message and per step. A simpy
`Timeout` is a full `Event` (environment, value, delay, state) made for processes that
yield it; a callback needs only the queue entry. `call_later` pushes the same entry
`Timeout` pushes, `(now + delay, NORMAL, next id, event)`, so the order of events and
every tie between them are those of `env.timeout(delay).callbacks.append(callback)`.
"""

from __future__ import annotations

from heapq import heappush
from typing import Any, Callable

import simpy
from simpy.events import NORMAL

__all__ = ["call_later"]


class _Timer:
    """What `Environment.step` reads of an event: its callbacks, and that it did not fail."""

    __slots__ = ("callbacks",)
    _ok = True


def call_later(env: simpy.Environment, delay_s: float, callback: Callable[[Any], None]) -> None:
    """Run `callback(timer)` at `env.now + delay_s`, ordered as `env.timeout(delay_s)` would be (`delay_s` >= 0).

    >>> env, seen = simpy.Environment(), []
    >>> call_later(env, 2.0, lambda _: seen.append(("timer", env.now)))
    >>> env.timeout(2.0).callbacks.append(lambda _: seen.append(("timeout", env.now)))
    >>> call_later(env, 1.0, lambda _: seen.append(("timer", env.now)))
    >>> env.run(); seen
    [('timer', 1.0), ('timer', 2.0), ('timeout', 2.0)]
    """
    timer = _Timer()  # no __init__: one Python call less per timer
    timer.callbacks = [callback]
    heappush(env._queue, (env._now + delay_s, NORMAL, next(env._eid), timer))  # `env.schedule`'s entry, inlined
