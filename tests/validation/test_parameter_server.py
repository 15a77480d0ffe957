"""Parameter-server SGD, synchronous (with backup workers) and asynchronous (staleness-aware, DC-ASGD),
checked against exact equivalences, closed-form timings and the stability limit of delayed gradients."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from p2psim import Scenario
from p2psim.algorithms import register_algorithm
from p2psim.algorithms.async_ps import MEAN_SQUARE_EPS, AsyncPS
from p2psim.algorithms.sync_ps import SyncPS
from p2psim.build import build_run
from p2psim.config import ScenarioError
from p2psim.engine import World
from p2psim.testing import quadratic, round_number_scenario, simulate

LATENCY_S = 0.05
MODEL_BYTES = 4.0  # the workload declares one fp32 parameter: transfers take 4e-6 s, latency dominates


def tiny(peers: dict, **overrides) -> dict:
    """Least squares whose durations are round numbers: an H100 step takes 1 s, a message 50 ms + 4 us."""
    defaults = {"name": "tiny", "workload.params": 1, "algorithm.name": "sync_ps", "stop.sim_time_s": 20.0}
    return round_number_scenario(peers, defaults, overrides)


def scripted(world: World, batch_of) -> World:
    """Make `world.compute(peer)` use `batch_of(peer, n)` as the batch of the peer's n-th gradient."""
    compute, calls = world.compute, Counter()

    def compute_scripted(peer: int):
        job = compute(peer)
        job.batch = batch_of(peer, calls[peer])
        calls[peer] += 1
        return job

    world.compute = compute_scripted
    return world


class _TimedSyncPS(SyncPS):
    """Sync PS that notes the simulated time of each server step."""

    name = "validation_timed_sync_ps"
    config_class = type("TimedSyncPSConfig", (SyncPS.config_class,), {})

    def start(self):
        self.step_times = []
        super().start()

    def _step(self):
        self.step_times.append(self.world.now)
        super()._step()


class _StaggeredAsyncPS(AsyncPS):
    """Async PS whose equal workers start 10 ms apart: no two events tie, so arrivals keep their cyclic order.

    With W workers of equal period the server then applies, as update m, the gradient computed on the
    model it sent after update m - W: the delay is exactly tau = W - 1 at every step. It also logs, per
    update, the gradient received, the model then held, the model that worker had pulled, and the model after.
    """

    name = "validation_staggered_async_ps"
    config_class = type("StaggeredAsyncPSConfig", (AsyncPS.config_class,), {})

    def start(self):
        self.log, self.sent = [], {}
        initial = self.world.params[self.server].clone()
        for j, worker in enumerate(self.workers):
            self.sent[worker] = initial
            self.world.schedule(0.01 * j, worker, lambda worker=worker: self.world.compute(worker))

    def on_message(self, message):
        server_row = self.world.params[self.server]
        if message.kind == "gradient":
            worker = message.src
            entry = {"g": message.row.clone(), "now": server_row.clone(), "pulled": self.sent[worker]}
        super().on_message(message)
        if message.kind == "gradient":
            entry["after"] = self.sent[worker] = server_row.clone()
            self.log.append(entry)


class _TimedAsyncPS(AsyncPS):
    """Async PS that notes the simulated time of each server update."""

    name = "validation_timed_async_ps"
    config_class = type("TimedAsyncPSConfig", (AsyncPS.config_class,), {})

    def start(self):
        self.step_times, self.worker_times = [], {worker: [] for worker in self.workers}
        super().start()

    def on_message(self, message):
        if message.kind == "gradient":
            self.step_times.append(self.world.now)
            self.worker_times[message.src].append(self.world.now)
        super().on_message(message)


for _cls in (_TimedSyncPS, _StaggeredAsyncPS, _TimedAsyncPS):
    register_algorithm(_cls)


# ----- synchronous parameter server ---------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov"])
def test_sync_ps_equals_allreduce_equals_one_device_on_the_global_batch(optimizer):
    """Synchronous data-parallel SGD (Chen et al. 2016, b = 0; Goyal et al. 2017, arXiv:1706.02677):
    the mean of K equal-size batch gradients is the gradient of their union, so K workers behind a
    server, K devices with all-reduce and one device on the K-fold batch take the same steps.

    Left alone the runs would draw different batches (worker i + 1 of the PS samples shard i + 1 of
    K + 1 with the stream of peer i + 1; device i of all-reduce shard i of K with that of peer i), so
    all three are fed the same ones: batch i of round r on worker i, their union on the one device.
    The final models agree to float32 rounding (1e-6), the sync PS and all-reduce bit for bit.
    """
    k, batch, rounds = 4, 4, 6
    base = {"algorithm.optimizer": {"name": optimizer}, "stop": {"samples": rounds * k * batch}}
    # indices into the 320 training samples; one round more, which the runs start but never apply
    draws = np.random.default_rng(7).integers(0, 320, size=(rounds + 1, k, batch))

    ps = World(build_run(Scenario.from_dict(tiny({"h100_sxm": k + 1}, **base))))
    scripted(ps, lambda peer, n: draws[n, peer - 1]).run()  # worker i + 1 is the all-reduce's device i
    allreduce = World(build_run(Scenario.from_dict(tiny({"h100_sxm": k}, **base, **{"algorithm.name": "allreduce"}))))
    scripted(allreduce, lambda peer, n: draws[n, peer]).run()
    one = tiny({"h100_sxm": 1}, **base, **{"algorithm.name": "allreduce"})
    one["data"]["batch_size"] = k * batch
    single = World(build_run(Scenario.from_dict(one)))
    scripted(single, lambda peer, n: draws[n].reshape(-1)).run()

    assert ps.steps == rounds * k and single.steps == rounds
    moved = ps.params[0] - ps.setup.task.initial_params
    assert moved.norm() > 1e-2  # the runs really trained
    assert torch.equal(ps.params[0], allreduce.params[0])
    torch.testing.assert_close(ps.params[0], single.params[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("devices, backups", [
    ({"h100_sxm": 4, "rx_580": 1}, 1),  # 3 H100 workers and one RX 580: the round waits for the 3rd H100
    ({"h100_sxm": 3, "rtx_3060": 1, "rx_580": 1}, 1),  # k = 3: the round waits for the RTX 3060
    ({"h100_sxm": 4, "rx_580": 1}, 0),  # no backup: the round waits for the RX 580
])
def test_a_round_with_backup_workers_takes_the_kth_fastest_workers_time(devices, backups):
    """Chen et al. 2016, Section 3: with b backup workers the server steps on the first k = N - b
    gradients, so a round lasts the k-th fastest worker's step plus the pull and the push:
    T = t_(k) + 2 x 50 ms + transfers (a few 4-byte messages: < 1e-4 s). Measured between the
    first and the last server step (tolerance 1e-4 s); the RX 580's late gradients are dropped, one
    per t_slow, never applied."""
    data = tiny(devices, **{"algorithm.name": "validation_timed_sync_ps", "algorithm.backup_workers": backups})
    data["stop"] = {"sim_time_s": 60.0}
    world = simulate(data)
    algorithm = world.algorithm
    workers = algorithm.workers
    k = len(workers) - backups
    kth_fastest = np.sort(world.setup.step_time_s[workers])[k - 1]
    predicted = kth_fastest + 2 * LATENCY_S
    times = np.array(algorithm.step_times)
    measured = (times[-1] - times[0]) / (len(times) - 1)
    assert measured == pytest.approx(predicted, abs=1e-4)
    assert world.steps == k * len(times)
    slowest = workers[int(np.argmax(world.setup.step_time_s[workers]))]
    if backups:
        assert world.peer_steps[slowest] == 0  # the RX 580 never makes a round
        # it always holds a newer model when it finishes, so it pushes every t_slow s: each push dropped
        slow_s = world.setup.step_time_s[slowest]
        assert algorithm.dropped == int((60.0 - LATENCY_S) // slow_s) == world.info["dropped_gradients"]
    else:
        assert algorithm.dropped == 0 and all(world.peer_steps[w] == len(times) for w in workers)


def test_sync_ps_rejects_as_many_backups_as_workers():
    data = tiny({"h100_sxm": 3}, **{"algorithm.backup_workers": 2})
    with pytest.raises(ScenarioError, match=r"algorithm\.backup_workers: must be in \[0, 1\]"):
        Scenario.from_dict(data)
    with pytest.raises(ScenarioError, match=r"algorithm\.backup_workers: must be in \[0, 1e6\]"):
        Scenario.from_dict(tiny({"h100_sxm": 3}, **{"algorithm.backup_workers": -1}))


# ----- asynchronous parameter server: delays, staleness, compensation -----------------------------


def stability_limit(tau: int) -> float:
    """The largest eta h for which x_{t+1} = x_t - eta h x_{t-tau} is stable: 2 sin(pi / (2 (2 tau + 1)))."""
    return 2 * math.sin(math.pi / (2 * (2 * tau + 1)))


def delayed_recurrence(x0: float, eta_h: float, tau: int, steps: int) -> list[float]:
    """x_{t+1} = x_t - eta h x_{t-tau}, with x_t = x0 for t <= 0 (every worker starts from x0)."""
    xs = [x0] * (tau + 1)
    for _ in range(steps):
        xs.append(xs[-1] - eta_h * xs[-1 - tau])
    return xs[tau:]


@pytest.mark.parametrize("tau", [1, 2, 4])
def test_the_closed_form_limit_is_where_the_delayed_recurrence_loses_stability(tau):
    """The characteristic polynomial z^(tau+1) - z^tau + eta h of the delayed recurrence has its largest
    root on the unit circle exactly at eta h = 2 sin(pi / (2 (2 tau + 1))) (e.g. Mania et al. 2017,
    arXiv:1507.06970; the delay-differential limit pi / (2 tau)): inside just below, outside just above."""
    limit = stability_limit(tau)

    def spectral_radius(eta_h: float) -> float:
        return float(np.abs(np.roots([1.0, -1.0] + [0.0] * (tau - 1) + [eta_h])).max())

    assert spectral_radius(limit) == pytest.approx(1.0, abs=1e-9)
    assert spectral_radius(0.999 * limit) < 1 < spectral_radius(1.001 * limit)


def assert_follows(trajectory: list[float], expected: list[float]) -> None:
    """Agreement to 1e-4 of the largest |x| so far: float32 rounding, amplified where the run grows."""
    trajectory, expected = np.asarray(trajectory), np.asarray(expected)
    scale = np.maximum.accumulate(np.abs(expected))
    assert np.all(np.abs(trajectory - expected) <= 1e-4 * scale)


def quadratic_async_data(workers: int, lr: float, steps: int, **options) -> dict:
    """Staggered equal workers on a 1-D least-squares task, to be made the quadratic, for `steps` updates."""
    data = tiny({"h100_sxm": workers + 1}, **{"algorithm.name": "validation_staggered_async_ps", "algorithm.lr": lr})
    data["task"]["n_features"] = 1
    data["stop"] = {"steps": steps}
    data["algorithm"].update(options)
    return data


def quadratic_async(workers: int, lr: float, steps: int, **options) -> World:
    """Staggered equal workers on the 1-D quadratic (h = 0.25), run for `steps` server updates."""
    world = World(quadratic(build_run(Scenario.from_dict(quadratic_async_data(workers, lr, steps, **options)))))
    world.run()
    return world


H = 0.25  # the quadratic's curvature, a^2 with a = 0.5 (exact in float32)


@pytest.mark.parametrize("tau, steps", [(1, 200), (2, 300), (4, 700)])
def test_async_ps_with_delay_tau_is_stable_exactly_below_the_closed_form_limit(tau, steps):
    """Stale-gradient descent on a quadratic, x_{t+1} = x_t - eta h x_{t-tau}, is stable iff
    eta h < 2 sin(pi / (2 (2 tau + 1))). Through the engine, tau + 1 equal workers give a delay of
    exactly tau: the server's trajectory is the recurrence's (to 1e-4 of max |x|, float32), it converges at
    0.95 x the limit and diverges (reported as diverged) at 1.05 x the limit."""
    limit = stability_limit(tau)
    below = quadratic_async(tau + 1, 0.95 * limit / H, steps)
    x0 = float(below.setup.task.initial_params[0])
    trajectory = [float(entry["after"][0]) for entry in below.algorithm.log]
    expected = delayed_recurrence(x0, 0.95 * limit, tau, steps)[1:]
    assert_follows(trajectory, expected)
    assert below.status == "finished" and abs(trajectory[-1]) < 0.1 * abs(x0)

    above = quadratic_async(tau + 1, 1.05 * limit / H, 3 * steps)
    assert above.status == "diverged"
    trajectory = [float(entry["after"][0]) for entry in above.algorithm.log]
    expected = delayed_recurrence(x0, 1.05 * limit, tau, len(trajectory))[1:]
    assert_follows(trajectory, expected)
    assert abs(trajectory[-1]) > 2 * abs(x0)


def test_staleness_aware_steps_raise_the_stability_limit_by_the_delay():
    """Zhang, Gupta, Lian, Liu, IJCAI 2016: lr / staleness. With delay tau = 2 every step after the
    first round uses eta / 2, so the limit on eta h doubles to 2 x 2 sin(pi / 10): at 1.5 x the plain
    limit plain async diverges and staleness-aware async converges; at 1.05 x the doubled limit it
    diverges too."""
    tau, steps = 2, 400
    limit = stability_limit(tau)
    plain = quadratic_async(tau + 1, 1.5 * limit / H, steps)
    aware = quadratic_async(tau + 1, 1.5 * limit / H, steps, staleness_aware=True)
    assert plain.status == "diverged"
    assert aware.status == "finished"
    x0 = abs(float(aware.setup.task.initial_params[0]))
    assert abs(float(aware.params[0, 0])) < 1e-3 * x0
    beyond = quadratic_async(tau + 1, 1.05 * tau * limit / H, 3 * steps, staleness_aware=True)
    assert beyond.status == "diverged"


def test_dc_asgd_applies_the_compensated_gradient_and_it_is_closer_to_the_gradient_now():
    """Zheng et al., ICML 2017, eq. (9): the server applies g + lambda g*g*(w_now - w_pulled). On
    f = h w^2 / 2 the gradient at w_now is g + h (w_now - w_pulled), so the compensation's error is
    |h - lambda g^2| |w_now - w_pulled| against h |w_now - w_pulled| uncompensated. With
    lambda = 1 / (h w_0^2) (the exact curvature at the start) it is smaller at every delayed step.
    Checked exactly (rel. 1e-5) on every step against the formula, from the logged rows; over the run
    the mean error falls below half of plain async's, and the end point is 10x closer to w* = 0."""
    tau, steps = 2, 60
    lr = 0.9 * stability_limit(tau) / H
    x0 = float(build_run(Scenario.from_dict(quadratic_async_data(tau + 1, lr, steps))).task.initial_params[0])
    dc_lambda = 1 / (H * x0**2)
    world = quadratic_async(tau + 1, lr, steps, dc_lambda=dc_lambda)
    delayed = 0
    for entry in world.algorithm.log:
        g, now, pulled = float(entry["g"][0]), float(entry["now"][0]), float(entry["pulled"][0])
        applied = (now - float(entry["after"][0])) / lr
        assert g == pytest.approx(H * pulled, rel=1e-6)  # the gradient of the model that worker pulled
        assert applied == pytest.approx(g + dc_lambda * g * g * (now - pulled), rel=1e-5, abs=1e-7)
        if abs(now - pulled) > 1e-6:
            delayed += 1
            assert abs(applied - H * now) < abs(g - H * now)
    assert delayed >= steps - tau - 1
    # Over the run: the applied gradients' mean error against the gradient at w_now, and the end point.
    plain = quadratic_async(tau + 1, lr, steps)

    def mean_error(log: list[dict]) -> float:
        return float(np.mean([abs((float(e["now"][0]) - float(e["after"][0])) / lr - H * float(e["now"][0])) for e in log]))

    assert mean_error(world.algorithm.log) < 0.5 * mean_error(plain.algorithm.log)  # measured 0.022 vs 0.090
    assert abs(float(world.params[0, 0])) < 0.1 * abs(float(plain.params[0, 0]))  # measured 0.0043 vs 0.13


def test_dc_asgd_adaptive_normalises_by_the_running_mean_square():
    """DC-ASGD-a (Zheng et al. 2017, Section 5): lambda_t = lambda_0 / sqrt(MeanSquare_t), with
    MeanSquare_t = m MeanSquare_{t-1} + (1 - m) g_t^2 over every received gradient (m = 0.95).
    The applied gradient matches the formula replayed from the logged gradients (rel. 1e-5)."""
    tau, steps, lambda_0, m = 2, 40, 0.5, 0.95
    lr = 0.9 * stability_limit(tau) / H
    world = quadratic_async(tau + 1, lr, steps, dc_lambda=lambda_0, dc_adaptive=True, dc_momentum=m)
    mean_square = 0.0
    for entry in world.algorithm.log:
        g, now, pulled = float(entry["g"][0]), float(entry["now"][0]), float(entry["pulled"][0])
        mean_square = m * mean_square + (1 - m) * g * g
        expected = g + lambda_0 * g * g * (now - pulled) / math.sqrt(mean_square + MEAN_SQUARE_EPS)
        assert (now - float(entry["after"][0])) / lr == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_dc_adaptive_needs_a_lambda():
    with pytest.raises(ScenarioError, match=r"algorithm\.dc_lambda: must be > 0 when dc_adaptive"):
        Scenario.from_dict(tiny({"h100_sxm": 2}, **{"algorithm.name": "async_ps", "algorithm.dc_adaptive": True}))


# ----- stragglers ---------------------------------------------------------------------------------


def test_a_straggler_slows_synchronous_rounds_but_not_asynchronous_updates():
    """Dean et al. 2012; Chen et al. 2016, Section 2: one RX 580 among 3 H100 workers. Sync PS steps
    K gradients per round of the slowest worker: K / (t_slow + 2L) updates per simulated second;
    async PS steps each worker's gradient on arrival: sum_i 1 / (t_i + 2L). Measured from the server's
    update times: sync within 1e-4; async summed over each worker's own updates within 1e-4, and
    over all updates within 2 % (the window ends mid-period for some workers). The ratio is 7.69."""
    devices = {"h100_sxm": 4, "rx_580": 1}
    worlds = {}
    for name in ("validation_timed_sync_ps", "validation_timed_async_ps"):
        data = tiny(devices, **{"algorithm.name": name})
        data["stop"] = {"sim_time_s": 60.0}
        worlds[name] = world = World(build_run(Scenario.from_dict(data)))
        world.run()
    sync, asynchronous = worlds["validation_timed_sync_ps"], worlds["validation_timed_async_ps"]
    workers = sync.algorithm.workers
    step_s = sync.setup.step_time_s[workers]
    sync_predicted = len(workers) / (step_s.max() + 2 * LATENCY_S)
    async_predicted = float(np.sum(1 / (step_s + 2 * LATENCY_S)))

    def rate(times: list[float]) -> float:
        return (len(times) - 1) / (times[-1] - times[0])

    sync_measured = len(workers) * rate(sync.algorithm.step_times)
    async_measured = rate(asynchronous.algorithm.step_times)
    by_worker = sum(rate(asynchronous.algorithm.worker_times[w]) for w in workers)
    assert sync_measured == pytest.approx(sync_predicted, rel=1e-4)
    assert by_worker == pytest.approx(async_predicted, rel=1e-4)
    assert async_measured == pytest.approx(async_predicted, rel=0.02)
    assert async_predicted / sync_predicted == pytest.approx(7.686, abs=1e-3)
    assert async_measured / sync_measured == pytest.approx(async_predicted / sync_predicted, rel=0.02)
