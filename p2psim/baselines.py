"""The centralized run that a scenario's baseline stands for: a description derived from a description.

The runner runs it after the peer-to-peer run; validation derives it beforehand, so a
baseline that cannot be derived fails before anything runs. Nothing here builds or imports torch.
"""

from __future__ import annotations

from dataclasses import replace

from .algorithms.allreduce import AllReduceConfig
from .scenario import BaselineSpec, DataSpec, MetricsSpec, PeersSpec, Scenario, StopSpec, TopologySpec

__all__ = ["BASELINE_RECORDS", "baseline_scenario"]

BASELINE_RECORDS = 50  # history rows per baseline run


def baseline_scenario(scenario: Scenario, baseline: BaselineSpec, samples: int) -> Scenario:
    """The centralized run that `baseline` stands for, with the same task, seed and sample budget.

    Its global batch is the peer-to-peer run's (peers x local batch), split over the
    baseline's devices; its data is the union of the peers' data, split IID.
    """
    count = baseline.count
    global_batch = scenario.data.batch_size * scenario.peers.count
    peers = scenario.peers
    return Scenario(
        name=f"{scenario.name}/{baseline.name}",
        seed=scenario.seed,
        task=scenario.task,
        workload=scenario.workload,
        data=DataSpec(batch_size=max(1, global_batch // count), partition="iid"),
        peers=PeersSpec(
            devices={baseline.device: count},
            links={baseline.link: count},
            precision=peers.precision,
            utilisation={k: v for k, v in peers.utilisation.items() if k == baseline.device},
            step_overhead_s=peers.step_overhead_s,
            jitter=peers.jitter,
        ),
        network=scenario.network,
        topology=TopologySpec(kind="complete"),  # all-reduce averages exactly: spectral gap 1
        algorithm=AllReduceConfig(
            lr=baseline.lr if baseline.lr is not None else scenario.algorithm.lr,
            optimizer=scenario.algorithm.optimizer,
            schedule=scenario.algorithm.schedule,
        ),
        stop=StopSpec(samples=max(1, samples)),
        metrics=MetricsSpec(
            eval_interval_samples=max(1, samples // BASELINE_RECORDS),
            target_accuracy=scenario.metrics.target_accuracy,
            divergence_factor=scenario.metrics.divergence_factor,
        ),
        engine=scenario.engine,
        energy=replace(scenario.energy, admission="all"),  # its devices sit in energy.grid (no region)
    )
