"""Tasks: deterministic builds, clean splits, exact optimum, and the engine's vmap(grad) contract."""

import copy
import math
import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.func import functional_call, grad, vmap

from p2psim.config import ScenarioError
from p2psim.seeding import stream
from p2psim.tasks import (
    TASKS,
    DigitsMLP,
    LeastSquares,
    Logistic,
    Task,
    TaskData,
    register_task,
)
from p2psim.tasks.base import train_eval_split

# Small configurations keep the suite fast; digits is fixed-size anyway.
SMALL = {
    "least_squares": LeastSquares(n_samples=300, n_features=6),
    "logistic": Logistic(n_samples=300, n_features=6, n_classes=3),
    "digits_mlp": DigitsMLP(hidden=(16, 8)),
}
TENSORS = ("initial_params", "x_train", "y_train", "x_eval", "y_eval")


def batch_loss(task: TaskData):
    """The engine's f(flat, x, y) of DESIGN decision 5."""

    def f(flat, x, y):
        return task.loss(functional_call(task.model, task.unflatten(flat), (x,)), y)

    return f


def real_module(task: TaskData, flat: torch.Tensor) -> torch.nn.Module:
    """A materialised copy of the template holding `flat`, without touching the global RNG."""
    module = copy.deepcopy(task.model).to_empty(device="cpu")
    torch.nn.utils.vector_to_parameters(flat, module.parameters())
    return module


def test_registry_holds_the_shipped_tasks():
    assert set(TASKS) == {"least_squares", "logistic", "digits_mlp", "transformer_lm", "cnn"}
    assert all(issubclass(cls, Task) for cls in TASKS.values())


def test_registering_a_taken_name_fails():
    with pytest.raises(ValueError, match="already registered"):
        register_task(type("Clash", (LeastSquares,), {"name": "least_squares"}))


@pytest.mark.parametrize("name", SMALL)
def test_same_seed_same_task_different_seed_different(name):
    a, b, c = SMALL[name].build(1), SMALL[name].build(1), SMALL[name].build(2)
    for field in TENSORS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.initial_params, c.initial_params)
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize("name", SMALL)
def test_build_leaves_global_rngs_alone(name):
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    SMALL[name].build(0)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])


@pytest.mark.parametrize("name", SMALL)
def test_template_is_meta_and_params_match_shapes(name):
    task = SMALL[name].build(0)
    assert all(p.device.type == "meta" for p in task.model.parameters())
    assert task.initial_params.dtype == torch.float32
    assert task.initial_params.shape == (task.n_params,)
    assert task.n_params == sum(p.numel() for p in task.model.parameters())
    named = task.unflatten(task.initial_params)
    assert [(n, tuple(t.shape)) for n, t in named.items()] == list(task.param_shapes)


@pytest.mark.parametrize("name", SMALL)
def test_functional_call_on_template_matches_a_real_module(name):
    task = SMALL[name].build(0)
    x = task.x_eval[:17]
    expected = real_module(task, task.initial_params)(x)
    got = functional_call(task.model, task.unflatten(task.initial_params), (x,))
    assert torch.equal(got, expected)


def test_digits_mlp_forward_is_relu_mlp_by_hand():
    task = SMALL["digits_mlp"].build(0)
    w = task.unflatten(task.initial_params)
    x = task.x_eval[:5]
    h = torch.relu(x @ w["0.weight"].T + w["0.bias"])
    h = torch.relu(h @ w["2.weight"].T + w["2.bias"])
    expected = h @ w["4.weight"].T + w["4.bias"]
    got = functional_call(task.model, w, (x,))
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("name", SMALL)
def test_vmap_grad_over_rows_equals_separate_grads(name):
    task = SMALL[name].build(0)
    f = batch_loss(task)
    noise = torch.randn(3, task.n_params, generator=torch.Generator().manual_seed(0))
    rows = task.initial_params + 0.1 * noise
    x, y = task.x_train[:32], task.y_train[:32]
    batched = vmap(grad(f), in_dims=(0, None, None))(rows, x, y)
    separate = torch.stack([grad(f)(row, x, y) for row in rows])
    # float32, same operations batched differently: agreement to rounding.
    assert torch.allclose(batched, separate, rtol=1e-5, atol=1e-6)
    assert batched.abs().max() > 1e-3


@pytest.mark.parametrize("name", SMALL)
def test_eval_is_held_out_fraction(name):
    task = SMALL[name].build(0)
    n = len(task.x_train) + len(task.x_eval)
    assert abs(len(task.x_eval) - 0.2 * n) <= (task.n_classes or 1)
    assert task.x_train.dtype == task.x_eval.dtype == torch.float32
    assert len(task.y_train) == len(task.x_train) and len(task.y_eval) == len(task.x_eval)


@pytest.mark.parametrize("name", ["least_squares", "logistic"])
def test_generated_train_and_eval_rows_are_disjoint(name):
    task = SMALL[name].build(0)
    train = {tuple(row) for row in task.x_train.tolist()}
    assert not any(tuple(row) in train for row in task.x_eval.tolist())


def test_digits_split_uses_each_image_once_and_is_stratified():
    # Digits holds duplicate images, so compare multisets of rows, not sets.
    task = SMALL["digits_mlp"].build(0)
    digits = load_digits()
    assert task.x_train.shape[1] == 64 and task.n_classes == 10
    split = torch.cat([task.x_train, task.x_eval]).numpy()
    full = (digits.data / 16.0).astype(np.float32)
    assert np.array_equal(split[np.lexsort(split.T)], full[np.lexsort(full.T)])
    assert task.x_train.min() >= 0 and task.x_train.max() <= 1
    per_class_eval = np.bincount(task.y_eval.numpy(), minlength=10)
    per_class_all = np.bincount(digits.target, minlength=10)
    assert np.all(np.abs(per_class_eval - 0.2 * per_class_all) <= 0.5)


def test_train_eval_split_is_disjoint_complete_and_stratified():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, held_out = train_eval_split(100, 0.2, stream(0, "data"), labels)
    assert train.dtype == held_out.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([train, held_out])), np.arange(100))
    assert list(np.bincount(labels[held_out])) == [10, 6, 4]


def test_least_squares_optimum_is_exact():
    task = LeastSquares(n_samples=500, n_features=8, noise=0.3).build(3)
    x, y = task.x_train.double().numpy(), task.y_train.double().numpy()
    w_star = torch.from_numpy(np.linalg.lstsq(x, y, rcond=None)[0]).float()
    f = batch_loss(task)
    loss = f(w_star, task.x_train, task.y_train)
    assert loss.item() == pytest.approx(task.optimum_loss, rel=1e-4)
    assert grad(f)(w_star, task.x_train, task.y_train).abs().max() < 1e-5
    # The noise variance sets the optimum: 0.5 * 0.3^2 * (1 - d/n) in expectation.
    assert task.optimum_loss == pytest.approx(0.5 * 0.09 * (1 - 8 / 400), rel=0.2)
    assert f(task.initial_params, task.x_train, task.y_train) > task.optimum_loss


@pytest.mark.parametrize("kappa", [1.0, 10.0, 100.0])
def test_least_squares_hessian_condition_number_is_roughly_requested(kappa):
    task = LeastSquares(n_samples=20000, n_features=10, condition_number=kappa).build(0)
    x = task.x_train.double()
    eigenvalues = torch.linalg.eigvalsh(x.T @ x / len(x))
    assert (eigenvalues.max() / eigenvalues.min()).item() == pytest.approx(kappa, rel=0.2)


def test_logistic_classes_are_balanced_and_separable():
    task = Logistic().build(0)
    assert np.all(np.bincount(task.y_train.numpy()) == 400)
    # Nearest class mean (estimated on train) classifies held-out points well above chance.
    means = torch.stack([task.x_train[task.y_train == c].mean(0) for c in range(4)])
    predicted = torch.cdist(task.x_eval, means).argmin(1)
    assert (predicted == task.y_eval).float().mean() > 0.6


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: LeastSquares(eval_fraction=1.0), "eval_fraction"),
        (lambda: LeastSquares(condition_number=0.5), "condition_number"),
        (lambda: Logistic(n_classes=1), "n_classes"),
        (lambda: DigitsMLP(hidden=(0,)), "hidden[0]"),
        (lambda: DigitsMLP(hidden=(8,) * 65), "hidden"),
        (lambda: LeastSquares(n_features=9223372036854775807), "n_features"),
        (lambda: LeastSquares(eval_fraction=1e-9), "eval_fraction"),
        (lambda: Logistic(n_samples=10**12), "n_samples"),
        (lambda: Logistic(class_separation=math.inf), "class_separation"),
    ],
)
def test_bad_options_fail_naming_the_field(make, field):
    with pytest.raises(ScenarioError, match=rf"^{re.escape(field)}: ") as error:
        make()
    assert error.value.field == field


@pytest.mark.parametrize("name", sorted(SMALL))  # transformer_lm and cnn: tests/test_tasks_lm_cnn.py
def test_sizes_by_arithmetic_match_the_build(name):
    task = SMALL[name]
    sizes, built = task.sizes(), task.build(0)
    assert (sizes.n_train, sizes.n_eval) == (len(built.y_train), len(built.y_eval))
    assert sizes.n_features == built.x_train.shape[1] and sizes.n_classes == built.n_classes
    if sizes.n_classes is not None:
        assert list(sizes.train_class_counts) == np.bincount(built.y_train.numpy(), minlength=sizes.n_classes).tolist()
    model = task.model()
    assert sum(p.numel() for p in model.parameters()) == built.n_params
    assert all(p.is_meta for p in model.parameters())
    assert sizes.build_s >= 0


def test_large_least_squares_build_is_estimated_not_run():
    sizes = LeastSquares(n_samples=2000, n_features=5000).sizes()
    assert sizes.n_train == 1600
    assert 10 < sizes.build_s < 600  # O(d^3): tens of seconds on one core, known before building
