"""p2psim: peer-to-peer asynchronous distributed gradient descent in virtual time.

    import p2psim
    result = p2psim.run("experiments/scenarios/quickstart.toml")
    print(result.format_summary())

The public names below load their modules at first use (PEP 562), so `import p2psim`
and `p2psim --help` cost milliseconds and torch loads only when a run needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

from .config import ScenarioError, ScenarioWarning

if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` imports each at first use
    from .baselines import baseline_scenario
    from .engine import SimulationError
    from .result import Result
    from .runner import run
    from .scenario import Scenario, load_scenario
    from .sweep import sweep

__version__ = "0.1.0"

__all__ = ["Result", "Scenario", "ScenarioError", "ScenarioWarning", "SimulationError", "baseline_scenario", "load_scenario", "run", "sweep"]

_HOMES = {  # public name -> the submodule that defines it
    "Result": "result",
    "Scenario": "scenario",
    "SimulationError": "engine",
    "baseline_scenario": "baselines",
    "load_scenario": "scenario",
    "run": "runner",
    "sweep": "sweep",
}


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (`p2psim.engine`), imported at its first use."""
    if name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


class _Package(types.ModuleType):
    """The package's own type: `p2psim.sweep` stays the function when the submodule p2psim.sweep is imported.

    Importing a submodule sets it as an attribute of its package, which would shadow the
    function of the same name (the submodule and the function share it); here the function wins.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOMES and _HOMES[name] == name and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
