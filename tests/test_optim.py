"""Per-peer optimizer rows reproduce torch.optim, and schedules give their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from p2psim.config import ScenarioError
from p2psim.optim import OptimizerSpec, RowOptimizer, ScheduleSpec, learning_rate

TORCH_EQUIVALENT = {
    "sgd": lambda p, s: torch.optim.SGD(p, lr=0.05, weight_decay=s.weight_decay),
    "momentum": lambda p, s: torch.optim.SGD(p, lr=0.05, momentum=s.momentum, weight_decay=s.weight_decay),
    "nesterov": lambda p, s: torch.optim.SGD(p, lr=0.05, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay),
    "adam": lambda p, s: torch.optim.Adam(p, lr=0.05, betas=(s.beta1, s.beta2), eps=s.eps, weight_decay=s.weight_decay),
    "adamw": lambda p, s: torch.optim.AdamW(p, lr=0.05, betas=(s.beta1, s.beta2), eps=s.eps, weight_decay=s.weight_decay),
}


@pytest.mark.parametrize("name", sorted(TORCH_EQUIVALENT))
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_a_row_follows_torch_optim_step_for_step(name, weight_decay):
    spec = OptimizerSpec(name=name, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(1)
    start = torch.randn(3, 6, generator=generator)
    grads = torch.randn(10, 6, generator=generator)
    rows = start.clone()
    optimizer = RowOptimizer(spec, n_rows=3, n_params=6)
    reference = start[1].clone().requires_grad_(True)
    torch_optimizer = TORCH_EQUIVALENT[name]([reference], spec)
    for grad in grads:
        optimizer.step(rows, 1, grad, lr=0.05)
        reference.grad = grad.clone()
        torch_optimizer.step()
    torch.testing.assert_close(rows[1], reference.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rows[[0, 2]], start[[0, 2]])  # other rows and their state untouched
    assert optimizer.steps.tolist() == [0, 10, 0]


def test_the_state_of_each_row_is_its_own():
    """Two rows stepped alternately equal two independent optimizers."""
    spec = OptimizerSpec(name="adam")
    rows = torch.zeros(2, 4)
    optimizer = RowOptimizer(spec, 2, 4)
    for k in range(5):
        optimizer.step(rows, 0, torch.full((4,), float(k + 1)), lr=0.1)
        optimizer.step(rows, 1, torch.full((4,), -1.0), lr=0.1)
    alone = torch.zeros(1, 4)
    single = RowOptimizer(spec, 1, 4)
    for k in range(5):
        single.step(alone, 0, torch.full((4,), float(k + 1)), lr=0.1)
    torch.testing.assert_close(rows[0], alone[0])
    # Adam's first steps move by lr whatever the gradient's scale: -1 five times gives +0.5
    torch.testing.assert_close(rows[1], torch.full((4,), 0.5))


def test_cosine_schedule_closed_form_with_warmup():
    schedule = ScheduleSpec(kind="cosine", horizon=100, warmup=10, final_fraction=0.1)
    assert learning_rate(2.0, schedule, 5) == pytest.approx(1.0)  # half-way through the warm-up
    assert learning_rate(2.0, schedule, 10) == pytest.approx(2.0)
    assert learning_rate(2.0, schedule, 60) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert learning_rate(2.0, schedule, 10_000) == pytest.approx(0.2)


def test_step_schedule_decays_by_gamma_every_period():
    schedule = ScheduleSpec(kind="step", every=3, gamma=0.5)
    assert [learning_rate(1.0, schedule, t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (lambda: OptimizerSpec(name="lion"), "name"),
        (lambda: OptimizerSpec(momentum=1.0), "momentum"),
        (lambda: OptimizerSpec(beta2=float("nan")), "beta2"),
        (lambda: OptimizerSpec(weight_decay=-0.1), "weight_decay"),
        (lambda: ScheduleSpec(kind="step"), "every"),
        (lambda: ScheduleSpec(kind="cosine", horizon=0), "horizon"),
        (lambda: ScheduleSpec(clock="epochs"), "clock"),
        (lambda: ScheduleSpec(warmup=float("inf")), "warmup"),
    ],
)
def test_bad_optimizer_and_schedule_fields_are_named(spec, field):
    with pytest.raises(ScenarioError) as error:
        spec()
    assert error.value.field == field
