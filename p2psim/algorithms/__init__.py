"""Algorithms, one file each, registered by name (see `base.py` for the hooks).

Every module in this package is imported here, so a new algorithm is one new file:
its `@register_algorithm` makes it available by name, with no other edit.

Reading a scenario imports this registry: the config class (the scenario's `algorithm`
fields) and the class facts validation checks (`needs_connected_graph`, `learners`, ...)
live beside the algorithm's hooks, one file per algorithm. So that describing and
validating a run stays free of torch, algorithm files import it as
``from ..lazy import torch``, loaded at the first tensor operation (tests/test_cli_imports.py).
"""

import importlib
import pkgutil

from .base import (
    ALGORITHMS,
    IMPLEMENTATIONS,
    Algorithm,
    AlgorithmConfig,
    format_algorithm_table,
    register_algorithm,
)

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

from .adpsgd import ADPSGD, ADPSGDIdealised  # noqa: E402  (re-exported for convenience)
from .allreduce import AllReduce  # noqa: E402

__all__ = ["ADPSGD", "ADPSGDIdealised", "ALGORITHMS", "IMPLEMENTATIONS", "AllReduce", "Algorithm", "AlgorithmConfig", "format_algorithm_table", "register_algorithm"]
