"""Algorithms, one file each, registered by name (see `base.py` for the hooks)."""

from .base import ALGORITHMS, IMPLEMENTATIONS, Algorithm, AlgorithmConfig, register_algorithm
from . import adpsgd, allreduce  # noqa: F401  (registration)

__all__ = ["ALGORITHMS", "IMPLEMENTATIONS", "Algorithm", "AlgorithmConfig", "register_algorithm"]
