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
    carries in all; ``bounds[i]`` caps flow ``i`` alone (``math.inf``: no cap).

    >>> # One link of 10 shared by a flow that can take only 2 and one that can take anything.
    >>> max_min_rates([[0], [0]], {0: 10.0}, [2.0, math.inf])
    [2.0, 8.0]
    """
    n = len(paths)
    bounds = [math.inf] * n if bounds is None else bounds
    remaining = {link: float(capacity[link]) for path in paths for link in path}
    users: dict[int, list[int]] = {link: [] for link in remaining}
    for i, path in enumerate(paths):
        for link in path:
            users[link].append(i)
    count = {link: len(flows) for link, flows in users.items()}
    # Shares only grow as flows freeze (a frozen flow took at most the share), so a heap of
    # (share, version, link) with stale entries skipped gives the next link to fill up.
    version = dict.fromkeys(remaining, 0)
    links = [(remaining[link] / count[link], 0, link) for link in remaining]
    heapq.heapify(links)
    by_bound = sorted((b, i) for i, b in enumerate(bounds) if b < math.inf)
    next_bound = 0
    rates: list[float | None] = [None] * n
    left = n

    def freeze(i: int, rate: float) -> None:
        rates[i] = rate
        for link in paths[i]:
            remaining[link] -= rate
            count[link] -= 1
            version[link] += 1
            if count[link]:
                heapq.heappush(links, (max(remaining[link], 0.0) / count[link], version[link], link))

    while left:
        while links and links[0][1] != version[links[0][2]]:
            heapq.heappop(links)
        while next_bound < len(by_bound) and rates[by_bound[next_bound][1]] is not None:
            next_bound += 1
        link_level = links[0][0] if links else math.inf
        if next_bound < len(by_bound) and by_bound[next_bound][0] <= link_level:
            bound, i = by_bound[next_bound]
            freeze(i, bound)
            left -= 1
            continue
        _, _, full = heapq.heappop(links)
        for i in users[full]:
            if rates[i] is None:
                freeze(i, link_level)
                left -= 1
    return rates  # type: ignore[return-value]
