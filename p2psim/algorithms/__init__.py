"""Algorithms, one file each, registered by name (see `base.py` for the hooks)."""

from .base import ALGORITHMS, IMPLEMENTATIONS, Algorithm, AlgorithmConfig, register_algorithm
from .adpsgd import ADPSGD
from .allreduce import AllReduce

__all__ = ["ADPSGD", "ALGORITHMS", "IMPLEMENTATIONS", "AllReduce", "Algorithm", "AlgorithmConfig", "register_algorithm"]
