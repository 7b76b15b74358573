"""The library's front door: profile any trained autoencoder without a study config.

``profile`` runs the truncation analysis of the workflow's ``truncate`` rule (``probes.profile_cell``)
on one model, with the ``truncation:`` defaults of the config schema, so that its numbers are those of a
``layer_profile.csv`` computed on the same data with the same options. The model is the pipeline's
``GridAutoencoder`` (or its model.pt) or any ``nn.Module`` whose encoder and decoder are chains of modules
(``nets.chains``: a user's own MLP or conv net, as trained elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from aedissect import config
from aedissect.nets import chains, probes
from aedissect.nets.models import GridAutoencoder, as_model, load_model

__all__ = ["load_model", "profile"]
# the selection of grid cells and the job's threads mean nothing for one model
NOT_OPTIONS = ("select", "threads")
DTYPES = {"x": torch.float32, "y": torch.int64, "factors": torch.float32}  # those of a prepared data set


def profile(
    model: nn.Module | str | Path,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    encoder: str | list[str] = "encoder",
    decoder: str | list[str] = "decoder",
    kind: str = "ae",
    cuts: list[str] | None = None,
    x_fit: torch.Tensor | None = None,
    y_fit: torch.Tensor | None = None,
    factors: torch.Tensor | None = None,
    factors_fit: torch.Tensor | None = None,
    factor_columns: list[str] | None = None,
    name: str = "model",
    device: str = "cpu",
    **options,
) -> pd.DataFrame:
    """The layer profile of a trained model: one row per cut and metric (``truncation_tables.PROFILE_COLUMNS``,
    ``state`` always ``trained``: the truncate job's profile of the initial weights is not computed here).

    ``model``: an ``GridAutoencoder``, the path of a ``model.pt`` written by the pipeline, or any ``nn.Module``
    whose ``encoder`` and ``decoder`` (attribute names, or lists of module names in order) are chains of modules:
    one cut after every parametrised module, the code at the encoder's output (``nets.chains``; ``kind="vae"``
    where the encoder gives mu and log var side by side; ``cuts`` names the modules to cut after, by default all).
    ``x``: inputs, in the shape the model takes (rows for an MLP, N x C x H x W for a conv net), to measure the
    cuts on; each cut is seen flattened, a wide one narrowed (``truncation.max_cut_width``). ``y``: their integer labels
    (adds the label probe) and ``factors`` their generative factors (adds the factor probes; ``factor_columns``
    names their columns so that the mean factor R² weighs an angle's sine and cosine as one factor). The probes are
    fitted on ``x_fit`` (with ``y_fit``, ``factors_fit``), by default on a seeded half of ``x`` and scored on the
    other half. ``options``: any key of the config's ``truncation:`` section (e.g. ``nonlinear_epochs=5``),
    the schema's defaults otherwise; an unknown key or a bad value raises ``config.ConfigError`` naming it.
    ``device``: where the nonlinear probes train. The global random state is left as it was.
    """
    options = config.section("truncation", options)
    for key in NOT_OPTIONS:
        options.pop(key)
    model = as_model(model).cpu()
    if not isinstance(model, GridAutoencoder):
        model = chains.wrap(
            model, torch.as_tensor(x, dtype=DTYPES["x"]), encoder=encoder, decoder=decoder, kind=kind, cuts=cuts
        )
    data = _split(x, y, factors, x_fit, y_fit, factors_fit, options["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options["seed"])  # as the truncate job does
        profiles, _ = probes.profile_cell(
            [{"run_id": name, "seed": 0}],
            [model],
            data,
            options | {"device": device, "factor_columns": factor_columns},
            init=False,
        )
    return profiles[name]


def _split(x, y, factors, x_fit, y_fit, factors_fit, seed: int) -> dict:
    """The data dict of a prepared data set: the fit data as its training split, ``x`` as its test split."""
    test = {"x": x, "y": y, "factors": factors}
    if x_fit is None:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        half = len(x) // 2
        fit = {k: None if v is None else v[order[:half]] for k, v in test.items()}
        test = {k: None if v is None else v[order[half:]] for k, v in test.items()}
    else:
        fit = {"x": x_fit, "y": y_fit, "factors": factors_fit}
    data = {}
    for key in test:
        if (test[key] is None) != (fit[key] is None):
            raise ValueError(f"profile: {key} and {key}_fit must be given together")
        if test[key] is not None:
            data[f"{key}_train"] = torch.as_tensor(fit[key], dtype=DTYPES[key])
            data[f"{key}_test"] = torch.as_tensor(test[key], dtype=DTYPES[key])
    return data
