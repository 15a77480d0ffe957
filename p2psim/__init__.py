"""p2psim: peer-to-peer asynchronous distributed gradient descent in virtual time.

    import p2psim
    result = p2psim.run("experiments/scenarios/quickstart.toml")
    print(result.format_summary())
"""

__version__ = "0.1.0"

from .config import ScenarioError, ScenarioWarning
from .engine import SimulationError
from .result import Result
from .runner import baseline_scenario, run
from .scenario import Scenario, load_scenario
from .sweep import sweep

__all__ = ["Result", "Scenario", "ScenarioError", "ScenarioWarning", "SimulationError", "baseline_scenario", "load_scenario", "run", "sweep"]
