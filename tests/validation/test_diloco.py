"""DiLoCo (Douillard et al. 2023, arXiv:2311.08105) and its asynchronous variant (Liu et al. 2024, arXiv:2401.09135)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2psim import Scenario
from p2psim.algorithms import register_algorithm
from p2psim.algorithms.base import ALGORITHMS
from p2psim.algorithms.diloco import DiLoCo, DiLoCoAsync
from p2psim.build import build_run
from p2psim.config import ScenarioError
from p2psim.testing import gradient, round_number_scenario, simulate

RX_580_STEP_S = 33.5e12 / (6.2e12 * 0.5)  # the workload's 33.5e12 FLOP a step at 6.2 TFLOPS x 0.5


def tiny(peers: dict, **overrides) -> dict:
    """Round-number timings: an H100 step is 1 s, a model 1e5 params x 4 B = 4e5 B, 0.4 s on a link."""
    defaults = {
        "workload.params": 1e5,
        "algorithm": {"name": "traced_diloco", "lr": 0.05, "local_steps": 2},
        "stop.sim_time_s": 20.0,
    }
    return round_number_scenario(peers, defaults, overrides)


def _traced(base):
    """`base` noting each applied gradient's batch, each delta's arrival, and the global model after each update."""

    class Traced(base):
        name = f"traced_{base.name}"
        config_class = type(f"Traced{base.__name__}Config", (base.config_class,), {})

        def start(self):
            self.batches: dict[int, list[np.ndarray]] = {}  # per worker, in order
            self.updates: list[tuple[float, int | None, float, torch.Tensor]] = []  # (time, sender, bytes, model)
            super().start()

        def on_gradient(self, job):
            self.batches.setdefault(job.peer, []).append(job.batch)
            super().on_gradient(job)

        def _receive_reply(self, message):
            self._sender = message.src
            super()._receive_reply(message)

        def _outer_step(self, pseudo_gradient):
            super()._outer_step(pseudo_gradient)
            world = self.world
            sent = float(world.network.bytes_sent.sum())
            self.updates.append((world.now, self._sender, sent, world.params[self.server].clone()))

    if Traced.name not in ALGORITHMS:
        register_algorithm(Traced)


_traced(DiLoCo)
_traced(DiLoCoAsync)


def eval_loss(task, params: torch.Tensor) -> float:
    """The held-out loss at `params`."""
    with torch.no_grad():
        out = torch.func.functional_call(task.model, task.unflatten(params), (task.x_eval,))
        return float(task.loss(out, task.y_eval))


def local_sgd(task, start: torch.Tensor, batches: list[np.ndarray], lr: float) -> torch.Tensor:
    """Plain SGD steps from `start` on the given batches."""
    theta = start.clone()
    for batch in batches:
        theta = theta - lr * gradient(task, theta, batch)
    return theta


def test_one_inner_step_outer_sgd_at_lr_1_is_synchronous_sgd():
    """Douillard et al. 2023, Algorithm 1 with H = 1, OuterOpt = SGD(lr 1), InnerOpt = SGD:
    Delta_i = lr g_i and theta <- theta - mean_i Delta_i, synchronous mini-batch SGD."""
    overrides = {"algorithm.local_steps": 1, "algorithm.outer_optimizer": "sgd", "algorithm.outer_lr": 1.0}
    world = simulate(tiny({"h100_sxm": 5}, **overrides, **{"algorithm.lr": 0.1, "stop.sim_time_s": 30.0}))
    algorithm, task = world.algorithm, world.setup.task
    rounds = len(algorithm.updates)
    assert rounds >= 6  # 4.3 s a round: 4 x 0.4 s down the shared uplink, 1 s, 4 x 0.4 s up
    theta = task.initial_params.clone()
    for r in range(rounds):
        grads = [gradient(task, theta, algorithm.batches[worker][r]) for worker in (1, 2, 3, 4)]
        theta = theta - 0.1 * torch.stack(grads).mean(dim=0)
    torch.testing.assert_close(world.params[0], theta, rtol=0, atol=1e-6)


def test_the_outer_nesterov_step_on_the_mean_delta_by_hand():
    """Douillard et al. 2023, Algorithm 1: H inner steps, Delta = mean_i (theta - theta_i), then
    torch's SGD with Nesterov momentum: b <- mu b + Delta (b = Delta at first), theta -= lr_out (Delta + mu b)."""
    world = simulate(tiny({"h100_sxm": 3}, **{"stop.sim_time_s": 16.0}))
    algorithm, task = world.algorithm, world.setup.task
    assert len(algorithm.updates) >= 3
    theta, momentum = task.initial_params.clone(), None
    for r in range(len(algorithm.updates)):
        locals_ = [local_sgd(task, theta, algorithm.batches[w][2 * r : 2 * r + 2], 0.05) for w in (1, 2)]
        delta = torch.stack([theta - model for model in locals_]).mean(dim=0)
        momentum = delta if momentum is None else 0.9 * momentum + delta
        theta = theta - 0.7 * (delta + 0.9 * momentum)
        torch.testing.assert_close(algorithm.updates[r][3], theta, rtol=0, atol=1e-6)
    # the workers keep their inner optimizer's state: the default for DiLoCo is no reset
    assert world.setup.scenario.algorithm.reset_optimizer is False


def test_async_server_applies_each_delta_on_arrival_exact_two_worker_trace():
    """Asynchronous Local-SGD (Liu et al. 2024): the server applies the outer step with each
    arriving delta alone, scaled by 1/n_workers, and sends its current model to that worker only.
    Worker 1 (H100) turns round in 0.45 + 2 + 0.45 s after the first 0.85 s download (two models on
    the server's uplink); worker 2 (RX 580) sends its first delta, 7 server updates stale, at
    0.85 + 2 x 10.8 + 0.45 s."""
    overrides = {"algorithm.name": "traced_diloco_async", "stop.sim_time_s": 23.0}
    world = simulate(tiny({"h100_sxm": 2, "rx_580": 1}, **overrides))
    algorithm, task = world.algorithm, world.setup.task
    expected_times = [0.85 + 2.45 + 2.9 * k for k in range(7)] + [0.85 + 2 * RX_580_STEP_S + 0.45]
    assert [(round(t, 9), sender) for t, sender, _, _ in algorithm.updates] == [
        (pytest.approx(t, abs=1e-9), sender) for t, sender in zip(expected_times, [1] * 7 + [2])
    ]
    assert algorithm.arrivals == [(t, s) for t, s, _, _ in algorithm.updates]
    theta, momentum = task.initial_params.clone(), None
    anchor = {1: theta.clone(), 2: theta.clone()}
    done = {1: 0, 2: 0}
    for _, sender, _, model in algorithm.updates:
        batches = algorithm.batches[sender][done[sender] : done[sender] + 2]
        done[sender] += 2
        delta = (anchor[sender] - local_sgd(task, anchor[sender], batches, 0.05)) / 2  # 1 / n_workers
        momentum = delta if momentum is None else 0.9 * momentum + delta
        theta = theta - 0.7 * (delta + 0.9 * momentum)
        anchor[sender] = theta.clone()
        torch.testing.assert_close(model, theta, rtol=0, atol=1e-6)


def sync_against_diloco(seed: int, steps: int, local_steps: int) -> tuple[float, float, float]:
    """Held-out loss of 4-worker all-reduce AdamW after `steps` steps, of DiLoCo (4 workers, AdamW inner,
    the paper's Nesterov 0.7 / 0.9 outer) after the same inner steps per worker, and the bytes ratio."""
    data = {
        "seed": seed,
        "task": {"name": "logistic", "n_samples": 2000, "n_features": 20, "n_classes": 4},
        "data": {"batch_size": 16},
        "peers": {"devices": {"h100_sxm": 4}, "links": {"fibre": 4}},
        "topology": {"kind": "complete"},
        "algorithm": {"name": "allreduce", "lr": 3e-3, "optimizer": {"name": "adamw", "weight_decay": 0.0}},
        "stop": {"steps": 4 * steps},  # steps count the gradients applied, 4 a step
        "metrics": {"eval_interval_s": 1e6},
    }
    sync = simulate(data)
    data["peers"] = {"devices": {"h100_sxm": 5}, "links": {"fibre": 5}}  # a server and the same 4 workers
    data["algorithm"].update(name="traced_diloco", local_steps=local_steps)
    data["stop"] = {"steps": 4 * steps + 1}  # ends just after the last outer step
    diloco = simulate(data)
    updates = diloco.algorithm.updates
    assert len(updates) == steps // local_steps
    _, _, diloco_bytes, model = updates[-1]
    task = sync.setup.task
    sync_bytes = float(sync.network.bytes_sent.sum())
    return eval_loss(task, sync.params[0]), eval_loss(task, model), sync_bytes / diloco_bytes


@pytest.mark.parametrize(
    "seed, steps, local_steps",
    [(0, 40, 10)] + [pytest.param(seed, 200, h, marks=pytest.mark.slow) for seed in (0, 1, 2) for h in (20, 50)],
)
def test_diloco_reaches_the_synchronous_loss_with_h_times_fewer_exchanges(seed, steps, local_steps):
    """Douillard et al. 2023 (Table 2, Figure 2): with IID data, DiLoCo (AdamW inner, Nesterov
    outer at lr 0.7, momentum 0.9) after H-step rounds matches or beats fully synchronous AdamW
    training with the same inner steps per worker, while communicating H(K-1)/K times fewer bytes
    than a ring all-reduce of K workers (2(K-1)/K model_bytes a worker a step, against 2
    model_bytes a worker a round). Measured, held-out loss sync / DiLoCo, logistic (2000 samples,
    4 classes), 4 workers, batch 16, lr 3e-3: seed 0, 40 steps, H = 10: 1.058 / 0.851 (ratio 7.5);
    200 steps, H = 20: seeds 0, 1, 2: 0.616 / 0.577, 0.536 / 0.476, 0.570 / 0.505 (ratio 15);
    H = 50: 0.616 / 0.551, 0.536 / 0.468, 0.570 / 0.484 (ratio 37.5)."""
    sync_loss, diloco_loss, bytes_ratio = sync_against_diloco(seed, steps, local_steps)
    assert diloco_loss <= sync_loss, (sync_loss, diloco_loss)
    assert bytes_ratio == pytest.approx(local_steps * 3 / 4, rel=1e-12)


@pytest.mark.parametrize("margin", [0.9, 1.1])
def test_outer_nesterov_diverges_exactly_beyond_its_stability_limit(margin):
    """The outer step's stability on a quadratic. One worker holding one sample (batch 1): with
    H = 1 and inner SGD at lr eta, Delta = eta lambda e along the sample's direction (curvature
    lambda = |x|^2), so the outer Nesterov iteration b <- mu b + Delta, theta -= lr_out (Delta + mu b)
    has the characteristic polynomial z^2 - (1 + mu)(1 - s) z + mu (1 - s), s = lr_out eta lambda.
    By the Jury criterion its roots lie inside the unit circle iff 0 < s < 2 (1 + mu) / (1 + 2 mu)
    (1.357 at mu = 0.9): 10 % below, the error vanishes; 10 % above, the run is reported diverged."""
    data = tiny({"h100_sxm": 2}, **{"task.n_samples": 3, "task.eval_fraction": 0.5, "task.noise": 0.0, "data.batch_size": 1, "algorithm.lr": 0.1})
    data["algorithm"].update(local_steps=1, name="traced_diloco")
    data["stop"] = {"sim_time_s": 200.0}  # 1.9 s a round: about 100 outer steps
    setup = build_run(Scenario.from_dict(data))
    sample = setup.partitions[1]
    assert len(sample) == 1
    curvature = float(setup.task.x_train[sample[0]].square().sum())
    limit = 2 * 1.9 / 2.8
    data["algorithm"]["outer_lr"] = margin * limit / (0.1 * curvature)
    world = simulate(data)
    if margin < 1:
        assert world.status == "finished"
        x, y = setup.task.x_train[sample[0]], setup.task.y_train[sample[0]]
        first, last = world.algorithm.updates[0][3], world.params[0]
        assert float((x @ last - y) ** 2) < 1e-10 * float((x @ first - y) ** 2)
    else:
        assert world.status == "diverged"


def test_config_fields_fail_with_their_name():
    with pytest.raises(ScenarioError, match="algorithm.outer_optimizer"):
        Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.outer_optimizer": "adam"}))
    with pytest.raises(ScenarioError, match="algorithm.outer_momentum"):
        Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.outer_momentum": 1.0}))
    with pytest.raises(ScenarioError, match="algorithm.outer_lr"):
        Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.outer_lr": 0.0}))
    with pytest.raises(ScenarioError, match="algorithm.deadline_s"):
        Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.name": "diloco_async", "algorithm.deadline_s": 5.0}))
