"""Function-preserving reparametrisation of a trained ``GridAutoencoder``: same function, other weights.

A conclusion drawn from the weights or activations of one network should not change when the network is
replaced by another that computes the same function. ``reparametrize`` builds such a twin from two symmetries:

- Positive unit rescaling (Dinh et al. 2017, "Sharp minima can generalize for deep nets"; Neyshabur et al.
  2015, "Path-SGD"): relu(a z) = a relu(z) for a > 0, so a hidden unit's incoming row and bias can be
  multiplied by a and its outgoing column divided by a; a feature map's unit is its channel (its kernel and
  bias times a, the next layer's weights on it divided by a), since a convolution shares its weights across
  positions. The identity commutes with any a; tanh and GELU do
  not, so their hidden units are left unscaled, with the reason in ``info["skipped"]``.
- An invertible map of the code: the bottleneck layer has no activation, so its output can be multiplied by
  any invertible M and the next layer multiplied by M^{-1} on the right, whatever the activation elsewhere.
  For the VAE only a signed permutation keeps the model: a diagonal Gaussian posterior against an N(0, I) prior
  keeps its ELBO under no other map (Cov(M z) = M diag(sigma^2) M^T is diagonal only then), so M is one, and the
  log-variance head is permuted with the means. The twin is then the same VAE, posterior included, which the
  VAE's code reading needs (``probes.posterior_scale``: the code in units of its posterior std).

The twin is a deep copy (kind, widths, cut numbering, training flag, requires_grad all kept), so it goes
through ``truncation.cut_activations`` and the probes unchanged. A pipeline payload's ``init_state`` belongs
to the original weights: reinitialising one layer of the twin from it mixes the two parametrisations.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from aedissect.nets.models import GridAutoencoder

# activations a positive diagonal scaling passes through: f(a z) = a f(z) for a > 0
SCALABLE = (nn.ReLU, nn.Identity)
GAP_POINTS = 256


def function_gap(model_a: GridAutoencoder, model_b: GridAutoencoder, x: torch.Tensor) -> float:
    """max |model_a(x) - model_b(x)| over the batch and outputs, for the deterministic reconstruction.

    ``forward`` is deterministic for both kinds (the VAE decodes the posterior mean); eval mode is set for the
    comparison in case a caller's subclass adds train-time noise, and each model's mode is restored after.
    """
    outs = []
    for model in (model_a, model_b):
        was_training = model.training
        model.eval()
        param = next(model.parameters())
        with torch.no_grad():
            outs.append(model(x.to(device=param.device, dtype=param.dtype)).double().cpu())
        model.train(was_training)
    return float((outs[0] - outs[1]).abs().max())


def _orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal matrix: QR of a Gaussian with R's diagonal made positive (Mezzadri 2007)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _signed_permutation(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random signed permutation matrix P (P_{i, order_i} = +-1) and its singular values (all 1)."""
    order = torch.randperm(n, generator=gen)
    signs = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0).double()
    p = torch.zeros(n, n, dtype=torch.float64)
    p[torch.arange(n), order] = signs
    return p, torch.ones(n, dtype=torch.float64)


def _log_uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def _per_weight_index(a: torch.Tensor, module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """A cut's unit factors as the module's weight indexes them on the cut's side: a dense layer on a flattened map
    (C, H, W) sees each channel's factor at its H W positions; a convolution, and a dense layer on a dense cut, one
    per unit."""
    if isinstance(module, nn.Linear) and len(shape) == 3:
        return a.repeat_interleave(shape[1] * shape[2])
    return a


def _along(weight: torch.Tensor, axis: int, factors: torch.Tensor) -> torch.Tensor:
    """``factors`` shaped to broadcast along one axis of ``weight``."""
    view = [1] * weight.dim()
    view[axis] = -1
    return factors.reshape(view)


def reparametrize(
    model: GridAutoencoder,
    seed: int,
    scale_range: tuple[float, float] = (0.25, 4.0),
    code_condition: float = 10.0,
    x: torch.Tensor | None = None,
) -> tuple[GridAutoencoder, dict]:
    """A deep copy of ``model`` computing the same function with rescaled hidden units and a mixed code.

    Each hidden ReLU or identity unit (every cut strictly between input and output except the bottleneck) is
    scaled by a factor drawn log-uniformly from ``scale_range``; an AE's code is multiplied by M = U diag(s) V^T
    with U, V Haar-orthogonal and s log-spaced from 1 down to 1 / ``code_condition``, so cond(M) is exactly
    ``code_condition`` (1 for a one-dimensional code); a VAE's by a random signed permutation (module docstring).
    Everything is drawn from a generator seeded with ``seed`` (the global RNG is untouched) and composed in
    float64, then cast back to the model's dtype.

    ``info``: ``unit_scales`` (cut -> factors of its units), ``skipped`` (cut -> why it was not scaled),
    ``code_matrix`` M, ``code_singular_values`` s, ``condition_number`` (of M, computed), ``function_gap``
    (``function_gap`` on ``x``, or on standard-normal points when ``x`` is None, as ``function_gap_points``
    says), and ``preserved``.
    """
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, not {scale_range}")
    if code_condition < 1:
        raise ValueError(f"code_condition is a condition number, at least 1, not {code_condition}")
    gen = torch.Generator().manual_seed(seed)
    new = copy.deepcopy(model)
    linears = [layer[0] for layer in new.layers]
    weights = [lin.weight.detach().to(device="cpu", dtype=torch.float64).clone() for lin in linears]
    biases = [lin.bias.detach().to(device="cpu", dtype=torch.float64).clone() for lin in linears]

    scales, skipped = {}, {}
    for cut in range(1, new.n_layers):
        if cut == new.bottleneck_cut:
            continue
        act = new.layers[cut - 1][1]
        if not isinstance(act, SCALABLE):
            skipped[cut] = f"{type(act).__name__} does not commute with a positive rescaling of its unit"
            continue
        shape = new.cut_shapes[cut]  # a map's unit is its channel: one factor for all its positions
        a = _log_uniform(shape[0], low, high, gen)
        before, after = linears[cut - 1], linears[cut]
        per_row = _per_weight_index(a, before, shape)
        weights[cut - 1] *= _along(weights[cut - 1], 1 if isinstance(before, nn.ConvTranspose2d) else 0, per_row)
        biases[cut - 1] *= per_row
        weights[cut] /= _along(
            weights[cut], 0 if isinstance(after, nn.ConvTranspose2d) else 1, _per_weight_index(a, after, shape)
        )
        scales[cut] = a.numpy()

    z, b = new.latent_dim, new.bottleneck_layer
    if new.kind == "vae":
        m, s = _signed_permutation(z, gen)
        m_inv = m.T
        order = m.abs().argmax(dim=1)
        weights[b][z:], biases[b][z:] = weights[b][z:][order], biases[b][z:][order]  # log variances go along
    else:
        u, v = _orthogonal(z, gen), _orthogonal(z, gen)
        s = torch.exp(torch.linspace(0.0, -math.log(code_condition), z, dtype=torch.float64))
        m = u @ torch.diag(s) @ v.T
        m_inv = v @ torch.diag(1.0 / s) @ u.T
    # rows [:z] are the code (the VAE's mean head)
    weights[b][:z] = m @ weights[b][:z]
    biases[b][:z] = m @ biases[b][:z]
    weights[b + 1] = weights[b + 1] @ m_inv

    with torch.no_grad():
        for lin, w, bias in zip(linears, weights, biases, strict=True):
            lin.weight.copy_(w.to(lin.weight.dtype))
            lin.bias.copy_(bias.to(lin.bias.dtype))

    if x is None:
        x = torch.randn(GAP_POINTS, math.prod(new.cut_shapes[0]), generator=gen, dtype=torch.float64)
        gap_points = f"{GAP_POINTS} standard-normal points drawn from the seed"
    else:
        gap_points = f"the {x.shape[0]} given points"
    m_np = m.numpy()
    info = {
        "seed": seed,
        "unit_scales": scales,
        "skipped": skipped,
        "code_matrix": m_np,
        "code_singular_values": s.numpy(),
        "condition_number": float(np.linalg.cond(m_np)),
        "function_gap": function_gap(model, new, x),
        "function_gap_points": gap_points,
        "preserved": (
            "the deterministic reconstruction x -> decoder(code(x)) (the output cut); each hidden cut c becomes "
            "diag(unit_scales[c]) h_c (unchanged where skipped) and the code cut M h_code; a VAE's posterior and "
            "ELBO (M a signed permutation, the log variances permuted alike)"
        ),
    }
    return new, info
