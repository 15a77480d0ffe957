"""Max-min fair rates of flows over shared links, by progressive filling.

Progressive filling (Bertsekas & Gallager, *Data Networks*, 2nd ed. 1992, section 6.5.2):
raise every flow's rate together; when a link is full, or a flow reaches its own bound,
freeze the flows concerned at that level and go on with the others. The result is the
unique allocation in which no flow can get more without taking from a flow that has less.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

__all__ = ["max_min_rates"]


def max_min_rates(
    paths: Sequence[Sequence[int]], capacity: Mapping[int, float] | Sequence[float], bounds: Sequence[float] | None = None
) -> list[float]:
    """Max-min fair rate of each flow, given the links each crosses, link capacities and per-flow bounds.

    ``paths[i]`` lists the links flow ``i`` crosses; ``capacity[link]`` is what the link
    carries in all (what other flows leave it: a hair below zero counts as zero); ``bounds[i]``
    caps flow ``i`` alone (``math.inf``: no cap).

    >>> # One link of 10 shared by a flow that can take only 2 and one that can take anything.
    >>> max_min_rates([[0], [0]], {0: 10.0}, [2.0, math.inf])
    [2.0, 8.0]
    """
    n = len(paths)
    # Links numbered 0..m-1 in the order of their ids, so that ties between equal shares break as by id.
    ids = sorted({link for path in paths for link in path})
    number = {link: k for k, link in enumerate(ids)}
    remaining = [float(capacity[link]) for link in ids]
    users: list[list[int]] = [[] for _ in ids]
    local_paths = []
    for i, path in enumerate(paths):
        local = [number[link] for link in path]
        local_paths.append(local)
        for k in local:
            users[k].append(i)
    count = [len(flows) for flows in users]
    # Shares only grow as flows freeze (a frozen flow took at most the share), so a heap of
    # (share, version, link) with stale entries skipped gives the next link to fill up.
    version = [0] * len(ids)
    links = [(max(remaining[k], 0.0) / count[k], 0, k) for k in range(len(ids))]
    heapq.heapify(links)
    by_bound = sorted((b, i) for i, b in enumerate(bounds) if b < math.inf) if bounds is not None else []
    next_bound = 0
    rates: list[float | None] = [None] * n
    left = n
    push = heapq.heappush
    while left:
        while links and links[0][1] != version[links[0][2]]:
            heapq.heappop(links)
        while next_bound < len(by_bound) and rates[by_bound[next_bound][1]] is not None:
            next_bound += 1
        level = links[0][0] if links else math.inf
        if next_bound < len(by_bound) and by_bound[next_bound][0] <= level:
            level, i = by_bound[next_bound]
            frozen = (i,)
        else:
            frozen = [i for i in users[heapq.heappop(links)[2]] if rates[i] is None]
        for i in frozen:  # freeze at `level`: each link the flow crosses gives it up and reshares the rest
            rates[i] = level
            left -= 1
            for k in local_paths[i]:
                remaining[k] -= level
                count[k] -= 1
                version[k] += 1
                if count[k]:
                    push(links, (max(remaining[k], 0.0) / count[k], version[k], k))
    return rates  # type: ignore[return-value]
