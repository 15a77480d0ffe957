"""Stragglers: slow-down factors, throttling windows and heavy-tailed step times, against hand-computed durations."""

from __future__ import annotations

import numpy as np
import pytest

from p2psim.config import ScenarioError
from p2psim.hardware import step_time_factors
from p2psim.scenario import Scenario
from p2psim.seeding import stream
from p2psim.stragglers import (
    SlowdownSpec,
    StepClock,
    StragglersSpec,
    ThrottleSpec,
    Window,
    resolve_stragglers,
    throttled_duration,
)
from p2psim.testing import round_number_scenario, simulate

DEVICES = ["h100_sxm", "rx_580", "rx_580", "t4"]
BASE = np.array([0.3, 2.7, 2.7, 1.1])  # seconds of one step per peer, without stragglers


def clock(spec: StragglersSpec, distribution="lognormal", jitter=0.0, alpha=None, seed=0) -> StepClock:
    return StepClock(BASE, resolve_stragglers(spec, DEVICES, seed), distribution, jitter, alpha, seed)


def test_a_slow_down_factor_multiplies_the_step_time_exactly():
    spec = StragglersSpec(slow=(SlowdownSpec(devices=("rx_580",), factor=3.0), SlowdownSpec(peers=(2, 3), factor=1.5)))
    steps = clock(spec)
    assert [steps.duration(peer, 123.0) for peer in range(4)] == [0.3, 2.7 * 3.0, 2.7 * (3.0 * 1.5), 1.1 * 1.5]


def test_a_random_fraction_picks_round_fraction_x_peers_from_the_seed():
    spec = StragglersSpec(slow=(SlowdownSpec(fraction=0.5, factor=2.0),))
    picked = [resolve_stragglers(spec, DEVICES, seed).slowdown for seed in range(6)]
    assert all(sorted(s.tolist()) == [1.0, 1.0, 2.0, 2.0] for s in picked)
    assert len({tuple(s) for s in picked}) > 1  # the seed decides who


@pytest.mark.parametrize(
    "start_s, expected_s",
    [
        (0.0, 10.0),  # ends before the window: unchanged
        (200.0, 10.0),  # starts as it closes: unchanged
        (100.0, 40.0),  # wholly inside: x 4
        (150.0, 40.0),
        (95.0, 5.0 + 5.0 * 4),  # 5 s before it, the other 5 s of work at a quarter speed inside
        (195.0, 5.0 + (10.0 - 5.0 / 4)),  # 5 s inside do 1.25 s of work; 8.75 s after it
        (1150.0, 40.0),  # the next period's window
        (1090.0, 10.0 + 0.0 * 4),  # ends exactly as it opens
    ],
)
def test_throttling_changes_step_times_only_inside_its_window(start_s, expected_s):
    window = Window(start_s=100.0, end_s=200.0, factor=4.0, period_s=1000.0)
    assert throttled_duration(start_s, 10.0, [window]) == pytest.approx(expected_s, rel=1e-12)


def test_overlapping_windows_multiply_and_a_throttled_group_is_the_one_named():
    windows = [Window(0.0, 10.0, 2.0), Window(5.0, 20.0, 3.0)]
    # [0, 5): x2, 2.5 s of work; [5, 10): x6, 5/6 s; [10, 20): x3, the remaining 0.6667 s of 4 takes 2 s.
    assert throttled_duration(0.0, 4.0, windows) == pytest.approx(12.0, rel=1e-12)
    spec = StragglersSpec(throttle=(ThrottleSpec(devices=("t4",), factor=2.0, start_s=0.0, end_s=1e6),))
    steps = clock(spec)
    assert [steps.duration(peer, 0.0) for peer in range(4)] == [0.3, 2.7, 2.7, 2.2]


def test_random_factors_drawn_in_blocks_are_those_drawn_one_at_a_time():
    steps = clock(StragglersSpec(), distribution="lognormal", jitter=0.4, seed=5)
    one_by_one = stream(5, "jitter", 1)
    expected = [2.7 * float(np.exp(0.4 * one_by_one.standard_normal() - 0.08)) for _ in range(300)]
    assert [steps.duration(1, 0.0) for _ in range(300)] == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("distribution, jitter, alpha", [("lognormal", 0.4, None), ("exponential", 0.0, None), ("pareto", 0.0, 2.5)])
def test_growing_blocks_give_exactly_the_factors_of_fixed_blocks_of_256(distribution, jitter, alpha):
    steps = clock(StragglersSpec(), distribution=distribution, jitter=jitter, alpha=alpha, seed=3)
    rng = stream(3, "jitter", 2)
    expected = [2.7 * f for _ in range(3) for f in step_time_factors(rng, distribution, jitter, 256, alpha)]
    assert [steps.duration(2, 0.0) for _ in range(700)] == expected[:700]  # bit for bit, across block boundaries


def test_pareto_factors_have_mean_one_and_the_stated_minimum():
    alpha = 3.0
    draws = np.array(step_time_factors(stream(0, "test"), "pareto", 0.0, 200_000, alpha))
    assert draws.min() >= (alpha - 1) / alpha  # the Pareto's scale: its smallest value
    # variance of the mean-one factor: alpha / ((alpha - 1)^2 (alpha - 2)) x ((alpha - 1) / alpha)^2 = 1/3 at alpha 3
    assert abs(draws.mean() - 1.0) <= 4 * np.sqrt(1 / 3 / len(draws))
    # the tail: P(X > x) = (scale / x)^alpha, so the 0.999 quantile is (2/3) x 1000^(1/3) = 6.67
    assert np.quantile(draws, 0.999) == pytest.approx(2 / 3 * 10, rel=0.1)


def test_the_engine_times_each_step_through_the_throttling_window():
    from p2psim.build import build_run
    from p2psim.engine import World

    throttle = {"stragglers": {"throttle": [{"factor": 4.0, "start_s": 10.0, "end_s": 20.0}]}}
    world = World(build_run(Scenario.from_dict(round_number_scenario({"h100_sxm": 4}, throttle))))
    world._finish = lambda job: None  # time the steps only: no algorithm runs
    step = float(world.setup.step_time_s[0])
    durations = []
    for peer, at_s in enumerate([0.0, 10.0 - step / 2, 10.0, 20.0]):
        world.env.run(until=at_s) if at_s > 0 else None
        durations.append(world.compute(peer).duration_s)
    assert durations == pytest.approx([step, step / 2 + step / 2 * 4, step * 4, step], rel=1e-12)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"stragglers": {"slow": [{"factor": 0.5}]}}, "stragglers.slow[0].factor"),
        ({"stragglers": {"slow": [{"factor": 2.0, "devices": ["rx_580"]}]}}, "stragglers.slow[0].devices"),
        ({"stragglers": {"slow": [{"factor": 2.0, "peers": [4]}]}}, "stragglers.slow[0].peers[0]"),
        ({"stragglers": {"slow": [{"factor": 2.0, "fraction": 1.5}]}}, "stragglers.slow[0].fraction"),
        ({"stragglers": {"throttle": [{"factor": 2.0, "start_s": 3.0, "end_s": 1.0}]}}, "stragglers.throttle[0].end_s"),
        (
            {"stragglers": {"throttle": [{"factor": 2.0, "start_s": 0.0, "end_s": 10.0, "period_s": 5.0}]}},
            "stragglers.throttle[0].period_s",
        ),
        ({"peers.step_time_distribution": "pareto"}, "peers.pareto_alpha"),
        ({"peers.step_time_distribution": "pareto", "peers.pareto_alpha": 1.0}, "peers.pareto_alpha"),
        ({"peers.pareto_alpha": 2.0}, "peers.pareto_alpha"),
    ],
)
def test_bad_stragglers_name_their_field(changes, field):
    with pytest.raises(ScenarioError) as error:
        Scenario.from_dict(round_number_scenario({"h100_sxm": 4}, changes))
    assert error.value.field == field
