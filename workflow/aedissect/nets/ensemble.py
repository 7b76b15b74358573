"""Many trainings at once, as one batched model: every seed of a cell, the freeze sweep, retrained layers, stitches.

The members' weights are stacked (``torch.func.stack_module_state``) and run, by ``functional_call``, through the
same module and the same ``training.loss_terms`` that ``training.train`` uses: its layers (``models.Linear``) take
stacked weights as one batched product per layer, and the loss is per member. (``vmap`` of the single model's
loss computes the same, at 2.4 times the time per step for 8 digits AEs: its per-op dispatch, not the products,
dominated these small models.) Everything that makes a training a training stays per member:

- its starting weights: ``initial_model(run)`` from its own seed (centred on the training data where
  ``training.init`` says so), or a given module's weights (a layer re-initialised for retraining, a stitch
  between two frozen networks);
- which parameters train: a member's freeze spec (and the parameters its module holds fixed already)
  is a mask on its slices of the stacked gradients. With a zero gradient Adam's moments stay zero and its
  step is exactly zero, so a frozen slice stays bitwise at its start (with weight decay it is put back);
- its batch order and VAE noise: a ``torch.Generator`` seeded by its seed, drawn in the same
  order as ``train`` draws them (one ``randperm`` per epoch, then one ``randn`` per batch); members with the
  same seed (a seed's freeze variants) draw the same, so they share one generator and its draws;
- its optimiser state: Adam is elementwise, so one Adam over the stacked tensors keeps a separate
  first and second moment for every member's every weight, and each member's gradient is that of
  its own loss (the members' losses are summed, and share no weights);
- its budget: a member with fewer epochs is taken as it was after its last one;
- its KL warm-up (a VAE's ``vae.kl_warmup_epochs``, shared by the members): the rate's weight of the step,
  ``training.kl_weight``, passed into the mapped loss; every member is at the same step.

So every member's final weights equal those of its own ``train`` run within float tolerance (the
batched matrix products round differently), and each result has the layout ``train`` returns,
ready for ``jobs.save_run``. Many small models then make one large batched product, which is
what keeps a CPU's cores or a GPU busy, and one job pays the start-up cost once for all of them.
``train_members`` is the one entry point of every job that trains: it stacks what can be stacked
(same shapes, same batch size and optimiser settings) and trains the rest one by one.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from aedissect import io
from aedissect.architectures import has_conv
from aedissect.config import Run, config_hash
from aedissect.nets.models import build_model, initial_models
from aedissect.nets.training import (
    EVAL_SEED,
    Progress,
    adam,
    checkpoint_path,
    clone_state,
    evaluate,
    kl_weight,
    load_resume,
    loss_terms,
    lr_schedule_name,
    state_digest,
    train,
)
from aedissect.status import TrainingDiverged, diverged_result

log = logging.getLogger("aedissect.nets.ensemble")
# what members of one ensemble may differ in: everything else of the run (model, loss, optimiser) is shared
PER_MEMBER_KEYS = ("run_id", "seed", "freeze", "epochs", "keep_epochs")


class _Loss(nn.Module):
    """``loss_terms`` as a module's forward, so that ``functional_call`` can swap in a member's weights."""

    def __init__(self, model: nn.Module, run: Run):
        super().__init__()
        self.model = model
        self.run = run

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None, beta: float | None = None) -> torch.Tensor:
        return loss_terms(self.model, x, self.run, None, eps, beta)["loss"]


def shared_part(run: Run) -> dict:
    """The part of a run that all members of one ensemble must have in common."""
    shared = {k: v for k, v in run.items() if k not in PER_MEMBER_KEYS}
    # a learning-rate schedule runs over the whole budget, so members with a schedule share their epochs too
    scheduled = lr_schedule_name(run["training"]) != "constant"
    shared["training"] = {
        k: v for k, v in run["training"].items() if k not in PER_MEMBER_KEYS or (scheduled and k == "epochs")
    }
    return shared


def check_members(runs: list[Run], models: list[nn.Module]) -> None:
    """The members must share their model's shapes, loss and optimiser settings."""
    first = shared_part(runs[0])
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in models]
    for run, shape in zip(runs[1:], shapes[1:], strict=True):
        if shared_part(run) != first or shape != shapes[0]:
            raise ValueError(
                f"ensemble members may differ only in {', '.join(PER_MEMBER_KEYS)} and their starting weights: "
                f"{runs[0]['run_id']} vs {run['run_id']}"
            )


def frozen_names(model: nn.Module, run: Run) -> set[str]:
    """The parameters a member holds fixed: its freeze spec's and those its module has frozen already."""
    fixed = {name for name, p in model.named_parameters() if not p.requires_grad}
    return fixed | set(model.frozen_parameters(run.get("freeze", "none")))


def partly_trained(model: nn.Module, run: Run) -> dict:
    """The parameters a member freezes in part, each with its mask of the elements that train."""
    masks = getattr(model, "trainable_masks", None)
    return masks(run.get("freeze", "none")) if masks is not None else {}


def train_ensemble(
    runs: list[Run],
    data: dict,
    device: torch.device,
    resume_path: Path | None = None,
    models: list[nn.Module | None] | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """Train the runs together; returns one ``train``-shaped result per run, in order.

    ``models``: per run, a module to start from instead of the run's seeded init (None: the seeded init), as
    ``train``'s ``model``. ``resume_path``: one checkpoint of the whole ensemble (stacked weights, Adam's state,
    every member's generator, histories and divergences) every ``checkpoint_every`` epochs and after the last.
    ``progress``: the job's ``Progress``, whose next planned training this ensemble is; None: one of its own."""
    run0 = runs[0]
    tr = run0["training"]
    x_train = data["x_train"].to(device)
    x_test = data["x_test"].to(device)
    n, in_dim = x_train.shape
    batch_size, n_members = tr["batch_size"], len(runs)
    given = models or [None] * n_members
    seeded = iter(initial_models([run for run, m in zip(runs, given, strict=True) if m is None], data["x_train"]))
    members = [(next(seeded) if m is None else copy.deepcopy(m)).to(device) for m in given]
    check_members(runs, members)
    init_states = [clone_state(m) for m in members]
    frozen = [frozen_names(m, run) for m, run in zip(members, runs, strict=True)]
    partly = [partly_trained(m, run) for m, run in zip(members, runs, strict=True)]
    for m in members:  # stack_module_state needs one requires_grad per name; the masks below say who trains
        m.requires_grad_(True)
    params, buffers = stack_module_state(members)  # {name: [M, ...]}, detached leaves
    masks = {}
    for name, p in params.items():
        trains = torch.tensor([name not in f for f in frozen], device=device)
        p.requires_grad_(bool(trains.any()))
        if any(name in part for part in partly):  # frozen in part: one mask per element
            masks[name] = torch.stack(
                [
                    part[name].to(device, p.dtype) if name in part else torch.full_like(p[0], float(t))
                    for part, t in zip(partly, trains.tolist(), strict=True)
                ]
            )
        elif trains.any() and not trains.all():
            masks[name] = trains.to(p.dtype).view(-1, *[1] * (p.dim() - 1))
    optimizer = adam([p for p in params.values() if p.requires_grad], tr, math.ceil(n / batch_size))
    starts = {name: params[name].detach().clone() for name in masks} if tr["weight_decay"] > 0 else {}
    # members with the same seed draw the same batch orders and noise (one randperm per epoch, one randn per batch),
    # so one generator per seed draws them once, and each member takes its seed's (``draws``: the row of its seed)
    seeds = dict.fromkeys(run["seed"] for run in runs)
    by_seed = {seed: torch.Generator(device=device).manual_seed(seed) for seed in seeds}
    generators = [by_seed[run["seed"]] for run in runs]  # per member, as checkpoints keep them
    draws = torch.tensor([list(by_seed).index(run["seed"]) for run in runs], device=device)
    epochs = [run["training"]["epochs"] for run in runs]
    steps_per_epoch = math.ceil(n / batch_size)

    base = _Loss(copy.deepcopy(members[0]).to("meta"), run0)
    prefixed = {f"model.{k}": v for k, v in params.items()}
    prefixed_buffers = {f"model.{k}": v for k, v in buffers.items()}
    is_vae = getattr(members[0], "kind", "ae") == "vae"
    latent = getattr(members[0], "latent_dim", 0)

    def member_losses(x, eps, beta=None):
        """Every member's loss, [M]: the stacked weights run through the one module (``models.linear``)."""
        return functional_call(base, (prefixed, prefixed_buffers), (x, eps, beta))

    # the noise of the VAE's test loss: evaluate() draws it from a generator seeded EVAL_SEED, the same for all
    eval_eps = None
    if is_vae:
        gen = torch.Generator(device=device).manual_seed(EVAL_SEED)
        eval_eps = torch.randn((x_test.shape[0], latent), generator=gen, device=device)

    histories = [[] for _ in runs]
    epoch_states = [{} for _ in runs]
    final_states: dict[int, dict] = {}
    # a member that diverges keeps being stepped (its NaNs stay in its own slices of the stacked weights and of
    # Adam's moments) but is recorded as diverged, as train_runs records a diverged run; the others go on
    diverged: dict[int, TrainingDiverged] = {}
    chash = config_hash(
        {
            "ensemble": runs,
            "start": [None if m is None else state_digest(s) for m, s in zip(given, init_states, strict=True)],
        }
    )
    start = 1
    resume = load_resume(resume_path, chash) if resume_path is not None else None
    if resume is not None:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(resume["params"][name])
        optimizer.load_state_dict(resume["optimizer"])
        for g, state in zip(generators, resume["generators"], strict=True):
            g.set_state(state)
        histories, epoch_states, start = resume["histories"], resume["epoch_states"], resume["epoch"] + 1
        final_states = resume["final_states"]
        diverged = {m: TrainingDiverged(msg, histories[m]) for m, msg in resume["diverged"].items()}
    progress = progress or Progress([([run["run_id"] for run in runs], max(epochs))])
    progress.begin(start)
    for epoch in range(start, max(epochs) + 1):
        perms = torch.stack([torch.randperm(n, generator=g, device=device) for g in by_seed.values()])  # [S, n]
        total = torch.zeros(n_members, device=device)
        for step, begin in enumerate(range(0, n, batch_size), start=(epoch - 1) * steps_per_epoch):
            idx = perms[:, begin : begin + batch_size]  # [S, b]
            # each seed's batch (one index_select of the flat indices: x_train[idx] took five times as long), then
            # each member's
            xb = x_train.index_select(0, idx.reshape(-1)).view(*idx.shape, in_dim).index_select(0, draws)  # [M, b, d]
            eps = None
            if is_vae:
                shape = (idx.shape[1], latent)
                eps = torch.stack([torch.randn(shape, generator=g, device=device) for g in by_seed.values()])
                eps = eps.index_select(0, draws)
            # the KL warm-up's weight: every member is at the same step (their vae options are shared)
            losses = member_losses(xb, eps, kl_weight(run0, step, steps_per_epoch))
            optimizer.zero_grad()
            losses.sum().backward()
            for name, mask in masks.items():
                params[name].grad.mul_(mask)
            optimizer.step()
            if starts:  # weight decay moves a weight without a gradient: put the frozen slices back
                with torch.no_grad():
                    for name, mask in masks.items():
                        params[name].copy_(torch.where(mask.bool(), params[name], starts[name]))
            total += losses.detach() * idx.shape[1]
        train_loss = (total / n).tolist()
        with torch.no_grad():
            test = member_losses(x_test, eval_eps).tolist()
        for m, run in enumerate(runs):
            if m in diverged or epoch > epochs[m]:
                continue
            if not math.isfinite(train_loss[m]):
                message = f"run {run['run_id']}: training loss is {train_loss[m]} at epoch {epoch}"
                diverged[m] = TrainingDiverged(message, histories[m])
                log.error("%s; going on with the other members", message)
                continue
            histories[m].append({"epoch": epoch, "train_loss": train_loss[m], "test_loss": test[m]})
            if epoch in run["training"]["keep_epochs"]:
                epoch_states[m][epoch] = member_state(params, buffers, m)
            if epoch == epochs[m] and epochs[m] < max(epochs):
                final_states[m] = member_state(params, buffers, m)
        progress.epoch(epoch, train_loss, test)
        if resume_path is not None and (epoch % tr["checkpoint_every"] == 0 or epoch == max(epochs)):
            checkpoint = {
                "config_hash": chash,
                "epoch": epoch,
                "params": {k: v.detach() for k, v in params.items()},
                "optimizer": optimizer.state_dict(),
                "generators": [g.get_state() for g in generators],
                "histories": histories,
                "epoch_states": epoch_states,
                "final_states": final_states,
                "diverged": {m: str(err) for m, err in diverged.items()},
            }
            with io.atomic_path(resume_path) as tmp:
                torch.save(checkpoint, tmp)

    results = []
    for m, (run, model) in enumerate(zip(runs, members, strict=True)):
        state = final_states.get(m) or member_state(params, buffers, m)
        model.load_state_dict(state)
        metrics = evaluate(model, x_test, run) if m not in diverged else None
        if metrics is not None and not math.isfinite(metrics["test_loss"]):
            message = f"run {run['run_id']}: test loss is {metrics['test_loss']} after training"
            diverged[m] = TrainingDiverged(message, histories[m])
        if m in diverged:
            results.append(diverged_result(diverged[m], in_dim))
            continue
        results.append(
            {
                "status": "ok",
                "state": state,
                "init_state": init_states[m],
                "epoch_states": epoch_states[m],
                "history": histories[m],
                "metrics": metrics,
                "in_dim": in_dim,
            }
        )
    return results


def member_state(params: dict, buffers: dict, m: int) -> dict:
    """Member m's weights as a state dict of the single model."""
    return {k: v[m].detach().clone() for k, v in {**params, **buffers}.items()}


def stack_key(run: Run, model: nn.Module | None, in_dim: int) -> str:
    """Members with the same key can share one ensemble."""
    model = model if model is not None else build_model(run, in_dim)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return config_hash({"run": shared_part(run), "module": type(model).__name__, "shapes": shapes})


def train_members(
    runs: list[Run],
    data: dict,
    device: torch.device,
    names: list[str],
    models: list[nn.Module | None] | None = None,
    ensemble: bool = True,
    state_dir: Path | None = None,
    tensorboard: Path | None = None,
) -> list[dict]:
    """Train every run (from ``models[i]`` where given) and return ``train``-shaped results in order; a diverged
    run gets ``status.diverged_result`` instead of raising. With ``ensemble`` the runs that can be stacked train
    as one ensemble per stack (dense nets), else one after another. ``names`` are the members' checkpoint names in
    ``state_dir`` (``training.checkpoint_path``); an ensemble's checkpoint is named after its first member. Every
    epoch of every training is reported to one ``training.Progress`` for the whole job (log,
    ``<state_dir>/progress.csv`` and, with ``tensorboard``, ``<tensorboard>/<name>/`` per member)."""
    models = models or [None] * len(runs)
    in_dim = data["x_train"].shape[1]
    results: list[dict | None] = [None] * len(runs)
    stacks: dict[str, list[int]] = {}
    alone = []
    for i, (run, model) in enumerate(zip(runs, models, strict=True)):
        if ensemble and not has_conv(run):  # the stacked products are dense (models.linear): convolutions go alone
            stacks.setdefault(stack_key(run, model, in_dim), []).append(i)
        else:
            alone.append(i)
    plan = [([names[i] for i in ids], max(runs[i]["training"]["epochs"] for i in ids)) for ids in stacks.values()]
    plan += [([names[i]], runs[i]["training"]["epochs"]) for i in alone]
    progress = Progress(plan, state_dir, tensorboard)
    try:
        for members in stacks.values():
            log.info("training %d runs as one ensemble (%s, ...)", len(members), names[members[0]])
            out = train_ensemble(
                [runs[i] for i in members],
                data,
                device,
                checkpoint_path(state_dir, "ensemble", names[members[0]]),
                [models[i] for i in members],
                progress,
            )
            for i, result in zip(members, out, strict=True):
                results[i] = result
        for i in alone:
            log.info("training %s", names[i])
            try:
                results[i] = train(
                    runs[i], data, device, checkpoint_path(state_dir, names[i]), model=models[i], progress=progress
                )
            except TrainingDiverged as err:
                log.error("%s", err)
                results[i] = diverged_result(err, in_dim)
    finally:
        progress.close()  # the event files complete, also when a training fails
    return results
