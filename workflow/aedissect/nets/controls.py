"""The controls job: what the checks of ``aedissect.controls`` need from a trained network's weights.

For one data set: the closed-form references per bottleneck (PCA-z, pPCA), then every model measured (test and
train MSE, a linear net's maps read off its weights, a VAE's expected test -ELBO) and checked against them.
Everything is evaluated in float64 on a copy of the model, on the CPU.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pandas as pd
import torch

from aedissect import controls, io
from aedissect.config import Run
from aedissect.nets.models import GridAutoencoder, build_model
from aedissect.nets.training import EVAL_SEED, loss_terms, reconstruction, setup_torch
from aedissect.references import linear_vae_negative_elbo

log = logging.getLogger("aedissect.nets.controls")
ELBO_SAMPLES = 32  # posterior draws per test sample for a nonlinear VAE's expected -ELBO


def affine_map(fn, in_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight (out, in), bias (out,)) of an affine ``fn``, read off its values at 0 and at the unit vectors."""
    with torch.no_grad():
        bias = fn(torch.zeros(1, in_dim, dtype=torch.float64))[0]
        weight = fn(torch.eye(in_dim, dtype=torch.float64)) - bias
    return weight.T.numpy(), bias.numpy()


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean())


@torch.no_grad()
def expected_negative_elbo(model: GridAutoencoder, x: torch.Tensor, run: Run, n_samples: int) -> float:
    """The test loss of the training loop (``loss_terms``: -ELBO per sample, beta-weighted rate) averaged over
    ``n_samples`` posterior draws per sample, from the loop's evaluation seed."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    return float(np.mean([float(loss_terms(model, x, run, generator)["loss"]) for _ in range(n_samples)]))


@torch.no_grad()
def measure(model: GridAutoencoder, run: Run, x_train: torch.Tensor, x_test: torch.Tensor, ref: dict) -> dict:
    """What the run's checks compare with ``ref`` (``aedissect.controls.reference`` of its bottleneck)."""
    model = copy.deepcopy(model).double().eval()
    x_train, x_test = x_train.double(), x_test.double()
    measured = {"status": "ok"}
    if run["kind"] == "ae":
        measured["test_mse"] = mse(reconstruction(model, x_test, run), x_test)
        measured["train_mse"] = mse(reconstruction(model, x_train, run), x_train)
        if controls.is_linear(run):
            decoder, _ = affine_map(model.decode, model.latent_dim)
            measured["decoder_angle"] = controls.decoder_angle(decoder, ref["components"])
        return measured
    if run["vae"]["likelihood"] != "gaussian":
        return measured
    if controls.is_linear(run):
        measured |= linear_vae_terms(model, run, x_test)
        decoder, _ = affine_map(model.decode, model.latent_dim)
        measured["decoder_angle"] = controls.ppca_decoder_angle(decoder, ref)
    else:
        measured["neg_elbo"] = expected_negative_elbo(model, x_test, run, ELBO_SAMPLES)
        measured["elbo_samples"] = ELBO_SAMPLES
    return measured


@torch.no_grad()
def linear_vae_terms(model: GridAutoencoder, run: Run, x: torch.Tensor) -> dict:
    """A linear VAE's expected -ELBO per sample on ``x`` in closed form (``references.linear_vae_negative_elbo``):
    its mean map and decoder read off the weights, its posterior variances (affine in x through log var) per
    sample."""
    model = copy.deepcopy(model).double().eval()
    x = x.double()
    enc_weight, enc_bias = affine_map(lambda h: model.posterior(h)[0], x.shape[1])
    dec_weight, dec_bias = affine_map(model.decode, model.latent_dim)
    variance = torch.exp(model.posterior(x)[1]).numpy()
    vae = run["vae"]
    elbo = linear_vae_negative_elbo(x, enc_weight, enc_bias, variance, dec_weight, dec_bias, vae["sigma"], vae["beta"])
    return {"neg_elbo": elbo["loss"], "distortion": elbo["distortion"], "rate": elbo["rate"]}


def load_trained(path: str) -> tuple[GridAutoencoder | None, dict]:
    """The model of a model.pt and its payload; None for a run that diverged (its payload holds the error)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("status", "ok") != "ok":
        return None, payload
    model = build_model(payload["config"], payload["in_dim"])
    model.load_state_dict(payload["state"])
    return model, payload


def check_models(runs: list[Run], trained: list, x_train: torch.Tensor, x_test: torch.Tensor, vae: dict | None):
    """Every run checked against the optima of its bottleneck: (rows, one per run and check: ``run_id`` and
    ``controls.COLUMNS``; the references per bottleneck). ``trained``: per run its model, or the payload of a run
    that diverged (its rows apply but have no value)."""
    refs = {z: controls.reference(x_train, x_test, z, vae) for z in dict.fromkeys(run["bottleneck"] for run in runs)}
    rows = []
    for run, model in zip(runs, trained, strict=True):
        ref = refs[run["bottleneck"]]
        if isinstance(model, dict):
            measured = model
        elif ref.get("wide"):
            measured = {"status": "ok"}
        else:
            measured = measure(model, run, x_train, x_test, ref)
        rows += controls.control_rows(run, measured, ref)
        log.info("%s: %s", run["run_id"], {k: v for k, v in measured.items() if not isinstance(v, dict)})
    return rows, refs


def controls_dataset(
    runs: list[Run], model_paths: list[str], data_path: str, checks_path: str, references_path: str, threads: int
) -> None:
    """Every run of one data set checked against its optima: ``checks_path`` (run_id and ``controls.COLUMNS``,
    one row per run and check) and ``references_path`` (``controls.REFERENCE_COLUMNS``, one row per bottleneck)."""
    from aedissect.nets.data import load

    setup_torch(threads, "cpu")
    data = load(data_path)
    x_train, x_test = data["x_train"].double(), data["x_test"].double()
    dataset = runs[0]["dataset"]
    vae = next((run["vae"] for run in runs if run["kind"] == "vae"), None)
    trained = [model if model is not None else payload for model, payload in map(load_trained, model_paths)]
    rows, refs = check_models(runs, trained, x_train, x_test, vae)
    io.write_csv(pd.DataFrame(rows, columns=["run_id", *controls.COLUMNS]), checks_path)
    references = [controls.reference_row(dataset, z, ref) for z, ref in refs.items()]
    io.write_csv(pd.DataFrame(references, columns=controls.REFERENCE_COLUMNS), references_path)
