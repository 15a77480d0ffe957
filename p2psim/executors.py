"""Where a sweep's runs execute: any `concurrent.futures.Executor`, or one opened by name.

``local`` is the standard library's process pool; ``ray`` and ``dask`` are optional extras
(``pip install -e ".[ray]"``, ``".[dask]"``) that reach a cluster by their own
configuration. Each run computes on one thread (`single_thread`, called by the run
itself, so any executor gets it): a sweep's parallelism is its runs.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable

from .config import ScenarioError

__all__ = ["EXECUTORS", "RayExecutor", "open_executor", "single_thread"]

EXECUTORS = ("local", "ray", "dask")


def single_thread() -> None:
    """Make this process compute on one thread: runs in parallel processes must not fight over cores."""
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@contextmanager
def open_executor(executor: str | Executor, workers: int) -> Iterator[Executor]:
    """The executor named (opened here, closed on exit), or the one given (left open)."""
    if isinstance(executor, Executor):
        yield executor
        return
    if executor not in EXECUTORS:
        raise ScenarioError("executor", f"unknown executor {executor!r} (allowed: {', '.join(EXECUTORS)}, or a concurrent.futures.Executor)")
    opener = {"local": _local, "ray": _ray, "dask": _dask}[executor]
    with opener(workers) as pool:
        yield pool


@contextmanager
def _local(workers: int) -> Iterator[Executor]:
    # spawn, not fork: a forked child inherits torch's thread pools mid-state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool


class RayExecutor(Executor):
    """Ray tasks behind the `concurrent.futures` interface: Ray schedules, `ObjectRef.future()` reports."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run `fn(*args, **kwargs)` as a one-CPU Ray task."""
        import ray

        return ray.remote(num_cpus=1)(fn).remote(*args, **kwargs).future()


@contextmanager
def _ray(workers: int) -> Iterator[Executor]:
    """A running Ray (``ray.init`` already called, or ``RAY_ADDRESS`` set), else a local one of `workers` CPUs."""
    ray = _extra("ray", "ray")
    started = not ray.is_initialized()
    if started:
        ray.init(**({} if os.environ.get("RAY_ADDRESS") else {"num_cpus": workers}))
    try:
        yield RayExecutor()
    finally:
        if started:
            ray.shutdown()


@contextmanager
def _dask(workers: int) -> Iterator[Executor]:
    """Dask's scheduler at dask config ``scheduler-address``; else the cluster class named by dask config
    ``p2psim.cluster`` (e.g. ``dask_jobqueue.SLURMCluster``, configured by dask-jobqueue's own
    settings) scaled to `workers`; else a `LocalCluster` of `workers` one-thread processes."""
    dask = _extra("dask", "dask")
    distributed = _extra("distributed", "dask")
    address = dask.config.get("scheduler-address", None)
    cluster_name = dask.config.get("p2psim.cluster", None)
    if address:
        cluster = None
        client = distributed.Client(address)
    elif cluster_name:
        module, _, name = cluster_name.rpartition(".")
        cluster = getattr(importlib.import_module(module), name)()
        cluster.scale(workers)
        client = distributed.Client(cluster)
    else:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _extra(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ScenarioError("executor", f"{extra!r} needs the optional extra: pip install -e \".[{extra}]\"") from None
