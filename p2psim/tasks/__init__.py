"""Tasks: model template + data + loss, one file per task family, each registered by name.

A task class is both the scenario's `task` fields and its implementation; its files import
torch through `p2psim.lazy` and scikit-learn inside `build`, so naming and validating a task
loads neither. Validation sizes it by arithmetic (`Task.sizes`, `Task.linear_chain`).
"""

from p2psim.tasks.base import TASKS, Task, TaskData, TaskSizes, register_task
from p2psim.tasks.cnn import CNN
from p2psim.tasks.digits_mlp import DigitsMLP
from p2psim.tasks.least_squares import LeastSquares
from p2psim.tasks.logistic import Logistic
from p2psim.tasks.transformer_lm import TransformerLM

__all__ = [
    "CNN", "TASKS", "DigitsMLP", "LeastSquares", "Logistic", "Task", "TaskData", "TaskSizes", "TransformerLM",
    "register_task",
]
