"""Max-min fair rates (progressive filling) against hand-computed allocations and the bottleneck theorem."""

import math

import numpy as np
import pytest

from p2psim.maxmin import max_min_rates


def test_two_links_hand_computed():
    # Link A (1) carries f0 and f1; link B (2) carries f0, f2, f3. A's share 1/2 < B's 2/3:
    # A fills first, f0 = f1 = 1/2; B has 2 - 1/2 = 3/2 left for f2 and f3: 3/4 each.
    rates = max_min_rates([[0, 1], [0], [1], [1]], {0: 1.0, 1: 2.0})
    assert rates == pytest.approx([0.5, 0.5, 0.75, 0.75], rel=1e-15)


def test_a_line_of_links_shares_like_the_textbook():
    # Bertsekas & Gallager's line network: one long flow over three unit links, one short flow
    # on each link: every flow gets 1/2.
    assert max_min_rates([[0, 1, 2], [0], [1], [2]], {0: 1.0, 1: 1.0, 2: 1.0}) == [0.5] * 4


def test_a_bound_below_the_share_frees_capacity_for_the_others():
    # Three flows on a link of 9: one capped at 1, the others split the remaining 8.
    assert max_min_rates([[0], [0], [0]], {0: 9.0}, [1.0, math.inf, math.inf]) == [1.0, 4.0, 4.0]
    # A bound above the share changes nothing.
    assert max_min_rates([[0], [0], [0]], {0: 9.0}, [5.0, math.inf, math.inf]) == [3.0, 3.0, 3.0]


def test_a_flow_bounded_alone_takes_its_bound():
    assert max_min_rates([[0]], {0: 9.0}, [2.5]) == [2.5]


@pytest.mark.parametrize("seed", range(20))
def test_random_allocations_are_feasible_and_every_flow_has_a_bottleneck(seed):
    # The characterisation (Bertsekas & Gallager, Prop. 6.5.2 extended to per-flow bounds): an
    # allocation is max-min fair iff it is feasible and every flow is at its bound or crosses
    # a full link on which no flow gets more than it.
    rng = np.random.default_rng(seed)
    n_links, n_flows = int(rng.integers(2, 12)), int(rng.integers(1, 30))
    capacity = {link: float(rng.uniform(0.5, 10.0)) for link in range(n_links)}
    paths = [sorted(rng.choice(n_links, size=int(rng.integers(1, 3)), replace=False).tolist()) for _ in range(n_flows)]
    bounds = [float(rng.uniform(0.1, 5.0)) if rng.random() < 0.3 else math.inf for _ in range(n_flows)]
    rates = max_min_rates(paths, capacity, bounds)
    load = {link: 0.0 for link in capacity}
    for path, rate in zip(paths, rates):
        assert rate > 0
        for link in path:
            load[link] += rate
    for link in capacity:
        assert load[link] <= capacity[link] * (1 + 1e-12)
    for i, (path, rate) in enumerate(zip(paths, rates)):
        at_bound = rate == pytest.approx(bounds[i], rel=1e-12)
        bottleneck = any(
            load[link] == pytest.approx(capacity[link], rel=1e-12)
            and all(rates[j] <= rate * (1 + 1e-12) for j, other in enumerate(paths) if link in other)
            for link in path
        )
        assert at_bound or bottleneck, (i, rate)
