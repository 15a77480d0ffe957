"""Stochastic Gradient Push (Assran, Loizou, Ballas, Rabbat, ICML 2019) against push-sum theory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2psim import Scenario, run
from p2psim.algorithms import register_algorithm
from p2psim.algorithms.base import ALGORITHMS
from p2psim.algorithms.dpsgd import ATCDSGD, DPSGD
from p2psim.algorithms.sgp import SGP
from p2psim.build import build_run
from p2psim.config import ScenarioError
from p2psim.engine import World
from p2psim.testing import LINK, quadratic_world, round_number_scenario

FAR_LINK = {"name": "far_link", "up_mbps": 8.0, "down_mbps": 8.0, "latency_ms": 500.0}  # 1 s one way
MODEL_BYTES = 4e3  # 1e3 parameters x 4 B


def tiny(peers: dict, **overrides) -> dict:
    """Least squares whose durations are round numbers: 1 s a step on an H100; models of 1e3 params (4 kB)."""
    defaults = {
        "workload.params": 1e3,
        "network.links": [LINK, FAR_LINK],
        "topology.kind": "ring",
        "algorithm.name": "sgp",
        "stop": {"steps": 10 * sum(peers.values())},
    }
    return round_number_scenario(peers, defaults, overrides)


def _register(cls):
    if cls.name not in ALGORITHMS:
        register_algorithm(cls)
    return cls


def _recording(base, suffix="", apply_gradients=True):
    """A variant that notes each peer's row and time at the end of each round (and, optionally, skips the step)."""

    class Recording(base):
        name = f"validation_sgp_recording_{base.name}{suffix}"
        config_class = type(f"SGPRecording{base.__name__}{suffix}Config", (base.config_class,), {})

        def start(self):
            self.rows = [[] for _ in range(self.world.n_peers)]
            self.times = [[] for _ in range(self.world.n_peers)]
            self.round_weights = [[] for _ in range(self.world.n_peers)]
            self.lateness = []
            super().start()

        def _apply(self, job):  # D-PSGD's step
            if apply_gradients:
                super()._apply(job)
            else:
                self.world.consume(job)

        def _adapt(self, job):  # SGP's step
            if apply_gradients:
                super()._adapt(job)
            else:
                self.world.consume(job)

        def on_message(self, message):
            if isinstance(message.payload, tuple):
                self.lateness.append(self.round[message.dst] - message.payload[0])
            super().on_message(message)

        def _end_round(self, peer):
            self.rows[peer].append(self.world.params[peer].clone())
            self.times[peer].append(self.world.now)
            if isinstance(self, SGP):
                self.round_weights[peer].append(float(self.weights[peer]))
            super()._end_round(peer)

    return _register(Recording)


RecordingSGP = _recording(SGP)
RecordingATC = _recording(ATCDSGD)
RecordingCTA = _recording(DPSGD)
GossipSGP = _recording(SGP, "_gossip", apply_gradients=False)


@_register
class DirectedGossip(GossipSGP):
    """Push-sum without gradients on a directed ring 0 -> 1 -> ... -> n-1 -> 0 plus the chord 0 -> 2."""

    name = "validation_sgp_directed"
    config_class = type("DirectedGossipConfig", (GossipSGP.config_class,), {})

    def out_neighbors(self, peer, round_):
        n = self.world.n_peers
        return [1, 2] if peer == 0 else [(peer + 1) % n]


@_register
class NaiveDirectedGossip(DirectedGossip):
    """The same pushes, but each peer forgets its weight after combining (w reset to 1): plain averaging of z."""

    name = "validation_sgp_directed_naive"
    config_class = type("NaiveDirectedGossipConfig", (DirectedGossip.config_class,), {})

    def _end_round(self, peer):
        self.weights[peer] = 1.0
        super()._end_round(peer)


def simulate(data: dict, rows: torch.Tensor | None = None) -> World:
    world = World(build_run(Scenario.from_dict(data)))
    if rows is not None:
        world.params.copy_(rows)
    world.run()
    return world


def at_round(world: World, k: int) -> torch.Tensor:
    """Every peer's row at the end of its round k."""
    return torch.stack([rows[k] for rows in world.algorithm.rows])


def test_sgp_on_a_regular_graph_is_atc_gossip_sgd():
    """On a regular undirected graph the push shares 1/(d+1) form a symmetric doubly stochastic P equal to
    the Metropolis W, so every w_i stays 1, z_i = x_i and SGP's update x_i <- sum_j P_ij (x_j - lr g_j(z_j))
    is ATC diffusion SGD (SGP generalises gossip SGD to directed graphs). Rows on the
    same batches agree to 1e-6 at every round; with CTA D-PSGD (Lian et al. 2017) the mean after the first
    round is the same, mean(x^0) - lr mean_i g_i(x^0), and later differs (gradients at other points)."""
    n, rounds = 6, 12
    data = tiny({"h100_sxm": n}, **{"algorithm.lr": 0.1, "stop": {"steps": n * (rounds + 1)}})
    sgp = simulate({**data, "algorithm": {"name": RecordingSGP.name, "lr": 0.1}})
    atc = simulate({**data, "algorithm": {"name": RecordingATC.name, "lr": 0.1}})
    cta = simulate({**data, "algorithm": {"name": RecordingCTA.name, "lr": 0.1}})
    assert np.allclose(np.concatenate(sgp.algorithm.round_weights), 1.0, atol=1e-12, rtol=0)
    for k in range(rounds):
        assert torch.allclose(at_round(sgp, k), at_round(atc, k), atol=1e-6, rtol=0)
    assert torch.allclose(at_round(sgp, 0).mean(dim=0), at_round(cta, 0).mean(dim=0), atol=1e-6, rtol=0)
    assert float((at_round(sgp, rounds - 1).mean(dim=0) - at_round(cta, rounds - 1).mean(dim=0)).abs().max()) > 1e-4


def test_push_sum_reaches_the_true_average_on_a_directed_graph_where_plain_averaging_does_not():
    """Kempe, Dobra, Gehrke, FOCS 2003 (push-sum), the gossip inside SGP: on a strongly connected directed
    graph with column-stochastic P, z_i = x_i / w_i -> mean(x^0) for every peer. Averaging what arrives
    without the weights (row-normalised P, R = diag(P 1)^{-1} P) reaches consensus at pi^T x^0, pi the
    left Perron vector of R: the wrong value. Directed ring of 5 plus the chord 0 -> 2, 80 rounds:
    push-sum within 1e-5 of the mean; plain averaging within 1e-5 of pi^T x^0, which is 0.08 off the mean."""
    n, rounds = 5, 80
    data = tiny({"h100_sxm": n}, **{"topology.kind": "complete", "stop": {"steps": n * (rounds + 1)}})
    start = torch.tensor([4.0, -2.0, 1.0, 0.0, 3.0])[:, None].repeat(1, 5) * torch.linspace(1, 2, 5)
    true_mean = start.double().mean(dim=0)
    push_sum = simulate({**data, "algorithm": {"name": DirectedGossip.name, "lr": 0.05}}, start)
    naive = simulate({**data, "algorithm": {"name": NaiveDirectedGossip.name, "lr": 0.05}}, start)
    P = push_sum.algorithm.push_matrix()
    assert np.allclose(P.sum(axis=0), 1.0) and not np.allclose(P.sum(axis=1), 1.0)  # column, not row, stochastic
    R = P / P.sum(axis=1, keepdims=True)
    eigenvalues, vectors = np.linalg.eig(R.T)
    pi = np.real(vectors[:, np.argmin(np.abs(eigenvalues - 1))])
    pi /= pi.sum()
    biased = torch.from_numpy(pi) @ start.double()
    assert float((at_round(push_sum, rounds - 1).double() - true_mean).abs().max()) < 1e-5
    assert float((at_round(naive, rounds - 1).double() - biased).abs().max()) < 1e-5
    assert float((biased - true_mean).abs().min()) > 0.05


@pytest.mark.parametrize(("n", "straggler"), [(8, False), (16, False), (16, True)])
def test_the_one_peer_exponential_graph_averages_exactly_in_log2_n_rounds(n, straggler):
    """Assran et al. 2019, Section 5, and Ying, Yuan, Chen, Hu, Pan, Yin, "Exponential Graph is Provably
    Efficient for Decentralized Deep Training", NeurIPS 2021: with n = 2^m, peer i sending half of its
    mass to i + 2^(k mod m), the product of m consecutive mixing matrices is 11^T/n. From random rows,
    every peer holds the exact average after m rounds (1e-6), not after m - 1 (off by > 1e-2); with an
    RX 580 among them too (synchronous rounds: pushes for later rounds arrive early and wait)."""
    m = n.bit_length() - 1
    devices = {"h100_sxm": n - 1, "rx_580": 1} if straggler else {"h100_sxm": n}
    data = tiny(devices, **{"algorithm.name": GossipSGP.name, "algorithm.graph": "exponential_one_peer",
                            "stop": {"steps": n * (m + 1)}})
    if straggler:  # until every peer has ended round m - 1: the RX 580's step paces the others
        slowest = float(build_run(Scenario.from_dict(data)).step_time_s.max())
        data["stop"] = {"sim_time_s": (m + 1) * slowest * 1.02}
    start = torch.randn(n, 5, generator=torch.Generator().manual_seed(5))
    world = simulate(data, start)
    mean = start.double().mean(dim=0)
    assert float((at_round(world, m - 1).double() - mean).abs().max()) < 1e-6
    assert float((at_round(world, m - 2).double() - mean).abs().max()) > 1e-2
    # doubly stochastic: the weights stay exactly 1
    assert np.array_equal([weights[:m] for weights in world.algorithm.round_weights], np.ones((n, m)))
    assert (world.algorithm._inbox._pool.peak_in_use > 0) == straggler


@pytest.mark.parametrize("tau", [1, 2])
def test_overlap_push_sum_reaches_the_true_average_despite_late_messages(tau):
    """Overlap SGP (Assran et al. 2019, whose analysis allows messages up to tau rounds late): mass in flight
    is conserved, so on the directed graph with a straggler (RX 580, 10.8x slower) every z_i still converges to
    mean(x^0), to 1e-5 after 40 rounds; messages are incorporated at most tau rounds late,
    and the bound is reached."""
    n = 5
    data = tiny({"h100_sxm": 4, "rx_580": 1}, **{"topology.kind": "complete", "algorithm.tau": tau,
                                                  "stop": {"steps": n * 40}, "metrics.eval_interval_s": 100.0})
    start = torch.randn(n, 5, generator=torch.Generator().manual_seed(11))
    world = simulate({**data, "algorithm": {"name": DirectedGossip.name, "lr": 0.05, "tau": tau}}, start)
    assert float((world.params.double() - start.double().mean(dim=0)).abs().max()) < 1e-5
    assert max(world.algorithm.lateness) == tau


@pytest.mark.parametrize("tau", [0, 1, 2])
def test_overlap_hides_latency_as_the_max_plus_recursion_says(tau):
    """Two H100s (c = 1 s a step) on links of 1 s latency: a push of 4004 B arrives e = 1.004004 s after it
    is sent. Round k+1 starts at max(s_k + c, s_{k-tau} + c + e): period max(c, (c + e) / (tau + 1)):
    synchronous SGP 2.004004 s, 1-OSGP 1.002002 s, 2-OSGP 1 s (compute-bound). Exact to 1e-9 s."""
    data = tiny({"h100_sxm": 2}, **{"peers.links": {"far_link": 2}, "topology.kind": "complete",
                                    "algorithm.name": RecordingSGP.name, "algorithm.tau": tau, "stop": {"steps": 2 * 12}})
    world = simulate(data)
    c, e = 1.0, 1.0 + (MODEL_BYTES + 4) / 1e6
    period = max(c, (c + e) / (tau + 1))
    for times in world.algorithm.times:
        window = np.asarray(times[tau + 4:]) - np.asarray(times[3:-(tau + 1)])
        assert len(window) >= 3
        assert window == pytest.approx(np.full(len(window), (tau + 1) * period), abs=1e-9)


def test_sgp_diverges_beyond_lr_two_on_the_exponential_graph():
    """On f_i = (x - b_i)^2 / 2 and the one-peer exponential graph with n = 8 (weights stay 1), SGP iterates
    x <- P_k ((1 - lr) x + lr b): stable iff |1 - lr| < 1, the centralized limit lr < 2. At lr = 1.8 the run
    finishes; at lr = 2.2 it is reported diverged."""
    b = np.array([1.0, -1.0, 2.0, 0.0, -2.0, 0.5, 3.0, -1.5])
    for lr, status in ((1.8, "finished"), (2.2, "diverged")):
        data = tiny({"h100_sxm": 8}, **{"task.n_features": 1, "algorithm.graph": "exponential_one_peer",
                                        "algorithm.lr": lr, "stop": {"steps": 8 * 150}})
        assert quadratic_world(data, b).run().info["status"] == status, lr


def test_bytes_mixing_report_and_config_errors():
    """A push is the model plus one 4-byte weight; the manifest reports P's gap (symmetric: as D-PSGD's W;
    otherwise 1 - |lambda_2|, the push-sum rate); out-of-range fields are named."""
    ring = run(Scenario.from_dict(tiny({"h100_sxm": 6})), baselines=False)
    facts = ring.manifest["runs"]["p2p"]
    assert ring.history["bytes_sent"].iloc[-1] == facts["messages"] * (MODEL_BYTES + 4)
    assert facts["spectral_gap"] == pytest.approx(1 - (1 / 3 + 2 / 3 * np.cos(2 * np.pi / 6)), abs=1e-12)
    star = run(Scenario.from_dict(tiny({"h100_sxm": 5}, **{"topology.kind": "star"})), baselines=False)
    assert "lambda_2|" in star.manifest["runs"]["p2p"]["spectral_gap_definition"]
    for field, value in (("tau", -1), ("graph", "ring")):
        with pytest.raises(ScenarioError, match=f"algorithm.{field}"):
            Scenario.from_dict(tiny({"h100_sxm": 2}, **{f"algorithm.{field}": value}))
