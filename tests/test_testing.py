"""p2psim.testing: the round-number scenario is valid, its overrides apply in order, its timings are round."""

from __future__ import annotations

import pytest

from p2psim import Scenario
from p2psim.testing import LINK, round_number_scenario, simulate


def test_every_device_is_on_the_test_link_at_utilisation_one_half():
    data = round_number_scenario({"h100_sxm": 2, "rx_580": 1})
    assert data["peers"]["links"] == {LINK["name"]: 3}
    assert data["peers"]["utilisation"] == {"h100_sxm": 0.5, "rx_580": 0.5}
    assert Scenario.from_dict(data).seed == 3


def test_later_changes_win_and_a_whole_section_replaces_its_fields():
    defaults = {"stop.sim_time_s": 5.0, "topology.kind": "ring"}
    data = round_number_scenario({"h100_sxm": 1}, defaults, {"stop": {"steps": 2}})
    assert data["stop"] == {"steps": 2} and data["topology"] == {"kind": "ring"}
    assert round_number_scenario({"h100_sxm": 1}, {"seed": 1}, seed=2)["seed"] == 2


def test_an_h100_step_takes_one_second():
    """4 samples x 8.375e12 FLOP at 67 TFLOPS x 0.5: exactly 1 s, so 10 steps end at t = 10 s."""
    world = simulate(round_number_scenario({"h100_sxm": 1}, **{"algorithm.name": "allreduce", "stop": {"steps": 10}}))
    assert world.steps == 10
    assert world.now == pytest.approx(10.0, abs=1e-9)
