"""FedAvg (McMahan et al., AISTATS 2017, arXiv:1602.05629) against its limits, its sampling and its deadline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2psim import Scenario
from p2psim.algorithms import register_algorithm
from p2psim.algorithms.base import ALGORITHMS
from p2psim.algorithms.fedavg import FedAvg
from p2psim.build import build_run
from p2psim.config import ScenarioError
from p2psim.seeding import stream
from p2psim.validation import validate_scenario
from p2psim.testing import gradient, round_number_scenario, simulate

RX_580_STEP_S = 33.5e12 / (6.2e12 * 0.5)  # the workload's 33.5e12 FLOP a step at 6.2 TFLOPS x 0.5


def tiny(peers: dict, **overrides) -> dict:
    """Round-number timings: an H100 step is 1 s, a model 1e5 params x 4 B = 4e5 B, 0.4 s on a link."""
    defaults = {"workload.params": 1e5, "algorithm.name": "traced_fedavg", "stop.sim_time_s": 20.0}
    return round_number_scenario(peers, defaults, overrides)


class _Traced(FedAvg):
    """FedAvg that notes each applied gradient's round and batch, and the global model after each round."""

    name = "traced_fedavg"
    config_class = type("TracedFedAvgConfig", (FedAvg.config_class,), {})

    def start(self):
        self.batches: dict[int, list[tuple[int, np.ndarray]]] = {}
        self.after_round: list[tuple[float, torch.Tensor]] = []  # (bytes sent so far, global model)
        super().start()

    def on_gradient(self, job):
        if self._job_round[job.peer] == self._round_of[job.peer]:
            self.batches.setdefault(self._round_of[job.peer], []).append((job.peer, job.batch))
        super().on_gradient(job)

    def _aggregate(self, mean):
        super()._aggregate(mean)
        self.after_round.append((float(self.world.network.bytes_sent.sum()), self.world.params[self.server].clone()))


if _Traced.name not in ALGORITHMS:
    register_algorithm(_Traced)


def train_loss(task, params: torch.Tensor) -> float:
    """The full training loss at `params`."""
    with torch.no_grad():
        out = torch.func.functional_call(task.model, task.unflatten(params), (task.x_train,))
        return float(task.loss(out, task.y_train))


def test_one_local_step_with_every_client_is_synchronous_sgd():
    """McMahan et al. 2017, Section 2: FedAvg with E = 1 local step and C = 1 is FedSGD, i.e.
    synchronous mini-batch SGD on the union of the clients' batches: theta <- theta - lr mean_k g_k."""
    world = simulate(tiny({"h100_sxm": 5}, **{"algorithm.lr": 0.1, "stop.sim_time_s": 30.0}))
    algorithm, task = world.algorithm, world.setup.task
    closed = [r for r in algorithm.rounds if r.ended_at is not None]
    assert len(closed) >= 6  # 4.3 s a round: 4 x 0.4 s down the shared uplink, 1 s, 4 x 0.4 s up
    theta = task.initial_params.clone()
    for record in closed:
        jobs = algorithm.batches[record.index]
        assert sorted(peer for peer, _ in jobs) == [1, 2, 3, 4]  # one gradient per worker, the server idle
        theta = theta - 0.1 * torch.stack([gradient(task, theta, batch) for _, batch in jobs]).mean(dim=0)
    torch.testing.assert_close(world.params[0], theta, rtol=0, atol=1e-6)


def test_h_local_steps_then_the_average_is_local_sgd_by_hand():
    """Algorithm 1 of McMahan et al.: each client runs H steps from the global model; the server
    takes the mean of the models (equal weights: each processed H x batch samples)."""
    world = simulate(tiny({"h100_sxm": 3}, **{"algorithm.local_steps": 3, "stop.sim_time_s": 15.0}))
    algorithm, task = world.algorithm, world.setup.task
    theta = task.initial_params.clone()
    for record in [r for r in algorithm.rounds if r.ended_at is not None]:
        models = []
        for client in record.clients:
            local = theta.clone()
            for _, batch in [job for job in algorithm.batches[record.index] if job[0] == client]:
                local = local - 0.05 * gradient(task, local, batch)
            models.append(local)
        theta = torch.stack(models).mean(dim=0)
    assert len(algorithm.after_round) >= 2
    torch.testing.assert_close(world.params[0], theta, rtol=0, atol=1e-6)


def test_weighting_by_partition_size_is_the_papers_n_k_over_n():
    """McMahan et al. 2017, Algorithm 1: w_{t+1} = sum_k (n_k / n) w^k with n_k the client's data size."""
    data = tiny({"h100_sxm": 3}, **{"algorithm.weighting": "partition", "stop.sim_time_s": 4.0})
    data["task"] = {"name": "logistic", "n_samples": 400, "n_features": 5, "n_classes": 4}
    data["data"].update(partition="dirichlet", alpha=0.3)
    world = simulate(data)
    algorithm, task = world.algorithm, world.setup.task
    sizes = {client: len(world.setup.partitions[client]) for client in (1, 2)}
    assert sizes[1] != sizes[2]
    theta0 = task.initial_params
    models = {peer: theta0 - 0.05 * gradient(task, theta0, batch) for peer, batch in algorithm.batches[0]}
    expected = (sizes[1] * models[1] + sizes[2] * models[2]) / (sizes[1] + sizes[2])
    torch.testing.assert_close(algorithm.after_round[0][1], expected, rtol=0, atol=1e-6)


def test_reset_optimizer_gives_each_round_a_fresh_optimizer():
    """With fresh state a first momentum step is the plain gradient step (b = g) and a first Adam
    step is lr g / (|g| + eps) (bias-corrected moments of one gradient, Kingma & Ba 2015); without
    the reset the state carries over from round to round and the result differs."""
    base = {"algorithm.lr": 0.01, "stop.sim_time_s": 9.0}
    plain = simulate(tiny({"h100_sxm": 3}, **base))
    fresh = simulate(tiny({"h100_sxm": 3}, **base, **{"algorithm.optimizer": {"name": "momentum"}}))
    no_reset = {"algorithm.optimizer": {"name": "momentum"}, "algorithm.reset_optimizer": False}
    kept = simulate(tiny({"h100_sxm": 3}, **base, **no_reset))
    assert len(plain.algorithm.after_round) >= 2
    torch.testing.assert_close(fresh.params[0], plain.params[0], rtol=0, atol=1e-7)
    assert float((kept.params[0] - plain.params[0]).abs().max()) > 1e-4
    adam = simulate(tiny({"h100_sxm": 3}, **base, **{"algorithm.optimizer": {"name": "adam"}}))
    task, algorithm = adam.setup.task, adam.algorithm
    theta = task.initial_params.clone()
    for record in [r for r in algorithm.rounds if r.ended_at is not None]:
        steps = [gradient(task, theta, batch) for _, batch in algorithm.batches[record.index]]
        theta = theta - 0.01 * torch.stack([g / (g.abs() + 1e-8) for g in steps]).mean(dim=0)
    torch.testing.assert_close(adam.params[0], theta, rtol=0, atol=1e-6)
    # The reset restarts Adam's bias correction, not the schedule's clock: it counts every step applied.
    warm = simulate(tiny({"h100_sxm": 3}, **base, **{"algorithm.optimizer": {"name": "adam"}, "algorithm.schedule": {"warmup": 10.0}}))
    assert warm.optimizer.steps.tolist() == warm.peer_steps.tolist() and int(warm.optimizer.steps.max()) >= 2


def test_client_sampling_draws_distinct_clients_from_the_seeded_stream():
    """McMahan et al. 2017, Algorithm 1: each round a random set of m = max(C K, 1) clients,
    without replacement; the draw is the scenario seed's `algorithm` stream, so it repeats exactly."""
    overrides = {"algorithm.clients_per_round": 3, "algorithm.local_steps": 2, "stop.sim_time_s": 40.0}
    world = simulate(tiny({"h100_sxm": 9}, **overrides))
    rounds = [r for r in world.algorithm.rounds if r.ended_at is not None]
    assert len(rounds) >= 8
    workers = list(range(1, 9))
    rng = stream(3, "algorithm")
    for record in rounds:
        assert len(set(record.clients)) == 3 and set(record.clients) <= set(workers)
        assert record.clients == tuple(sorted(rng.choice(workers, size=3, replace=False).tolist()))
        applied = [peer for peer, _ in world.algorithm.batches[record.index]]
        assert sorted(applied) == sorted(2 * record.clients)  # H steps by each sampled client, none by others
    again = simulate(tiny({"h100_sxm": 9}, **overrides))
    assert [r.clients for r in again.algorithm.rounds] == [r.clients for r in world.algorithm.rounds]
    other = simulate(tiny({"h100_sxm": 9}, **overrides, seed=4))
    assert [r.clients for r in other.algorithm.rounds][:8] != [r.clients for r in rounds][:8]
    by_fraction = simulate(tiny({"h100_sxm": 9}, **{"algorithm.client_fraction": 0.3, "stop.sim_time_s": 5.0}))
    assert {len(r.clients) for r in by_fraction.algorithm.rounds} == {2}  # floor(0.3 x 8)


def test_a_deadline_shorter_than_the_slow_step_drops_that_reply_and_the_round_lasts_the_deadline():
    """Deadline-based rounds (Bonawitz et al., MLSys 2019): the server closes the round at
    deadline_s and aggregates what arrived. The H100 workers' round trip is 1.25 + 1 + 0.85 s
    (three models share the server's uplink, two replies its downlink); the RX 580 needs 10.8 s."""
    world = simulate(
        tiny({"h100_sxm": 3, "rx_580": 1}, **{"algorithm.deadline_s": 5.0, "stop.sim_time_s": 19.0})
    )
    algorithm = world.algorithm
    closed = [r for r in algorithm.rounds if r.ended_at is not None]
    assert [r.ended_at - r.started_at for r in closed] == [pytest.approx(5.0, abs=1e-12)] * 3
    assert [r.dropped for r in closed] == [1, 1, 1]
    assert all(r.received and 3 not in r.received for r in closed)
    # the global model after round 0 is the mean of the two H100 replies alone
    task = world.setup.task
    theta0 = task.initial_params
    models = [theta0 - 0.05 * gradient(task, theta0, batch) for peer, batch in algorithm.batches[0] if peer != 3]
    torch.testing.assert_close(algorithm.after_round[0][1], torch.stack(models).mean(dim=0), rtol=0, atol=1e-6)
    # re-sampled every 5 s while a step takes 10.8 s, the RX 580 abandons every round: no step applied
    assert world.peer_steps[3] == 0


def test_a_reply_after_the_deadline_is_counted_late_and_ignored():
    """With deadline 11.5 s the RX 580 finishes its step (1.25 + 10.8 s) and its reply arrives at 12.5 s,
    after its round closed and before round 1's model reaches it (11.5 + 1.25 s): counted, not used."""
    world = simulate(
        tiny({"h100_sxm": 3, "rx_580": 1}, **{"algorithm.deadline_s": 11.5, "stop.sim_time_s": 14.0})
    )
    first = world.algorithm.rounds[0]
    assert first.ended_at == pytest.approx(11.5, abs=1e-12)
    assert (first.dropped, first.late, sorted(first.received)) == (1, 1, [1, 2])
    assert world.peer_steps[3] == 1
    reply_at = 1.25 + RX_580_STEP_S + 0.45
    assert 11.5 < reply_at < 11.5 + 1.25


def test_without_a_deadline_the_round_waits_for_the_slowest_client():
    """Synchronous FedAvg: a round lasts the slowest sampled client's round trip."""
    world = simulate(tiny({"h100_sxm": 3, "rx_580": 1}, **{"stop.sim_time_s": 13.0}))
    first = world.algorithm.rounds[0]
    assert first.ended_at == pytest.approx(1.25 + RX_580_STEP_S + 0.45, abs=1e-9)  # 3 models share the uplink
    assert sorted(first.received) == [1, 2, 3] and first.dropped == 0


def rounds_to_target(local_steps: int, lr: float, target: float, sim_time_s: float) -> tuple[int, float]:
    """Rounds and bytes sent until the global model's suboptimality is `target` x its initial value."""
    data = tiny(
        {"h100_sxm": 5},
        **{"algorithm.local_steps": local_steps, "algorithm.lr": lr, "stop.sim_time_s": sim_time_s, "task.noise": 0.0},
    )
    data["task"].update(n_features=10, condition_number=5.0)
    data["workload"]["params"] = 1e3  # 4 kB models: rounds last about the H steps
    world = simulate(data)
    task = world.setup.task
    initial = train_loss(task, task.initial_params) - task.optimum_loss
    for index, (nbytes, model) in enumerate(world.algorithm.after_round):
        if train_loss(task, model) - task.optimum_loss < target * initial:
            return index + 1, nbytes
    raise AssertionError(f"H = {local_steps}: target not reached in {len(world.algorithm.after_round)} rounds")


@pytest.mark.parametrize(
    "lr, target, sim_time_s",
    [(0.1, 1e-2, 80.0), pytest.param(0.05, 1e-3, 350.0, marks=pytest.mark.slow)],
)
def test_local_steps_save_communication_by_up_to_a_factor_h(lr, target, sim_time_s):
    """McMahan et al. 2017 (Table 2: 10-100x fewer rounds with local epochs). Each round costs the
    same 2 K model_bytes whatever H; on a noise-free quadratic with a small step, H local steps
    from a common point move the average as about H gradient steps, so the rounds, and the bytes,
    to a target fall by at most H. Local steps see batches of 4, not the round's 16, so each does a
    little less: the ratio lies in [1/H, 1.5/H]. Measured (seed 3, 4 workers, H = 8): lr 0.1 to 1e-2
    of the initial suboptimality, 56 rounds against 8, bytes ratio 0.143 = 1.14/H; lr 0.05 to 1e-3,
    231 rounds against 33, ratio 0.143 = 1.14/H."""
    h = 8
    rounds_1, bytes_1 = rounds_to_target(1, lr, target, sim_time_s)
    rounds_h, bytes_h = rounds_to_target(h, lr, target, sim_time_s)
    assert bytes_h / rounds_h == pytest.approx(bytes_1 / rounds_1)  # 2 K model_bytes a round
    ratio = bytes_h / bytes_1
    assert 1 / h <= ratio <= 1.5 / h, (rounds_1, rounds_h, ratio)


@pytest.mark.parametrize("margin", [0.9, 1.1])
def test_local_sgd_diverges_exactly_beyond_the_gradient_descent_step_limit(margin):
    """One client holding one sample (batch 1): its H local SGD steps multiply the error along the
    sample's direction by (1 - lr lambda)^H, lambda = |x|^2, and the server takes that model, so a
    round contracts iff |1 - lr lambda| < 1, i.e. lr < 2 / lambda, whatever H: 10 % below, the error
    vanishes; 10 % above, the run is reported diverged."""
    data = tiny({"h100_sxm": 2}, **{"task.n_samples": 3, "task.eval_fraction": 0.5, "task.noise": 0.0, "data.batch_size": 1})
    data["algorithm"]["local_steps"] = 3
    data["stop"] = {"sim_time_s": 200.0}  # 3.9 s a round: about 50 rounds, 150 steps
    setup = build_run(Scenario.from_dict(data))
    sample = setup.partitions[1]
    assert len(sample) == 1
    x, y = setup.task.x_train[sample[0]], setup.task.y_train[sample[0]]
    data["algorithm"]["lr"] = margin * 2 / float(x.square().sum())
    world = simulate(data)
    if margin < 1:
        assert world.status == "finished"
        first, last = world.algorithm.after_round[0][1], world.params[0]
        assert float((x @ last - y) ** 2) < 1e-10 * float((x @ first - y) ** 2)
    else:
        assert world.status == "diverged"


def test_config_fields_fail_with_their_name():
    with pytest.raises(ScenarioError, match="local_steps"):
        Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.local_steps": 0}))
    with pytest.raises(ScenarioError, match="client_fraction"):
        both = {"algorithm.client_fraction": 0.5, "algorithm.clients_per_round": 1}
        Scenario.from_dict(tiny({"h100_sxm": 3}, **both))
    with pytest.raises(ScenarioError, match="deadline_s"):
        Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.deadline_s": 0.0}))
    with pytest.raises(ScenarioError, match="algorithm.clients_per_round"):
        validate_scenario(Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.clients_per_round": 3})))
