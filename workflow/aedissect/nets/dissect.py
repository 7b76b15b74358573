"""The whole dissection of a user's own autoencoder class, as the workflow does it for one grid cell.

``dissect(make_model, data, seeds=...)`` trains one model per seed (``make_model()`` under ``torch.manual_seed``,
then the project's training loop and recipe, ``training.train``), profiles every cut of every seed
(``probes.profile_cell``: the cross-seed CKA included), checks each model against the closed-form optima that
apply to it (``controls``: a linear AE against PCA-z, its decoder against the principal subspace; a linear-decoder
or nonlinear AE against the PCA-z bound; a Gaussian VAE against pPCA), and reads the verdict with the study's
rules (``analysis.findings``). Only the rules the study's phantoms calibrate enter it (``VERDICT_RULES``: R1 and,
on data with known factors, RA; R2, the freeze design's work share, misses its own phantom, docs/methods.md).
A failed control makes the verdict ``undecided``, as in the workflow.

The freeze design, criticality and stitching are the workflow's (``snakemake``): they do not enter the verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from aedissect import config, controls
from aedissect.analysis import calibration, findings
from aedissect.nets import chains, probes, training
from aedissect.nets import controls as model_controls
from aedissect.nets.data import build

log = logging.getLogger("aedissect.nets.dissect")

# the default study's recipe (config.yaml ``training``; a test keeps them equal); the other keys: schema defaults
DEFAULT_TRAINING = {"epochs": 40, "batch_size": 64, "lr": 0.01, "lr_schedule": "cosine"}
# the rules the default study's phantoms calibrate (results/paper/phantoms.csv): R2 gives its linear phantom 0.24
VERDICT_RULES = ("compression", "abstraction")
# parameter-free modules that keep a chain affine
AFFINE_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout)


def is_affine(model: chains.ChainAutoencoder) -> bool:
    """Every module of the chains a Linear or a parameter-free affine module: the net is a product of matrices."""
    modules = [m for stage in model.stages for m in stage]
    return all(isinstance(m, (nn.Linear, *AFFINE_MODULES)) for m in modules)


def hidden_widths(model: chains.ChainAutoencoder, x: torch.Tensor) -> tuple[list[int], list[int]]:
    """The widths of the encoder's and the decoder's hidden cuts (a feature map counts its C H W units)."""
    with torch.no_grad():
        widths = [h[0].numel() for h in model.all_cuts(x[:1])]
    return widths[1 : model.bottleneck_cut], widths[model.bottleneck_cut + 1 : -1]


def _run(model: chains.ChainAutoencoder, x: torch.Tensor, name: str, dataset: str, seed: int, tr: dict, vae) -> dict:
    """The run config the library's functions read (``config.resolve_run``'s keys), for one seed of the model."""
    encoder, decoder = hidden_widths(model, x)
    run = {
        "run_id": f"{dataset}/{model.kind}/{name}/s{seed}",
        "dataset": dataset,
        "kind": model.kind,
        "arch": name,
        "family": name,
        "encoder": encoder,
        "decoder": decoder,
        "bottleneck": model.latent_dim,
        # ``controls.is_linear`` reads this: a product of matrices has PCA-z (pPCA) as its optimum
        "activation": "linear" if is_affine(model) else "nonlinear",
        "seed": int(seed),
        "training": tr,
    }
    if model.kind == "vae":
        run["vae"] = vae
    return run


def _data(data: str | dict) -> tuple[str, dict]:
    if isinstance(data, str):
        return data, build(data, config.section("data"))
    return "data", data


def dissect(
    make_model: Callable[[], nn.Module],
    data: str | dict,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    kind: str = "ae",
    encoder: str | list[str] = "encoder",
    decoder: str | list[str] = "decoder",
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    training_options: dict | None = None,
    vae: dict | None = None,
    truncation: dict | None = None,
    device: str = "cpu",
) -> dict:
    """Train, profile, check and judge ``make_model``'s class (module docstring).

    ``data``: a data set of the registry (built with the schema's ``data:`` defaults) or a dict of tensors as
    ``nets.data.build`` gives it (``x_train``, ``x_test`` as rows; ``y_*``, ``factors_*`` optional).
    ``input_shape``: the shape the model takes one sample in (a conv net: C, H, W), the rows reshaped to it.
    ``training_options``: keys of the config's ``training:`` section over ``DEFAULT_TRAINING`` (the default study's
    recipe; the model keeps its own init); ``vae``: of ``vae:``; ``truncation``: of ``truncation:``.

    Returns the tables the workflow would write for this cell: ``runs``, ``train_metrics``, ``profiles``,
    ``controls``, ``per_run``, ``summary``, ``verdicts`` (one row: the verdict, its evidence and ``sentence``).
    """
    dataset, tensors = _data(data)
    tr = config.section("training", DEFAULT_TRAINING | (training_options or {}))
    vae = config.section("vae", vae or {})
    options = config.section("truncation", truncation or {})
    for key in ("select", "threads"):
        options.pop(key)
    shape = tuple(input_shape) if input_shape else tuple(tensors["x_train"].shape[1:])
    dev = training.setup_torch(1, device)
    runs, models, metrics = [], [], []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            user_model = make_model()
        example = tensors["x_train"][:2].reshape(2, *shape)
        model = chains.wrap(user_model, example, encoder=encoder, decoder=decoder, kind=kind).train()
        name = name or type(user_model).__name__
        run = _run(model, tensors["x_train"], name, dataset, seed, tr, vae)
        result = training.train(run, tensors, dev, model=model)
        model.load_state_dict(result["state"])
        model.cpu().eval()
        runs.append(run)
        models.append(model)
        metrics.append({"run_id": run["run_id"], **result["metrics"]})
        log.info("%s: test MSE %.4g", run["run_id"], result["metrics"]["test_mse"])
    runs_table = pd.DataFrame([config.config_columns(run) for run in runs])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options["seed"])
        profiles, _ = probes.profile_cell(runs, models, tensors, options | {"device": str(dev)}, init=False)
    profiles = pd.concat(profiles.values(), ignore_index=True)
    control_table = _controls(runs, models, tensors, vae)
    train_metrics = pd.DataFrame(metrics)
    parts = [train_metrics[["run_id"]].assign(quantity="test_mse", value=train_metrics["test_mse"])]
    parts += calibration.rule_quantities(profiles)
    per_run = findings.quantities(runs_table, parts)
    summary = findings.summarize_groups(per_run)
    verdicts = findings.verdicts(summary, rules=VERDICT_RULES)
    verdicts = findings.apply_controls(verdicts, runs_table, control_table)
    return {
        "runs": runs_table,
        "train_metrics": train_metrics,
        "profiles": profiles,
        "controls": control_table,
        "per_run": per_run,
        "summary": summary,
        "verdicts": verdicts,
    }


def _controls(runs: list[dict], models: list, data: dict, vae: dict) -> pd.DataFrame:
    """Each model against the closed-form optima of its bottleneck (``nets.controls.check_models``), with the runs'
    config columns."""
    x_train, x_test = data["x_train"].double(), data["x_test"].double()
    rows, _ = model_controls.check_models(runs, models, x_train, x_test, vae if runs[0]["kind"] == "vae" else None)
    table = pd.DataFrame(rows, columns=["run_id", *controls.COLUMNS])
    return pd.DataFrame([config.config_columns(run) for run in runs]).merge(table, on="run_id")
