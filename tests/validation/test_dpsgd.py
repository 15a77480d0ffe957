"""D-PSGD (Lian et al., NeurIPS 2017) and ATC diffusion SGD (Chen & Sayed 2012) against their theory."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from p2psim import Scenario, run
from p2psim.algorithms import register_algorithm
from p2psim.algorithms.base import ALGORITHMS
from p2psim.algorithms.dpsgd import ATCDSGD, DPSGD
from p2psim.build import build_run
from p2psim.engine import World
from p2psim.metrics import consensus_distance
from p2psim.scenario import set_dotted
from p2psim.topology import mixing_matrix, spectral_gap
from p2psim.testing import quadratic_world, round_number_scenario, simulate

SLOW_STEP_S = 33.5e12 / (6.2e12 * 0.5)  # an RX 580 at fp32 and utilisation 0.5 (the H100 takes 1 s)
IRREGULAR = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [1, 4]]  # a path with a chord: degrees 1..3


def tiny(peers: dict, **overrides) -> dict:
    """Least squares whose durations are round numbers: 1 s a step on an H100; models of 1e3 params (4 kB)."""
    defaults = {
        "workload.params": 1e3,
        "topology.kind": "ring",
        "algorithm.name": "dpsgd",
        "stop": {"steps": 10 * sum(peers.values())},
    }
    return round_number_scenario(peers, defaults, overrides)


def _recording(base):
    """A variant that notes each peer's row and the time at the end of each round."""

    class Recording(base):
        name = f"validation_recording_{base.name}"
        config_class = type(f"Recording{base.__name__}Config", (base.config_class,), {})
        apply_gradients = True

        def start(self):
            self.rows = [[] for _ in range(self.world.n_peers)]
            self.times = [[] for _ in range(self.world.n_peers)]
            self.batches = [[] for _ in range(self.world.n_peers)]
            super().start()

        def _apply(self, job):
            self.batches[job.peer].append(job.batch)
            if self.apply_gradients:
                super()._apply(job)
            else:
                self.world.consume(job)  # pure gossip: the gradient is counted, not applied

        def _end_round(self, peer):
            self.rows[peer].append(self.world.params[peer].clone())
            self.times[peer].append(self.world.now)
            super()._end_round(peer)

    class Gossip(Recording):
        name = f"validation_gossip_{base.name}"
        config_class = type(f"Gossip{base.__name__}Config", (base.config_class,), {})
        apply_gradients = False

    for cls in (Recording, Gossip):
        if cls.name not in ALGORITHMS:
            register_algorithm(cls)
    return Recording, Gossip


RecordingCTA, GossipCTA = _recording(DPSGD)
RecordingATC, GossipATC = _recording(ATCDSGD)


def quadratic(algorithm: str, lr: float, rounds: int, edges=IRREGULAR) -> dict:
    n = 1 + max(max(edge) for edge in edges)
    return tiny(
        {"h100_sxm": n},
        **{"task.n_features": 1, "topology": {"kind": "edges", "edges": edges}, "algorithm.name": algorithm,
           "algorithm.lr": lr, "stop": {"steps": n * rounds}, "metrics.eval_interval_s": 50.0},
    )


def test_atc_with_exact_averaging_is_allreduce_row_for_row():
    """W = 11^T/n (complete graph; Metropolis and max-degree weights are both 1/n there): ATC gives
    x_i <- mean_j (x - lr g_j(x)) = x - lr mean_j g_j(x), which is synchronous all-reduce SGD on the
    same batches. Rows at the end of round 30 against 30 all-reduce steps; float32 sums in another
    order: they agree to 1e-6."""
    n, rounds = 5, 30
    for rule in ("metropolis", "uniform"):
        assert np.allclose(mixing_matrix(nx.complete_graph(n), rule), 1 / n, atol=1e-15, rtol=0)
        data = tiny({"h100_sxm": n}, **{"topology.kind": "complete", "topology.mixing": rule, "algorithm.lr": 0.1})
        # one more round of gradients: the budget stops the run after every peer has combined round 30
        atc = simulate({**data, "algorithm": {"name": RecordingATC.name, "lr": 0.1}, "stop": {"steps": n * (rounds + 1)}})
        allreduce = simulate({**data, "algorithm": {"name": "allreduce", "lr": 0.1}, "stop": {"steps": n * rounds}})
        combined = torch.stack([rows[rounds - 1] for rows in atc.algorithm.rows])
        assert torch.allclose(combined, allreduce.params, atol=1e-6, rtol=0)
        assert float((combined - combined[0]).abs().max()) < 1e-6  # one model, as in all-reduce


def test_dpsgd_with_exact_averaging_is_the_hand_rolled_loop_and_not_allreduce():
    """Lian et al. 2017, Algorithm 1 with W = 11^T/n: x_i^{k+1} = mean(x^k) - lr g_i(x_i^k), each gradient
    at the peer's own (un-averaged) model. Recomputed by hand in float64 on the jobs' own batches: 1e-5.
    It is not all-reduce: the gradients are taken at x_i^k, not at mean(x^k) (difference > 1e-3)."""
    n, rounds, lr = 4, 25, 0.1
    data = tiny({"h100_sxm": n}, **{"topology.kind": "complete", "algorithm.name": RecordingCTA.name,
                                    "algorithm.lr": lr, "stop": {"steps": n * rounds}})
    world = simulate(data)
    task = world.setup.task
    X, y = task.x_train.double(), task.y_train.double()
    x = task.initial_params.double().repeat(n, 1)
    for k in range(rounds):
        grads = []
        for i in range(n):
            batch = torch.from_numpy(world.algorithm.batches[i][k])
            Xb, yb = X[batch], y[batch]
            grads.append(Xb.T @ (Xb @ x[i] - yb) / len(batch))
        x = x.mean(dim=0) - lr * torch.stack(grads)
    assert torch.allclose(world.params.double(), x, atol=1e-5, rtol=0)
    allreduce = simulate({**data, "algorithm": {"name": "allreduce", "lr": lr}})
    assert float((world.params.mean(dim=0) - allreduce.params[0]).abs().max()) > 1e-3


@pytest.mark.parametrize("straggler", [False, True])
@pytest.mark.parametrize("algorithm", [RecordingCTA.name, RecordingATC.name])
def test_fixed_point_bias_on_a_heterogeneous_quadratic(algorithm, straggler):
    """f_i(x) = (x - b_i)^2 / 2, exact gradients, constant lr. The fixed point of D-PSGD (CTA),
    x = W x - lr (x - b), is x* = (I - W + lr I)^{-1} lr b; of ATC, x = W (x - lr (x - b)), it is
    x* = (I - (1 - lr) W)^{-1} lr W b (Chen & Sayed 2012). Rows match to 1e-5; 1^T W = 1^T makes
    mean(x*) = mean(b) exactly; each row keeps an O(lr) bias away from the minimiser mean(b).
    Synchronous rounds make the values independent of timing: with an RX 580 among the peers, whose
    fast neighbours' next-round models arrive early and wait in the inbox's pool, the same numbers."""
    b = np.array([3.0, -1.0, 0.5, 2.0, -2.5, 1.0])
    lr = 0.4  # errors contract by max|lambda(W) - lr| = 0.65 (CTA), (1 - lr) = 0.6 (ATC) a round
    data = quadratic(algorithm, lr, rounds=50)
    if straggler:
        set_dotted(data, "peers.devices", {"h100_sxm": 5, "rx_580": 1})
        set_dotted(data, "peers.utilisation", {"h100_sxm": 0.5, "rx_580": 0.5})
    world = quadratic_world(data, b)
    world.run()
    assert (world.algorithm._inbox._pool.peak_in_use > 0) == straggler
    last = min(len(rows) for rows in world.algorithm.rows) - 1  # the last round every peer has combined
    W = world.algorithm.W
    I = np.eye(len(b))
    if algorithm == RecordingCTA.name:
        fixed = np.linalg.solve(I - W + lr * I, lr * b)
    else:
        fixed = np.linalg.solve(I - (1 - lr) * W, lr * W @ b)
    simulated = torch.cat([rows[last] for rows in world.algorithm.rows]).double().numpy()
    assert np.abs(simulated - fixed).max() < 1e-5
    assert abs(fixed.mean() - b.mean()) < 1e-12
    assert abs(simulated.mean() - b.mean()) < 1e-5
    assert np.abs(fixed - b.mean()).max() > 0.1  # the bias: peers do not sit at the minimiser


def test_gossip_contracts_by_at_most_the_spectral_gap_and_exactly_on_the_second_mode():
    """Xiao & Boyd 2004: ||W x - mean|| <= (1 - gap) ||x - mean|| for symmetric doubly stochastic W,
    gap = 1 - max(|lambda_2|, |lambda_n|); the consensus distance V = mean ||x_i - mean||^2 shrinks per round
    by at most (1 - gap)^2. On a ring started at the eigenvector cos(2 pi i / n) of lambda_2 it shrinks
    by exactly lambda_2^2 = (1/3 + 2/3 cos(2 pi / n))^2 (Metropolis weights 1/3), to 1e-5 relative."""
    rounds = 12
    edges = IRREGULAR + [[5, 6], [6, 7], [7, 8], [8, 0], [2, 7]]
    data = tiny({"h100_sxm": 9}, **{"algorithm.name": GossipCTA.name, "topology": {"kind": "edges", "edges": edges},
                                    "stop": {"steps": 9 * rounds}})
    world = World(build_run(Scenario.from_dict(data)))
    generator = torch.Generator().manual_seed(7)
    world.params.copy_(torch.randn(world.params.shape, generator=generator, dtype=torch.float64).float())
    start = consensus_distance(world.params)[0]
    world.run()
    gap = spectral_gap(world.algorithm.W)
    distances = [start] + [consensus_distance(torch.stack([rows[k] for rows in world.algorithm.rows]))[0]
                           for k in range(rounds)]
    ratios = np.array(distances[1:]) / np.array(distances[:-1])
    assert np.all(ratios <= (1 - gap) ** 2 + 1e-6)
    assert ratios.max() > 0.5 * (1 - gap) ** 2  # the bound is not loose by orders of magnitude

    n = 10
    ring = tiny({"h100_sxm": n}, **{"algorithm.name": GossipCTA.name, "stop": {"steps": n * rounds}})
    world = World(build_run(Scenario.from_dict(ring)))
    mode = torch.cos(2 * torch.pi * torch.arange(n, dtype=torch.float64) / n)
    world.params.copy_((mode[:, None] * torch.linspace(1, 2, 5, dtype=torch.float64)).float())
    start = consensus_distance(world.params)[0]
    world.run()
    lambda_2 = 1 / 3 + 2 / 3 * np.cos(2 * np.pi / n)
    assert lambda_2 == pytest.approx(1 - spectral_gap(world.algorithm.W), abs=1e-12)
    distances = [start] + [consensus_distance(torch.stack([rows[k] for rows in world.algorithm.rows]))[0]
                           for k in range(rounds)]
    ratios = np.array(distances[1:]) / np.array(distances[:-1])
    assert np.allclose(ratios, lambda_2**2, rtol=1e-5, atol=0)


@pytest.mark.parametrize("algorithm", [RecordingCTA.name, RecordingATC.name])
def test_a_straggler_sets_every_peers_round_time(algorithm):
    """Synchronous rounds run at the pace of the slowest peer. Round k+1 of peer i starts at
    max(its own start + compute c_i, its neighbours' sends of round k + exchange e): a max-plus
    system whose period is the largest cycle mean (Baccelli, Cohen, Olsder, Quadrat, "Synchronization
    and Linearity", 1992). Compute-bound (e = 0.05 s + 4 kB / 1 MB/s = 0.054 s << c): the period is
    max_i c_i = the RX 580's 10.806 s for all four peers, whose H100s (1 s) wait 90 % of the time.
    Measured round ends after the first four rounds (the start-up transient: the ring's diameter is 2): exact to 1e-9 s."""
    world = simulate(tiny({"h100_sxm": 3, "rx_580": 1}, **{"algorithm.name": algorithm, "stop": {"steps": 4 * 8}}))
    for times in world.algorithm.times:
        durations = np.diff(times)[3:]
        assert len(durations) >= 3
        assert durations == pytest.approx(np.full(len(durations), SLOW_STEP_S), abs=1e-9)


@pytest.mark.parametrize(
    ("algorithm", "period"),
    [
        (RecordingCTA.name, lambda c_fast, c_slow, e: max(c_slow, e)),  # the send overlaps the compute
        (RecordingATC.name, lambda c_fast, c_slow, e: max(c_slow, (c_fast + c_slow) / 2 + e)),  # send after compute
    ],
)
def test_network_bound_rounds_follow_the_max_plus_cycle_mean(algorithm, period):
    """Two peers (H100: 1 s, RX 580: 10.806 s) and a model of 2e7 B (20 s on the link + 0.05 s). D-PSGD
    sends at the round's start: s_i^{k+1} = max(s_i^k + c_i, s_j^k + e), period max(c_slow, e) = e.
    ATC sends after its gradient: s_i^{k+1} = max(s_i^k + c_i, s_j^k + c_j + e), whose two-round cycle
    gives period (c_fast + c_slow) / 2 + e, rounds alternating in length (cyclicity 2): checked over
    two rounds at a time, after the start-up, exact to 1e-9 s."""
    data = tiny({"h100_sxm": 1, "rx_580": 1}, **{"algorithm.name": algorithm, "workload.params": 5e6,
                                                 "topology.kind": "complete", "stop": {"steps": 2 * 8}})
    world = simulate(data)
    e = 0.05 + 2e7 / 1e6
    expected = period(1.0, SLOW_STEP_S, e)
    assert expected > SLOW_STEP_S + 9  # the network, not the straggler, sets the pace here
    for times in world.algorithm.times:
        two_rounds = np.asarray(times[4:]) - np.asarray(times[2:-2])
        assert len(two_rounds) >= 2
        assert two_rounds == pytest.approx(np.full(len(two_rounds), 2 * expected), abs=1e-9)


def test_dpsgd_diverges_above_lr_one_plus_lambda_min_where_atc_is_still_stable():
    """On f_i = (x - b_i)^2 / 2, D-PSGD iterates x <- (W - lr I) x + lr b, stable iff
    max_i |lambda_i(W) - lr| < 1, i.e. lr < 1 + lambda_min(W): 2/3 on a Metropolis ring of even size
    (lambda_min = -1/3), not the centralized limit lr < 2. ATC iterates x <- (1 - lr) W x + lr W b, stable
    iff |1 - lr| < 1 (lr < 2), as centralized (Sayed 2014: ATC is the more stable diffusion).
    At 0.9 x each limit the run finishes; at 1.1 x it is reported diverged."""
    ring = [[i, (i + 1) % 6] for i in range(6)]
    b = np.array([1.0, -1.0, 2.0, 0.0, -2.0, 0.5])
    W = mixing_matrix(nx.cycle_graph(6))
    assert np.linalg.eigvalsh(W)[0] == pytest.approx(-1 / 3)
    for algorithm, limit in (("dpsgd", 2 / 3), ("atc_dsgd", 2.0)):
        for lr, status in ((0.9 * limit, "finished"), (1.1 * limit, "diverged")):
            world = quadratic_world(quadratic(algorithm, lr, rounds=100, edges=ring), b)
            assert world.run().info["status"] == status, (algorithm, lr)


def test_what_is_sent_and_the_reported_mixing():
    """Each round every peer sends its model (model_bytes) to each neighbour; the manifest's spectral gap
    is that of the scenario's W under its mixing rule."""
    for rule in ("metropolis", "uniform"):
        data = tiny({"h100_sxm": 6}, **{"topology": {"kind": "edges", "edges": IRREGULAR, "mixing": rule},
                                        "stop": {"steps": 6 * 5}})
        result = run(Scenario.from_dict(data), baselines=False)
        facts = result.manifest["runs"]["p2p"]
        graph = nx.Graph([tuple(edge) for edge in IRREGULAR])
        assert facts["spectral_gap"] == pytest.approx(spectral_gap(mixing_matrix(graph, rule)), abs=1e-12)
        rounds_started = 6  # the 5 rounds applied and the sixth already sent when the budget stops the run
        assert facts["messages"] <= 2 * len(IRREGULAR) * rounds_started
        assert result.history["bytes_sent"].iloc[-1] == facts["messages"] * 4e3
