"""An ensemble's affine layers whose backward computes only what some member trains.

In a freeze sweep most members hold most layers fixed. Autograd's product of a stacked layer (``models.linear``)
computes every member's weight gradient, which the ensemble then masks to zero for the members that freeze it, and
every member's input gradient, which is of no use to a member with nothing trainable upstream (a frozen prefix).
``StackedLinear`` stands in for each ``models.Linear`` and ``models.CodeMap`` of the ensemble's one module: its
forward is the same batched product, its backward runs the weight product only over the members that train the
weight and the input product only over those with a trainable layer upstream; the other members' slices are zero.
Its forward also tracks which members have trained upstream so far (``Upstream``): layers are called in the order
the data flows through them (the MLP's chain, a stitch between two networks' prefix and suffix).

A product runs over one contiguous slice of members (a strided batch, no gather): the members' hull. ``member_order``
sorts a freeze sweep's members so that each layer's trainers are contiguous (suffix-k by k, then the unfrozen run,
then prefix-k), and the ensemble's gradient masks still zero whatever the hull holds of members that freeze it.
Each member's slice of a product is the same product as before, so every member trains as it did.
"""

from __future__ import annotations

import torch
from torch import nn

from aedissect.nets.models import CodeMap, Linear

Rows = tuple[int, int]  # a slice [lo, hi) of the members


def hull(members: int) -> Rows:
    """The smallest slice of members holding every member whose bit is set in ``members``."""
    if members == 0:
        return (0, 0)
    return ((members & -members).bit_length() - 1, members.bit_length())


def bits(flags: list[bool]) -> int:
    return sum(1 << m for m, flag in enumerate(flags) if flag)


class StackedAffine(torch.autograd.Function):
    """x (M, n, in) -> x W^T + b per member, as ``models.linear``; backward over the given slices of members only."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight_rows: Rows, bias_rows: Rows, input_rows: Rows):
        # the old style with ctx: ``setup_context``'s machinery costs ~50 us a call more, as much as a small product
        ctx.weight_rows, ctx.bias_rows, ctx.input_rows = weight_rows, bias_rows, input_rows
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _over_rows(
                x.shape, ctx.input_rows, grad, lambda rows, out: torch.bmm(grad[rows], weight[rows], out=out)
            )
        if ctx.needs_input_grad[1]:
            # as autograd computes it for baddbmm's transposed operand: x^T grad, transposed back (x^T's product and
            # grad^T x's round differently)
            shape = (x.shape[0], x.shape[-1], grad.shape[-1])
            grad_w = _over_rows(
                shape,
                ctx.weight_rows,
                grad,
                lambda rows, out: torch.bmm(x[rows].transpose(-1, -2), grad[rows], out=out),
            ).transpose(-1, -2)
        if ctx.needs_input_grad[2]:
            shape = (grad.shape[0], grad.shape[-1])
            grad_b = _over_rows(shape, ctx.bias_rows, grad, lambda rows, out: torch.sum(grad[rows], -2, out=out))
        return grad_x, grad_w, grad_b, None, None, None


def _over_rows(shape: tuple, rows: Rows, like: torch.Tensor, compute) -> torch.Tensor:
    """A tensor of ``shape`` (members first), ``compute(rows, out)`` on the slice ``rows`` of its members and zero on
    the others."""
    lo, hi = rows
    if (lo, hi) == (0, shape[0]):
        return compute(slice(None), like.new_empty(shape))
    out = like.new_empty(shape)
    for rest in (out[:lo], out[hi:]):
        if rest.numel():
            rest.zero_()
    compute(slice(lo, hi), out[lo:hi])
    return out


class Upstream:
    """The members with a trainable layer among those run so far in the current forward pass (a bit each)."""

    def __init__(self):
        self.members = 0


class StackedLinear(nn.Module):
    """A ``Linear`` or ``CodeMap`` of the ensemble's module (its parameters, on the meta device, are only names for
    ``functional_call``), with which members train its weight and its bias."""

    def __init__(self, layer: nn.Module, trains_weight: list[bool], trains_bias: list[bool], upstream: Upstream):
        super().__init__()
        self.weight, self.bias = layer.weight, layer.bias
        self.weight_rows, self.bias_rows = hull(bits(trains_weight)), hull(bits(trains_bias))
        self.trains = bits(trains_weight) | bits(trains_bias)
        self.upstream = upstream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # rows shared by all members (the evaluation's test set)
            x = x.expand(self.weight.shape[0], *x.shape)
        input_rows = hull(self.upstream.members)
        self.upstream.members |= self.trains
        return StackedAffine.apply(x, self.weight, self.bias, self.weight_rows, self.bias_rows, input_rows)


def stack_layers(module: nn.Module, frozen: list[set[str]], upstream: Upstream) -> bool:
    """Replace, in place, every ``Linear`` and ``CodeMap`` of ``module`` by a ``StackedLinear`` for the members whose
    frozen parameter names are ``frozen``. Only where these layers hold every parameter: a parameter of another kind
    of module would train upstream unseen by ``Upstream``. Returns whether it replaced them."""
    layers = {name: m for name, m in module.named_modules() if isinstance(m, (Linear, CodeMap))}
    owned = {f"{name}.{p}" for name in layers for p in ("weight", "bias")}
    if not layers or owned != {name for name, _ in module.named_parameters()}:
        return False
    for name, layer in layers.items():
        parent, _, child = name.rpartition(".")
        trains = {p: [f"{name}.{p}" not in f for f in frozen] for p in ("weight", "bias")}
        stacked = StackedLinear(layer, trains["weight"], trains["bias"], upstream)
        setattr(module.get_submodule(parent) if parent else module, child, stacked)
    return True


def member_order(model: nn.Module, frozen: list[set[str]]) -> list[int]:
    """The members sorted by the first and last weight matrix they train (in ``model``'s parameter order; members
    training none last): the trainers of each layer of a freeze sweep (prefix-k, suffix-k, the unfrozen run) are
    then contiguous, and each product runs over them alone."""
    weights = [name for name, p in model.named_parameters() if p.dim() >= 2]

    def key(m: int) -> tuple[int, int]:
        trained = [i for i, name in enumerate(weights) if name not in frozen[m]]
        return (trained[0], trained[-1]) if trained else (len(weights), len(weights))

    return sorted(range(len(frozen)), key=key)
