"""Every notebook runs top to bottom at smoke size (P2PSIM_SMOKE=1), as a reader would run it."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def execute(path: Path) -> dict:
    """Execute the code cells of a notebook in one namespace, from its folder; return the namespace."""
    namespace: dict = {"__name__": "__main__"}
    for number, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}[cell {number}]", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setenv("P2PSIM_SMOKE", "1")
    monkeypatch.chdir(path.parent)
    namespace = execute(path)
    if path.name == "quickstart.ipynb":
        result, on_fibre = namespace["result"], namespace["on_fibre"]
        assert result.status == "finished"
        assert result.runs == ["p2p", "1x H100", "8x H100 cluster"]
        # Faster links, same work: the same samples take less simulated time.
        assert on_fibre.run_history()["time_s"].iloc[-1] < result.run_history()["time_s"].iloc[-1]
    if path.name == "who_should_join.ipynb":
        swarm, centre = namespace["swarm"], namespace["rows"]
        assert swarm.index.tolist() == namespace["SHARES"]
        assert centre["run"].tolist() == ["1x H100", "8x H100 cluster"]
        # RX 580s draw less power than the devices they replace: less energy to the same target
        assert swarm[("energy_kwh", "mean")].iloc[-1] < swarm[("energy_kwh", "mean")].iloc[0]
    if path.name == "does_the_graph_matter.ipynb":
        final = namespace["final"].set_index("graph")
        assert sorted(final.index) == ["complete", "exponential", "random_regular", "ring"]
        # the complete graph mixes fastest (spectral gap 1 against ~2 pi^2 / n^2): its peers stay closest
        assert final.loc["complete", "consensus_distance"] < final.loc["ring", "consensus_distance"]


def test_the_documented_notebooks_are_there():
    assert {"quickstart.ipynb", "who_should_join.ipynb", "does_the_graph_matter.ipynb"} <= {p.name for p in NOTEBOOKS}
