"""Local dimension per cut: the rank and the spread of the singular values of the Jacobian dh_c/dx.

For cut c (numbered as in ``truncation.cut_activations``: 0 the input, ``bottleneck_cut`` the code, the
VAE's code being the posterior mean, L the output) the prefix x -> h_c is differentiated at each point,
in float64, in forward mode: the in_dim tangents of every point are carried through the layers with the
chain rule, J_c = diag(f'(z_c)) W_c J_{c-1} for a layer that is a Linear and an elementwise activation f (whose
slope f'(z) is one reverse pass of sum f(z); the VAE keeps the mean rows), so one pass yields the Jacobians of
all cuts at once, where reverse mode needs one pass per row of every cut. Any other layer of a model of the cut
interface (``nets.chains``: a convolution, a reshape) pushes the columns of J_{c-1} through with
``torch.func.jvp``, vmapped over them: correct for every layer, but its first call imports torch's
decompositions (~900 modules, 3-5 s per process), more than a whole truncate job of a small MLP cell costs, which
is why dense layers keep the chain rule (the tests compare both with ``torch.func.jacfwd``). A ReLU or linear net
is piecewise linear, so its Jacobian is exact (not a linearisation) inside the linear region of the point.

Per point: the numerical rank (singular values above ``rel_threshold`` times that point's largest) and the
participation ratio (sum s^2)^2 / sum s^4 of the squared singular values (as ``metrics.participation_ratio``
is of covariance eigenvalues). The s^2 are the eigenvalues of the smaller Gram matrix J J^T or J^T J
(``eigvalsh``, ~10x faster than ``svdvals`` on the CPU); their absolute error is ~1e-16 s_max^2 times the
width, which is why ``rel_threshold`` must be at least 1e-6 (s^2 at 1e-12 of the largest). Where the
Jacobian is zero (every unit of the cut dead at that point) both are 0: the prefix is locally constant there.

Under ``reparam.reparametrize`` the Jacobian at a hidden cut becomes D J_c (D positive diagonal), at the
code M J_c, and stays J_c at the input and the output. Hence:

- invariant: the exact rank at every cut, so the rank profile and ``reduction_shares``; the numerical rank
  too as long as no singular value lies within a factor cond(D) (up to 16 for scales in [1/4, 4]) or cond(M)
  of the threshold; every quantity at the input and output cuts.
- not invariant: the participation ratio, the singular values and anything built from their sizes, at every
  hidden cut and at the code.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

# 256 points x in_dim 64 x all cuts of a 64-wide net of 8 layers: ~60 MB of float64 Jacobians
CHUNK = 256
# a chunk's Jacobians of its widest cut, where a layer is not dense (a conv net's feature maps can be 10^4 wide)
CHUNK_BYTES = 2**28
# activations whose Jacobian is the diagonal of their slope (``_slope``)
ELEMENTWISE = (nn.Identity, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Softplus)
MIN_REL_THRESHOLD = 1e-6


def _float64_copy(model: nn.Module) -> nn.Module:
    model64 = copy.deepcopy(model).double().eval()
    model64.requires_grad_(False)
    return model64


def _slope(activation: torch.nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(z), f'(z)) of an elementwise activation: the gradient of sum f(z) is the diagonal of its Jacobian."""
    with torch.enable_grad():
        z = z.detach().requires_grad_()
        h = activation(z)
        (slope,) = torch.autograd.grad(h.sum(), z)
    return h.detach(), slope


RESHAPES = (nn.Flatten, nn.Unflatten)
CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def _split_layer(layer: nn.Sequential) -> tuple[nn.Module, nn.Module, list[nn.Module]] | None:
    """(its Linear or convolution, its elementwise activation, the reshapes after them) when a layer is that:
    its Jacobian is then diag(f') times its weight's linear map, by the chain rule; None for any other layer."""
    modules = list(layer)
    head = modules[0]
    activation = modules[1] if len(modules) > 1 and isinstance(modules[1], ELEMENTWISE) else nn.Identity()
    tail = modules[2:] if len(modules) > 1 and isinstance(modules[1], ELEMENTWISE) else modules[1:]
    if not isinstance(head, (nn.Linear, *CONVOLUTIONS)) or not all(isinstance(m, RESHAPES) for m in tail):
        return None
    return head, activation, tail


def _dense(layer: nn.Sequential, h: torch.Tensor) -> tuple[nn.Linear, nn.Module] | None:
    """(Linear, elementwise activation) when the layer is one and acts on rows: its Jacobian is diag(f') W. A
    reshape after them (a dense layer that feeds a convolution) leaves the flattened Jacobian as it is."""
    parts = _split_layer(layer)
    if h.dim() != 2 or parts is None or not isinstance(parts[0], nn.Linear):
        return None
    return parts[0], parts[1]


def _convolved(model64, i: int, h: torch.Tensor, jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(h at cut i + 1, J_{i+1}) for a convolution with an elementwise activation (``_split_layer``; None for any
    other layer): the columns of J_i go through the convolution's linear part (its weight, no bias) as one batch
    of maps, then each is scaled by the slope f'(z) at the point, the chain rule of the dense layers; ~100x faster
    than ``_pushed`` on 32 x 32 images, which vmaps torch.func.jvp over the columns."""
    parts = _split_layer(model64.layer_module(i))
    if parts is None or not isinstance(parts[0], CONVOLUTIONS):
        return None
    conv, activation, tail = parts
    if i == 0 and model64.input_shape is not None:
        h = h.reshape(h.shape[0], *model64.input_shape)
    if h.dim() != 4:
        return None
    n, r = jac.shape[0], jac.shape[2]
    columns = jac.transpose(1, 2).reshape(n * r, *h.shape[1:])
    linear = F.conv2d if isinstance(conv, nn.Conv2d) else F.conv_transpose2d
    pushed = linear(columns, conv.weight, None, conv.stride, conv.padding).reshape(n, r, -1)
    z = conv(h)
    out, slope = _slope(activation, z)
    for module in tail:
        out = module(out)
    return out, (slope.reshape(n, 1, -1) * pushed).transpose(1, 2)


def _pushed(model64, i: int, h: torch.Tensor, jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h at cut i + 1, J_{i+1} = (d layer_i / dh) J_i) for any layer: every column of J_i, in the cut's own shape,
    pushed through the layer by a forward-mode product (``torch.func.jvp``, vmapped over the columns). A layer acts
    on each point alone (the model is in eval mode), so the batch of points goes through as one batch."""
    n, r = jac.shape[0], jac.shape[2]
    tangents = jac.permute(2, 0, 1).reshape(r, *h.shape)

    def layer(v: torch.Tensor) -> torch.Tensor:
        return model64.run_layer(i, v)

    with warnings.catch_warnings():  # torch.func's first call imports code that warns of torch.jit's deprecation
        warnings.simplefilter("ignore", FutureWarning)
        pushed = torch.func.vmap(lambda t: torch.func.jvp(layer, (h,), (t,))[1])(tangents)
    return layer(h), pushed.reshape(r, n, -1).permute(1, 2, 0)


def _prefix_jacobians(model64, x: torch.Tensor, in_code_basis: bool) -> tuple[torch.Tensor, ...]:
    """dh_c/dx of every cut at every point of ``x``: (n, width_c, in_dim) per cut, cuts and input flattened.

    A layer that is a Linear with an elementwise activation (every dense layer of ``GridAutoencoder``) by the chain
    rule, its slope from one reverse pass, the VAE's bottleneck layer cut to its mean rows (which commutes with its
    identity activation); a convolution with an elementwise activation likewise (``_convolved``); any other layer
    by ``_pushed``.

    ``in_code_basis``: each Jacobian J_c is given as J_c Q, Q an orthonormal basis of a space that holds its rows,
    so that J_c Q Q^T = J_c and J_c Q has J_c's singular values at a smaller width. Every J_c is
    (dh_c/dh_b) J_b for any earlier cut b, so its rows lie in J_b's row space: first that of a dense first layer's
    weight W (J_1 = diag(f') W at every point: one Q for all points, from a QR of W^T), from the code on that of
    the code's Jacobian (a QR per point). On 32 x 32 images the full (1024 x 1024) Jacobians of the output and
    their Gram matrices were most of a truncate job (29 s of a VAE seed's 40; 2.9 s in these bases).
    """
    n, d = x.shape[0], x[0].numel()
    h, jac = x, torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
    out = [jac]
    for i in range(model64.n_layers):
        dense = _dense(model64.layer_module(i), h)
        if dense is None:
            h, jac = _convolved(model64, i, h, jac) or _pushed(model64, i, h, jac)
        else:
            linear, activation = dense
            z, weight = linear(h), linear.weight
            if model64.kind == "vae" and i == model64.bottleneck_layer:
                z, weight = z[:, : model64.latent_dim], weight[: model64.latent_dim]
            if i > 0:
                jac = torch.matmul(weight, jac)
            elif in_code_basis and weight.shape[0] < d:
                jac = torch.linalg.qr(weight.T).R.T.expand(n, -1, -1)  # W Q = R^T, with W^T = Q R
            else:
                jac = weight.expand(n, -1, -1)  # J_0 is the identity
            h, slope = _slope(activation, z)
            jac = slope[:, :, None] * jac
            for module in _split_layer(model64.layer_module(i))[2]:
                h = module(h)
        if in_code_basis and i == model64.bottleneck_layer and jac.shape[1] < jac.shape[2]:
            jac = jac @ torch.linalg.qr(jac.transpose(1, 2)).Q
        out.append(jac)
    return tuple(out)


def chunk_size_for(model, x: torch.Tensor) -> int:
    """Points per chunk: ``CHUNK`` for a net of dense layers; for any other, fewer where a cut is so wide that a
    chunk's Jacobians (width x in_dim x points, float64) would pass ``CHUNK_BYTES`` (a conv net's feature maps)."""
    with torch.no_grad():
        cuts = model.all_cuts(x[:1])
    if all(_dense(model.layer_module(i), h) is not None for i, h in enumerate(cuts[:-1])):
        return CHUNK
    widest = max(h[0].numel() for h in cuts)
    return int(max(1, min(CHUNK, CHUNK_BYTES // (8 * widest * x[0].numel()))))


def _chunks(model64, x: torch.Tensor, chunk_size: int, in_code_basis: bool = False):
    """Jacobians of every cut, one chunk of points at a time: tuples of (chunk, width_c, in_dim) tensors (from
    the code on (chunk, width_c, z) with ``in_code_basis``: ``_prefix_jacobians``)."""
    param = next(model64.parameters())
    x = x.detach().to(device=param.device, dtype=torch.float64)
    for begin in range(0, x.shape[0], chunk_size):
        yield _prefix_jacobians(model64, x[begin : begin + chunk_size], in_code_basis)


def cut_jacobians(model: nn.Module, x: torch.Tensor, chunk_size: int | None = None) -> list[torch.Tensor]:
    """dh_c/dx at every point of ``x`` for every cut c = 0..L: (n_points, width_c, in_dim) float64 tensors, cuts
    and input flattened. ``model``: any model of the cut interface (``nets.chains``); ``chunk_size`` points at a
    time (default ``chunk_size_for``)."""
    model64 = _float64_copy(model)
    parts = list(_chunks(model64, x, chunk_size or chunk_size_for(model64, x.double())))
    return [torch.cat(per_cut) for per_cut in zip(*parts, strict=True)]


def _squared_singular_values(jac: torch.Tensor) -> torch.Tensor:
    """s^2 of each (width, in_dim) Jacobian in a (n, width, in_dim) batch, ascending: (n, min(width, in_dim))."""
    gram = jac @ jac.transpose(1, 2) if jac.shape[1] <= jac.shape[2] else jac.transpose(1, 2) @ jac
    # rounding can leave a zero eigenvalue slightly negative
    return torch.linalg.eigvalsh(gram).clamp_min(0.0)


def _rank_and_pr(s2: torch.Tensor, rel_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point (rows of ``s2``, squared singular values): the numerical rank and the participation ratio."""
    top = s2.max(dim=1, keepdim=True).values
    rank = (s2 > rel_threshold**2 * top).sum(dim=1).double()
    s4 = (s2**2).sum(dim=1)
    pr = torch.where(s4 > 0, s2.sum(dim=1) ** 2 / s4.clamp_min(torch.finfo(s2.dtype).tiny), 0.0)
    return rank, pr


def jacobian_rank_profile(
    model: nn.Module, x: torch.Tensor, rel_threshold: float = 1e-3, chunk_size: int | None = None
) -> list[dict]:
    """Per cut c = 0..L a dict: cut, layer, side, width, n_points, rank_mean, rank_std, pr_mean, pr_std,
    n_zero (points where the Jacobian is zero).

    rank: singular values of dh_c/dx above ``rel_threshold`` times that point's largest one; pr: the
    participation ratio of the squared singular values. Means and (population) standard deviations are over
    the points of ``x``. Memory is bounded by ``chunk_size`` points' Jacobians at a time.
    """
    if not MIN_REL_THRESHOLD <= rel_threshold < 1:
        raise ValueError(f"rel_threshold must be in [{MIN_REL_THRESHOLD:g}, 1), not {rel_threshold}")
    if x.shape[0] == 0:
        raise ValueError("x holds no points")
    model64 = _float64_copy(model)
    chunk_size = chunk_size or chunk_size_for(model64, x.double())
    n_cuts = model64.n_layers + 1
    ranks, prs = [[] for _ in range(n_cuts)], [[] for _ in range(n_cuts)]
    widths = [0] * n_cuts
    for jacobians in _chunks(model64, x, chunk_size, in_code_basis=True):
        for c, jac in enumerate(jacobians):
            widths[c] = jac.shape[1]
            # the input's Jacobian is the identity: every s^2 is 1, no eigenvalues to compute (the largest Gram)
            s2 = torch.ones(jac.shape[:2], dtype=jac.dtype) if c == 0 else _squared_singular_values(jac)
            rank, pr = _rank_and_pr(s2, rel_threshold)
            ranks[c].append(rank)
            prs[c].append(pr)
    names = model64.cut_names()
    profile = []
    for c in range(n_cuts):
        rank, pr = torch.cat(ranks[c]), torch.cat(prs[c])
        profile.append(
            {
                "cut": c,
                "layer": names[c],
                "side": model64.cut_side(c),
                "width": widths[c],
                "n_points": int(rank.numel()),
                "rank_mean": float(rank.mean()),
                "rank_std": float(rank.std(correction=0)),
                "pr_mean": float(pr.mean()),
                "pr_std": float(pr.std(correction=0)),
                "n_zero": int((rank == 0).sum()),
            }
        )
    return profile


def reduction_shares(profile: list[dict]) -> list[dict]:
    """The share of the input-to-code drop in mean rank done by each layer up to the bottleneck.

    One dict per cut c = 1..bottleneck_cut (the layer that produces it): cut, layer, rank_drop (mean rank at
    c - 1 minus at c), share (rank_drop / total drop from the input dimension to the code's mean rank) and
    reason ("" unless share is NaN). Shares of one profile sum to 1. Mean ranks, not per-point shares: a point
    whose code keeps full rank has no drop to share out. When the total drop is not positive (the code keeps,
    on average, the full input dimension: a bottleneck at least as wide as the input and no narrower layer
    before it) there is no reduction to attribute and every share is NaN with that reason. The numerical rank
    can, rarely, rise by a unit along a layer (a relative threshold, not an exact rank): that layer's drop and
    share are then negative rather than clipped, so the shares still sum to 1.
    """
    code = next(p["cut"] for p in profile if p["side"] == "bottleneck")
    ranks = {p["cut"]: p["rank_mean"] for p in profile}
    total = ranks[0] - ranks[code]
    reason = "" if total > 0 else f"no reduction: the code's mean rank {ranks[code]:g} equals the input dimension"
    out = []
    for p in profile[1 : code + 1]:
        drop = ranks[p["cut"] - 1] - ranks[p["cut"]]
        out.append(
            {
                "cut": p["cut"],
                "layer": p["layer"],
                "rank_drop": drop,
                "share": drop / total if total > 0 else math.nan,
                "reason": reason,
            }
        )
    return out
