"""The training loop: in-memory batches, Adam, a fixed budget, bitwise reproducible and resumable.

One generator, seeded by the run's seed, draws every batch order and every VAE noise sample; its
state is part of the resume checkpoint, so a killed run continues exactly where it stopped.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch

from aedissect import io
from aedissect.config import Run, config_hash
from aedissect.nets import optim
from aedissect.nets.models import GridAutoencoder, initial_model, state_digest
from aedissect.status import TrainingDiverged

log = logging.getLogger("aedissect.nets.training")
EVAL_SEED = 12345  # the VAE's test ELBO uses its own noise, so evaluating never moves the training stream
# A VAE latent unit is active when its rate, E_x KL(q(z_j|x) || N(0, 1)) in nats, exceeds this. Not Burda et al.'s
# Var_x(E[z_j|x]) > 0.01, which is not scale-free: it counted a collapsing factors unit (Var 0.011, 0.006 nats) and
# would miss a unit whose posterior mean varies little but whose posterior is narrower still (digits enc-heavy:
# Var 0.05-0.15, 2.7 nats). No threshold falls in a clean gap on the default study; on factors the per-unit rates
# thin out between 0.03 and 0.06 nats, and pPCA's weakest active latent there carries 0.098 nats (1.43 on digits).
ACTIVE_UNIT_RATE = 0.05


PROGRESS_COLUMNS = ["time", "training", "member", "epoch", "epochs", "train_loss", "test_loss", "seconds", "left"]


class Progress:
    """One log line per epoch (loss, seconds per epoch, time left in the job) and the same numbers as rows of
    ``<folder>/progress.csv``, for every training of a job: ``train`` and ``train_ensemble`` report here.

    ``plan``: the job's trainings in the order they run, each as its members' names and its epochs (one member
    for ``train``, the stack for ``train_ensemble``), so that the time left counts the trainings still to come.
    ``folder`` is the job's state folder (``state_dir``): outside the declared outputs, so ``tail -f`` works while
    the job runs, and removed with the checkpoints when it ends. None: log only.

    ``tensorboard``: the job's TensorBoard folder (``tensorboard_folder``; None: none): the same losses as scalars
    ``loss/train`` and ``loss/test`` at step = epoch, one event folder per member, ``<tensorboard>/<member name>``.
    Like progress.csv it holds what the ensemble computed: a member with a smaller budget goes on to the stack's
    last epoch, a diverged one shows its NaN. ``close`` closes the writers.
    """

    def __init__(self, plan: list[tuple[list[str], int]], folder: Path | None = None, tensorboard: Path | None = None):
        self.plan = plan
        self.path = None if folder is None else Path(folder) / "progress.csv"
        self.current = -1
        self.job_seconds = 0.0
        self.job_epochs = 0
        self.tensorboard = None if tensorboard is None else Path(tensorboard)
        self.writers: dict = {}

    def begin(self, first_epoch: int) -> None:
        """The next training of the plan starts at ``first_epoch`` (after 1 when it resumed from a checkpoint)."""
        self.close()  # the previous training's members are done: only one training's writers are open at a time
        self.current += 1
        self.first_epoch = first_epoch
        self.started = self.tick = time.perf_counter()

    def epoch(self, epoch: int, train_loss: list[float], test_loss: list[float]) -> None:
        """Epoch ``epoch`` of the current training is done; the losses are per member."""
        now = time.perf_counter()
        seconds, self.tick = now - self.tick, now
        self.job_seconds += seconds
        self.job_epochs += 1
        names, epochs = self.plan[self.current]
        # this training's own pace for its remaining epochs; the job's pace so far for the trainings after it
        rate = (now - self.started) / (epoch - self.first_epoch + 1)
        later = sum(e for _, e in self.plan[self.current + 1 :])
        left = rate * (epochs - epoch) + self.job_seconds / self.job_epochs * later
        label = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
        log.info(
            "%s epoch %d/%d: train loss %s, test loss %s; %.3g s/epoch; training %d of %d, about %s left",
            label,
            epoch,
            epochs,
            _losses(train_loss),
            _losses(test_loss),
            seconds,
            self.current + 1,
            len(self.plan),
            _duration(left),
        )
        if self.tensorboard is not None:
            self._scalars(names, epoch, train_loss, test_loss)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(PROGRESS_COLUMNS)
            for name, train_value, test_value in zip(names, train_loss, test_loss, strict=True):
                writer.writerow(
                    [stamp, label, name, epoch, epochs, train_value, test_value, f"{seconds:.3f}", f"{left:.1f}"]
                )

    def _scalars(self, names: list[str], epoch: int, train_loss: list[float], test_loss: list[float]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        for name, train_value, test_value in zip(names, train_loss, test_loss, strict=True):
            if name not in self.writers:
                # a new event file per attempt: a resumed training writes its epochs again from first_epoch, and
                # purge_step has TensorBoard drop what an earlier attempt wrote from that step on (a killed one's
                # epochs past its last checkpoint), so no epoch shows twice; a training that starts at 1 replaces all
                self.writers[name] = SummaryWriter(self.tensorboard / name, purge_step=self.first_epoch)
            writer = self.writers[name]
            writer.add_scalar("loss/train", train_value, epoch)
            writer.add_scalar("loss/test", test_value, epoch)
            writer.flush()  # every epoch on disk, as progress.csv: a kill loses no epoch that a resume does not redo

    def close(self) -> None:
        """Close the TensorBoard writers (a no-op without)."""
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


def _losses(values: list[float]) -> str:
    return ", ".join(f"{v:.5g}" for v in values)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def tensorboard_folder(config: dict, *parts: str) -> Path | None:
    """Where a job's trainings write TensorBoard event files, ``results/tensorboard/<parts>``, when the study's
    ``logging.tensorboard`` is on; None when it is off. Called before the job does any work, so that a missing
    ``tensorboard`` package stops it at once, naming the key. The folder is no declared output: the key is in no
    rule's params and no run's config, so switching it reruns nothing and changes no hash or table."""
    if not config["logging"]["tensorboard"]:
        return None
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError as err:
        raise RuntimeError(
            f"logging.tensorboard is true but TensorBoard cannot be imported ({err}): install tensorboard "
            "(requirements.txt, envs/torch.yaml) or set logging.tensorboard: false"
        ) from None
    return Path("results", "tensorboard", *parts)


def setup_torch(threads: int, device: str) -> torch.device:
    """Threads, deterministic kernels (no TF32) and the device; ``auto`` picks CUDA when present."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    # torch.use_deterministic_algorithms also sets Inductor's flag, and importing Inductor costs ~2 s of every
    # job's start-up; nothing here compiles, so set the kernels' flag alone (what that function does besides)
    torch._C._set_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is available")
    return torch.device(device)


def loss_terms(
    model: GridAutoencoder,
    x: torch.Tensor,
    run: Run,
    generator: torch.Generator | None,
    eps: torch.Tensor | None = None,
    beta: float | None = None,
) -> dict:
    """Per-batch mean loss; for the VAE also distortion (-log p(x|z)) and rate (KL) per sample.

    The VAE's noise is drawn from ``generator`` unless ``eps`` gives it (the ensemble draws each member's noise
    from that member's generator, exactly as ``train`` would). For an ensemble's stacked weights (members first,
    ``models.linear``) every term is per member. ``beta``: the rate's
    weight in ``loss`` (the KL warm-up's ``kl_weight`` of the step while training); None: the run's ``vae.beta``,
    as every evaluation uses it."""
    if model.kind == "ae":  # per member for an ensemble's stacked weights (models.linear): the mean over its rows
        mse = (model(x) - x).pow(2).flatten(-2).mean(-1)
        return {"loss": mse}
    vae = run["vae"]
    stats = model.posterior_stats(x)
    if eps is None:
        shape = (*stats.shape[:-1], model.latent_dim)
        eps = torch.randn(shape, generator=generator, device=stats.device, dtype=stats.dtype)
    z, rate = SampleAndRate.apply(stats, eps)
    out = model.decode(z)
    distortion = negative_log_likelihood(out, x, vae)
    return {
        "loss": (distortion + (vae["beta"] if beta is None else beta) * rate).mean(-1),
        "distortion": distortion.mean(-1),
        "rate": rate.mean(-1),
    }


class SampleAndRate(torch.autograd.Function):
    """The VAE's reparameterised sample z = mu + exp(logvar / 2) eps and its rate KL(N(mu, exp(logvar)) || N(0, I))
    per sample, from the encoder's (mu, logvar) stacked on the last axis. One node with its gradient written out,
    instead of a dozen small ones whose per-op overhead cost more than their arithmetic at these sizes."""

    @staticmethod
    def forward(stats: torch.Tensor, eps: torch.Tensor):
        mu, logvar = stats.chunk(2, dim=-1)
        std = torch.exp(0.5 * logvar)
        var = std * std
        rate = (mu * mu + var - 1.0 - logvar).sum(dim=-1) * 0.5
        return mu + std * eps, rate

    @staticmethod
    def setup_context(ctx, inputs, output):
        stats, eps = inputs
        ctx.save_for_backward(stats, eps)

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor, grad_rate: torch.Tensor):
        stats, eps = ctx.saved_tensors
        mu, logvar = stats.chunk(2, dim=-1)
        std = torch.exp(0.5 * logvar)
        g = grad_rate.unsqueeze(-1)
        grad_mu = grad_z + g * mu
        grad_logvar = 0.5 * (grad_z * eps * std + g * (std * std - 1.0))
        return torch.cat([grad_mu, grad_logvar], dim=-1), None


class BernoulliNLL(torch.autograd.Function):
    """-log Bernoulli(x | sigmoid(z)) summed over features: softplus(z) - x z, with its gradient sigmoid(z) - x.

    The same quantity as ``binary_cross_entropy_with_logits`` (to float rounding), written as
    relu(z) + log(1 + exp(-|z|)) - x z in ops that run vectorised on a CPU: PyTorch's version goes through
    ``log1p``, which runs one element at a time there and made the Bernoulli VAE's step 40% slower than the AE's.
    ``log(1 + e)`` loses e's digits below 1e-7 of 1, an absolute error under 1e-7 per element of a loss whose
    elements are of order 0.1-1."""

    @staticmethod
    def forward(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nll = torch.exp(-logits.abs()).add_(1.0).log_().add_(logits.clamp(min=0.0)).sub_(x * logits)
        return nll.sum(dim=-1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, x = ctx.saved_tensors
        return torch.sigmoid(logits).sub_(x).mul_(grad.unsqueeze(-1)), None


def negative_log_likelihood(out: torch.Tensor, x: torch.Tensor, vae: dict) -> torch.Tensor:
    """-log p(x|z) per sample: Gaussian with fixed std ``sigma`` around the output, or Bernoulli with logits."""
    if vae["likelihood"] == "bernoulli":
        return BernoulliNLL.apply(out, x)
    sigma = vae["sigma"]
    d = x.shape[-1]
    return 0.5 * ((x - out) / sigma).pow(2).sum(dim=-1) + d * math.log(sigma) + 0.5 * d * math.log(2 * math.pi)


def reconstruction(model: GridAutoencoder, x: torch.Tensor, run: Run) -> torch.Tensor:
    """The mean reconstruction from the deterministic path (the VAE decodes mu)."""
    out = model(x)
    if model.kind == "vae" and run["vae"]["likelihood"] == "bernoulli":
        out = torch.sigmoid(out)
    return out


@torch.no_grad()
def evaluate(model: GridAutoencoder, x: torch.Tensor, run: Run) -> dict:
    """Test metrics: MSE per element, PSNR (data range 1); for the VAE the ELBO terms and active units."""
    model.eval()
    generator = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
    terms = {k: float(v) for k, v in loss_terms(model, x, run, generator).items()}
    mse = float((reconstruction(model, x, run) - x).pow(2).mean())
    metrics = {
        "test_loss": terms["loss"],
        "test_mse": mse,
        "psnr": 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf,
    }
    if model.kind == "vae":
        mu, logvar = model.posterior(x)
        unit_rate = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)  # the rate, split over the units
        metrics.update(
            neg_elbo=terms["distortion"] + terms["rate"],
            rate=terms["rate"],
            distortion=terms["distortion"],
            active_units=int((unit_rate > ACTIVE_UNIT_RATE).sum()),
        )
    model.train()
    return metrics


def clone_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_resume(path: Path, expected_hash: str):
    """The resume checkpoint if it is whole and belongs to this run; else None, and say why."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("config_hash") != expected_hash:
            raise ValueError(f"it belongs to config {state.get('config_hash')}, not {expected_hash}")
    except Exception as err:
        log.warning("resume checkpoint %s is unusable (%s); starting over", path, err)
        path.unlink()
        return None
    log.info("resuming from %s at epoch %d", path, state["epoch"])
    return state


def adam(params: list[torch.Tensor], tr: dict, steps_per_epoch: int) -> optim.Adam:
    """The optimiser of every training: Adam as torch's fused kernel computes it (one kernel per step instead of a
    dozen per tensor, a third of the step time of these small models at batch 128 on a CPU; per element and
    deterministic), with the run's learning-rate schedule over ``epochs`` x ``steps_per_epoch`` steps
    (``optim.schedule``; none for ``constant``: Adam at ``lr`` throughout)."""
    plan = optim.schedule(lr_schedule_name(tr), tr["lr"], tr["epochs"] * steps_per_epoch)
    return optim.Adam(params, lr=tr["lr"], weight_decay=tr["weight_decay"], schedule=plan)


def lr_schedule_name(tr: dict) -> str:
    """The run's learning-rate schedule; a config without ``training.lr_schedule`` trains at constant ``lr``."""
    return tr.get("lr_schedule") or "constant"


def kl_warmup_steps(run: dict, steps_per_epoch: int) -> int:
    """The KL warm-up's length in optimiser steps: ``vae.kl_warmup_epochs`` x ``steps_per_epoch``; 0 for an AE and
    for a VAE whose config does not set it (no warm-up)."""
    return int((run.get("vae") or {}).get("kl_warmup_epochs") or 0) * steps_per_epoch


def kl_weight(run: dict, step: int, steps_per_epoch: int) -> float | None:
    """The weight of the rate term at optimiser step ``step`` (0 for the first of the run), the KL warm-up
    (Bowman et al. 2016; Sonderby et al. 2016): beta * step / (W * steps_per_epoch) while ``step`` is below the
    warm-up's ``kl_warmup_steps``, then ``vae.beta`` itself (the same float, so a run without a warm-up trains
    bitwise as before the key existed). A function of the step alone, so a resumed run continues it exactly.
    None for an AE (``loss_terms`` has no rate)."""
    if "vae" not in run:
        return None
    beta = run["vae"]["beta"]
    warmup = kl_warmup_steps(run, steps_per_epoch)
    return beta * (step / warmup) if step < warmup else beta


def train(
    run: Run,
    data: dict,
    device: torch.device,
    resume_path: Path | None = None,
    model: torch.nn.Module | None = None,
    progress: Progress | None = None,
) -> dict:
    """Train one run; returns final and initial weights, kept epoch weights, history and test metrics.

    ``model``: start from this module and its current weights instead of the run's seeded init (retraining
    one layer of a trained model, fitting a stitch between two frozen models); ``init_state`` is then the
    weights it started from. Parameters that already have ``requires_grad`` off stay out of the optimiser.

    ``resume_path``: a checkpoint every ``checkpoint_every`` epochs and after the last one, so that a killed job
    continues where it stopped and a job that trains several things one after another skips those it finished.
    Its identity is the run's config and, for a given ``model``, the weights it started from.

    ``progress``: the job's ``Progress``, whose next planned training this is; None: one of its own.
    """
    tr = run["training"]
    x_train = data["x_train"].to(device)
    x_test = data["x_test"].to(device)
    model_given = model
    model = initial_model(run, data["x_train"]).to(device) if model is None else model.to(device)
    init_state = clone_state(model)
    spec = run.get("freeze", "none")
    frozen = set(model.frozen_parameters(spec))
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    # parameters frozen in part (the VAE's log-variance rows of a frozen bottleneck layer train): their gradient is
    # masked, so Adam's step on the fixed elements is exactly zero; weight decay would move them, so they are put back
    partly = getattr(model, "trainable_masks", lambda spec: {})(spec)
    params = dict(model.named_parameters())
    partly = {params[name]: mask.to(device) for name, mask in partly.items()}
    starts = {p: p.detach().clone() for p in partly} if tr["weight_decay"] > 0 else {}
    n, batch_size = x_train.shape[0], tr["batch_size"]
    optimizer = adam([p for p in model.parameters() if p.requires_grad], tr, math.ceil(n / batch_size))
    generator = torch.Generator(device=device).manual_seed(run["seed"])
    chash = config_hash(run) if model_given is None else config_hash(run | {"start_weights": state_digest(init_state)})
    history, epoch_states, start = [], {}, 1
    resume = load_resume(resume_path, chash) if resume_path is not None else None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"])
        history, epoch_states, start = resume["history"], resume["epoch_states"], resume["epoch"] + 1

    steps_per_epoch = math.ceil(n / batch_size)
    progress = progress or Progress([([run["run_id"]], tr["epochs"])])
    progress.begin(start)
    for epoch in range(start, tr["epochs"] + 1):
        perm = torch.randperm(n, generator=generator, device=device)
        total = torch.zeros((), device=device)
        for step, begin in enumerate(range(0, n, batch_size), start=(epoch - 1) * steps_per_epoch):
            xb = x_train[perm[begin : begin + batch_size]]
            beta = kl_weight(run, step, steps_per_epoch)
            loss = loss_terms(model, xb, run, generator, beta=beta)["loss"]
            optimizer.zero_grad()
            loss.backward()
            for p, mask in partly.items():
                p.grad.mul_(mask)
            optimizer.step()
            if starts:
                with torch.no_grad():
                    for p, initial in starts.items():
                        p.copy_(torch.where(partly[p].bool(), p, initial))
            total += loss.detach() * xb.shape[0]
        train_loss = float(total) / n
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"run {run['run_id']}: training loss is {train_loss} at epoch {epoch}", history)
        test_loss = evaluate(model, x_test, run)["test_loss"]
        history.append({"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss})
        progress.epoch(epoch, [train_loss], [test_loss])
        if epoch in tr["keep_epochs"]:
            epoch_states[epoch] = clone_state(model)
        if resume_path is not None and (epoch % tr["checkpoint_every"] == 0 or epoch == tr["epochs"]):
            save_resume(resume_path, chash, epoch, model, optimizer, generator, history, epoch_states)
    metrics = evaluate(model, x_test, run)
    if not math.isfinite(metrics["test_loss"]):
        raise TrainingDiverged(f"run {run['run_id']}: test loss is {metrics['test_loss']} after training", history)
    return {
        "status": "ok",
        "state": clone_state(model),
        "init_state": init_state,
        "epoch_states": epoch_states,
        "history": history,
        "metrics": metrics,
        "in_dim": x_train.shape[1],
    }


def state_dir(output: str | Path) -> Path:
    """Where a job that trains keeps its resume checkpoints: beside its declared output, under a name no rule
    declares. Snakemake deletes a job's declared outputs before it runs, so a checkpoint inside one would be gone
    by the time the rerun could use it. The job removes the folder once its outputs are written."""
    output = Path(output)
    return output.parent / f".{output.name}.resume"


def checkpoint_path(folder: Path | None, *parts: str) -> Path | None:
    """One unit of a job's work (a freeze variant, a retrained layer, a stitch) in its ``state_dir``."""
    if folder is None:
        return None
    return Path(folder) / ("__".join(parts).replace("/", "_") + ".pt")


def remove_state(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def save_resume(path, chash, epoch, model, optimizer, generator, history, epoch_states) -> None:
    state = {
        "config_hash": chash,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "history": history,
        "epoch_states": epoch_states,
    }
    with io.atomic_path(path) as tmp:
        torch.save(state, tmp)
