"""All seeds of one grid cell trained at once, as one vmapped model (``training.ensemble: true``).

The members' weights are stacked (``torch.func.stack_module_state``) and one loss function, the
same ``training.loss_terms`` on the same ``MLPAutoencoder`` that ``training.train`` uses, is mapped
over them with ``vmap`` + ``functional_call``. Everything that makes a run a run stays per member:

- its initialisation: ``build_model(run)`` from its own seed;
- its batch order and VAE noise: its own ``torch.Generator`` seeded by its seed, drawn in the same
  order as ``train`` draws them (one ``randperm`` per epoch, then one ``randn`` per batch);
- its optimiser state: Adam is elementwise, so one Adam over the stacked tensors keeps a separate
  first and second moment for every member's every weight, and each member's gradient is that of
  its own loss (the members' losses are summed, and share no weights).

So every member's final weights equal those of its own ``train`` run within float tolerance (the
batched matrix products round differently), and ``result_for(m)`` has the layout ``train`` returns,
ready for ``training.save_run``. Many small models then make one large batched product, which is
what keeps a CPU's cores or a GPU busy, and one job pays the start-up cost once for all seeds.
"""

from __future__ import annotations

import copy
import logging
import math

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from aedissect import io
from aedissect.config import config_hash
from aedissect.models import build_model
from aedissect.status import TrainingDiverged, diverged_result
from aedissect.training import EVAL_SEED, adam, evaluate, load_resume, loss_terms

log = logging.getLogger("aedissect.ensemble")


class _Loss(nn.Module):
    """``loss_terms`` as a module's forward, so that ``functional_call`` can swap in a member's weights."""

    def __init__(self, model: nn.Module, run: dict):
        super().__init__()
        self.model = model
        self.run = run

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        return loss_terms(self.model, x, self.run, None, eps)["loss"]


def check_cell(runs: list[dict]) -> None:
    """The members must differ only in their seed (one grid cell)."""

    def strip(run):
        return {k: v for k, v in run.items() if k not in ("run_id", "seed")}

    first = strip(runs[0])
    for run in runs[1:]:
        if strip(run) != first:
            raise ValueError(f"ensemble members must differ only in their seed: {runs[0]['run_id']} vs {run['run_id']}")
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"ensemble members need distinct seeds, got {seeds}")


def train_ensemble(runs: list[dict], data: dict, device: torch.device, resume_path=None) -> list[dict]:
    """Train the runs of one grid cell together; returns one ``train``-shaped result per run, in order.

    ``resume_path``: one checkpoint of the whole ensemble (stacked weights, Adam's state, every member's generator,
    histories and divergences) every ``checkpoint_every`` epochs and after the last, as ``train`` keeps one."""
    check_cell(runs)
    run0 = runs[0]
    tr = run0["training"]
    x_train = data["x_train"].to(device)
    x_test = data["x_test"].to(device)
    n, in_dim = x_train.shape
    batch_size, n_members = tr["batch_size"], len(runs)

    members = [build_model(run, in_dim).to(device) for run in runs]
    init_states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in members]
    frozen = set(members[0].frozen_parameters(run0.get("freeze", "none")))
    params, buffers = stack_module_state(members)  # {name: [M, ...]}, detached leaves requiring grad
    for name, p in params.items():
        p.requires_grad_(name not in frozen)
    optimizer = adam([p for p in params.values() if p.requires_grad], tr)
    generators = [torch.Generator(device=device).manual_seed(run["seed"]) for run in runs]

    base = _Loss(copy.deepcopy(members[0]).to("meta"), run0)
    prefixed = {f"model.{k}": v for k, v in params.items()}
    prefixed_buffers = {f"model.{k}": v for k, v in buffers.items()}
    is_vae = run0["kind"] == "vae"
    latent = members[0].latent_dim

    def member_loss(p, b, x, eps):
        return functional_call(base, (p, b), (x, eps))

    # the noise of the VAE's test loss: evaluate() draws it from a generator seeded EVAL_SEED, the same for all
    eval_eps = None
    if is_vae:
        gen = torch.Generator(device=device).manual_seed(EVAL_SEED)
        eval_eps = torch.randn((x_test.shape[0], latent), generator=gen, device=device)
    batched_loss = vmap(member_loss, in_dims=(0, 0, 0, 0 if is_vae else None))
    test_loss = vmap(member_loss, in_dims=(0, 0, None, None))

    histories = [[] for _ in runs]
    epoch_states = [{} for _ in runs]
    # a member that diverges keeps being stepped (its NaNs stay in its own slices of the stacked weights and of
    # Adam's moments) but is recorded as diverged, as train_runs records a diverged run; the others go on
    diverged: dict[int, TrainingDiverged] = {}
    chash = config_hash({"ensemble": runs})
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
        diverged = {m: TrainingDiverged(msg, histories[m]) for m, msg in resume["diverged"].items()}
    for epoch in range(start, tr["epochs"] + 1):
        perms = torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])
        total = torch.zeros(n_members, device=device)
        for begin in range(0, n, batch_size):
            idx = perms[:, begin : begin + batch_size]  # [M, b]
            xb = x_train[idx]  # [M, b, d]
            eps = None
            if is_vae:
                shape = (idx.shape[1], latent)
                eps = torch.stack([torch.randn(shape, generator=g, device=device) for g in generators])
            losses = batched_loss(prefixed, prefixed_buffers, xb, eps)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            total += losses.detach() * idx.shape[1]
        train_loss = (total / n).tolist()
        with torch.no_grad():
            test = test_loss(prefixed, prefixed_buffers, x_test, eval_eps).tolist()
        for m, run in enumerate(runs):
            if m in diverged:
                continue
            if not math.isfinite(train_loss[m]):
                message = f"run {run['run_id']}: training loss is {train_loss[m]} at epoch {epoch}"
                diverged[m] = TrainingDiverged(message, histories[m])
                log.error("%s; going on with the other members", message)
                continue
            histories[m].append({"epoch": epoch, "train_loss": train_loss[m], "test_loss": test[m]})
            if epoch in tr["keep_epochs"]:
                epoch_states[m][epoch] = member_state(params, buffers, m)
        log.info("epoch %d: train loss %s", epoch, ", ".join(f"{v:.5g}" for v in train_loss))
        if resume_path is not None and (epoch % tr["checkpoint_every"] == 0 or epoch == tr["epochs"]):
            checkpoint = {
                "config_hash": chash,
                "epoch": epoch,
                "params": {k: v.detach() for k, v in params.items()},
                "optimizer": optimizer.state_dict(),
                "generators": [g.get_state() for g in generators],
                "histories": histories,
                "epoch_states": epoch_states,
                "diverged": {m: str(err) for m, err in diverged.items()},
            }
            with io.atomic_path(resume_path) as tmp:
                torch.save(checkpoint, tmp)

    results = []
    for m, (run, model) in enumerate(zip(runs, members, strict=True)):
        state = member_state(params, buffers, m)
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
