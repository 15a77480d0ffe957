"""Tasks: model template + data + loss, one file per task family, each registered by name."""

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
