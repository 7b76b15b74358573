"""Layer truncation: cut a trained network at every layer and measure what each cut holds.

For one grid cell (all seeds) the activations of every cut 0..L are computed once per model, in one
pass (``GridAutoencoder.all_cuts``; the VAE's bottleneck cut is mu, read in units of its posterior std:
``posterior_scale``), on a fixed probe split of the training data (to fit probes) and on the test split (to
score them; also the geometry and CKA data).
Per run this gives a tidy layer profile (run_id, state, cut, layer, side, relative_depth, metric, value); per
cell the CKA matrices between all cuts of a model and between the cuts of different seeds.

Beside the probes of the trained model, three checks of what is not true by construction:

- the Jacobian dh_c/dx of every cut (``nets.jacobian``) on at most ``JACOBIAN_POINTS`` of the scored test
  points: its mean numerical rank and participation ratio per cut, and per encoder layer its share of the
  input-to-code rank reduction;
- the same profile of the model's initial weights (``state`` = ``init``; ``init_state`` of model.pt), without
  the nonlinear probes and the cross-seed CKA: what the architecture alone, untrained, already does;
- the same profile of a function-preserving twin of every ReLU or linear model (``nets.reparam``), compared
  metric by metric with the trained one (``reparam_cell``): which metrics a change of parametrisation alone
  moves.

The nonlinear probes (a fresh MLP decoder h_c -> x, and h_c -> factors) of all seeds and cuts of a
cell are trained together as one batched ensemble: inputs zero-padded to the widest cut, one weight
tensor per layer with a leading group axis, so a cell costs one short training instead of dozens.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from aedissect import datasets, inference, io, metrics
from aedissect.analysis.truncation_tables import PROFILE_COLUMNS, REPARAM_COLUMNS
from aedissect.config import Run, run_cell
from aedissect.nets import jacobian, reparam
from aedissect.nets.data import load
from aedissect.nets.models import GridAutoencoder, build_model, load_model
from aedissect.nets.training import setup_torch

log = logging.getLogger("aedissect.nets.probes")

CKA_COLUMNS = ["seed_a", "seed_b", "cut_a", "cut_b", "layer_a", "layer_b", "cka", "cka_debiased"]
# the Jacobian metrics use at most this many of the scored test points (a seeded subset): its cost grows with
# points x input dimension x the widths (docs/methods.md): on digits 128 points give the mean rank and PR of all
# 360 test points within 0.1 (seeds differ by up to 7) at half the time of 256
JACOBIAN_POINTS = 128
# a conv net's Jacobians are measured on fewer of them: on 32 x 32 images a point's (8192 x 1024) Jacobian at the
# first conv cut, its Gram matrix and eigenvalues cost 1-2 s (2 threads), ~200 s a model at 128 points
JACOBIAN_CONV_POINTS = 16
JACOBIAN_REL_THRESHOLD = 1e-3  # singular values below this fraction of the point's largest do not count


def load_with_init(model: GridAutoencoder | str | Path) -> tuple[GridAutoencoder, GridAutoencoder | None]:
    """The trained model and the same network with its initial weights (None for a model given as itself, or a
    model.pt without ``init_state``), both on the CPU."""
    if isinstance(model, nn.Module):
        return model, None
    model, payload = load_model(str(model))
    if "init_state" not in payload:
        return model, None
    init = build_model(payload["config"], payload["in_dim"])
    init.load_state_dict(payload["init_state"])
    return model, init


def cut_activations(
    model, x, max_width: int | None = None, seed: int = 0, code_scale: torch.Tensor | None = None
) -> list[np.ndarray]:
    """Activations at every cut 0..L as float64 rows (one per point, a feature map flattened), from one forward
    pass; a cut wider than ``max_width`` reduced by ``narrowed``; a VAE's code divided by ``code_scale``
    (``posterior_scale``)."""
    model.eval()
    with torch.no_grad():
        cuts = model.all_cuts(x)
        if code_scale is not None:
            cuts[model.bottleneck_cut] = cuts[model.bottleneck_cut] / code_scale
        return [narrowed(h.detach().cpu(), max_width, seed) for h in cuts]


def posterior_scale(model, x: torch.Tensor) -> torch.Tensor | None:
    """A VAE's posterior std per latent, root mean square over ``x`` (None for an AE): the unit its code is read
    in. A latent's mean carries information only as far as it stands out of its posterior's noise: a collapsed
    latent (posterior = prior, std 1) whose mean still wiggles with x transmits nothing the decoder can read, while
    an active one (std << 1) is resolved to a fraction of its spread. In these units the code's geometry is that
    of what it transmits, invariant to rescaling a latent, and a decoder that ignores collapsed latents does not
    look like compression after the bottleneck (the linear VAE's phantom with wiggling collapsed latents,
    ``phantoms.COLLAPSED_SNR``). For a linear VAE at pPCA this is, up to one factor, how the decoder's first layer
    weighs the code (|w_j| ~ 1 / std_j for latents well above the noise)."""
    if getattr(model, "kind", "ae") != "vae":
        return None
    model.eval()
    with torch.no_grad():
        _, logvar = model.posterior(x)
    return logvar.exp().mean(0).sqrt()


def narrowed(h: torch.Tensor, max_width: int | None, seed: int) -> np.ndarray:
    """A cut's activations as float64 rows, at most ``max_width`` wide: a feature map (n, C, H, W) wider than that
    average-pooled per channel to the finest g x g grid with C g^2 <= max_width (channels kept, locality kept);
    anything still wider (more channels than the cap, or a dense cut) projected to ``max_width`` columns by a
    Gaussian map scaled by 1/sqrt(max_width), which keeps distances and inner products in expectation
    (Johnson-Lindenstrauss); the map is seeded by ``seed`` and the width alone, so every model of a cell sees the
    same one at the same cut and cross-seed CKA compares like with like."""
    if max_width is not None and h[0].numel() > max_width and h.dim() == 4:
        grid = math.isqrt(max_width // h.shape[1])
        if grid >= 1:
            h = torch.nn.functional.adaptive_avg_pool2d(h.double(), grid)
    rows = h.reshape(h.shape[0], -1).numpy().astype(np.float64)
    if max_width is None or rows.shape[1] <= max_width:
        return rows
    rng = np.random.default_rng([seed, rows.shape[1]])
    return rows @ (rng.standard_normal((rows.shape[1], max_width)) / math.sqrt(max_width))


def cut_frame(model) -> pd.DataFrame:
    """cut, layer name, side (encoder / bottleneck / decoder) and relative depth cut / L of every cut."""
    L = model.n_layers
    return pd.DataFrame(
        {
            "cut": range(L + 1),
            "layer": model.cut_names(),
            "side": [model.cut_side(c) for c in range(L + 1)],
            "relative_depth": [c / L for c in range(L + 1)],
        }
    )


def _cut_rows(model, x: torch.Tensor, options: dict, code_scale: torch.Tensor | None) -> list[np.ndarray]:
    return cut_activations(model, x, options.get("max_cut_width"), options["seed"], code_scale)


def split_indices(n_train: int, n_test: int, options: dict) -> tuple[np.ndarray, np.ndarray]:
    """The fixed probe split of the training data and the (capped) test subsample, both seeded."""
    rng = np.random.default_rng(options["seed"])
    probe = np.sort(rng.permutation(n_train)[: min(options["probe_size"], n_train)])
    test = np.sort(rng.permutation(n_test)[: min(options["max_points"], n_test)])
    return probe, test


def geometry(h: np.ndarray, options: dict, distances: np.ndarray | None = None) -> dict:
    """Width, participation ratio, PCA dimensions and TwoNN dimension with its spread over subsamples.

    ``distances``: the points' two nearest distances (``metrics.two_nearest_distances(h)``) when already known.
    """
    r = metrics.two_nearest_distances(h) if distances is None else distances
    out = {
        "width": float(h.shape[1]),
        "participation_ratio": metrics.participation_ratio(h),
        "pca_dim_90": float(metrics.pca_dimension(h, 0.9)),
        "pca_dim_99": float(metrics.pca_dimension(h, 0.99)),
        "twonn": metrics.twonn_from_distances(r),
    }
    if options["twonn_subsamples"] > 0:
        sub = metrics.twonn_subsamples(h, options["twonn_subsamples"], options["twonn_fraction"], options["seed"])
        out["twonn_sub_mean"] = float(np.nanmean(sub)) if np.isfinite(sub).any() else math.nan
        out["twonn_sub_std"] = float(np.nanstd(sub, ddof=1)) if np.isfinite(sub).sum() > 1 else math.nan
    return out


def linear_probes(fit: np.ndarray, test: np.ndarray, data: dict, options: dict) -> dict:
    """Ridge reconstruction of x, the label probe and the linear factor probe from one cut."""
    lambdas = options["ridge_lambdas"]
    rec = metrics.ridge_reconstruction(fit, data["x_fit"], test, data["x_test"], lambdas, seed=options["seed"])
    out = {"linear_mse": rec["mse"], "linear_r2": rec["r2"]}
    if "y_fit" in data:
        out["label_accuracy"] = metrics.linear_probe_accuracy(
            fit, data["y_fit"], test, data["y_test"], C=options["probe_C"], max_iter=options["probe_max_iter"]
        )
    if "f_fit" in data:
        fac = metrics.ridge_reconstruction(fit, data["f_fit"], test, data["f_test"], lambdas, seed=options["seed"])
        out["factor_r2_linear"] = factor_mean(fac["r2_per_target"], data["f_weights"])
        out |= {f"factor{k}_r2_linear": float(v) for k, v in enumerate(fac["r2_per_target"])}
    return out


def jacobian_metrics(model: GridAutoencoder, x: torch.Tensor) -> dict[int, dict]:
    """Per cut: the mean numerical rank and participation ratio of dh_c/dx over the points of ``x``
    (``jacobian.jacobian_rank_profile``) and, on the cuts 1..bottleneck, the share of the input-to-code drop
    in mean rank done by the layer producing the cut (``jacobian.reduction_shares``; NaN with no drop). A net
    with convolutions on the first ``JACOBIAN_CONV_POINTS`` of them."""
    if any(isinstance(module, nn.modules.conv._ConvNd) for module in model.modules()):
        x = x[:JACOBIAN_CONV_POINTS]
    profile = jacobian.jacobian_rank_profile(model, x, rel_threshold=JACOBIAN_REL_THRESHOLD)
    out = {p["cut"]: {"jacobian_rank": p["rank_mean"], "jacobian_pr": p["pr_mean"]} for p in profile}
    for share in jacobian.reduction_shares(profile):
        out[share["cut"]]["jacobian_reduction_share"] = share["share"]
    return out


def twonn_mle(distances: np.ndarray) -> dict:
    """The maximum-likelihood TwoNN dimension and its standard error (``inference.twonn_mle``) from the points'
    two nearest distances (``metrics.two_nearest_distances``: those of the regression TwoNN, computed once)."""
    keep = distances[:, 0] > 0  # duplicates dropped, as inference.twonn_mle does
    est = inference.twonn_mle_from_ratios(distances[keep, 1] / distances[keep, 0], level=None)
    return {"twonn_mle": est["dimension"], "twonn_mle_se": est["se"]}


def _standardize(fit: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre on the fit data and divide by one scale (see metrics._standardizer: no per-unit blow-up)."""
    scale = metrics._standardizer(fit)
    return scale(fit), scale(test)


class Adam:
    """Adam with torch.optim.Adam's defaults (betas 0.9, 0.999, eps 1e-8), its CPU update written out op for op
    (the same numbers): torch.optim imports torch._dynamo on first use, 2-3 s of every truncate job, as much as
    the nonlinear probes' training itself."""

    BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

    def __init__(self, params: list[torch.Tensor], lr: float):
        self.params, self.lr, self.steps = params, lr, 0
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """One update of the parameters from their gradients."""
        self.steps += 1
        step_size = self.lr / (1 - self.BETA1**self.steps)
        bias_correction2_sqrt = (1 - self.BETA2**self.steps) ** 0.5
        for p, grad, (mean, square) in zip(self.params, grads, self.moments, strict=True):
            mean.lerp_(grad, 1 - self.BETA1)
            square.mul_(self.BETA2).addcmul_(grad, grad, value=1 - self.BETA2)
            p.addcdiv_(mean, (square.sqrt() / bias_correction2_sqrt).add_(self.EPS), value=-step_size)


def mlp_forward(params: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """The batched MLP (params: weight (G, in, out) and bias (G, 1, out) per layer) on x (G, n, in): x and every
    layer's output, ReLU after each but the last."""
    outs = [x]
    for i in range(0, len(params), 2):
        z = torch.baddbmm(params[i + 1], outs[-1], params[i])
        outs.append(torch.relu(z) if i + 2 < len(params) else z)
    return outs


def mlp_gradients(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradients of sum over members of mean((out - y)^2) with respect to ``params``, back-propagated by hand:
    autograd's backward formulas op for op (the same numbers) without building its graph, a quarter less time."""
    outs = mlp_forward(params, x)
    # autograd: the mean's backward 1 / N, rounded once, times the square's 2 (out - y)
    grad = (outs[-1] - y).mul_(2).mul_(torch.ones((), device=y.device) / outs[-1][0].numel())
    grads = [None] * len(params)
    for i in reversed(range(0, len(params), 2)):
        grads[i], grads[i + 1] = torch.bmm(outs[i // 2].transpose(1, 2), grad), grad.sum(dim=1, keepdim=True)
        if i > 0:  # through the ReLU that made this layer's input: autograd's kernel, 10x faster than masked_fill_
            grad = torch.ops.aten.threshold_backward(torch.bmm(grad, params[i].transpose(1, 2)), outs[i // 2], 0)
    return grads


def mlp_probe(
    inputs_fit: list[np.ndarray],
    inputs_test: list[np.ndarray],
    y_fit: np.ndarray,
    y_test: np.ndarray,
    options: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """Train one fresh MLP per input (a batched ensemble) from centred, scaled h to y; test MSE and R^2 per target.

    Each member has hidden widths ``nonlinear_hidden`` (activation ReLU) and is trained with Adam for
    ``nonlinear_epochs`` epochs of minibatches (shared, seeded batch order) on the probe split. Inputs are
    zero-padded to the widest one: a zero input gives its weights zero gradient, so the members are the
    same as if trained one by one, each from its own seeded init. Returns (mse per member (G,), R^2 per member and
    target (G, n_targets)).
    """
    G = len(inputs_fit)
    widths = [h.shape[1] for h in inputs_fit]
    d_max = max(widths)
    n_fit, n_test = inputs_fit[0].shape[0], inputs_test[0].shape[0]
    xf = np.zeros((G, n_fit, d_max), dtype=np.float32)
    xt = np.zeros((G, n_test, d_max), dtype=np.float32)
    for g, (hf, ht) in enumerate(zip(inputs_fit, inputs_test, strict=True)):
        sf, st = _standardize(hf, ht)
        xf[g, :, : widths[g]] = sf
        xt[g, :, : widths[g]] = st
    device = torch.device(options.get("device", "cpu"))
    y_mean = y_fit.mean(axis=0)
    yf = torch.from_numpy((y_fit - y_mean).astype(np.float32)).to(device)
    xf_t, xt_t = torch.from_numpy(xf).to(device), torch.from_numpy(xt).to(device)

    # each member's init from its own generator, at its own width, and the batch order from one more: a member's
    # probe is the same whichever and however many members share the batch (a model profiled alone, by
    # ``aedissect.profile``, gets its truncate job's numbers)
    sizes = [d_max, *options["nonlinear_hidden"], y_fit.shape[1]]
    weights = [[] for _ in sizes[1:]]
    biases = [[] for _ in sizes[1:]]
    for width in widths:
        gen = torch.Generator().manual_seed(options["seed"])
        for i, (a, b) in enumerate(zip([width, *sizes[1:-1]], sizes[1:], strict=True)):
            # PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); zero rows pad the inputs' width
            bound = 1.0 / math.sqrt(a)
            w = (torch.rand(a, b, generator=gen) * 2 - 1) * bound
            weights[i].append(torch.cat([w, torch.zeros(sizes[i] - a, b)]) if i == 0 else w)
            biases[i].append((torch.rand(1, b, generator=gen) * 2 - 1) * bound)
    params = []
    for w, bias in zip(weights, biases, strict=True):
        params += [torch.stack(w).to(device), torch.stack(bias).to(device)]
    gen = torch.Generator().manual_seed(options["seed"])

    optimizer = Adam(params, lr=options["nonlinear_lr"])
    batch = options["nonlinear_batch_size"]
    for _ in range(options["nonlinear_epochs"]):
        perm = torch.randperm(n_fit, generator=gen).to(device)
        for begin in range(0, n_fit, batch):
            idx = perm[begin : begin + batch]
            # the members' summed mean losses (mlp_gradients) keep every member's gradient its own; index_select
            # copies the batch ~15x faster than indexing the middle axis
            optimizer.step(mlp_gradients(params, torch.index_select(xf_t, 1, idx), yf[idx]))
    pred = mlp_forward(params, xt_t)[-1].double().cpu().numpy() + y_mean
    err = (pred - y_test[None]) ** 2
    sst = ((y_test - y_test.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - err.sum(axis=1) / sst, np.nan)
    return err.mean(axis=(1, 2)), r2


def similarity(acts: list[np.ndarray], bottleneck_cut: int) -> dict[int, dict]:
    """Per cut: linear and debiased CKA against the bottleneck, the input and the output."""
    refs = {"bottleneck": bottleneck_cut, "input": 0, "output": len(acts) - 1}
    against = [acts[r] for r in refs.values()]
    plain, debiased = metrics.linear_cka_matrix(acts, against), metrics.linear_cka_matrix(acts, against, True)
    out = {}
    for c in range(len(acts)):
        row = {}
        for k, name in enumerate(refs):
            row[f"cka_{name}"] = float(plain[c, k])
            row[f"cka_{name}_debiased"] = float(debiased[c, k])
        out[c] = row
    return out


def cka_matrices(acts_by_seed: dict[int, list[np.ndarray]], names: list[str]) -> pd.DataFrame:
    """CKA between every pair of cuts of one model (seed_a == seed_b) and of two seeds (seed_a < seed_b)."""
    seeds = sorted(acts_by_seed)
    rows = []
    for i, sa in enumerate(seeds):
        for sb in seeds[i:]:
            A, B = acts_by_seed[sa], acts_by_seed[sb]
            plain, debiased = metrics.linear_cka_matrix(A, B), metrics.linear_cka_matrix(A, B, True)
            for ca in range(len(A)):
                for cb in range(len(B)):
                    rows.append((sa, sb, ca, cb, names[ca], names[cb], plain[ca, cb], debiased[ca, cb]))
    return pd.DataFrame(rows, columns=CKA_COLUMNS)


def _long(run_id: str, cuts: pd.DataFrame, per_state: dict[str, dict[int, dict]]) -> pd.DataFrame:
    rows = []
    for state, per_cut in per_state.items():
        for c in cuts.itertuples(index=False):
            for metric, value in per_cut[c.cut].items():
                rows.append((run_id, state, c.cut, c.layer, c.side, c.relative_depth, metric, float(value)))
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS)


def probe_data(data: dict, options: dict) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probe targets, the probe-split inputs, the scored test inputs, the Jacobian's points: a seeded subset of
    at most ``JACOBIAN_POINTS`` of the scored ones)."""
    probe, test = split_indices(data["x_train"].shape[0], data["x_test"].shape[0], options)
    x_fit, x_test = data["x_train"][probe], data["x_test"][test]
    # the reconstruction targets as rows, whatever the model's input shape (an image: C x H x W)
    targets = {"x_fit": x_fit.flatten(1).double().numpy(), "x_test": x_test.flatten(1).double().numpy()}
    if "y_train" in data:
        targets |= {"y_fit": data["y_train"][probe].numpy(), "y_test": data["y_test"][test].numpy()}
    if "factors_train" in data:
        targets |= {"f_fit": data["factors_train"][probe].double().numpy()}
        targets |= {"f_test": data["factors_test"][test].double().numpy()}
        targets["f_weights"] = factor_weights(options.get("factor_columns"), targets["f_fit"].shape[1])
    n = x_test.shape[0]
    jac = np.sort(np.random.default_rng(options["seed"]).permutation(n)[: min(JACOBIAN_POINTS, n)])
    return targets, x_fit, x_test, x_test[jac]


def factor_weights(columns: list[str] | None, n_columns: int) -> np.ndarray:
    """``datasets.factor_weights`` of the named factor columns; with no names every column is its own factor."""
    if columns is None:
        return np.ones(n_columns)
    if len(columns) != n_columns:
        raise ValueError(f"factor_columns names {len(columns)} columns ({columns}), the data has {n_columns}")
    return np.asarray(datasets.factor_weights(columns))


def factor_mean(r2_per_column, weights: np.ndarray) -> float:
    """The mean R² over factors, every factor once (``factor_weights``), over the columns with a finite R²."""
    r2 = np.asarray(r2_per_column, dtype=float)
    finite = np.isfinite(r2)
    return float(np.sum(r2[finite] * weights[finite]) / np.sum(weights[finite])) if finite.any() else math.nan


def cut_metrics(fit_h, test_h, targets: dict, options: dict, input_cut: dict) -> list[tuple[np.ndarray, dict, dict]]:
    """Per cut: the scored points' two nearest distances, ``geometry`` and ``linear_probes``.

    Cut 0 is the data itself (``GridAutoencoder.all_cuts``), the same for every model and state of a cell:
    ``input_cut``, a dict the caller keeps for one cell's data and options, holds its values from the first call,
    keyed by what the trained and the cheap profiles do differently, so they are computed once instead of for
    every model (30 times in a 10-seed cell, 0.6 s of it).
    """

    def compute(fit: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, dict, dict]:
        distances = metrics.two_nearest_distances(test)
        return distances, geometry(test, options, distances), linear_probes(fit, test, targets, options)

    key = (options["twonn_subsamples"], tuple(targets))
    if key not in input_cut:
        input_cut[key] = compute(fit_h[0], test_h[0])
    return [input_cut[key]] + [compute(fit, test) for fit, test in zip(fit_h[1:], test_h[1:], strict=True)]


def cheap_profile(
    model: GridAutoencoder, x_fit, x_test, x_jac, targets: dict, options: dict, input_cut: dict | None = None
) -> dict[int, dict]:
    """Per cut the metrics of the init and reparametrised profiles: geometry without the TwoNN subsamples, CKA to
    the model's own bottleneck, input and output, the ridge probes (x and factors), the Jacobian metrics and the
    TwoNN MLE. Left out, for their cost: the nonlinear probes, the cross-seed CKA, the TwoNN subsamples and the
    label probe (an iterative logistic fit, most of the rest's time). ``input_cut``: see ``cut_metrics``."""
    scale = posterior_scale(model, x_fit)
    fit_h, test_h = _cut_rows(model, x_fit, options, scale), _cut_rows(model, x_test, options, scale)
    sim = similarity(test_h, model.bottleneck_cut)
    jac = jacobian_metrics(model, x_jac)
    ridge_targets = {k: v for k, v in targets.items() if not k.startswith("y_")}
    options = options | {"twonn_subsamples": 0}
    per_cut = cut_metrics(fit_h, test_h, ridge_targets, options, {} if input_cut is None else input_cut)
    return {
        c: geo | sim[c] | linear | jac[c] | twonn_mle(distances) for c, (distances, geo, linear) in enumerate(per_cut)
    }


def profile_cell(runs: list[Run], model_paths: list, data: dict, options: dict, init: bool = True):
    """Layer profiles of every seed of one grid cell and the cell's CKA matrices.

    ``model_paths``: per run its model.pt, or the trained model itself (``aedissect.profile``); ``runs`` need
    only ``run_id`` and ``seed``. Returns ({run_id: tidy layer profile}, CKA frame with a seed pair per row block).
    A profile's rows are those of the trained model (``state`` ``trained``), then, with ``init`` and a model.pt
    that holds ``init_state``, those of its initial weights (``init``: ``cheap_profile``, no nonlinear probes
    and no cross-seed CKA). The trained rows do not depend on ``init``.
    """

    targets, x_fit, x_test, x_jac = probe_data(data, options)
    per_run, acts_test, acts_fit, cuts, extra, at_init, input_cut = {}, {}, {}, None, {}, {}, {}
    for run, path in zip(runs, model_paths, strict=True):
        start = time.perf_counter()
        model, init_model = load_with_init(path)
        cuts = cut_frame(model)
        scale = posterior_scale(model, x_fit)
        fit_h, test_h = _cut_rows(model, x_fit, options, scale), _cut_rows(model, x_test, options, scale)
        acts_fit[run["seed"]], acts_test[run["seed"]] = fit_h, test_h
        sim = similarity(test_h, model.bottleneck_cut)
        per_cut = cut_metrics(fit_h, test_h, targets, options, input_cut)
        per_run[run["run_id"]] = {c: geo | sim[c] | linear for c, (_, geo, linear) in enumerate(per_cut)}
        log.info("%s: geometry and linear probes in %.1f s", run["run_id"], time.perf_counter() - start)
        start = time.perf_counter()
        jac = jacobian_metrics(model, x_jac)
        extra[run["run_id"]] = {c: jac[c] | twonn_mle(distances) for c, (distances, _, _) in enumerate(per_cut)}
        log.info("%s: Jacobian and TwoNN MLE in %.1f s", run["run_id"], time.perf_counter() - start)
        if init and init_model is not None:
            start = time.perf_counter()
            at_init[run["run_id"]] = cheap_profile(init_model, x_fit, x_test, x_jac, targets, options, input_cut)
            log.info("%s: profile at init in %.1f s", run["run_id"], time.perf_counter() - start)

    start = time.perf_counter()
    members = [(run, c) for run in runs for c in range(len(acts_fit[run["seed"]]))]
    inputs_fit = [acts_fit[run["seed"]][c] for run, c in members]
    inputs_test = [acts_test[run["seed"]][c] for run, c in members]
    mse, r2 = mlp_probe(inputs_fit, inputs_test, targets["x_fit"], targets["x_test"], options)
    for g, (run, c) in enumerate(members):
        per_run[run["run_id"]][c] |= {"nonlinear_mse": mse[g], "nonlinear_r2": _pooled_r2(mse[g], targets["x_test"])}
    if "f_fit" in targets:
        _, fr2 = mlp_probe(inputs_fit, inputs_test, targets["f_fit"], targets["f_test"], options)
        for g, (run, c) in enumerate(members):
            per_run[run["run_id"]][c]["factor_r2_nonlinear"] = factor_mean(fr2[g], targets["f_weights"])
            per_run[run["run_id"]][c] |= {f"factor{k}_r2_nonlinear": float(v) for k, v in enumerate(fr2[g])}
    log.info("nonlinear probes of %d members in %.1f s", len(members), time.perf_counter() - start)

    cka = cka_matrices(acts_test, list(cuts["layer"]))
    across = cka[cka["seed_a"] != cka["seed_b"]]
    same_cut = across[across["cut_a"] == across["cut_b"]]
    for run in runs:
        mine = same_cut[(same_cut["seed_a"] == run["seed"]) | (same_cut["seed_b"] == run["seed"])]
        if mine.empty:
            continue
        means = mine.groupby("cut_a")[["cka", "cka_debiased"]].mean()
        for c, row in means.iterrows():
            per_run[run["run_id"]][int(c)] |= {"cka_seeds": row["cka"], "cka_seeds_debiased": row["cka_debiased"]}
    profiles = {}
    for rid, per_cut in per_run.items():
        # the new metrics after the existing ones, cut by cut
        states = {"trained": {c: values | extra[rid][c] for c, values in per_cut.items()}}
        if rid in at_init:
            states["init"] = at_init[rid]
        profiles[rid] = _long(rid, cuts, states)
    return profiles, cka


def reparametrizable(model: GridAutoencoder) -> bool:
    """Whether every activation passes a positive rescaling of its units (ReLU, identity: ``reparam.SCALABLE``)."""
    return all(isinstance(layer[1], reparam.SCALABLE) for layer in model.layers)


def reparam_cell(
    runs: list[Run], model_paths: list, data: dict, options: dict, profiles: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Every ReLU or linear model of a cell against its function-preserving twin (``reparam.reparametrize``
    seeded with the run's seed), per cut and metric of ``cheap_profile``: value_original (the trained row of
    ``profiles``), value_reparam, abs_change, rel_change (abs_change / |value_original|; 0 where both are 0,
    inf where only the original is) and the twin's function_gap (max |model(x) - twin(x)| on the scored test
    points). Models with other activations (tanh, GELU: no unit rescaling) have no rows."""
    targets, x_fit, x_test, x_jac = probe_data(data, options)
    frames, input_cut = [], {}
    for run, path in zip(runs, model_paths, strict=True):
        start = time.perf_counter()
        model, _ = load_with_init(path)
        if not reparametrizable(model):
            log.info("%s: no reparametrisation (activations other than ReLU or identity)", run["run_id"])
            continue
        twin, info = reparam.reparametrize(model, seed=int(run["seed"]), x=x_test)
        values = cheap_profile(twin, x_fit, x_test, x_jac, targets, options, input_cut)
        twin_rows = pd.DataFrame(
            [(c, metric, float(v)) for c, per_cut in values.items() for metric, v in per_cut.items()],
            columns=["cut", "metric", "value_reparam"],
        )
        original = profiles[run["run_id"]]
        original = original[original["state"] == "trained"].rename(columns={"value": "value_original"})
        both = original.drop(columns="state").merge(twin_rows, on=["cut", "metric"], how="inner", validate="1:1")
        change = (both["value_reparam"] - both["value_original"]).abs()
        scale = both["value_original"].abs()
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(change == 0, 0.0, change / scale)
        frames.append(both.assign(abs_change=change, rel_change=rel, function_gap=info["function_gap"]))
        log.info(
            "%s: reparametrised (function gap %.2g) and profiled in %.1f s",
            run["run_id"],
            info["function_gap"],
            time.perf_counter() - start,
        )
    if not frames:
        return pd.DataFrame(columns=REPARAM_COLUMNS)
    return pd.concat(frames, ignore_index=True)[REPARAM_COLUMNS]


def _pooled_r2(mse: float, x: np.ndarray) -> float:
    sst = float(((x - x.mean(axis=0)) ** 2).mean())
    return 1.0 - mse / sst if sst > 0 else math.nan


def truncate_cell(
    runs: list[Run],
    model_paths: list[str],
    data_path: str,
    options: dict,
    profile_paths: list[str],
    cka_path: str,
    reparam_path: str | None = None,
) -> None:
    """The truncate rule: every seed of a cell, one layer_profile.csv per run, the cell's CKA table and, with
    ``reparam_path``, the cell's reparametrisation table (``reparam_cell``)."""

    # the cut activations come from the CPU copy of the model; the nonlinear probes train on the device
    options = options | {"device": str(setup_torch(options["threads"], options["device"]))}
    torch.manual_seed(options["seed"])
    data = load(data_path)
    profiles, cka = profile_cell(runs, model_paths, data, options)
    for run, path in zip(runs, profile_paths, strict=True):
        io.write_csv(profiles[run["run_id"]], path)
    cell = run_cell(runs[0])
    io.write_csv(cka.assign(cell=cell), cka_path)
    if reparam_path is not None:
        io.write_csv(reparam_cell(runs, model_paths, data, options, profiles), reparam_path)
