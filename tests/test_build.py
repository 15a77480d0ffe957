"""build: what a run's timings stand for is what torch counts on the task's real model, loss and batch."""

import pytest

from p2psim.build import build_task, model_shape
from p2psim.scenario import Scenario


def scenario(task: dict, batch: int) -> Scenario:
    return Scenario.from_dict({
        "name": "shape", "task": task, "data": {"batch_size": batch},
        "peers": {"count": 4, "devices": {"h100_sxm": 4}, "links": {"nvlink": 4}},
        "algorithm": {"name": "adpsgd", "lr": 0.1}, "stop": {"steps": 4}, "metrics": {"eval_interval_s": 1.0},
    })


def counted_shape(built: Scenario) -> tuple[float, float]:
    """(parameters, FLOPs of a local step) as torch's FLOP counter gives them on the built task."""
    from p2psim.counting import count_training_flops

    task = build_task(built.task, built.seed)
    batch = built.data.batch_size
    x, y = task.x_train[:batch], task.y_train[:batch]
    flops = count_training_flops(task.model, task.unflatten(task.initial_params.clone()), x, y, task.loss)
    return float(task.n_params), flops * batch / len(x)


@pytest.mark.parametrize("task, batch", [
    ({"name": "digits_mlp"}, 32),
    ({"name": "digits_mlp", "hidden": [32, 16]}, 7),
    ({"name": "logistic", "n_samples": 400, "n_features": 20, "n_classes": 4}, 16),
    ({"name": "least_squares", "n_samples": 200, "n_features": 5}, 8),
])
def test_a_linear_chain_step_costs_what_torch_counts(task, batch):
    # exact: the arithmetic replaces the counter only where both give the same float
    built = scenario(task, batch)
    assert built.task.linear_chain() is not None
    assert model_shape(built) == counted_shape(built)
