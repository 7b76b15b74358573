"""Interventions on trained autoencoders: freezing at init, re-initialisation, retraining one layer, stitching.

Everything goes through the one model API (``forward_to``/``forward_from``, ``frozen_parameters``) and the one
training path (``ensemble.train_members``: one batched ensemble per stack of like trainings with
``training.ensemble``, else ``training.train`` one after another): a freeze variant is the normal run with
``run["freeze"]`` set; retraining a layer and fitting a stitch start from a prepared ``model`` whose other
parameters are frozen.

Losses: ``test_loss`` is the run's own objective (MSE per element for the AE, -ELBO in nats for the VAE);
``test_mse`` is the reconstruction MSE of the deterministic path (the VAE decodes mu), positive for both
kinds, so ratios (criticality) and differences across kinds (stitching) use it.
"""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from aedissect import io
from aedissect.config import Run
from aedissect.nets.ensemble import train_members
from aedissect.nets.models import GridAutoencoder, Linear, build_model, initial_models, load_model
from aedissect.nets.training import evaluate, remove_state, setup_torch
from aedissect.plans import CONVERGED_TOLERANCE, output_bias, parse_spec, stitch_cuts, stitch_pairs, variant_key
from aedissect.references import ridge_optimum
from aedissect.status import TrainingDiverged

log = logging.getLogger("aedissect.nets.interventions")
METRICS = ["test_loss", "test_mse"]


# ---------------------------------------------------------------- 1. freezing at initialisation


def freeze_variant(run: Run, spec: str) -> Run:
    """The run's config with part of the network frozen at its init: same seed, same budget."""
    return copy.deepcopy(run) | {"freeze": spec}


def train_freeze_cell(
    runs: list[Run],
    specs_by_run: dict,
    data_path: str,
    out_dirs: list[str],
    threads: int,
    device: str,
    state_dir: Path | None = None,
    tensorboard: Path | None = None,
) -> None:
    """Every freeze variant of every seed of one grid cell: results/freeze/<run_id>/<spec>/train_metrics.json.

    Specs that freeze the same layers (``encoder`` and ``prefix-<bottleneck cut>``) are the same training,
    bitwise: it runs once and both folders get its outputs, the alias named in ``same_as``. Each variant keeps
    its resume checkpoint in ``state_dir`` (``training.state_dir``) until the whole cell is written; with
    ``tensorboard`` (``training.tensorboard_folder``) its losses go to ``<tensorboard>/s<seed>__<spec>/``.

    Where some variant trains a code map (``+code``), every variant of the cell is built with one, frozen at the
    identity where its spec does not train it: it computes exactly the same function, and the cell's variants
    still stack into one ensemble. A variant whose trainable part is linear given its frozen features (an AE's
    ``closed_form_optimum`` exists: every variant of a linear network, the output layer alone, ...) is not trained
    but solved: its metrics are the optimum's (``solved_metrics``, ``solved`` = ``closed_form``, an empty
    train_log.csv). Besides the test metrics each trained variant (``solved`` = ``trained``) records ``train_mse``
    (its final weights on the training split), the closed-form optimum where there is one (``optimum_mse``,
    ``converged``) and the parameter counts of each side.
    """
    from aedissect.nets.data import load

    dev = setup_torch(threads, device)
    data = load(data_path)
    variants, names, first_spec, plan = cell_variants(runs, specs_by_run)
    out_dir_of = {run["run_id"]: Path(out_dir) for run, out_dir in zip(runs, out_dirs, strict=True)}
    models = cell_models(variants, data["x_train"])
    starts = models or initial_models(variants, data["x_train"])
    optima = [
        closed_form_optimum(start, v["freeze"], data["x_train"], data["x_test"])
        for start, v in zip(starts, variants, strict=True)
    ]
    solved = [optimum["optimum_reason"] == "" for optimum in optima]
    trained = [i for i, done in enumerate(solved) if not done]

    def pick(items: list) -> list:
        return [items[i] for i in trained]

    outcomes = train_members(
        pick(variants), data, dev, pick(names), models and pick(models), ensemble_on(runs), state_dir, tensorboard
    )
    results = dict(zip(trained, succeeded(outcomes), strict=True))
    metrics_of = [
        solved_metrics(start, optimum) if done else results[i]["metrics"] | variant_metrics(v, results[i], data, dev)
        for i, (v, start, optimum, done) in enumerate(zip(variants, starts, optima, solved, strict=True))
    ]
    for run, spec, key in plan:
        out_dir = out_dir_of[run["run_id"]]
        first, index = first_spec[key]
        metrics = {"run_id": run["run_id"], "freeze": spec, "frozen_layers": list(key[1][0]), "status": "ok"}
        metrics["output_bias"] = output_bias(key[1][1])
        metrics |= metrics_of[index] | ({"same_as": first} if first != spec else {})
        io.write_json(metrics, out_dir / spec / "train_metrics.json")
        history = results[index]["history"] if index in results else []
        history = pd.DataFrame(history, columns=HISTORY_COLUMNS).assign(run_id=run["run_id"], freeze=spec)
        io.write_csv(history, out_dir / spec / "train_log.csv")
    remove_state(state_dir)


# the columns of a training's history (``training.train``), which a solved variant's empty train_log.csv keeps
HISTORY_COLUMNS = ["epoch", "train_loss", "test_loss"]


def solved_metrics(start: GridAutoencoder, optimum: dict) -> dict:
    """A solved variant's metrics (``train_freeze_cell``): its closed-form optimum (``closed_form_optimum`` from
    its init ``start``) as its training and test MSE; the AE's loss is that MSE."""
    mse = optimum["optimum_test_mse"]
    return (
        {"test_loss": mse, "test_mse": mse, "psnr": 10.0 * np.log10(1.0 / mse) if mse > 0 else float("inf")}
        | {"train_mse": optimum["optimum_mse"], "solved": "closed_form"}
        | optimum
        | {"converged": True, "converged_tolerance": CONVERGED_TOLERANCE}
        | side_parameters(start)
    )


def cell_variants(runs: list[Run], specs_by_run: dict) -> tuple[list[Run], list[str], dict, list[tuple]]:
    """The trainings of one freeze cell: the variants (one per distinct ``variant_key`` of a run), their names, the
    first spec and variant index of each key, and every (run, spec, key) the cell writes out, in order."""
    variants, names, first_spec, plan = [], [], {}, []
    for run in runs:
        for spec in specs_by_run[run["run_id"]]:
            key = (run["run_id"], variant_key(run, spec))
            if key not in first_spec:
                first_spec[key] = (spec, len(variants))
                variants.append(freeze_variant(run, spec))
                names.append(f"s{run['seed']}__{spec}")
            plan.append((run, spec, key))
    return variants, names, first_spec, plan


def cell_models(variants: list[Run], x_train: torch.Tensor) -> list[GridAutoencoder] | None:
    """Where some variant of the cell trains a code map, every variant's start with one (None: their runs' own
    init), each from its normal run's init (``initial_models``: centred where ``training.init`` says so)."""
    code_map = any(parse_spec(v["freeze"])["code"] for v in variants)
    return initial_models(variants, x_train, code_map) if code_map else None


def side_parameters(model: GridAutoencoder) -> dict:
    """Parameter counts of the encoder (its layers up to and including the bottleneck layer) and the decoder
    (the rest) of the architecture; a code map is neither."""
    counts = layer_parameters(model)
    cut = model.bottleneck_cut
    return {"params_encoder": sum(counts[:cut]), "params_decoder": sum(counts[cut:])}


def variant_metrics(run: Run, result: dict, data: dict, device) -> dict:
    """What a freeze variant records besides its test metrics: ``train_mse`` of its final weights, the closed-form
    optimum of its trainable part where it is linear (``closed_form_optimum``) and the sides' parameter counts."""
    in_dim = data["x_train"].shape[1]
    x_train, x_test = data["x_train"].to(device), data["x_test"].to(device)
    has_map = "code_map.weight" in result["state"]
    final = build_model(run, in_dim, has_map).to(device)
    final.load_state_dict(result["state"])
    init = build_model(run, in_dim, has_map).to(device)
    init.load_state_dict(result["init_state"])
    train_mse = evaluate(final, x_train, run)["test_mse"]
    optimum = closed_form_optimum(init, run["freeze"], x_train, x_test)
    converged = None
    if optimum["optimum_reason"] == "":
        converged = bool(train_mse <= optimum["optimum_mse"] * (1 + CONVERGED_TOLERANCE))
    return (
        {"train_mse": train_mse, "solved": "trained"}
        | optimum
        | {"converged": converged, "converged_tolerance": CONVERGED_TOLERANCE}
        | side_parameters(init)
    )


# one affine map of a network seen as a chain (``affine_chain``): its module's name, and whether the activation after it
# is the identity
ChainMap = tuple[str, bool]


def affine_chain(model: GridAutoencoder) -> list[ChainMap]:
    """The AE as a chain of affine maps, each followed by its activation: its layers in order, with the code map (where
    the model has one) right after the bottleneck layer. A map is named by its module (``layers.3.0``, ``code_map``)."""
    chain = []
    for i, layer in enumerate(model.layers):
        chain.append((f"layers.{i}.0", isinstance(layer[1], nn.Identity)))
        if i == model.bottleneck_layer and model.code_map is not None:
            chain.append(("code_map", True))
    return chain


def run_chain(model: GridAutoencoder, chain: list[ChainMap], lo: int, hi: int, h: torch.Tensor) -> torch.Tensor:
    """Maps lo..hi-1 of the chain (each with its activation) applied to h."""
    for name, _ in chain[lo:hi]:
        h = model.get_submodule(name)(h)
        if name.startswith("layers."):
            h = model.layers[int(name.split(".")[1])][1](h)
    return h


def chain_width(model: GridAutoencoder, name: str, side: str = "out") -> int:
    module = model.get_submodule(name)
    return module.weight.shape[0 if side == "out" else 1]


def affine_rest(model: GridAutoencoder, chain: list[ChainMap], lo: int) -> tuple[np.ndarray, np.ndarray]:
    """(G, g0): the maps lo.. of the chain, affine (identity activations), as h -> G h + g0, in float64."""
    if lo == len(chain):
        d = chain_width(model, chain[-1][0])
        return np.eye(d), np.zeros(d)
    width = chain_width(model, chain[lo][0], "in")
    basis = torch.cat([torch.zeros(1, width), torch.eye(width)]).to(next(model.parameters()))
    out = run_chain(model, chain, lo, len(chain), basis).double().cpu().numpy()
    return (out[1:] - out[0]).T, out[0]


def reduced_rank_fit(H: np.ndarray, Y: np.ndarray, G: np.ndarray, rank: int | None, free_bias: bool):
    """The least-squares fit Y ~ G (M h + c) + b over M of rank at most ``rank`` (None: any) and c free, b free
    (``free_bias``) or 0: returns the fitted function of features h. In the coordinates of an orthonormal basis Q of
    G's column space (G maps onto it, so G M reaches every matrix there of rank <= rank) it is reduced-rank regression:
    least squares, then the fitted values projected on their top ``rank`` right singular vectors (Izenman 1975); the
    part of Y outside that column space is left, but its mean where b is free."""
    u, s, _ = np.linalg.svd(G, full_matrices=False)
    Q = u[:, s > s.max(initial=0.0) * max(G.shape) * np.finfo(np.float64).eps]
    y_mean = Y.mean(axis=0)
    outside = y_mean - Q @ (Q.T @ y_mean) if free_bias else np.zeros(Y.shape[1])
    if Q.shape[1] == 0:  # nothing but the bias trains
        return lambda h: np.broadcast_to(outside, (h.shape[0], Y.shape[1]))
    inside = ridge_optimum(H, Y @ Q, H, Y @ Q, lam=0.0)
    B, h_mean = inside["weights"], H.mean(axis=0)
    if rank is not None and rank < min(B.shape):
        _, _, vt = np.linalg.svd((H - h_mean) @ B, full_matrices=False)
        B = B @ vt[:rank].T @ vt[:rank]
    centre = h_mean @ inside["weights"] + inside["intercept"]  # the fit's value at the mean features

    def fitted(h: np.ndarray) -> np.ndarray:
        return ((h - h_mean) @ B + centre) @ Q.T + outside

    return fitted


@torch.no_grad()
def closed_form_optimum(model: GridAutoencoder, spec: str, x_train: torch.Tensor, x_test: torch.Tensor) -> dict:
    """The least-squares optimum of a freeze variant whose trainable part is linear in what it computes, from
    ``model`` at its init (a code map at the identity): ``optimum_mse`` on the training split (what training
    minimises, so a converged run's training MSE comes within ``CONVERGED_TOLERANCE`` of it), ``optimum_test_mse``,
    and ``optimum_reason`` ("" when computed, else why not). For the AE's MSE objective only.

    The network is a chain of affine maps (``affine_chain``). Where the maps whose weights train form one contiguous
    block and every activation from that block to the output is the identity, the output is G (M h + c) + g0 (+ b):
    h the frozen features before the block (any function of x), M the block's product (of rank at most its
    narrowest inner width), c free (the block's biases), G, g0 the frozen affine rest (``affine_rest``), b the output
    bias where only it trains of a frozen output layer (``+bias``): reduced-rank regression (``reduced_rank_fit``).
    This covers every freeze variant of a linear network (stacked Linear layers: ``encoder+code``, ``decoder+bias``,
    ``both+code+bias``, ``prefix-k``, ``suffix-k``, ...) and, in any network, the variants that train only the output
    layer, only a code map before a linear decoder, or only the output bias (the mean residual).
    """
    nan = {"optimum_mse": float("nan"), "optimum_test_mse": float("nan")}
    if model.kind != "ae":
        return nan | {"optimum_reason": "VAE: the closed form is for the AE's MSE objective"}
    if any(isinstance(module, nn.modules.conv._ConvNd) for module in model.modules()):
        return nan | {"optimum_reason": "a convolution: the closed form is written for chains of dense layers"}
    # in float64 throughout: float32 rounding of a rank-deficient linear prefix (a 9-wide cut of a 3-wide code) leaves
    # singular values ~1e-7 that least squares would fit as features
    model, x_train, x_test = copy.deepcopy(model).double().cpu(), x_train.double().cpu(), x_test.double().cpu()
    frozen = set(model.frozen_parameters(spec))
    # a frozen code map stays at its identity init: the function has no such map
    chain = [
        (name, identity)
        for name, identity in affine_chain(model)
        if f"{name}.weight" not in frozen or name != "code_map"
    ]
    block = [i for i, (name, _) in enumerate(chain) if f"{name}.weight" not in frozen]
    free_bias = f"layers.{model.n_layers - 1}.0.bias" not in frozen
    if not block and not free_bias:
        return nan | {"optimum_reason": "nothing trains"}
    if block and block != list(range(block[0], block[-1] + 1)):
        return nan | {"optimum_reason": "the trainable layers are not one block: no least-squares closed form"}
    X, X_test = x_train.numpy(), x_test.numpy()
    if not block:  # only the output bias: the mean residual of the frozen net
        out, out_test = (model(x).numpy() for x in (x_train, x_test))
        H, H_test, G, g0, rank, targets = out, out_test, np.zeros((X.shape[1], 0)), 0.0, None, X - out
    else:
        if not all(identity for _, identity in chain[block[0] :]):
            return nan | {
                "optimum_reason": "a nonlinear activation follows a trainable layer: no least-squares closed form"
            }
        H, H_test = (run_chain(model, chain, 0, block[0], x).numpy() for x in (x_train, x_test))
        G, g0 = affine_rest(model, chain, block[-1] + 1)
        rank = min((chain_width(model, chain[i][0]) for i in block[:-1]), default=None)
        targets = X - g0
    fit = reduced_rank_fit(H, targets, G, rank, free_bias)
    base, base_test = (out, out_test) if not block else (g0, g0)
    pred, pred_test = fit(H) + base, fit(H_test) + base_test
    return {
        "optimum_mse": float(((X - pred) ** 2).mean()),
        "optimum_test_mse": float(((X_test - pred_test) ** 2).mean()),
        "optimum_reason": "",
    }


def ensemble_on(runs: list[Run]) -> bool:
    return len(runs) > 0 and runs[0]["training"].get("ensemble", False)


def succeeded(results: list[dict]) -> list[dict]:
    """The results of an intervention's trainings; one that diverged fails the job, naming it."""
    failed = [r["error"] for r in results if r["status"] != "ok"]
    if failed:
        raise TrainingDiverged(f"{len(failed)} of {len(results)} trainings diverged: " + "; ".join(failed))
    return results


# ---------------------------------------------------------------- 2./3. re-initialisation and retraining


def layer_state(state: dict, layer: int) -> dict:
    prefix = f"layers.{layer}."
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def with_layer(model: GridAutoencoder, layer: int, source: dict) -> GridAutoencoder:
    """A copy of the model with one layer's weights taken from ``source`` (a full state dict)."""
    out = copy.deepcopy(model)
    out.load_state_dict(layer_state(source, layer), strict=False)
    return out


def rerandomised(model: GridAutoencoder, layer: int, seed: int) -> GridAutoencoder:
    """A copy with one layer drawn afresh from the init distribution (nn.Linear's own reset), seeded.

    Always PyTorch's default draw, also for runs with ``training.init: centred``: a fresh draw is not centred
    (re-initialising a layer from the saved ``init_state`` gives its centred init)."""
    out = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out.layers[layer][0].reset_parameters()
    return out


def retrain_run(run: Run, epochs: int) -> Run:
    """The run that retrains one layer of a trained model for ``epochs``. A VAE's KL warm-up is dropped: it is
    meant for training from init, and a retraining shorter than the warm-up would never reach the ELBO."""
    out = copy.deepcopy(run)
    out["training"] = out["training"] | {"epochs": epochs, "keep_epochs": []}
    if "vae" in out:
        out["vae"].pop("kl_warmup_epochs", None)
    return out


def retrain_layers(
    items: list[tuple],
    data: dict,
    options: dict,
    device,
    state_dir: Path | None = None,
    tensorboard: Path | None = None,
) -> dict:
    """Every layer of every (run, model, payload) re-initialised and retrained alone, the rest frozen at its
    trained weights: {(run_id, layer): test metrics}. Like architectures' retrainings stack into one ensemble;
    with ``tensorboard`` each one's losses go to ``<tensorboard>/<run_id>__retrain-<layer>/``."""
    runs, models, names, keys = [], [], [], []
    for run, model, payload in items:
        for layer in range(model.n_layers):
            runs.append(retrain_run(run, options["retrain_epochs"]) | {"freeze": f"except-{layer}"})
            models.append(with_layer(model, layer, payload["init_state"]))
            names.append(f"{run['run_id']}__retrain-{layer}")
            keys.append((run["run_id"], layer))
    results = succeeded(train_members(runs, data, device, names, models, ensemble_on(runs), state_dir, tensorboard))
    return {key: result["metrics"] for key, result in zip(keys, results, strict=True)}


def mean_predictor_mse(x_train: torch.Tensor, x_test: torch.Tensor) -> float:
    """The test MSE per element of the mean predictor: every test sample predicted by the training split's mean
    (float64), what a network that learnt nothing about its input can reach."""
    mean = x_train.double().mean(dim=0)
    return float((x_test.double().cpu() - mean.cpu()).pow(2).mean())


def normalised_damage(mse: float, trained_mse: float, mean_mse: float) -> float:
    """An intervention's damage as the share of what training gained over the mean predictor that it undoes:
    (MSE_intervened - MSE) / (MSE_mean_predictor - MSE). 0: no damage (the trained weights); 1: as bad as predicting
    the training mean; above 1: worse than that. Unlike MSE_intervened / MSE it does not grow as the trained model
    gets better. NaN where the trained model is no better than the mean predictor (nothing to undo)."""
    gained = mean_mse - trained_mse
    return float((mse - trained_mse) / gained) if gained > 0 else float("nan")


def layer_parameters(model: GridAutoencoder) -> list[int]:
    """Parameter count per layer (the VAE's bottleneck layer with its log-variance head)."""
    return [sum(p.numel() for p in layer.parameters()) for layer in model.layers]


def criticality(
    run: Run,
    model: GridAutoencoder,
    payload: dict,
    data: dict,
    options: dict,
    device: torch.device,
    retrained: dict | None = None,
) -> list[dict]:
    """Per layer: test loss with the layer re-initialised, re-randomised, rewound to each kept epoch, and
    re-initialised then retrained alone (``retrained``, from ``retrain_layers``: computed here if not given);
    ``ratio`` is the test MSE over the trained model's, ``damage`` the normalised increase
    (``normalised_damage``: 0 for the trained weights, 1 for the mean predictor, whose test MSE is
    ``mean_predictor_test_mse``); ``params`` the layer's parameter count."""
    if retrained is None and options["retrain_epochs"] > 0:
        retrained = retrain_layers([(run, model, payload)], data, options, device)
    x_test = data["x_test"].to(device)
    trained = evaluate(model, x_test, run)
    mean_mse = mean_predictor_mse(data["x_train"], data["x_test"])
    params = layer_parameters(model)
    rows = []

    def record(layer, intervention, metrics, **extra):
        rows.append(
            {"layer": layer, "layer_name": model.layer_names[layer], "intervention": intervention}
            | {"side": model.cut_side(layer + 1), "params": params[layer]}
            | {m: metrics[m] for m in METRICS}
            | {f"trained_{m}": trained[m] for m in METRICS}
            | {"mean_predictor_test_mse": mean_mse}
            | extra
        )

    for layer in range(model.n_layers):
        record(layer, "trained", evaluate(with_layer(model, layer, payload["state"]), x_test, run))
        record(layer, "reinit", evaluate(with_layer(model, layer, payload["init_state"]), x_test, run))
        seed = options["rerandom_seed"] + 1000 * run["seed"] + layer
        record(layer, "rerandom", evaluate(rerandomised(model, layer, seed), x_test, run))
        for epoch, state in sorted(payload["epoch_states"].items()):
            record(layer, f"rewind-{int(epoch)}", evaluate(with_layer(model, layer, state), x_test, run))
        if options["retrain_epochs"] > 0:
            record(layer, "retrain", retrained[run["run_id"], layer])
    for row in rows:
        row["ratio"] = row["test_mse"] / row["trained_test_mse"]
        row["damage"] = normalised_damage(row["test_mse"], row["trained_test_mse"], mean_mse)
        row["critical"] = bool(row["ratio"] > options["factor"])
    reinit = {r["layer"]: r["test_mse"] for r in rows if r["intervention"] == "reinit"}
    for row in rows:
        if row["intervention"] == "retrain":
            lost = reinit[row["layer"]] - row["trained_test_mse"]
            row["recovered"] = (reinit[row["layer"]] - row["test_mse"]) / lost if lost > 0 else float("nan")
    return rows


def criticality_table(
    runs: list[Run],
    loaded: list[tuple],
    data: dict,
    options: dict,
    dev,
    state_dir: Path | None = None,
    tensorboard: Path | None = None,
) -> pd.DataFrame:
    """Criticality of every layer of every model of one group (all architectures and seeds), ``loaded`` the
    models and payloads of ``runs`` as ``load_model`` returns them."""
    loaded = [(run, *item) for run, item in zip(runs, loaded, strict=True)]
    retrained = None
    if options["retrain_epochs"] > 0:
        retrained = retrain_layers(loaded, data, options, dev, state_dir, tensorboard)
    frames = []
    for run, model, payload in loaded:
        log.info("criticality of %s", run["run_id"])
        rows = criticality(run, model, payload, data, options, dev, retrained)
        frames.append(pd.DataFrame(rows).assign(run_id=run["run_id"]))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- 4. stitching

# what a stitch is trained on, the same for the AE and the VAE: the MSE between B's mean output after the stitch
# (a Bernoulli VAE's logits squashed) and the input, per element (``Stitched``)
STITCH_OBJECTIVE = "mse_of_b_mean_output"


class Stitched(nn.Module):
    """A's prefix to cut ``cut_a``, an affine stitch, B's suffix from cut ``cut_b``; both networks frozen
    (``frozen_parameters``: only the stitch trains). The cuts default to the bottlenecks (the VAE's mu): A's encoder
    into B's decoder. It holds A and B themselves, not copies: training copies a start (``fit_stitches``).

    It outputs B's mean reconstruction (a Bernoulli VAE's logits squashed), so as ``kind = "ae"`` the training
    loop fits the stitch to, and ``evaluate`` reports, the reconstruction MSE (``STITCH_OBJECTIVE``). The cuts are
    no parameters: ``stitch_start`` names them in the stitch's run config, so that stitches at different cuts whose
    weights happen to have the same shapes are never stacked into one ensemble.
    """

    kind = "ae"

    def __init__(
        self,
        a: GridAutoencoder,
        b: GridAutoencoder,
        stitch: nn.Module,
        b_run: Run,
        cut_a: int | None = None,
        cut_b: int | None = None,
    ):
        super().__init__()
        self.a, self.b, self.stitch = a, b, stitch
        self.cut_a = a.bottleneck_cut if cut_a is None else cut_a
        self.cut_b = b.bottleneck_cut if cut_b is None else cut_b
        self.squash = b.kind == "vae" and b_run["vae"]["likelihood"] == "bernoulli"

    def frozen_parameters(self, spec: str) -> list[str]:
        """Both networks' parameters: only the stitch trains."""
        if spec != "none":
            raise ValueError("a stitched model takes no freeze spec: both networks are frozen already")
        return [name for name, _ in self.named_parameters() if not name.startswith("stitch.")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stitch(self.a.forward_to(x, self.cut_a))
        out = self.b.forward_from(h, self.cut_b)
        return torch.sigmoid(out) if self.squash else out


def cut_shape(model: GridAutoencoder, cut: int, x: torch.Tensor) -> tuple[int, ...]:
    """The shape of one point's activations at a cut (the code's for the bottleneck: the VAE's mu only): (width,)
    or a feature map's (C, H, W)."""
    with torch.no_grad():
        return tuple(model.forward_to(x[:1], cut).shape[1:])


def identity_stitch(shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> nn.Module:
    """The stitch that passes A's activations as they are (truncated or zero-padded to B's width): a Linear between
    dense cuts, a 1 x 1 convolution between feature maps on one grid (Bansal et al. 2021, channels to channels at
    every position)."""
    stitch = _stitch_module(shape_in, shape_out)
    with torch.no_grad():
        stitch.weight.copy_(torch.eye(shape_out[0], shape_in[0]).reshape(stitch.weight.shape))
        stitch.bias.zero_()
    return stitch


def _stitch_module(shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> nn.Module:
    if len(shape_in) == 1 and len(shape_out) == 1:
        return Linear(shape_in[0], shape_out[0])
    if len(shape_in) == 3 and len(shape_out) == 3 and shape_in[1:] == shape_out[1:]:
        return nn.Conv2d(shape_in[0], shape_out[0], kernel_size=1)
    raise ValueError(
        f"no stitch from activations of shape {shape_in} to {shape_out}: dense to dense, or maps on one grid"
    )


@torch.no_grad()
def least_squares_stitch(
    a: GridAutoencoder,
    b: GridAutoencoder,
    x: torch.Tensor,
    cut_a: int | None = None,
    cut_b: int | None = None,
    codes: dict | None = None,
) -> nn.Module:
    """The affine map that best predicts B's activations at ``cut_b`` from A's at ``cut_a`` on ``x`` (least
    squares with a bias, minimum norm where dead units make it underdetermined); the cuts default to the codes.
    Between feature maps a 1 x 1 convolution (``identity_stitch``), fitted on every point and position as one
    sample of channels. ``codes``: a dict that keeps each network's code on ``x`` once computed (a group's job
    stitches every code into several networks); activations at other cuts are computed each time (they are wide,
    used at most twice)."""
    cut_a = a.bottleneck_cut if cut_a is None else cut_a
    cut_b = b.bottleneck_cut if cut_b is None else cut_b
    ha, hb = _activations(a, x, cut_a, codes), _activations(b, x, cut_b, codes)
    stitch = _stitch_module(tuple(ha.shape[1:]), tuple(hb.shape[1:])).to(x.device)
    ha, hb = (h.movedim(1, -1).reshape(-1, h.shape[1]) for h in (ha, hb))  # maps: one row per point and position
    design = torch.cat([ha, torch.ones(ha.shape[0], 1, dtype=ha.dtype, device=ha.device)], dim=1)
    solution = torch.linalg.lstsq(design.cpu(), hb.cpu(), driver="gelsd").solution
    stitch.weight.copy_(solution[:-1].T.reshape(stitch.weight.shape).to(stitch.weight))
    stitch.bias.copy_(solution[-1].to(stitch.bias))
    return stitch


def _activations(model: GridAutoencoder, x: torch.Tensor, cut: int, codes: dict | None) -> torch.Tensor:
    if codes is None or cut != model.bottleneck_cut:
        return model.forward_to(x, cut).double()
    key = id(model)  # the job holds its models until it ends: ids stay theirs
    if key not in codes:
        codes[key] = model.forward_to(x, cut).double()
    return codes[key]


def stitch_start(
    a,
    b,
    b_run: Run,
    data: dict,
    options: dict,
    device,
    cut_a: int | None = None,
    cut_b: int | None = None,
    codes: dict | None = None,
) -> tuple[Run, Stitched]:
    """A stitch's training run and its start: the least-squares match of A's activations at ``cut_a`` to B's at
    ``cut_b`` (default: the codes) on the training set, between both (frozen) networks themselves: training fits a
    copy (``fit_stitches``). Trained on B's reconstruction, it reports the reconstruction MSE. The run names the
    cuts (``plans.stitch_cuts``): stitches at other cuts are other trainings, never one ensemble. ``codes``: as
    ``least_squares_stitch``."""
    cut_a = a.bottleneck_cut if cut_a is None else cut_a
    cut_b = b.bottleneck_cut if cut_b is None else cut_b
    start = least_squares_stitch(a, b, data["x_train"].to(device), cut_a, cut_b, codes)
    # a model stitched to itself: two modules, else its state dict would name the shared weights once only
    stitched = Stitched(a, copy.deepcopy(b) if b is a else b, start, b_run, cut_a, cut_b)
    run = copy.deepcopy(b_run) | {"run_id": f"stitch-to-{b_run['run_id']}", "stitch_cuts": [cut_a, cut_b]}
    run["training"] = run["training"] | {
        "epochs": options["epochs"],
        "batch_size": options["batch_size"],
        "lr": options["lr"],
        "keep_epochs": [],
        "weight_decay": 0.0,
    }
    return run, stitched


def fit_stitches(
    starts: list[tuple[dict, Stitched]], names: list[str], data: dict, device, state_dir=None, tensorboard=None
) -> list:
    """Fit every (run, stitched start) with the one training path; their test metrics, in order. The starts share
    their networks (``stitch_start``): an ensemble trains copies of them, training one by one gets a copy each.
    With ``tensorboard`` each one's losses go to ``<tensorboard>/<name>/``."""
    runs, models = [run for run, _ in starts], [model for _, model in starts]
    if not ensemble_on(runs):
        models = [copy.deepcopy(model) for model in models]
    results = succeeded(train_members(runs, data, device, names, models, ensemble_on(runs), state_dir, tensorboard))
    return [result["metrics"] for result in results]


def fit_stitch(
    a, b, b_run: Run, data: dict, options: dict, device, state_dir: Path | None = None, cut_a=None, cut_b=None
) -> dict:
    """One stitch from A's activations at ``cut_a`` into B's at ``cut_b`` (default: the codes), fitted; its test
    metrics."""
    start = stitch_start(a, b, b_run, data, options, device, cut_a, cut_b)
    return fit_stitches([start], ["stitch"], data, device, state_dir)[0]


def normalised_penalties(table: pd.DataFrame) -> pd.DataFrame:
    """stitching rows with the penalty normalised two ways (NaN where the denominator is not positive):

    - ``normalised_penalty_init_a`` = (stitched - B) / (init_a stitched - B), the ``init_a`` row of the same pair
      and cuts (``init_a_test_mse``) as the control: 0 when the stitched network is as good as B, 1 when A's
      trained prefix is worth no more than its untrained one, stitched the same way;
    - ``normalised_penalty_mean`` = (stitched - B) / (mean predictor - B) (``mean_predictor_test_mse``): 1 when
      the stitched network is no better than predicting the training mean.

    Expects ``run_id_a, run_id_b, cut_a, cut_b, stitch, test_mse, b_test_mse, mean_predictor_test_mse``."""
    table = table.copy()
    pair = ["run_id_a", "run_id_b", "cut_a", "cut_b"]
    controls = table[table["stitch"] == "init_a"].set_index(pair)["test_mse"]
    keys = pd.MultiIndex.from_frame(table[pair])
    table["init_a_test_mse"] = controls.reindex(keys).to_numpy()
    gain = table["test_mse"] - table["b_test_mse"]
    for column, reference in (("init_a", "init_a_test_mse"), ("mean", "mean_predictor_test_mse")):
        gap = table[reference] - table["b_test_mse"]
        table[f"normalised_penalty_{column}"] = (gain / gap.where(gap > 0)).astype(float)
    return table


def stitching_table(
    runs: list[Run],
    loaded: list[tuple],
    data: dict,
    options: dict,
    dev,
    state_dir: Path | None = None,
    tensorboard: Path | None = None,
) -> pd.DataFrame:
    """Every configured pair of one group (same data set, kind, bottleneck size and activation): one row per pair,
    cut and stitch (``identity``, ``trained``, ``init_a``) with its penalty, normalised (``normalised_penalties``).
    Pairs of one architecture are stitched at every hidden cut, pairs of two at the bottleneck
    (``plans.stitch_cuts``). The stitches of like pairs (same architectures, same cut) are fitted as one ensemble."""
    x_test = data["x_test"].to(dev)
    models = [m for m, _ in loaded]
    inits = []
    for run, (_, payload) in zip(runs, loaded, strict=True):
        init = build_model(run, payload["in_dim"]).to(dev)
        init.load_state_dict(payload["init_state"])
        inits.append(init)
    own = [evaluate(m, x_test, run)["test_mse"] for m, run in zip(models, runs, strict=True)]
    pairs = stitch_pairs(runs, options["pair_types"])
    results, starts, names, slots, codes = [], [], [], [], {}
    for i, j, pair_type in pairs:
        a, b, b_run = models[i], models[j], runs[j]
        for cut_a, cut_b in stitch_cuts(runs[i], b_run, pair_type):
            stitch = identity_stitch(cut_shape(a, cut_a, x_test), cut_shape(b, cut_b, x_test))
            identity = Stitched(a, b, stitch, b_run, cut_a, cut_b)
            results.append(((i, j, pair_type, cut_a, cut_b), {"identity": evaluate(identity, x_test, b_run)}))
            if pair_type != "self" or options["fit_self"]:
                for stitch, start in (("trained", a), ("init_a", inits[i])):
                    starts.append(stitch_start(start, b, b_run, data, options, dev, cut_a, cut_b, codes))
                    names.append(f"{runs[i]['run_id']}__{b_run['run_id']}__c{cut_a}-{cut_b}__{stitch}")
                    slots.append((len(results) - 1, stitch))
    log.info("fitting %d stitches of %d pairs at %d cuts", len(starts), len(pairs), len(results))
    fitted = fit_stitches(starts, names, data, dev, state_dir, tensorboard)
    for (slot, stitch), metrics in zip(slots, fitted, strict=True):
        results[slot][1][stitch] = metrics
    mean_mse = mean_predictor_mse(data["x_train"], data["x_test"])
    rows = []
    for (i, j, pair_type, cut_a, cut_b), fitted in results:
        b = models[j]
        where = {"cut_a": cut_a, "cut_b": cut_b, "cut_name": b.cut_names()[cut_b], "cut_side": b.cut_side(cut_b)}
        where |= {"cut_offset": cut_b - b.bottleneck_cut}
        for stitch, metrics in fitted.items():
            rows.append(
                {"run_id": runs[j]["run_id"], "run_id_a": runs[i]["run_id"], "run_id_b": runs[j]["run_id"]}
                | {"a_arch": runs[i]["arch"]}
                | {"a_seed": runs[i]["seed"], "pair_type": pair_type, "stitch": stitch}
                | where
                | {"stitch_objective": STITCH_OBJECTIVE, "test_mse": metrics["test_mse"], "b_test_mse": own[j]}
                | {"mean_predictor_test_mse": mean_mse, "penalty": metrics["test_mse"] - own[j]}
            )
    return normalised_penalties(pd.DataFrame(rows))


# ---------------------------------------------------------------- the group jobs (rules criticality, stitching)

GROUP_TABLES = {"criticality": criticality_table, "stitching": stitching_table}


def group_job(
    intervention: str,
    runs: list[Run],
    model_paths: list[str],
    data_path: str,
    options: dict,
    threads: int,
    device: str,
    out_path: str,
    state_dir: Path | None = None,
    tensorboard: Path | None = None,
) -> None:
    """One intervention (a key of ``GROUP_TABLES``) on every model of one group (same data set, kind, bottleneck
    and activation; every architecture and seed): one CSV. What it trains keeps its resume checkpoint in
    ``state_dir`` until the CSV is written, and writes its losses to ``tensorboard`` where given."""
    from aedissect.nets.data import load

    dev = setup_torch(threads, device)
    data = load(data_path)
    loaded = [load_model(path, str(dev)) for path in model_paths]
    io.write_csv(GROUP_TABLES[intervention](runs, loaded, data, options, dev, state_dir, tensorboard), out_path)
    remove_state(state_dir)


# the jobs of rules criticality and stitching (workflow/scripts/intervention_group.py calls ``<rule>_group``)
criticality_group = functools.partial(group_job, "criticality")
stitching_group = functools.partial(group_job, "stitching")
