import copy
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from aedissect import config
from aedissect.nets import training
from aedissect.nets.models import build_model
from conftest import REPO, killed_while_saving, load_yaml

STUDY = {
    "architectures": {"sym": {"family": "symmetric", "encoder": [12], "decoder": [12]}},
    "training": {
        "epochs": 4,
        "batch_size": 32,
        "lr": 0.003,
        "weight_decay": 0.0,
        "keep_epochs": [2],
        "checkpoint_every": 1,
    },
    "vae": {"beta": 0.5, "likelihood": "gaussian", "sigma": 0.2},
}


def make_run(kind="ae", seed=0, **training_overrides):
    run = config.resolve_run(STUDY, "factors", kind, "sym", 3, "relu", seed)
    run["training"].update(training_overrides)
    return run


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return {"x_train": torch.rand(200, 8, generator=g), "x_test": torch.rand(50, 8, generator=g)}


@pytest.fixture(scope="module")
def device():
    return training.setup_torch(1, "cpu")


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_loss_terms_match_a_hand_computation(likelihood):
    run = make_run("vae")
    run["vae"]["likelihood"] = likelihood
    model = build_model(run, 8).double()
    x = torch.rand(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    terms = training.loss_terms(model, x, run, torch.Generator().manual_seed(7))

    mu, logvar = (t.detach().numpy() for t in model.posterior(x))
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).numpy()
    out = model.decode(torch.from_numpy(mu + np.exp(0.5 * logvar) * eps)).detach().numpy()
    xs = x.numpy()
    if likelihood == "gaussian":
        s = run["vae"]["sigma"]
        nll = (0.5 * ((xs - out) / s) ** 2 + np.log(s) + 0.5 * np.log(2 * np.pi)).sum(1)
    else:
        p = 1 / (1 + np.exp(-out))
        nll = -(xs * np.log(p) + (1 - xs) * np.log(1 - p)).sum(1)
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(1)
    assert terms["distortion"].item() == pytest.approx(nll.mean(), rel=1e-10)
    assert terms["rate"].item() == pytest.approx(kl.mean(), rel=1e-10)
    assert terms["loss"].item() == pytest.approx((nll + 0.5 * kl).mean(), rel=1e-10)


def test_kl_is_zero_at_the_prior():
    run = make_run("vae")
    model = build_model(run, 8)
    with torch.no_grad():  # make the encoder output mu = 0, log var = 0 for every input
        model.layers[model.bottleneck_layer][0].weight.zero_()
        model.layers[model.bottleneck_layer][0].bias.zero_()
    terms = training.loss_terms(model, torch.rand(4, 8), run, torch.Generator().manual_seed(0))
    assert terms["rate"].item() == 0.0


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_same_seed_gives_identical_weights(kind, data, device):
    a = training.train(make_run(kind), data, device)
    b = training.train(make_run(kind), data, device)
    for key in a["state"]:
        assert torch.equal(a["state"][key], b["state"][key]), key
    assert a["history"] == b["history"]
    c = training.train(make_run(kind, seed=1), data, device)
    assert not torch.equal(a["state"]["layers.0.0.weight"], c["state"]["layers.0.0.weight"])


def test_training_reduces_the_loss_and_keeps_epochs(data, device):
    result = training.train(make_run("ae", epochs=6), data, device)
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert list(result["epoch_states"]) == [2]
    model = build_model(make_run("ae"), 8)
    for key, value in model.state_dict().items():
        assert torch.equal(result["init_state"][key], value)


def test_killed_training_resumes_to_the_same_weights(data, device, tmp_path, monkeypatch):
    run = make_run("vae", epochs=5)
    reference = training.train(run, data, device)
    resume = tmp_path / "resume.pt"
    real_evaluate = training.evaluate
    calls = {"n": 0}

    def dies_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", dies_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        training.train(run, data, device, resume)
    monkeypatch.setattr(training, "evaluate", real_evaluate)
    assert torch.load(resume, weights_only=True)["epoch"] == 2
    resumed = training.train(run, data, device, resume)
    for key in reference["state"]:
        assert torch.equal(reference["state"][key], resumed["state"][key]), key
    assert resumed["history"] == reference["history"]
    assert torch.equal(
        resumed["epoch_states"][2]["layers.0.0.weight"], reference["epoch_states"][2]["layers.0.0.weight"]
    )


@pytest.mark.parametrize("damage", ["truncate", "other_config"])
def test_unusable_checkpoint_starts_over(damage, data, device, tmp_path, caplog):
    run = make_run("ae", epochs=3)
    resume = tmp_path / "resume.pt"
    if damage == "truncate":
        training.save_resume(
            resume,
            config.config_hash(run),
            1,
            build_model(run, 8),
            torch.optim.Adam(build_model(run, 8).parameters()),
            torch.Generator(),
            [],
            {},
        )
        resume.write_bytes(resume.read_bytes()[:100])
    else:
        other = make_run("ae", epochs=3, lr=0.1)
        model = build_model(other, 8)
        training.save_resume(
            resume, config.config_hash(other), 2, model, torch.optim.Adam(model.parameters()), torch.Generator(), [], {}
        )
    with caplog.at_level(logging.WARNING, logger="aedissect.nets.training"):
        result = training.train(run, data, device, resume)
    assert "unusable" in caplog.text and "starting over" in caplog.text
    clean = training.train(run, data, device)
    for key in clean["state"]:
        assert torch.equal(clean["state"][key], result["state"][key])


def test_diverging_run_fails_naming_run_and_epoch(device):
    bad = {"x_train": torch.full((40, 8), float("nan")), "x_test": torch.rand(10, 8)}
    with pytest.raises(training.TrainingDiverged, match=r"factors/ae/sym/z3/relu/s0.*epoch 1"):
        training.train(make_run("ae"), bad, device)


def test_active_units_and_psnr(data, device):
    run = make_run("vae")
    model = build_model(run, 8)
    with torch.no_grad():  # one latent unit carries the input, the others are constant
        layer = model.layers[model.bottleneck_layer][0]
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[0, :] = 1.0
    metrics = training.evaluate(model, data["x_test"], run)
    assert metrics["active_units"] == 1
    with torch.no_grad():
        mse = float((training.reconstruction(model, data["x_test"], run) - data["x_test"]).pow(2).mean())
    assert metrics["psnr"] == pytest.approx(10 * math.log10(1 / mse))
    assert metrics["neg_elbo"] == pytest.approx(metrics["distortion"] + metrics["rate"])


def test_a_latent_unit_is_active_by_its_rate_not_by_the_spread_of_its_mean(data, device):
    """Unit 0: a mean spread of 0.011 under a posterior as wide as the prior (0.0055 nats, Burda et al.'s 0.01 would
    count it); units 1 and 2: a spread of only 0.005 under a posterior 100 times narrower still (4.1 nats each)."""
    run = make_run("vae")
    model = build_model(run, 8)
    x = data["x_test"]
    layer = model.layers[model.bottleneck_layer][0]
    with torch.no_grad():
        signal = model.forward_to(x, model.bottleneck_layer).sum(dim=1)
        layer.weight.zero_()
        layer.bias.zero_()
        for unit, spread in ((0, 0.011), (1, 0.005), (2, 0.005)):
            scale = math.sqrt(spread / float(signal.var()))
            layer.weight[unit, :] = scale
            layer.bias[unit] = -scale * float(signal.mean())
        layer.bias[4:] = math.log(1e-4)  # log variances of units 1 and 2
        mu, _ = model.posterior(x)
    assert mu.var(dim=0).tolist() == pytest.approx([0.011, 0.005, 0.005], rel=1e-4)
    assert training.evaluate(model, x, run)["active_units"] == 2


def test_bernoulli_likelihood_and_its_gradient_match_pytorchs_closed_form():
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(64, 50, generator=gen) * 8).requires_grad_(True)  # saturated logits included
    x = torch.rand(64, 50, generator=gen)
    x[:8] = (x[:8] > 0.5).float()  # binary targets too
    reference = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
    ours = training.negative_log_likelihood(logits, x, {"likelihood": "bernoulli"})
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-6)
    weights = torch.rand(64, generator=gen)
    (grad_ref,) = torch.autograd.grad((reference * weights).sum(), logits)
    (grad,) = torch.autograd.grad((ours * weights).sum(), logits)
    torch.testing.assert_close(grad, weights[:, None] * (torch.sigmoid(logits) - x), atol=0, rtol=0)
    torch.testing.assert_close(grad, grad_ref, atol=1e-6, rtol=1e-5)
    # an ensemble's members stacked first, against shared targets, as the ensemble's test loss has them
    members = torch.stack([logits.detach(), logits.detach() * 0.5])
    stacked = training.negative_log_likelihood(members, x, {"likelihood": "bernoulli"})
    torch.testing.assert_close(stacked[0], ours.detach(), atol=0, rtol=0)
    half = training.negative_log_likelihood(logits.detach() * 0.5, x, {"likelihood": "bernoulli"})
    torch.testing.assert_close(stacked[1], half, atol=0, rtol=0)


def test_vae_sample_and_rate_match_the_textbook_formulas_and_their_gradients():
    gen = torch.Generator().manual_seed(5)
    stats = torch.randn(16, 6, generator=gen, dtype=torch.float64).requires_grad_(True)
    eps = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    z, rate = training.SampleAndRate.apply(stats, eps)
    mu, logvar = stats[:, :3], stats[:, 3:]
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps)
    # KL(N(mu, s^2) || N(0, 1)) per dimension, summed: closed form
    kl = (torch.log(1 / torch.exp(0.5 * logvar)) + (torch.exp(logvar) + mu**2) / 2 - 0.5).sum(dim=1)
    torch.testing.assert_close(rate, kl)
    assert torch.autograd.gradcheck(lambda s: training.SampleAndRate.apply(s, eps), (stats,))


@pytest.mark.parametrize("ensemble", [False, True])
def test_every_epoch_is_logged_and_appended_to_the_progress_file(ensemble, data, device, tmp_path, caplog):
    from aedissect.nets.ensemble import train_members

    runs = [make_run(seed=0, epochs=3), make_run(seed=1, epochs=3)]
    with caplog.at_level(logging.INFO, logger="aedissect.nets.training"):
        train_members(runs, data, device, ["s0", "s1"], ensemble=ensemble, state_dir=tmp_path)
    lines = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage()]
    trainings = 1 if ensemble else 2
    assert len(lines) == 3 * trainings
    assert all("train loss" in line and "s/epoch" in line and "left" in line for line in lines)
    assert "epoch 3/3" in lines[-1] and f"training {trainings} of {trainings}, about 0m00s left" in lines[-1]

    import pandas as pd

    rows = pd.read_csv(tmp_path / "progress.csv")
    assert list(rows.columns) == training.PROGRESS_COLUMNS
    assert len(rows) == 2 * 3 and set(rows["member"]) == {"s0", "s1"}
    assert rows["train_loss"].notna().all() and (rows["seconds"] >= 0).all()
    assert rows.groupby("member")["epoch"].apply(list).tolist() == [[1, 2, 3], [1, 2, 3]]


def test_the_time_left_counts_the_trainings_still_to_come(monkeypatch, tmp_path):
    clock = iter(range(100))  # every reading of the clock is one second later
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    progress = training.Progress([(["a"], 3), (["b"], 2)], tmp_path)
    progress.begin(1)
    for epoch in (1, 2, 3):
        progress.epoch(epoch, [0.5], [0.6])
    progress.begin(2)  # b resumed after its first epoch: one epoch to go
    progress.epoch(2, [0.4], [0.5])
    import pandas as pd

    left = pd.read_csv(tmp_path / "progress.csv")["left"].tolist()
    # a: 1 s per epoch, for its own epochs left and b's two; b: nothing left after its last epoch
    assert left == [2 + 2, 1 + 2, 0 + 2, 0]


def test_a_resumed_training_reports_only_the_epochs_it_runs(data, device, tmp_path, caplog):
    run = make_run(epochs=4)
    path = tmp_path / "run.pt"
    training.train(run, data, device, resume_path=path)
    with caplog.at_level(logging.INFO, logger="aedissect.nets.training"):
        training.train(run, data, device, resume_path=path)
    assert not [r for r in caplog.records if " epoch " in r.getMessage() and "/4:" in r.getMessage()]


# ---------------------------------------------------------------- logging.tensorboard


def tensorboard_scalars(folder) -> dict:
    """A member's event folder read back as TensorBoard reads it: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_logged(history: list[dict]) -> dict:
    """A history as its event file holds it: the losses as float32, TensorBoard's scalar type."""
    return {
        f"loss/{split}": [(h["epoch"], float(np.float32(h[f"{split}_loss"]))) for h in history]
        for split in ("train", "test")
    }


@pytest.mark.parametrize("ensemble", [False, True])
def test_tensorboard_holds_every_members_losses_and_changes_no_weight(ensemble, data, device, tmp_path, monkeypatch):
    from aedissect.nets.ensemble import train_members

    monkeypatch.chdir(tmp_path)  # anything written to a relative path lands here
    runs = [make_run(seed=0, epochs=3), make_run(seed=1, epochs=3)]
    off = train_members(runs, data, device, ["s0", "s1"], ensemble=ensemble)
    assert not any(tmp_path.rglob("*")), "with TensorBoard off nothing is written"
    on = train_members(runs, data, device, ["s0", "s1"], ensemble=ensemble, tensorboard=tmp_path / "tb")
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["s0", "s1"]
    for name, result, reference in zip(["s0", "s1"], on, off, strict=True):
        assert tensorboard_scalars(tmp_path / "tb" / name) == as_logged(result["history"]) != {}
        assert result["history"] == reference["history"]
        for key, value in reference["state"].items():
            assert torch.equal(result["state"][key], value), (name, key)


def test_a_resumed_training_logs_every_epoch_to_tensorboard_once(data, device, tmp_path, monkeypatch):
    """Killed after it logged epoch 3 but before it checkpointed it, the rerun logs epochs 3 and 4 again in a new
    event file; the purge step hides the killed attempt's epoch 3."""
    import time

    from aedissect.nets.ensemble import train_members

    runs = [make_run(seed=0, epochs=4), make_run(seed=1, epochs=4)]
    state, tb = tmp_path / "state", tmp_path / "tb"
    real_epoch = training.Progress.epoch

    def killed_after_epoch_3(self, epoch, *args):
        real_epoch(self, epoch, *args)
        if epoch == 3:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(training.Progress, "epoch", killed_after_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_members(runs, data, device, ["s0", "s1"], state_dir=state, tensorboard=tb)
    assert [step for step, _ in tensorboard_scalars(tb / "s0")["loss/train"]] == [1, 2, 3]
    monkeypatch.setattr(training.Progress, "epoch", real_epoch)
    time.sleep(1.05 - time.time() % 1)  # a rerun is a later process: event file names start with the second
    resumed = train_members(runs, data, device, ["s0", "s1"], state_dir=state, tensorboard=tb)
    for name, result in zip(["s0", "s1"], resumed, strict=True):
        assert len(list((tb / name).iterdir())) == 2  # one event file per attempt
        assert tensorboard_scalars(tb / name) == as_logged(result["history"])
        assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]


def test_tensorboard_is_outside_every_run_config_and_its_hash():
    study = config.validate(load_yaml(REPO / "config.yaml"))
    assert study["logging"] == {"tensorboard": False}
    switched = copy.deepcopy(study)
    switched["logging"]["tensorboard"] = True
    runs, switched_runs = config.grid(study), config.grid(switched)
    assert [config.config_hash(r) for r in runs] == [config.config_hash(r) for r in switched_runs]
    assert runs == switched_runs and "logging" not in runs[0]
    assert training.tensorboard_folder(study, "freeze", "digits/ae/sym/z4/relu") is None
    folder = training.tensorboard_folder(switched, "freeze", "digits/ae/sym/z4/relu")
    assert folder == Path("results/tensorboard/freeze/digits/ae/sym/z4/relu")


def test_tensorboard_on_without_the_package_stops_naming_the_key(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as where the package is not installed
    with pytest.raises(RuntimeError, match=r"logging\.tensorboard is true but TensorBoard cannot be imported"):
        training.tensorboard_folder({"logging": {"tensorboard": True}}, "digits/ae/sym/z4/relu")
    assert training.tensorboard_folder({"logging": {"tensorboard": False}}) is None  # off: never imported


def _loop_without_schedule(run, data, device):
    """The training loop as it was before ``training.lr_schedule`` existed: Adam at a constant lr."""
    model = build_model(run, data["x_train"].shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=run["training"]["lr"], fused=True)
    generator = torch.Generator(device=device).manual_seed(run["seed"])
    x, n, batch_size = data["x_train"], data["x_train"].shape[0], run["training"]["batch_size"]
    for _ in range(run["training"]["epochs"]):
        perm = torch.randperm(n, generator=generator)
        for begin in range(0, n, batch_size):
            loss = training.loss_terms(model, x[perm[begin : begin + batch_size]], run, generator)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.state_dict()


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_a_run_without_lr_schedule_trains_bitwise_as_before(kind, data, device):
    from aedissect.nets import ensemble

    run = make_run(kind)
    assert "lr_schedule" not in run["training"]
    before = _loop_without_schedule(run, data, device)
    alone = training.train(run, data, device)
    constant = training.train(make_run(kind, lr_schedule="constant"), data, device)
    stacked = ensemble.train_ensemble([run, make_run(kind, seed=1)], data, device)
    stacked_constant = ensemble.train_ensemble(
        [make_run(kind, lr_schedule="constant"), make_run(kind, seed=1, lr_schedule="constant")], data, device
    )
    for key in before:
        assert torch.equal(alone["state"][key], before[key]), key
        assert torch.equal(constant["state"][key], before[key]), key
        assert torch.equal(stacked_constant[0]["state"][key], stacked[0]["state"][key]), key
    assert training.adam([torch.zeros(1, requires_grad=True)], run["training"], 7).schedule is None


@pytest.mark.parametrize("name", ["cosine", "linear", "onecycle"])
def test_lr_schedules_are_torchs_schedulers_over_the_whole_budget(name):
    """Each schedule's rate (and onecycle's beta1) at every step equals the torch.optim.lr_scheduler it names, to
    float round-off (torch updates the rate recursively), and spans the whole budget."""
    tr = {"epochs": 3, "lr": 0.01, "weight_decay": 0.0, "lr_schedule": name}
    plan = training.adam([torch.zeros(1, requires_grad=True)], tr, steps_per_epoch=5).schedule
    reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    sched = torch.optim.lr_scheduler
    scheduler = {
        "cosine": lambda: sched.CosineAnnealingLR(reference, T_max=15, eta_min=0.0),
        "linear": lambda: sched.LinearLR(reference, start_factor=1.0, end_factor=0.0, total_iters=15),
        "onecycle": lambda: sched.OneCycleLR(reference, max_lr=0.01, total_steps=15),
    }[name]()
    lrs = []
    for t in range(15):
        lr, beta1 = plan(t)
        lrs.append(lr)
        group = reference.param_groups[0]
        assert lr == pytest.approx(group["lr"], rel=1e-9, abs=1e-15), t
        assert (beta1 is None) == (name != "onecycle")
        if beta1 is not None:
            assert beta1 == pytest.approx(group["betas"][0], rel=1e-12), t
        reference.step()
        scheduler.step()
    assert max(lrs) == pytest.approx(0.01, rel=0.05)
    assert lrs[-1] < 0.01 * 0.1  # near zero at the last step of the budget
    if name != "onecycle":
        assert lrs[0] == 0.01 and all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    with pytest.raises(ValueError, match="lr_schedule"):
        training.adam([torch.zeros(1)], tr | {"lr_schedule": "step"}, 5)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("name", ["constant", "onecycle"])
def test_adam_steps_bitwise_as_torchs_fused_adam(weight_decay, name):
    """nets.optim.Adam runs torch's fused kernel on the same state: every step equals torch.optim.Adam(fused=True)
    bit for bit, with a schedule applied the same way, a parameter without a gradient skipped, and across a
    state_dict round trip."""
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(5, 3, generator=gen, requires_grad=True), torch.randn(3, generator=gen, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    tr = {"epochs": 2, "lr": 0.01, "weight_decay": weight_decay, "lr_schedule": name}
    optimizer = training.adam(ours, tr, steps_per_epoch=5)
    reference = torch.optim.Adam(theirs, lr=0.01, weight_decay=weight_decay, fused=True)
    scheduler = None
    if name != "constant":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.01, total_steps=10)
    for step in range(10):
        grads = [torch.randn(p.shape, generator=gen) for p in ours]
        for p, q, g in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        if step == 3:  # the bias gets no gradient this step: both leave it and its moments alone
            ours[1].grad = theirs[1].grad = None
        if scheduler is not None:  # torch's recursive rate and ours differ by round-off: give torch ours
            lr, beta1 = optimizer.schedule(step)
            reference.param_groups[0]["lr"], reference.param_groups[0]["betas"] = lr, (beta1, 0.999)
        optimizer.step()
        reference.step()
        for p, q in zip(ours, theirs, strict=True):
            assert torch.equal(p, q), step
        if step == 5:
            again = training.adam(ours, tr, steps_per_epoch=5)
            again.load_state_dict(optimizer.state_dict())
            optimizer = again


def resumable_fit(runs, ensembled, data, device):
    """Train ``runs`` as one ensemble (or the first alone), resuming from the checkpoint path given, if any."""
    from aedissect.nets import ensemble

    def fit(resume=None):
        if ensembled:
            return ensemble.train_ensemble(runs, data, device, resume)
        return [training.train(runs[0], data, device, resume)]

    return fit


def assert_same_weights_and_history(reference, resumed):
    for ref, res in zip(reference, resumed, strict=True):
        for key in ref["state"]:
            assert torch.equal(ref["state"][key], res["state"][key]), key
        assert res["history"] == ref["history"]


@pytest.mark.parametrize("ensembled", [False, True])
def test_a_scheduled_training_resumes_to_the_same_weights(ensembled, data, device, tmp_path, monkeypatch):
    """The scheduler's position is part of the checkpoint: killed in epoch 3, the rerun ends where one run ends."""
    runs = [make_run("ae", seed=s, epochs=4, lr_schedule="cosine") for s in (0, 1)]

    fit = resumable_fit(runs, ensembled, data, device)

    reference = fit()
    resume = tmp_path / "resume.pt"
    checkpoint = killed_while_saving(monkeypatch, fit, resume)
    assert checkpoint["epoch"] == 2
    assert checkpoint["optimizer"]["steps"] == 2 * math.ceil(data["x_train"].shape[0] / 32)
    resumed = fit(resume)
    assert_same_weights_and_history(reference, resumed)
    unscheduled = training.train(make_run("ae", epochs=4), data, device)
    assert not torch.equal(unscheduled["state"]["layers.0.0.weight"], reference[0]["state"]["layers.0.0.weight"])


def test_scheduled_members_with_other_budgets_do_not_stack(data, device):
    from aedissect.nets import ensemble

    a, b = make_run("ae", epochs=3, lr_schedule="cosine"), make_run("ae", seed=1, epochs=4, lr_schedule="cosine")
    assert ensemble.stack_key(a, None, 8) != ensemble.stack_key(b, None, 8)
    c, d = make_run("ae", epochs=3), make_run("ae", seed=1, epochs=4)
    assert ensemble.stack_key(c, None, 8) == ensemble.stack_key(d, None, 8)


# ---------------------------------------------------------------- training.init: the data-centred init


def _pre_activations(model, x):
    """Every Linear's pre-activation over x (the VAE's bottleneck layer: its mean rows) and the output."""
    pre, h = [], x
    for i, layer in enumerate(model.layers):
        p = layer[0](h)
        if model.kind == "vae" and i == model.bottleneck_layer:
            p = p[:, : model.latent_dim]
        pre.append(p)
        h = model.run_layer(i, h)
    return pre, h


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_centred_init_centres_every_pre_activation_and_the_output_mean(kind, data):
    from aedissect.nets.models import initial_model

    x = data["x_train"]
    run = make_run(kind, init="centred")
    default = build_model(run, 8)
    model = initial_model(run, x)
    with torch.no_grad():
        pre, out = _pre_activations(model, x)
        pre_default, out_default = _pre_activations(default, x)
    for p, p_default in zip(pre[:-1], pre_default[:-1], strict=True):
        assert p.mean(0).abs().max() < 1e-5
        assert p_default.mean(0).abs().max() > 1e-3  # the default init is not centred: the test can fail
    torch.testing.assert_close(out.mean(0), x.mean(0), rtol=0, atol=1e-5)
    assert (out_default.mean(0) - x.mean(0)).abs().max() > 1e-2
    # only biases move; the VAE's log-variance head keeps the default init
    for key, value in default.state_dict().items():
        if key.endswith("weight"):
            assert torch.equal(model.state_dict()[key], value), key
    if kind == "vae":
        key = f"layers.{model.bottleneck_layer}.0.bias"
        assert torch.equal(model.state_dict()[key][3:], default.state_dict()[key][3:])
        assert not torch.equal(model.state_dict()[key][:3], default.state_dict()[key][:3])
    # and the training starts from it
    result = training.train(make_run(kind, init="centred", epochs=1), data, training.setup_torch(1, "cpu"))
    for key, value in model.state_dict().items():
        assert torch.equal(result["init_state"][key], value), key


@pytest.mark.parametrize("init", ["default", "centred"])
def test_the_log_variance_head_starts_at_the_likelihoods_noise_with_vae_logvar_init(init, data):
    """vae.logvar_init: likelihood sets the log-variance rows' biases to log(sigma^2), whatever training.init
    does to the rest (the mean rows stay as init made them); the freeze variants and the train job share it."""
    from aedissect.nets.models import initial_model

    run = make_run("vae", init=init)
    plain = initial_model(run, data["x_train"])
    run["vae"] |= {"logvar_init": "likelihood", "sigma": 0.05}
    model = initial_model(run, data["x_train"])
    key = f"layers.{model.bottleneck_layer}.0.bias"
    bias, plain_bias = model.state_dict()[key], plain.state_dict()[key]
    assert torch.equal(bias[3:], torch.full((3,), 2 * math.log(0.05)))
    assert torch.equal(bias[:3], plain_bias[:3]) and not torch.equal(bias[3:], plain_bias[3:])
    for name, value in plain.state_dict().items():
        if name != key:
            assert torch.equal(model.state_dict()[name], value), name
    with torch.no_grad():
        _, logvar = model.posterior(data["x_train"])
    # the head's weights still act: the posterior variance is sigma^2 on average over the data, not exactly
    assert abs(float(logvar.mean()) - 2 * math.log(0.05)) < 1.0
    result = training.train(run | {"training": run["training"] | {"epochs": 1}}, data, training.setup_torch(1, "cpu"))
    assert torch.equal(result["init_state"][key], bias)


def test_runs_that_share_their_start_are_centred_once_and_alike(data, monkeypatch):
    """initial_models centres each distinct start once (a seed's freeze variants share it) and gives every run
    exactly what initial_model gives it alone."""
    from aedissect.nets import models

    runs = [make_run("vae", seed=s, init="centred") | {"freeze": f} for s in (0, 1) for f in ("encoder", "decoder")]
    alone = [models.initial_model(run, data["x_train"], code_map=True) for run in runs]
    calls = []
    real = models.centre_init
    monkeypatch.setattr(models, "centre_init", lambda m, x: calls.append(1) or real(m, x))
    together = models.initial_models(runs, data["x_train"], code_map=True)
    assert len(calls) == 2  # one per seed
    for a, b in zip(alone, together, strict=True):
        for key, value in a.state_dict().items():
            assert torch.equal(b.state_dict()[key], value), key
    assert not torch.equal(together[0].layers[0][0].bias, together[2].layers[0][0].bias)  # the seeds differ


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_a_run_without_init_trains_bitwise_as_before(kind, data, device):
    from aedissect.nets import ensemble

    run = make_run(kind)
    assert "init" not in run["training"]
    before = _loop_without_schedule(run, data, device)
    seeded = build_model(run, 8).state_dict()
    alone = training.train(run, data, device)
    default = training.train(make_run(kind, init="default"), data, device)
    stacked = ensemble.train_ensemble([run, make_run(kind, seed=1)], data, device)
    stacked_default = ensemble.train_ensemble(
        [make_run(kind, init="default"), make_run(kind, seed=1, init="default")], data, device
    )
    centred = training.train(make_run(kind, init="centred"), data, device)
    for key in before:
        assert torch.equal(alone["init_state"][key], seeded[key]), key
        assert torch.equal(default["init_state"][key], seeded[key]), key
        assert torch.equal(stacked[0]["init_state"][key], seeded[key]), key
        assert torch.equal(alone["state"][key], before[key]), key
        assert torch.equal(default["state"][key], before[key]), key
        assert torch.equal(stacked_default[0]["state"][key], stacked[0]["state"][key]), key
    assert any(not torch.equal(centred["init_state"][k], seeded[k]) for k in seeded)
    assert config.config_hash(run) != config.config_hash(make_run(kind, init="centred"))


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_centred_init_is_the_same_one_by_one_and_in_an_ensemble(kind, data, device):
    from aedissect.nets import ensemble
    from aedissect.nets.models import initial_model

    runs = [make_run(kind, seed=s, init="centred", epochs=1) for s in (0, 1)]
    stacked = ensemble.train_members(runs, data, device, ["s0", "s1"], ensemble=True)
    one_by_one = ensemble.train_members(runs, data, device, ["s0", "s1"], ensemble=False)
    for run, a, b in zip(runs, stacked, one_by_one, strict=True):
        expected = initial_model(run, data["x_train"]).state_dict()
        for key, value in expected.items():
            assert torch.equal(a["init_state"][key], value), key
            assert torch.equal(b["init_state"][key], value), key
    assert not torch.equal(stacked[0]["init_state"]["layers.0.0.bias"], stacked[1]["init_state"]["layers.0.0.bias"])


def test_an_unknown_init_is_refused(data):
    from aedissect.nets.models import initial_model

    with pytest.raises(ValueError, match="training.init"):
        initial_model(make_run("ae", init="lsuv"), data["x_train"])


# ---------------------------------------------------------------- vae.kl_warmup_epochs: the KL warm-up


def make_vae_run(seed=0, warmup=None, **training_overrides):
    run = make_run("vae", seed, **training_overrides)
    if warmup is not None:
        run["vae"]["kl_warmup_epochs"] = warmup
    return run


def test_the_kl_weight_rises_per_step_from_zero_to_beta():
    run = make_vae_run(warmup=2)  # beta 0.5
    weights = [training.kl_weight(run, step, steps_per_epoch=7) for step in range(20)]
    assert weights[0] == 0.0
    assert weights[7] == pytest.approx(0.25)  # half-way: the first step of epoch 2
    assert weights[:14] == pytest.approx([0.5 * step / 14 for step in range(14)])
    assert all(a < b for a, b in zip(weights[:14], weights[1:14], strict=False))
    assert weights[14:] == [0.5] * 6  # from step W x steps_per_epoch on: beta itself
    for absent in (make_vae_run(), make_vae_run(warmup=0)):
        assert [training.kl_weight(absent, step, 7) for step in (0, 1, 100)] == [0.5] * 3
    assert training.kl_weight(make_run("ae"), 0, 7) is None
    assert training.kl_warmup_steps(run, 7) == 14 and training.kl_warmup_steps(make_run("ae"), 7) == 0


def test_the_warmup_weights_the_rate_in_training_only(data, device, monkeypatch):
    """loss_terms' beta replaces vae.beta in the loss; every step of train() gets kl_weight of its own step; the
    test loss and the metrics use beta itself."""
    run = make_vae_run(warmup=1, epochs=2)
    model = build_model(run, 8)
    x = data["x_train"][:16]
    with torch.no_grad():
        terms = training.loss_terms(model, x, run, torch.Generator().manual_seed(0), beta=0.1)
        full = training.loss_terms(model, x, run, torch.Generator().manual_seed(0))
    assert torch.equal(terms["rate"], full["rate"]) and torch.equal(terms["distortion"], full["distortion"])
    assert float(terms["loss"]) == pytest.approx(float(full["distortion"] + 0.1 * full["rate"]), rel=1e-6)
    assert float(full["loss"]) == pytest.approx(float(full["distortion"] + 0.5 * full["rate"]), rel=1e-6)

    seen, real = [], training.loss_terms

    def spy(model, x, run, generator, eps=None, beta=None):
        seen.append(beta)
        return real(model, x, run, generator, eps, beta)

    monkeypatch.setattr(training, "loss_terms", spy)
    result = training.train(run, data, device)
    steps = math.ceil(200 / 32)
    train_steps = [b for b in seen if b is not None]
    assert train_steps == [training.kl_weight(run, s, steps) for s in range(2 * steps)]
    assert train_steps[0] == 0.0 and train_steps[steps:] == [0.5] * steps
    assert seen.count(None) == 3  # evaluate(): the test loss of both epochs and the final metrics, at beta
    monkeypatch.setattr(training, "loss_terms", real)
    without = training.train(make_vae_run(epochs=2), data, device)
    assert result["metrics"]["neg_elbo"] == pytest.approx(
        result["metrics"]["distortion"] + result["metrics"]["rate"], rel=1e-6
    )
    assert result["metrics"]["test_loss"] == pytest.approx(
        result["metrics"]["distortion"] + 0.5 * result["metrics"]["rate"], rel=1e-5
    )
    assert not torch.equal(result["state"]["layers.0.0.weight"], without["state"]["layers.0.0.weight"])


def test_a_run_without_kl_warmup_trains_bitwise_as_before(data, device):
    from aedissect.nets import ensemble

    run = make_vae_run()
    assert "kl_warmup_epochs" not in run["vae"]
    before = _loop_without_schedule(run, data, device)
    alone = training.train(run, data, device)
    zero = training.train(make_vae_run(warmup=0), data, device)
    stacked = ensemble.train_ensemble([run, make_vae_run(seed=1)], data, device)
    stacked_zero = ensemble.train_ensemble([make_vae_run(warmup=0), make_vae_run(seed=1, warmup=0)], data, device)
    for key in before:
        assert torch.equal(alone["state"][key], before[key]), key
        assert torch.equal(zero["state"][key], before[key]), key
        assert torch.equal(stacked_zero[0]["state"][key], stacked[0]["state"][key]), key
    assert config.config_hash(run) != config.config_hash(make_vae_run(warmup=0))


@pytest.mark.parametrize("ensembled", [False, True])
def test_a_warmed_up_training_resumes_to_the_same_weights(ensembled, data, device, tmp_path, monkeypatch):
    """The warm-up depends on the step alone: killed in epoch 3 of a 3-epoch warm-up, the rerun ends where one run
    ends."""
    runs = [make_vae_run(seed=s, warmup=3, epochs=4, lr_schedule="cosine") for s in (0, 1)]

    fit = resumable_fit(runs, ensembled, data, device)

    reference = fit()
    resume = tmp_path / "resume.pt"
    assert killed_while_saving(monkeypatch, fit, resume)["epoch"] == 2
    resumed = fit(resume)
    assert_same_weights_and_history(reference, resumed)


def test_retraining_a_layer_drops_the_kl_warmup():
    from aedissect.nets import interventions

    run = make_vae_run(warmup=5)
    retrain = interventions.retrain_run(run, 2)
    assert "kl_warmup_epochs" not in retrain["vae"] and run["vae"]["kl_warmup_epochs"] == 5
    assert retrain["vae"] | {"kl_warmup_epochs": 5} == run["vae"]
