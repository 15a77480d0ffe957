"""What one training step of a torch model costs, counted on the model itself: FLOPs and activation bytes.

Validation counts chains of Linear layers by arithmetic (`budget.chain_costs`) and
comes here only for other models (convolutions, attention), since counting imports torch;
the run (`build.model_shape`) and `p2psim calibrate` count here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch.func import functional_call
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["activation_bytes_per_sample", "count_training_flops"]


def _leaf_tensors(model: torch.nn.Module, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies of `params` for a counting pass: parameters require grad, buffers are cloned.

    Cloning buffers keeps a counting pass (e.g. batch-norm running statistics) from
    changing the caller's tensors.
    """
    trainable = {name for name, _ in model.named_parameters()}
    return {
        name: tensor.detach().requires_grad_(True) if name in trainable else tensor.detach().clone()
        for name, tensor in params.items()
    }


def count_training_flops(
    model: torch.nn.Module,
    params: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    """FLOPs of one forward and backward pass of `model` with `params` on one batch.

    Counted by torch.utils.flop_counter.FlopCounterMode, which counts matrix
    products, convolutions and attention as 2 x multiply-accumulates and does not
    count elementwise work (activations, normalisation, the loss, the optimizer).
    The pass runs through torch.func.functional_call, so `model` may be a template
    on the "meta" device while `params` (parameters, and buffers if any) are real.
    The backward computes the parameters' gradients only, as training does, never
    the inputs' gradient (even when `inputs` requires grad).

    >>> model = torch.nn.Linear(64, 10, bias=False)
    >>> params = dict(model.named_parameters())
    >>> x, y = torch.zeros(32, 64), torch.zeros(32, dtype=torch.long)
    >>> count_training_flops(model, params, x, y, torch.nn.functional.cross_entropy)
    81920.0
    """
    tensors = _leaf_tensors(model, params)
    trainable = [tensors[name] for name, _ in model.named_parameters() if name in tensors]
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        outputs = functional_call(model, tensors, (inputs,))
        torch.autograd.grad(loss(outputs, targets), trainable)
    return float(counter.get_total_flops())


def _output_bytes(output: Any) -> int:
    """Bytes of every tensor in a module output (a tensor or nested tuples, lists, dicts)."""
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, (tuple, list)):
        return sum(_output_bytes(item) for item in output)
    if isinstance(output, dict):
        return sum(_output_bytes(item) for item in output.values())
    return 0


NOT_COMPUTED = {"_unsafe_view", "clone", "contiguous", "_to_copy", "copy_", "detach", "lift_fresh", "alias"}


class _BetweenLeaves(TorchDispatchMode):
    """Bytes of tensors computed outside leaf modules from the parameters' descendants.

    These are the activations a model makes in its own `forward` rather than in a
    layer: attention scores and their softmax, residual sums, functional activations.
    Views and copies (reshapes of the same values) are not counted, nor is anything
    that does not depend on the parameters (masks, positions, casts of the input).
    Descent is tracked by tensor identity (no autograd graph is built), holding each
    tracked tensor so that no identity is reused during the pass.
    """

    def __init__(self, params: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.depth = 0
        self.bytes = 0
        self.derived: dict[int, torch.Tensor] = {id(t): t for t in params.values()}

    def track(self, output: Any) -> None:
        for tensor in pytree.tree_leaves(output):
            if isinstance(tensor, torch.Tensor):
                self.derived[id(tensor)] = tensor

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.depth == 0 and any(id(a) in self.derived for a in pytree.tree_leaves((args, kwargs))):
            self.track(out)
            computed = func._schema.returns and all(r.alias_info is None for r in func._schema.returns)
            if computed and func._schema.name.split("::")[-1] not in NOT_COMPUTED:
                self.bytes += _output_bytes(out)
        return out


def activation_bytes_per_sample(
    model: torch.nn.Module, params: dict[str, torch.Tensor], inputs: torch.Tensor
) -> float:
    """Estimated activation memory kept for backward, per sample: leaf modules' outputs and what lies between.

    A forward pass (functional_call, so `model` may live on "meta") sums the outputs'
    numel x element size of each module without children (a forward hook), and of
    every op computed between them from the parameters' descendants (`_BetweenLeaves`:
    a transformer's attention scores, softmax and residual sums), then divides by the
    batch size (the first dimension of `inputs`).

    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> activation_bytes_per_sample(model, dict(model.named_parameters()), torch.zeros(4, 8))
    136.0
    """
    total_bytes = 0
    tensors = _leaf_tensors(model, params)
    between = _BetweenLeaves(tensors)

    def enter(module: torch.nn.Module, args: Any) -> None:
        between.depth += 1

    def record(module: torch.nn.Module, args: Any, output: Any) -> None:
        nonlocal total_bytes
        between.depth -= 1
        between.track(output)
        total_bytes += _output_bytes(output)

    leaves = [module for module in model.modules() if next(module.children(), None) is None]
    handles = [module.register_forward_pre_hook(enter) for module in leaves]
    handles += [module.register_forward_hook(record) for module in leaves]
    try:
        with torch.no_grad(), between:
            functional_call(model, tensors, (inputs,))
    finally:
        for handle in handles:
            handle.remove()
    return (total_bytes + between.bytes) / inputs.shape[0]
