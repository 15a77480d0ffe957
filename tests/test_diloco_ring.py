"""diloco_ring: DiLoCo whose workers all-reduce their deltas over a ring (no server)."""

from __future__ import annotations

import pytest

from p2psim.testing import round_number_scenario, simulate


def test_a_round_is_h_steps_then_the_closed_form_ring_all_reduce():
    # K = 4 H100s (1 s a step), H = 3; the ring moves S = 4e6 B in 2(K-1) rounds of S/K at 1e6 B/s + 0.05 s.
    k, h = 4, 3
    data = round_number_scenario(
        {"h100_sxm": k}, {"algorithm": {"name": "diloco_ring", "lr": 0.05, "local_steps": h}, "stop.sim_time_s": 40.0}
    )
    world = simulate(data)
    ring = 2 * (k - 1) * (0.05 + 4e6 / k / 1e6)
    assert world.algorithm.round_ends[:2] == pytest.approx([h + ring, 2 * (h + ring)], abs=1e-9)


def test_int8_outer_gradients_quarter_the_bytes_of_fp32():
    base = {"algorithm": {"name": "diloco_ring", "lr": 0.05, "local_steps": 2}, "stop.sim_time_s": 40.0,
            "engine.numerics": "none"}
    fp32 = simulate(round_number_scenario({"h100_sxm": 2}, base))
    int8 = simulate(round_number_scenario({"h100_sxm": 2}, base, **{"algorithm.outer_bytes_per_param": 1.0}))
    assert int8.algorithm.payload_bytes == fp32.algorithm.payload_bytes / 4 == 1e6
    ring_fp32 = 2 * (0.05 + 4e6 / 2 / 1e6)
    ring_int8 = 2 * (0.05 + 1e6 / 2 / 1e6)
    assert fp32.algorithm.round_ends[0] == pytest.approx(2 + ring_fp32, abs=1e-9)
    assert int8.algorithm.round_ends[0] == pytest.approx(2 + ring_int8, abs=1e-9)


def test_one_inner_step_and_outer_sgd_at_lr_1_is_synchronous_all_reduce_sgd():
    # Delta_i = lr g_i, so theta - 1 x mean_i Delta_i = theta - lr mean_i g_i: all-reduce SGD, same ring, same batches.
    # A round lasts 1 + 4 (0.05 + 4e6 / 3 / 1e6) s; at 3.1 rounds both have applied three and compute the fourth.
    stop = {"stop.sim_time_s": 3.1 * (1 + 4 * (0.05 + 4e6 / 3 / 1e6))}
    ring = simulate(round_number_scenario(
        {"h100_sxm": 3}, stop,
        algorithm={"name": "diloco_ring", "lr": 0.05, "local_steps": 1, "outer_optimizer": "sgd", "outer_lr": 1.0},
    ))
    allreduce = simulate(round_number_scenario({"h100_sxm": 3}, stop, algorithm={"name": "allreduce", "lr": 0.05}))
    assert len(ring.algorithm.round_ends) == 3
    assert ring.network.bytes_sent.tolist() == allreduce.network.bytes_sent.tolist()
    assert ring.params.numpy() == pytest.approx(allreduce.params.numpy(), rel=1e-5, abs=1e-7)
    assert not (ring.params == ring.setup.task.initial_params).all()
