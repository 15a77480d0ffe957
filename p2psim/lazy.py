"""torch (and pandas), imported at first use: describing and validating a run never loads torch (issue 12, a fast CLI).

Modules that a scenario's description or validation imports (the task and algorithm
files, whose configs are the scenario's fields; seeding, compression, optim, ...) write
``from p2psim.lazy import torch`` instead of ``import torch``. Importing them costs
nothing; the first attribute read (``torch.zeros``) imports torch, and each attribute
read once is then held by the stand-in, so later reads are plain module lookups, as
fast as through torch itself (hooks run once per event). Modules that only run
(engine, metrics, dataflow) import torch as usual. tests/test_cli_imports.py fails if
`p2psim --help`, `p2psim devices` or `p2psim validate` loads torch.
"""

from __future__ import annotations

import importlib
import types

__all__ = ["lazy_module", "pandas", "torch"]


def lazy_module(name: str) -> types.ModuleType:
    """A stand-in for module `name` that imports it at the first attribute read and keeps each attribute read."""
    stand_in = types.ModuleType(name, f"{name}, imported at its first use (p2psim.lazy)")

    def __getattr__(attribute: str) -> object:
        value = getattr(importlib.import_module(name), attribute)
        setattr(stand_in, attribute, value)
        return value

    stand_in.__getattr__ = __getattr__  # PEP 562: called only for attributes not yet held
    return stand_in


torch = lazy_module("torch")
pandas = lazy_module("pandas")  # the grid catalogue reads CSV traces with it; `p2psim grids` does not
