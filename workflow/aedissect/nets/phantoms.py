"""Phantoms: autoencoders whose answer is known by construction, to calibrate the verdict rules on.

A measuring instrument is calibrated on phantoms before it is used on patients. Each phantom is an
``GridAutoencoder`` whose weights are set in closed form, or fitted piece by piece under a constraint that fixes what
each cut computes, with the answer every rule must give (``Phantom.expected``):

- ``linear``: the linear AE at its optimum, PCA-z (Baldi & Hornik 1989), x -> 42 -> z -> 42 -> x with a random
  invertible gauge A between the halves: the code is A U_z'(x - mean), the decoder maps it back through U_z A^-1.
  The encoder computes the code, the decoder only renders it: compression and abstraction end at the bottleneck;
  the two halves play mirror roles, so the work rule must call them even (``work``: see ``linear_work_shares``).
- ``linear-vae``: the linear VAE at its optimum, probabilistic PCA with the study's sigma (Tipping & Bishop 1999),
  posterior mean A M^-1 W'(x - mean) behind the same gauge: the same answers on the deterministic path.
- on data with known factors f (``factors_train``):
  - ``planted-encoder``: a deep ReLU encoder fitted to output f itself at the bottleneck, a decoder fitted to
    render x from the true f: the encoder does everything;
  - ``planted-unmixing``: the encoder outputs an invertible nonlinear mixing of f, c = R2 tanh(3 R1 f), and the
    decoder's second hidden layer is fitted to un-mix it (f + 1, through its ReLU) before rendering: compression ends
    at the bottleneck (an invertible map keeps the dimension), abstraction in the decoder;
  - ``planted-compressing``: the encoder keeps the top principal components of x whitened, noise included (exactly,
    through a ReLU layer of +-copies), and the decoder's second hidden layer is fitted to f + 1: the decoder drops
    the noise directions, so compression ends after the bottleneck.
- ``<name>/reparametrised``: every phantom's function-preserving twin (``reparam.reparametrize``: rescaled units,
  a mixed code): a rule must give it the same answer.

The pieces are fitted by full-batch Adam from a seeded init, float32 on the CPU, deterministic for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from aedissect.nets import reparam
from aedissect.nets.models import GridAutoencoder
from aedissect.nets.optim import Adam, schedule
from aedissect.references import pca_reference, ppca_optimum

ENCODER, DECODER, EVEN = "encoder", "decoder", "even"
LINEAR_HIDDEN = 42  # the question's own net: x -> 42 -> z -> 42 -> x
PLANTED_HIDDEN = 64
FIT_STEPS = 1500
FIT_LR = 0.01
MIXING_GAIN = 3.0  # c = R2 tanh(MIXING_GAIN R1 f): strong enough that a linear probe of c misses part of f
COMPRESSING_COMPONENTS = 8  # principal components the compressing phantom's code keeps, noise included
# the wiggle of a collapsed latent's mean, in units of its posterior std: a tenth, a signal-to-noise ratio that
# carries ~0.005 nats; the trained linear VAEs of the default study leave 0.02-0.16 in theirs
COLLAPSED_SNR = 0.1


@dataclass
class Phantom:
    name: str
    model: GridAutoencoder
    expected: dict[str, str]
    description: str
    twin_of: str = ""
    extra: dict = field(default_factory=dict)


def random_gauge(z: int, gen: torch.Generator) -> torch.Tensor:
    """An invertible z x z map with condition number 4: Haar rotations around log-spaced singular values."""
    scales = torch.exp(torch.linspace(0.0, -math.log(4.0), z, dtype=torch.float64))
    return reparam._orthogonal(z, gen) @ torch.diag(scales) @ reparam._orthogonal(z, gen)


def set_layers(model: GridAutoencoder, weights: list[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]]):
    """Copy (weight, bias) of every layer into ``model`` (in place), cast to its dtype."""
    if len(weights) != model.n_layers:
        raise ValueError(f"{len(weights)} layers given, the model has {model.n_layers}")
    with torch.no_grad():
        for layer, (w, b) in zip(model.layers, weights, strict=True):
            layer[0].weight.copy_(torch.as_tensor(w, dtype=layer[0].weight.dtype))
            layer[0].bias.copy_(torch.as_tensor(b, dtype=layer[0].bias.dtype))
    return model


def linear_phantom(
    x_train: torch.Tensor, z: int, seed: int, kind: str = "ae", sigma: float = 0.1, collapsed_snr: float = 0.0
) -> Phantom:
    """The linear AE at PCA-z (``kind`` "ae") or the linear VAE at pPCA with std ``sigma`` ("vae"), x -> 42 -> z ->
    42 -> x, with a random gauge between the halves (``random_gauge``) and random invertible maps into and out of
    the 42-wide layers. The first layer keeps the top min(42, d) principal directions, so it loses none of the
    top z.

    ``collapsed_snr`` > 0 (VAE only): the pPCA optimum's collapsed latents (posterior = prior, the decoder's column
    zero) get means that wiggle with x, a random direction at ``collapsed_snr`` times their posterior std (1): what
    a trained VAE leaves in them short of the optimum; and the decoder's first layer weighs each latent by its
    column norm |w_j| in pPCA's decoder W (zero for a collapsed one), as the trained linear VAEs' first decoder
    layers do, the rest of W in the output layer. The function is pPCA's, so the answers stay those of the optimum;
    read in raw means, the code looks wider than the decoder's first layer (a weak latent's mean has a spread near
    1, its |w_j| is small) and compression seems to end after the bottleneck. The gauge is then the identity, so
    that each unit keeps its own posterior variance."""
    X = x_train.double().numpy()
    d = X.shape[1]
    gen = torch.Generator().manual_seed(seed)
    if kind == "ae":
        ref = pca_reference(X, X, z)
        mean, U = ref["mean"], ref["components"]  # (d, z)
        enc_code, dec_map = U.T, U  # code = U'(x - mean), x = mean + U code
    else:
        opt = ppca_optimum(X, z, sigma)
        mean, enc_code, dec_map = opt["mean"], opt["enc_weight"].copy(), opt["W"]
    keep = min(LINEAR_HIDDEN, d)
    cov = np.cov(X, rowvar=False, bias=True)
    top = np.linalg.eigh(cov)[1][:, ::-1][:, :keep]  # (d, keep)
    into = torch.randn(LINEAR_HIDDEN, keep, generator=gen, dtype=torch.float64).numpy() / math.sqrt(keep)
    W1 = into @ top.T  # (42, d): injective on the top-keep principal subspace, which holds the code's rows
    gauge = random_gauge(z, gen).numpy() if not collapsed_snr else np.eye(z)
    if collapsed_snr:
        if kind != "vae" or opt["active"].all():
            raise ValueError("collapsed_snr: only for a linear VAE with collapsed latents")
        centred = X - mean
        for j in np.flatnonzero(~opt["active"]):
            direction = torch.randn(d, generator=gen, dtype=torch.float64).numpy() @ top @ top.T
            enc_code[j] = collapsed_snr * direction / (centred @ direction).std()
    code = gauge @ enc_code  # (z, d)
    W2 = code @ np.linalg.pinv(W1)  # code = W2 W1 (x - mean): W1's row space holds enc_code's rows
    out = torch.randn(LINEAR_HIDDEN, z, generator=gen, dtype=torch.float64).numpy() / math.sqrt(z)
    if collapsed_snr:  # the decoder's first layer weighs each latent as pPCA's decoder W does, by |w_j|
        basis = np.linalg.qr(torch.randn(LINEAR_HIDDEN, z, generator=gen, dtype=torch.float64).numpy())[0]
        out = basis * np.linalg.norm(dec_map, axis=0)
    W4 = dec_map @ np.linalg.inv(gauge) @ np.linalg.pinv(out)  # (d, 42)
    layers = [(W1, -W1 @ mean), (W2, np.zeros(z)), (out, np.zeros(LINEAR_HIDDEN)), (W4, mean)]
    model = GridAutoencoder(d, [LINEAR_HIDDEN], z, [LINEAR_HIDDEN], "linear", kind)
    if kind == "vae":  # the log-variance head: pPCA's posterior variance, whatever the input (a gauge-free stand-in)
        logvar = np.log(opt["posterior_var"])
        layers[1] = (np.vstack([W2, np.zeros((z, LINEAR_HIDDEN))]), np.concatenate([np.zeros(z), logvar]))
    set_layers(model, layers)
    what = "PCA" if kind == "ae" else f"pPCA (sigma {sigma:g})"
    name = "linear" if kind == "ae" else "linear-vae"
    expected = {"compression": ENCODER, "abstraction": ENCODER}
    if kind == "ae":
        expected["work"] = EVEN
    description = f"linear {kind.upper()} at its optimum ({what}-{z}), random gauge"
    if collapsed_snr:
        name += "-as-trained"
        description = (
            f"linear VAE at pPCA (sigma {sigma:g})-{z} as trained nets hold it: the first decoder layer weighs each "
            f"latent by pPCA's |w_j|, its {int((~opt['active']).sum())} collapsed latents' means wiggle at "
            f"{collapsed_snr:g} of their posterior std"
        )
    return Phantom(name, model, expected, description)


def fit_mlp(
    x: torch.Tensor, y: torch.Tensor, hidden: list[int], final_relu: bool, seed: int, steps: int = FIT_STEPS
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A ReLU MLP x -> hidden -> y (ReLU after the last layer too where ``final_relu``) fitted by full-batch Adam on
    the mean squared error, from PyTorch's init seeded with ``seed``; its layers as (weight, bias)."""
    widths = [x.shape[1], *hidden, y.shape[1]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linears = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    params = [p for lin in linears for p in lin.parameters()]
    # the training loop's own Adam and cosine schedule (nets.optim): torch.optim would import the compiler, ~2.7 s
    opt = Adam(params, lr=FIT_LR, schedule=schedule("cosine", FIT_LR, steps))

    def forward(h):
        for i, lin in enumerate(linears):
            h = lin(h)
            if i < len(linears) - 1 or final_relu:
                h = torch.relu(h)
        return h

    for _ in range(steps):
        opt.zero_grad()
        loss = ((forward(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in linears]


def _assemble(d: int, encoder: list, decoder: list, enc_widths: list[int], z: int, dec_widths: list[int]):
    model = GridAutoencoder(d, enc_widths, z, dec_widths, "relu", "ae")
    return set_layers(model, [*encoder, *decoder])


def planted_phantoms(data: dict, seed: int) -> list[Phantom]:
    """The three planted phantoms on data with known factors (module docstring)."""
    x, f = data["x_train"].float(), data["factors_train"].float()
    d, k = x.shape[1], f.shape[1]
    h = PLANTED_HIDDEN
    gen = torch.Generator().manual_seed(seed)
    # the decoder's rendering half, shared: f + 1 (>= 0, so the ReLU of the hidden layer holding it is exact) -> x
    render = fit_mlp(f + 1, x, [h], False, seed)
    phantoms = []

    encoder = fit_mlp(x, f, [h, h], False, seed + 1)
    decoder = fit_mlp(f, x, [h], False, seed + 2)
    phantoms.append(
        Phantom(
            "planted-encoder",
            _assemble(d, encoder, decoder, [h, h], k, [h]),
            {"compression": ENCODER, "abstraction": ENCODER},
            "a deep encoder fitted to output the factors at the bottleneck, a one-layer decoder renders them",
        )
    )

    r1, r2 = (reparam._orthogonal(k, gen).float() for _ in range(2))
    mixed = torch.tanh(MIXING_GAIN * f @ r1.T) @ r2.T
    encoder = fit_mlp(x, mixed, [h, h], False, seed + 3)
    unmix = fit_mlp(mixed, f + 1, [h], True, seed + 4)
    phantoms.append(
        Phantom(
            "planted-unmixing",
            _assemble(d, encoder, [*unmix, *render], [h, h], k, [h, k, h]),
            {"compression": ENCODER, "abstraction": DECODER},
            "the code is an invertible nonlinear mixing of the factors, the decoder's second layer un-mixes them",
        )
    )

    m = min(COMPRESSING_COMPONENTS, d)
    X = x.double().numpy()
    mean = X.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    # whitened: the noise directions as wide as the factors' own, so the code's dimension is m at every scale
    U = (vectors[:, ::-1][:, :m] / np.sqrt(values[::-1][:m])).copy()
    split = np.vstack([U.T, -U.T])  # relu(p) - relu(-p) = p: the code keeps the components exactly
    enc1 = (np.vstack([split, np.zeros((h - 2 * m, d))]), np.concatenate([-split @ mean, np.zeros(h - 2 * m)]))
    to_code = (np.hstack([np.eye(m), -np.eye(m), np.zeros((m, h - 2 * m))]), np.zeros(m))
    code = torch.as_tensor((X - mean) @ U, dtype=torch.float32)
    unmix = fit_mlp(code, f + 1, [h], True, seed + 5)
    phantoms.append(
        Phantom(
            "planted-compressing",
            _assemble(d, [enc1, to_code], [*unmix, *render], [h], m, [h, k, h]),
            {"compression": DECODER},
            f"the code keeps {m} whitened principal components, noise included; the decoder's second layer holds "
            "the factors",
        )
    )
    return phantoms


def with_twins(phantoms: list[Phantom], x: torch.Tensor, seed: int) -> list[Phantom]:
    """Every phantom followed by its function-preserving twin (``reparam.reparametrize``), same expected answers;
    the twin's ``extra`` holds its function gap."""
    out = []
    for i, phantom in enumerate(phantoms):
        twin, info = reparam.reparametrize(phantom.model, seed=seed + i, x=x)
        out.append(phantom)
        out.append(
            Phantom(
                f"{phantom.name}/reparametrised",
                twin,
                dict(phantom.expected),
                f"{phantom.description}; reparametrised (same function)",
                twin_of=phantom.name,
                extra={"function_gap": info["function_gap"]},
            )
        )
    return out


def build_phantoms(data: dict, z: int, kinds: list[str], sigma: float, seed: int = 0) -> list[Phantom]:
    """The phantoms of one data set: the linear ones (one per model kind of the study, at bottleneck ``z``), the
    planted ones where the data have known factors, each with its reparametrised twin."""
    phantoms = [linear_phantom(data["x_train"], z, seed, kind, sigma) for kind in kinds]
    if "factors_train" in data:
        phantoms += planted_phantoms(data, seed)
    return with_twins(phantoms, data["x_test"][:256], seed)


# the freeze specs of the work rule's Shapley share (the symmetric design), as the freeze sweep names them
WORK_SPECS = {"L_enc": "encoder+code", "L_dec": "decoder+bias", "L_both": "both+code+bias"}
WORK_COLUMNS = ["dataset", "phantom", "bottleneck", "seed", "L_full", "L_enc", "L_dec", "L_both", "share", "loo_share"]


def linear_work_shares(data: dict, z: int, seeds: list[int]) -> list[dict]:
    """The work rule's Shapley share on the linear phantom, in closed form: per seed, the linear AE x -> 42 -> z -> 42
    -> x at the init ``build_model`` draws for that seed (the study's ``linear`` architecture's), each half frozen
    there and the rest at its least-squares optimum (``interventions.closed_form_optimum``; the symmetric design's
    specs), against PCA-z (both halves trained, at their optimum). Test MSEs, as the study's shares use."""
    from aedissect.inference import shapley_shares
    from aedissect.nets.interventions import closed_form_optimum

    x_train, x_test = data["x_train"], data["x_test"]
    full = pca_reference(x_train.double().numpy(), x_test.double().numpy(), z)["mse"]
    rows = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GridAutoencoder(x_train.shape[1], [LINEAR_HIDDEN], z, [LINEAR_HIDDEN], "linear", "ae", True)
        losses = {key: closed_form_optimum(model, spec, x_train, x_test)["optimum_test_mse"] for key, spec in
                  WORK_SPECS.items()}  # fmt: skip
        shares = shapley_shares(full, losses["L_enc"], losses["L_dec"], losses["L_both"])
        rows.append(
            {"phantom": "linear", "bottleneck": z, "seed": seed, "L_full": full, **losses}
            | {"share": float(shares["share"]), "loo_share": float(shares["loo_share"])}
        )
    return rows


def phantom_job(datasets: dict[str, str], options: dict, bottlenecks: list[int], kinds: list[str], sigma: float | None,
                seeds: list[int]):  # fmt: skip
    """The phantoms rule: per data set (name -> prepared data path) every phantom's layer profile (``probes``, one
    phantom at a time) and the linear phantom's work shares. ``sigma``: the VAE's fixed likelihood std, None where the
    study's VAE has no pPCA optimum (no linear VAE phantom). Returns (profiles, work, phantom list) as frames."""
    import pandas as pd

    from aedissect.nets import probes
    from aedissect.nets.data import load

    profiles, work, listing = [], [], []
    for dataset, path in datasets.items():
        data = load(path)
        phantoms = []
        for z in bottlenecks:
            linear_kinds = [k for k in kinds if k == "ae" or sigma is not None]
            linear = [linear_phantom(data["x_train"], z, 0, k, sigma or 1.0) for k in linear_kinds]
            if "vae" in linear_kinds and not ppca_optimum(data["x_train"].double().numpy(), z, sigma)["active"].all():
                linear.append(linear_phantom(data["x_train"], z, 0, "vae", sigma, collapsed_snr=COLLAPSED_SNR))
            for phantom in linear:
                phantom.name = f"{phantom.name}-z{z}"
                if "factors_train" not in data:  # no known factors: nothing for the abstraction rule to read
                    phantom.expected.pop("abstraction")
            phantoms += with_twins(linear, data["x_test"][:256], 0)
            work += [{"dataset": dataset} | row for row in linear_work_shares(data, z, seeds)]
        if "factors_train" in data:
            phantoms += with_twins(planted_phantoms(data, 0), data["x_test"][:256], 0)
        for phantom in phantoms:
            run = {"run_id": phantom.name, "seed": 0}
            columns = options.get("factor_columns", {}).get(dataset)
            profile = probes.profile_cell([run], [phantom.model], data, options | {"factor_columns": columns})
            profile = profile[0][phantom.name]
            profiles.append(profile.rename(columns={"run_id": "phantom"}).assign(dataset=dataset))
            for rule, answer in phantom.expected.items():
                listing.append(
                    {"dataset": dataset, "phantom": phantom.name, "rule": rule, "expected": answer}
                    | {"description": phantom.description, "twin_of": phantom.twin_of}
                    | {"function_gap": phantom.extra.get("function_gap", 0.0)}
                )
    work_frame = pd.DataFrame(work)
    work_frame["phantom"] = [f"linear-z{z}" for z in work_frame["bottleneck"]]
    return pd.concat(profiles, ignore_index=True), work_frame[WORK_COLUMNS], pd.DataFrame(listing)
