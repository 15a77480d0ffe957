"""World.run: the event loop runs under the run's garbage-collector thresholds, and gives the caller's back."""

import gc

import pytest

from p2psim.build import build_run
from p2psim.engine import RUN_GC_THRESHOLDS, World
from p2psim.scenario import Scenario
from p2psim.testing import round_number_scenario

CALLERS = (500, 7, 3)


def world_seeing_thresholds(seen: list, fail: bool = False) -> World:
    """A small world whose loop, at t = 0, notes the collector's thresholds (and raises if `fail`)."""
    world = World(build_run(Scenario.from_dict(round_number_scenario({"rtx_3090": 2}, {"name": "gc"}))))

    def note(_event) -> None:
        seen.append(gc.get_threshold())
        if fail:
            raise RuntimeError("a peer's behaviour crashed")

    world.env.timeout(0).callbacks.append(note)
    return world


@pytest.fixture
def caller_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(*CALLERS)
    yield
    gc.set_threshold(*before)


def test_the_loop_runs_under_the_run_thresholds(caller_thresholds):
    seen: list = []
    world_seeing_thresholds(seen).run()
    assert seen == [RUN_GC_THRESHOLDS] != [CALLERS]
    assert gc.get_threshold() == CALLERS


def test_a_crash_gives_the_thresholds_back(caller_thresholds):
    seen: list = []
    with pytest.raises(Exception, match="crashed"):
        world_seeing_thresholds(seen, fail=True).run()
    assert seen == [RUN_GC_THRESHOLDS]
    assert gc.get_threshold() == CALLERS
