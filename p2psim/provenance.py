"""Where a result comes from: package versions, git commit, platform, and the source of its timings."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import networkx
import numpy as np
import simpy
import torch

from packaging.requirements import Requirement

from . import __version__
from .scenario import Scenario

__all__ = ["dependency_versions", "git_state", "manifest"]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout p2psim runs from; (None, None) outside one."""
    status = _git("status", "--porcelain")
    return _git("rev-parse", "HEAD"), (bool(status) if status is not None else None)


@lru_cache(maxsize=1)
def dependency_versions(package: str = "p2psim") -> dict[str, str]:
    """Installed version of every package in `package`'s dependency closure (extras left out), by name.

    The closure follows each installed package's own requirements whose markers hold here,
    so the manifest names what a run imported, not only what p2psim lists.
    """
    versions: dict[str, str] = {}
    pending = [package]
    while pending:
        name = _canonical(pending.pop())
        if name in versions:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement whose marker holds but that is not installed: nothing ran from it
        versions[name] = dist.version
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return dict(sorted(versions.items()))


def _canonical(name: str) -> str:
    """PEP 503 normalised name: 'Foo_Bar' and 'foo-bar' are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def manifest(scenario: Scenario, runs: dict[str, dict[str, Any]], timing_source: str) -> dict[str, Any]:
    """Everything needed to reproduce and trust a result, beside its resolved scenario."""
    commit, dirty = git_state()
    return {
        "p2psim": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "simpy": simpy.__version__,
        "networkx": networkx.__version__,
        "platform": platform.platform(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "packages": dependency_versions(),
        "seed": scenario.seed,
        "scenario_hash": scenario.hash(),
        "timing_source": timing_source,
        "runs": runs,
    }
