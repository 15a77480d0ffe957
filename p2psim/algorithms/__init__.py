"""Algorithms, one file each, registered by name (see `base.py` for the hooks)."""

from .adpsgd import ADPSGD
from .allreduce import AllReduce
from .base import (
    ALGORITHMS,
    IMPLEMENTATIONS,
    Algorithm,
    AlgorithmConfig,
    register_algorithm,
)

__all__ = ["ADPSGD", "ALGORITHMS", "IMPLEMENTATIONS", "AllReduce", "Algorithm", "AlgorithmConfig", "register_algorithm"]
