"""Asynchronous EASGD (Zhang, Choromanska, LeCun, NeurIPS 2015, Algorithm 1): one elastic exchange
by hand, convergence of the centre and the workers, and what goes on the wire every tau steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2psim import Scenario
from p2psim.build import build_run
from p2psim.config import ScenarioError
from p2psim.engine import World
from p2psim.testing import quadratic, round_number_scenario, simulate


def tiny(workers: int, **overrides) -> dict:
    """A server and `workers` H100s (1 s a step), 50 ms + 4 us messages, least squares."""
    defaults = {
        "name": "tiny",
        "task.noise": 0.0,
        "workload.params": 1,
        "algorithm": {"name": "easgd", "lr": 0.1},
        "stop.sim_time_s": 20.0,
    }
    return round_number_scenario({"h100_sxm": workers + 1}, defaults, overrides)


def test_one_elastic_exchange_by_hand():
    """Algorithm 1 with tau = 1, two workers, f = h w^2 / 2 (h = 0.25), all starting at x0.

    Step 1: both send x0 and get c = x0 back: nothing moves elastically; x1 = x0 - eta h x0.
    Step 2: both send x1. The server answers the first with c = x0 and moves the centre to
    c1 = x0 + alpha (x1 - x0); it answers the second with c1 and moves the centre to
    c2 = c1 + alpha (x1 - c1). Each worker then ends at x1 - alpha (x1 - c_received) - eta h x1.
    The three rows equal these hand-computed values to 1e-6 (float32).
    """
    eta, alpha, h = 0.4, 0.3, 0.25
    data = tiny(2, **{"algorithm.lr": eta, "algorithm.alpha": alpha, "task.n_features": 1, "stop": {"steps": 4}})
    world = World(quadratic(build_run(Scenario.from_dict(data))))
    world.run()
    x0 = float(world.setup.task.initial_params[0])
    x1 = x0 - eta * h * x0
    c1 = x0 + alpha * (x1 - x0)
    c2 = c1 + alpha * (x1 - c1)
    workers = sorted(x1 - alpha * (x1 - c) - eta * h * x1 for c in (x0, c1))
    assert world.steps == 4
    assert float(world.params[0, 0]) == pytest.approx(c2, abs=1e-6)
    assert sorted(world.params[1:, 0].tolist()) == pytest.approx(workers, abs=1e-6)
    assert workers[1] - workers[0] == pytest.approx(alpha * alpha * abs(x1 - x0), abs=1e-7)  # the answers differ


def test_centre_and_workers_converge_to_the_optimum_with_tau_1():
    """Zhang et al. 2015: EASGD's fixed point is the centre = every worker = the minimiser. On
    noise-free least squares (interpolation: every sample's gradient vanishes there, so constant
    steps converge linearly) two workers and the centre all reach w* to 1e-4 of the initial distance."""
    changes = {"algorithm.lr": 0.8, "task.condition_number": 2.0, "stop": {"sim_time_s": 60.0}, "metrics.eval_interval_s": 20.0}
    data = tiny(2, **changes)
    world = World(build_run(Scenario.from_dict(data)))
    outcome = world.run()
    task = world.setup.task
    optimum = torch.linalg.lstsq(task.x_train.double(), task.y_train.double().unsqueeze(1)).solution.squeeze(1)
    start = float((task.initial_params.double() - optimum).norm())
    distances = (world.params.double() - optimum).norm(dim=1)
    assert outcome.info["status"] == "finished"
    assert float(distances.max()) < 1e-4 * start
    assert world.algorithm.alpha == pytest.approx(0.9 / 2)  # the paper's beta / p


@pytest.mark.parametrize("tau", [1, 3])
def test_a_worker_exchanges_one_model_each_way_every_tau_steps(tau):
    """Algorithm 1: an exchange when tau divides the local step count (from step 0): after s steps a
    worker has sent ceil(s / tau) models and received as many centres, `model_bytes` each."""
    steps_each, workers = 6, 2
    data = tiny(workers, **{"algorithm.tau": tau, "stop": {"steps": workers * steps_each}})
    world = simulate(data)
    exchanges = -(-steps_each // tau)
    assert world.peer_steps[1:].tolist() == [steps_each] * workers
    model_bytes = world.model_bytes
    # The last step of each worker starts an exchange when tau divides steps_each (in flight at the stop).
    in_flight = 1 if steps_each % tau == 0 else 0
    assert world.network.bytes_sent[1:].tolist() == [(exchanges + in_flight) * model_bytes] * workers
    assert world.network.bytes_sent[0] == workers * exchanges * model_bytes


def test_alpha_must_lie_in_the_open_unit_interval():
    with pytest.raises(ScenarioError, match=r"algorithm\.alpha: must be in \(0, 1\)"):
        Scenario.from_dict(tiny(2, **{"algorithm.alpha": 1.0}))
    with pytest.raises(ScenarioError, match=r"algorithm\.tau: must be in \[1, 1e6\]"):
        Scenario.from_dict(tiny(2, **{"algorithm.tau": 0}))
    np.testing.assert_equal(Scenario.from_dict(tiny(2)).algorithm.alpha, None)  # resolved to 0.9 / p at run time
