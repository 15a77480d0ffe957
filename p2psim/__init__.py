"""p2psim: peer-to-peer asynchronous distributed gradient descent in virtual time.

>>> import p2psim
>>> scenario = p2psim.load_scenario("experiments/scenarios/quickstart.toml")  # doctest: +SKIP
>>> result = p2psim.run(scenario)                                            # doctest: +SKIP
>>> print(result.format_summary())                                            # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import ScenarioError
from .engine import SimulationError
from .result import Result
from .runner import baseline_scenario, run
from .scenario import Scenario, load_scenario

__all__ = ["Result", "Scenario", "ScenarioError", "SimulationError", "baseline_scenario", "load_scenario", "run"]
