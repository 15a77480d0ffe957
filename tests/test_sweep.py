"""Sweeps: axes over a base scenario, mixes that scale, a tidy table, failures recorded, resume after a kill."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

import p2psim
from p2psim.algorithms import ADPSGD, register_algorithm
from p2psim.algorithms.base import ALGORITHMS, IMPLEMENTATIONS
from p2psim.cli import main
from p2psim.config import ScenarioError
from p2psim.result import read_csv_exact
from p2psim.scenario import load_scenario, mix_counts
from p2psim.sweep import SweepSpec, apply_overrides, load_sweep, plan, sweep

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "scenarios" / "quickstart.toml"
LINK = {"name": "test_link", "up_mbps": 8.0, "down_mbps": 8.0, "latency_ms": 25.0}


def tiny() -> p2psim.Scenario:
    """Four least-squares peers for 19 simulated seconds: a run takes a fraction of a second."""
    return p2psim.Scenario.from_dict(
        {
            "name": "tiny",
            "seed": 3,
            "task": {"name": "least_squares", "n_samples": 400, "n_features": 5},
            "data": {"batch_size": 4},
            "workload": {"name": "round numbers", "flops_per_sample": 8.375e12, "params": 1e6},
            "peers": {"devices": {"h100_sxm": 2, "rx_580": 2}, "links": {"test_link": 4}, "step_overhead_s": 0.0},
            "network": {"links": [LINK]},
            "topology": {"kind": "complete"},
            "algorithm": {"name": "adpsgd", "lr": 0.05},
            "stop": {"sim_time_s": 19.0},
            "metrics": {"eval_interval_s": 5.0},
        }
    )


def threads() -> ThreadPoolExecutor:
    """An in-process executor: any concurrent.futures executor runs a sweep."""
    return ThreadPoolExecutor(1)


def test_setting_peers_count_scales_every_count_mix():
    base = load_scenario(QUICKSTART)
    same = p2psim.Scenario.from_dict(apply_overrides(base.to_dict(), {"peers.count": 32}))
    quadruple = p2psim.Scenario.from_dict(apply_overrides(base.to_dict(), {"peers.count": 128}))
    for mix in ("devices", "links", "regions"):
        counts = getattr(base.peers, mix)
        assert mix_counts(getattr(same.peers, mix), 32, mix) == counts
        assert mix_counts(getattr(quadruple.peers, mix), 128, mix) == {k: 4 * v for k, v in counts.items()}
    assert base.with_overrides({"peers.count": 128}).peers.devices == quadruple.peers.devices  # --set: same rule
    data = base.to_dict()
    data["peers"]["count"] = 128  # a file that says both is inconsistent: its counts are not scaled
    with pytest.raises(ScenarioError, match="counts sum to 32, but peers.count = 128"):
        p2psim.Scenario.from_dict(data)


def test_a_share_keeps_the_other_entries_in_their_base_proportions():
    base = load_scenario(QUICKSTART)
    data = apply_overrides(base.to_dict(), {"peers.devices.rx_580": 0.5})
    devices = data["peers"]["devices"]
    assert devices["rx_580"] == 0.5
    others = {k: v for k, v in base.peers.devices.items() if k != "rx_580"}  # 28 peers
    for name, count in others.items():
        assert devices[name] == pytest.approx(0.5 * count / 28, rel=1e-15)
    scenario = p2psim.Scenario.from_dict(data)
    assert mix_counts(scenario.peers.devices, 32, "devices")["rx_580"] == 16
    with pytest.raises(ScenarioError, match=r"peers.devices: shares set sum to 1.2, more than 1"):
        apply_overrides(base.to_dict(), {"peers.devices.rx_580": 0.7, "peers.devices.t4": 0.5})


def test_an_axis_mixing_counts_and_shares_is_refused():
    with pytest.raises(ScenarioError, match=r"grid.peers.devices.rx_580: mixes counts .* write 0.0, not 0"):
        SweepSpec(base=tiny(), grid={"peers.devices.rx_580": [0, 0.5]})


def test_the_runs_are_the_product_of_grid_zip_random_and_seeds():
    spec = SweepSpec(
        base=tiny(),
        grid={"algorithm.lr": [0.01, 0.02], "data.batch_size": [2, 4, 8]},
        zip={"stop.sim_time_s": [10.0, 20.0], "metrics.eval_interval_s": [1.0, 2.0]},
        random={"peers.jitter": {"uniform": [0.0, 0.5]}, "topology.kind": {"choice": ["ring", "complete"]}},
        samples=3,
        seeds=(0, 1),
    )
    plans = plan(spec)
    assert len(plans) == 2 * 3 * 2 * 3 * 2
    assert spec.axes == ["algorithm.lr", "data.batch_size", "stop.sim_time_s", "metrics.eval_interval_s", "peers.jitter", "topology.kind", "seed"]
    first = plans[0]
    assert first.scenario.algorithm.lr == 0.01 and first.scenario.data.batch_size == 2 and first.scenario.seed == 0
    assert all(p.scenario.stop.sim_time_s * 0.1 == p.scenario.metrics.eval_interval_s for p in plans)  # zipped
    jitters = sorted({p.values["peers.jitter"] for p in plans})
    assert len(jitters) == 3 and all(0.0 <= j <= 0.5 for j in jitters)
    assert {p.values["topology.kind"] for p in plans} <= {"ring", "complete"}
    assert [p.values for p in plan(spec)] == [p.values for p in plans]  # draws come from the sweep's seed


def test_a_run_that_no_scenario_allows_fails_before_anything_runs(tmp_path):
    spec = SweepSpec(base=tiny(), grid={"algorithm.lr": [0.05, -1.0]})
    with pytest.raises(ScenarioError, match=r"algorithm.lr: .*\(sweep run 1: algorithm.lr=-1.0\)"):
        sweep(spec, out=tmp_path, executor=threads())
    assert not (tmp_path / "runs").exists()


def test_the_table_holds_every_runs_history_with_the_axes_as_columns(tmp_path):
    spec = SweepSpec(base=tiny(), grid={"peers.devices.rx_580": [0.25, 0.75]}, seeds=(0, 1), baselines=False)
    seen = []
    table = sweep(spec, out=tmp_path, executor=threads(), progress=lambda *a: seen.append(a))
    assert seen[0] == (0, 4, 0) and seen[-1] == (4, 4, 0)
    assert list(table.columns[:6]) == ["peers.devices.rx_580", "seed", "scenario_hash", "run", "status", "error"]
    for p in plan(spec):
        result = p2psim.Result.load(tmp_path / "runs" / p.folder_name)
        assert mix_counts(result.scenario.peers.devices, 4, "devices")["rx_580"] == 4 * p.values["peers.devices.rx_580"]
        rows = table[table["scenario_hash"] == p.scenario.hash()]
        assert (rows["seed"] == p.values["seed"]).all() and (rows["status"] == "finished").all()
        pd.testing.assert_frame_equal(rows[result.history.columns].reset_index(drop=True), result.history)
    stored = read_csv_exact(tmp_path / "table.csv")
    pd.testing.assert_frame_equal(stored.drop(columns="error"), table.drop(columns="error"))
    if importlib.util.find_spec("pyarrow") is not None:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "table.parquet"), table)


def test_a_finished_sweep_started_again_runs_nothing(tmp_path):
    spec = SweepSpec(base=tiny(), grid={"algorithm.lr": [0.05, 0.1]}, baselines=False)
    first = sweep(spec, out=tmp_path, executor=threads())
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/manifest.json")}

    class Refusing(ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            raise AssertionError("a finished run was submitted again")

    again = sweep(spec, out=tmp_path, executor=Refusing(1))
    pd.testing.assert_frame_equal(again, first)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/manifest.json")} == stamps


class FailingConfig(ADPSGD.config_class):
    pass


class Failing(ADPSGD):
    """AD-PSGD whose fourth gradient raises: a bug inside one run of a sweep."""

    name = "failing_adpsgd"
    config_class = FailingConfig

    def on_gradient(self, job):
        if job.peer == 0 and self.world.now > 3.0:
            raise RuntimeError("boom")
        super().on_gradient(job)


@pytest.fixture
def failing_algorithm():
    """`failing_adpsgd` registered for one test only: tests that draw from every algorithm never see it."""
    register_algorithm(Failing)
    yield Failing.name
    del ALGORITHMS[Failing.name], IMPLEMENTATIONS[Failing.name]


def test_a_failed_and_a_diverged_run_are_recorded_and_the_others_go_on(tmp_path, failing_algorithm):
    spec = SweepSpec(
        base=tiny(),
        zip={"algorithm.name": ["adpsgd", "failing_adpsgd", "adpsgd"], "algorithm.lr": [0.05, 0.05, 1e5]},
        baselines=False,
    )
    seen = []
    table = sweep(spec, out=tmp_path, executor=threads(), progress=lambda *a: seen.append(a))
    assert seen[-1] == (3, 3, 1)
    ok, failed, diverged = (table[table["scenario_hash"] == p.scenario.hash()] for p in plan(spec))
    assert (ok["status"] == "finished").all() and len(ok) == 5
    assert len(failed) == 1 and failed["status"].item() == "failed"
    assert "RuntimeError: boom" in failed["error"].item() and math.isnan(failed["loss"].item())
    assert (diverged["status"] == "diverged").all()
    manifest = json.loads((tmp_path / "runs" / plan(spec)[1].folder_name / "manifest.json").read_text())
    assert manifest["runs"]["p2p"]["status"] == "failed" and "boom" in manifest["runs"]["p2p"]["error"]

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):
            Counting.submitted += 1
            return super().submit(*args, **kwargs)

    pd.testing.assert_frame_equal(sweep(spec, out=tmp_path, executor=Counting(1)), table)
    assert Counting.submitted == 0  # a recorded failure is a result
    sweep(spec, out=tmp_path, executor=Counting(1), retry_failed=True)
    assert Counting.submitted == 1


def _write_sweep(folder: Path, n_runs: int) -> Path:
    tiny().save(folder / "base.toml")
    lrs = ", ".join(f"{0.01 * (i + 1):.2f}" for i in range(n_runs))
    path = folder / "lr.toml"
    path.write_text(f'name = "lr"\nbase = "base.toml"\nbaselines = false\n\n[grid]\nalgorithm.lr = [{lrs}]\n')
    return path


def _complete(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/manifest.json")} if (out / "runs").exists() else {}


def test_a_sweep_killed_with_sigkill_mid_way_resumes_to_the_uninterrupted_table(tmp_path, capsys):
    n_runs = 10
    path = _write_sweep(tmp_path, n_runs)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "p2psim", "sweep", str(path), "--out", str(out), "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, start_new_session=True)  # the default executor: a local process pool
    try:
        deadline = time.monotonic() + 600
        while len(_complete(out)) < 2:
            assert process.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the sweep and its worker processes, mid-way
        process.wait()
    before = _complete(out)
    assert 2 <= len(before) < n_runs
    resumed = sweep(path, out=out, executor=threads())
    assert {p: m for p, m in _complete(out).items() if p in before} == before  # nothing finished ran again
    assert not [p for p in (out / "runs").iterdir() if ".incomplete-" in p.name or ".replaced-" in p.name]
    uninterrupted = sweep(path, out=tmp_path / "uninterrupted", executor=threads())
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    assert len(resumed["scenario_hash"].unique()) == n_runs and (resumed["status"] == "finished").all()
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0  # all finished: nothing runs
    assert capsys.readouterr().out.strip() == f"{n_runs} runs: {n_runs} finished; table: {out / 'table.csv'}"


def test_a_sweep_file_reads_dotted_keys_quoted_or_not(tmp_path):
    tiny().save(tmp_path / "base.toml")
    (tmp_path / "s.toml").write_text(
        'base = "base.toml"\nseeds = [0, 1]\n[set]\nstop.sim_time_s = 9.0\n[grid]\n"algorithm.lr" = [0.1]\n'
        '[random]\nsamples = 2\n"peers.jitter" = { uniform = [0.0, 0.1] }\n'
    )
    spec = load_sweep(tmp_path / "s.toml")
    assert spec.name == "s" and spec.fixed == {"stop.sim_time_s": 9.0} and spec.seeds == (0, 1)
    assert all(p.scenario.stop.sim_time_s == 9.0 for p in plan(spec)) and len(plan(spec)) == 4
    (tmp_path / "bad.toml").write_text('base = "base.toml"\n[random]\n"peers.jitter" = { normal = [0, 1] }\n')
    with pytest.raises(ScenarioError, match=r"random.peers.jitter: must be one distribution .*\(allowed: uniform"):
        load_sweep(tmp_path / "bad.toml")


def test_the_example_sweep_is_valid():
    spec = load_sweep(Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "rx580_share.toml")
    plans = plan(spec)
    shares = sorted({p.values["peers.devices.rx_580"] for p in plans})
    assert shares == [i / 10 for i in range(10)] and spec.seeds == (0, 1, 2, 3, 4) and len(plans) == 50
    counts = [mix_counts(p.scenario.peers.devices, p.scenario.peers.count, "devices")["rx_580"] for p in plans[::5]]
    assert counts == [round(0.1 * i * 40) for i in range(10)]  # 40 peers: every share is a whole number of them


def _small_sweep() -> SweepSpec:
    return SweepSpec(base=tiny(), grid={"algorithm.lr": [0.05, 0.1]}, baselines=False)


def test_a_sweep_on_a_local_ray_cluster_gives_the_in_process_table(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = sweep(_small_sweep(), out=tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(table, sweep(_small_sweep(), out=tmp_path / "threads", executor=threads()))


def test_the_dask_option_runs_on_the_scheduler_dask_is_configured_with(tmp_path):
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with dask.config.set({"scheduler-address": cluster.scheduler_address}):  # as a Slurm cluster's would be
            table = sweep(_small_sweep(), out=tmp_path / "dask", executor="dask")
        assert "execute_run" in cluster.scheduler.task_prefixes  # the runs went through this cluster's scheduler
    pd.testing.assert_frame_equal(table, sweep(_small_sweep(), out=tmp_path / "threads", executor=threads()))
