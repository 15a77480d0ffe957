"""Carbon-aware choice of place: admit peers by their grid's carbon intensity, and say what it cost.

`energy.admission` picks which of the scenario's peers join: `all`, `below_threshold`
(grid yearly intensity <= `energy.max_gco2_per_kwh`) or `cleanest_k` (the `energy.admit_k`
peers on the cleanest grids, ties by peer index). Peers are placed as the run would place
them (`build_run`); the admitted run is the same scenario with the admitted peers' device,
link and region counts, so its placement streams re-draw which device sits on which link
and in which region among them. The report states the trade-off made before anything
runs: peers and compute throughput kept against the mean grid intensity.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .bill import grid_intensity
from .build import build_run
from .config import ScenarioError
from .scenario import Scenario

__all__ = ["admit"]


def admit(scenario: Scenario) -> tuple[Scenario, dict[str, Any]]:
    """The scenario restricted to the peers its admission policy lets in, and a report ({} for `all`)."""
    spec = scenario.energy
    if spec.admission == "all":
        return scenario, {}
    setup = build_run(scenario)
    grids = [region or spec.grid for region in setup.regions]
    intensity = np.array([grid_intensity(spec, g)[0] for g in grids])
    if spec.admission == "below_threshold":
        admitted = intensity <= spec.max_gco2_per_kwh
        if not admitted.any():
            raise ScenarioError(
                "energy.max_gco2_per_kwh",
                f"{spec.max_gco2_per_kwh!r} admits no peer: the cleanest grid of the swarm has {intensity.min():g} gCO2/kWh",
            )
    else:
        if spec.admit_k > setup.n_peers:
            raise ScenarioError("energy.admit_k", f"{spec.admit_k} is more than the {setup.n_peers} peers")
        order = np.lexsort((np.arange(setup.n_peers), intensity))
        admitted = np.zeros(setup.n_peers, dtype=bool)
        admitted[order[: spec.admit_k]] = True
    keep = np.flatnonzero(admitted)
    data = scenario.to_dict()
    peers = data["peers"]
    peers["devices"] = dict(Counter(setup.devices[i].name for i in keep))
    peers["links"] = dict(Counter(setup.link_names[i] for i in keep))
    if scenario.peers.regions:
        peers["regions"] = dict(Counter(setup.regions[i] for i in keep))
    peers["utilisation"] = {k: v for k, v in scenario.peers.utilisation.items() if k in peers["devices"]}
    peers.pop("count", None)
    data["energy"]["admission"] = "all"  # the admitted scenario is resolved: admitting again changes nothing
    admitted_scenario = Scenario.from_dict(data)
    speed = 1.0 / setup.step_time_s
    report = {
        "policy": spec.admission,
        "max_gco2_per_kwh": spec.max_gco2_per_kwh,
        "admit_k": spec.admit_k,
        "peers_admitted": int(admitted.sum()),
        "peers_offered": setup.n_peers,
        "regions_dropped": sorted({grids[i] for i in np.flatnonzero(~admitted)}),
        "mean_gco2_per_kwh_offered": float(intensity.mean()),
        "mean_gco2_per_kwh_admitted": float(intensity[admitted].mean()),
        "compute_throughput_kept": float(speed[admitted].sum() / speed.sum()),
        "placement": "re-drawn among the admitted peers' devices, links and regions",
    }
    return admitted_scenario, report
