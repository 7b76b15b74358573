"""The batched ensemble (training.ensemble) against independent training of each seed."""

from __future__ import annotations

import copy
import re

import pandas as pd
import pytest
import torch

from aedissect import config as study
from aedissect import io, status
from aedissect.nets import ensemble, jobs, training
from aedissect.nets.models import build_model, load_model
from conftest import SCHEMA, killed_while_saving

ATOL = 2e-5  # the batched products round differently from the single ones; a few epochs stay this close
# CUDA where there is one (CI has none; the note of a session with a GPU says what ran there)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def make_config(tiny_config, kind, **training_keys):
    cfg = copy.deepcopy(tiny_config)
    cfg["model_kinds"] = [kind]
    cfg["seeds"] = [0, 1, 5]
    cfg["training"].update({"epochs": 3, "batch_size": 32, "keep_epochs": [1, 2]}, **training_keys)
    study.validate(cfg, SCHEMA)
    return cfg


def cell_runs(cfg, arch="sym", freeze=None):
    runs = [r for r in study.grid(cfg) if r["arch"] == arch and r["dataset"] == cfg["datasets"][0]]
    if freeze is not None:
        for r in runs:
            r["freeze"] = freeze
    return runs


@pytest.fixture(scope="module")
def data():
    # 150 training samples: the last batch of every epoch is a short one (150 = 4 * 32 + 22)
    gen = torch.Generator().manual_seed(7)
    return {"x_train": torch.rand(150, 12, generator=gen), "x_test": torch.rand(40, 12, generator=gen)}


def assert_states_close(a: dict, b: dict, atol=ATOL):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].cpu(), b[key].cpu(), atol=atol, rtol=0, msg=f"{key}")


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("freeze", [None, "encoder"])
def test_every_member_equals_its_independent_training(tiny_config, data, kind, freeze, device_name):
    runs = cell_runs(make_config(tiny_config, kind), freeze=freeze)
    device = training.setup_torch(1, device_name)
    sequential = [training.train(run, data, device) for run in runs]
    together = ensemble.train_ensemble(runs, data, device)
    assert len(together) == len(runs)
    for run, seq, ens in zip(runs, sequential, together, strict=True):
        assert ens.keys() == seq.keys()
        # its own initialisation, from its own seed, bit for bit
        assert_states_close(ens["init_state"], seq["init_state"], atol=0)
        assert_states_close(ens["init_state"], build_model(run, 12).state_dict(), atol=0)
        # its own batch order, noise and Adam state: the same trajectory
        assert_states_close(ens["state"], seq["state"])
        assert ens["epoch_states"].keys() == seq["epoch_states"].keys() == {1, 2}
        for epoch in seq["epoch_states"]:
            assert_states_close(ens["epoch_states"][epoch], seq["epoch_states"][epoch])
        hist_e, hist_s = pd.DataFrame(ens["history"]), pd.DataFrame(seq["history"])
        pd.testing.assert_frame_equal(hist_e, hist_s, check_exact=False, atol=1e-4, rtol=1e-4)
        for key, value in seq["metrics"].items():
            assert ens["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        assert ens["in_dim"] == seq["in_dim"]
    # the members really are different models (distinct seeds, not one model copied)
    assert not torch.equal(together[0]["state"]["layers.0.0.weight"], together[1]["state"]["layers.0.0.weight"])


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("spec", ["encoder", "suffix-2+bias"])
def test_frozen_parameters_do_not_move(tiny_config, data, spec, device_name):
    runs = cell_runs(make_config(tiny_config, "ae"), freeze=spec)
    results = ensemble.train_ensemble(runs, data, training.setup_torch(1, device_name))
    frozen = build_model(runs[0], 12).frozen_parameters(spec)
    assert frozen
    for res in results:
        for key, value in res["state"].items():
            moved = not torch.equal(value, res["init_state"][key])
            assert moved == (key not in frozen), key


@pytest.mark.parametrize("device_name", DEVICES)
def test_ensemble_is_bitwise_deterministic_and_order_free(tiny_config, data, device_name):
    runs = cell_runs(make_config(tiny_config, "vae"))
    device = training.setup_torch(1, device_name)
    first = ensemble.train_ensemble(runs, data, device)
    again = ensemble.train_ensemble(runs, data, device)
    for a, b in zip(first, again, strict=True):
        assert_states_close(a["state"], b["state"], atol=0)
    # a member does not depend on which other members share its ensemble
    reversed_runs = ensemble.train_ensemble(runs[::-1][:2], data, device)
    assert_states_close(reversed_runs[1]["state"], first[1]["state"])


def test_members_must_share_model_loss_and_optimiser(tiny_config, data):
    cfg = make_config(tiny_config, "ae")
    runs = [r for r in study.grid(cfg) if r["dataset"] == cfg["datasets"][0]]
    mixed = [runs[0], next(r for r in runs if r["arch"] != runs[0]["arch"])]
    with pytest.raises(ValueError, match="may differ only in run_id, seed, freeze, epochs, keep_epochs"):
        ensemble.train_ensemble(mixed, data, torch.device("cpu"))
    other_lr = copy.deepcopy(runs[0]) | {"seed": 9}
    other_lr["training"] = other_lr["training"] | {"lr": 0.5}
    with pytest.raises(ValueError, match="may differ only in"):
        ensemble.train_ensemble([runs[0], other_lr], data, torch.device("cpu"))


def test_train_runs_writes_the_same_outputs_as_per_seed_training(tiny_config, data, tmp_path):
    data_path = tmp_path / "data.pt"
    torch.save(data, data_path)
    info = {"sha256": "x"}
    outputs = {}
    for flag in (False, True):
        runs = cell_runs(make_config(tiny_config, "vae", ensemble=flag))
        root = tmp_path / f"ensemble_{flag}"
        dirs = [str(root / r["run_id"]) for r in runs]
        jobs.train_runs(runs, str(data_path), info, dirs, threads=1, device="cpu", n_examples=3)
        outputs[flag] = (runs, root)
    (runs_s, root_s), (runs_e, root_e) = outputs[False], outputs[True]
    files_s = sorted(p.relative_to(root_s) for p in root_s.rglob("*") if p.is_file())
    files_e = sorted(p.relative_to(root_e) for p in root_e.rglob("*") if p.is_file())
    assert files_s == files_e and len(files_s) == 6 * len(runs_s)
    for run_s, run_e in zip(runs_s, runs_e, strict=True):
        d_s, d_e = root_s / run_s["run_id"], root_e / run_e["run_id"]
        assert io.read_json(d_e / "config.json")["training"]["ensemble"] is True
        for name in ("train_log.csv", "reconstructions.csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(d_e / name), pd.read_csv(d_s / name), check_exact=False, atol=1e-4, rtol=1e-4
            )
        m_s, m_e = io.read_json(d_s / "train_metrics.json"), io.read_json(d_e / "train_metrics.json")
        assert m_e.keys() == m_s.keys()
        pay_s = torch.load(d_s / "model.pt", weights_only=True)
        pay_e = torch.load(d_e / "model.pt", weights_only=True)
        assert pay_e.keys() == pay_s.keys()
        assert_states_close(pay_e["state"], pay_s["state"])
        assert io.read_json(d_e / "provenance.json")["ensemble_size"] == len(runs_e)


@pytest.mark.parametrize("together", [False, True])
def test_a_diverged_seed_is_recorded_and_its_cell_mates_keep_their_outputs(
    tiny_config, data, tmp_path, monkeypatch, together
):
    data_path = tmp_path / "data.pt"
    torch.save(data, data_path)
    runs = cell_runs(make_config(tiny_config, "ae", ensemble=together))

    def train_cell(root):
        dirs = [root / r["run_id"] for r in runs]
        jobs.train_runs(runs, str(data_path), {"sha256": "x"}, list(map(str, dirs)), 1, "cpu", n_examples=3)
        return dirs

    clean = train_cell(tmp_path / "clean")

    def blown_up(run, in_dim, code_map=None):  # seed 0 starts with weights of 1e20: its first loss overflows
        model = build_model(run, in_dim, code_map)
        if run["seed"] == 0:
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1e20)
        return model

    from aedissect.nets import models

    monkeypatch.setattr(models, "build_model", blown_up)  # what models.initial_model builds a run's start from
    dirs = train_cell(tmp_path / "diverged")  # no exception: the job goes on with the other seeds
    bad = dirs[0]
    record = io.read_json(bad / "train_metrics.json")
    assert record["status"] == "diverged"
    assert re.fullmatch(rf"run {re.escape(runs[0]['run_id'])}: training loss is (nan|inf) at epoch 1", record["error"])
    assert "test_loss" not in record
    assert pd.read_csv(bad / "train_log.csv").empty and pd.read_csv(bad / "reconstructions.csv").empty
    assert io.read_json(bad / "provenance.json")["config_hash"] == study.config_hash(runs[0])
    with pytest.raises(ValueError, match=rf"holds no trained weights: run {re.escape(runs[0]['run_id'])} diverged"):
        load_model(bad / "model.pt")
    for good, ref in zip(dirs[1:], clean[1:], strict=True):
        assert io.read_json(good / "train_metrics.json") == io.read_json(ref / "train_metrics.json")
        assert_states_close(
            load_model(good / "model.pt")[0].state_dict(), load_model(ref / "model.pt")[0].state_dict(), 0
        )
        pd.testing.assert_frame_equal(pd.read_csv(good / "train_log.csv"), pd.read_csv(ref / "train_log.csv"))

    # the cell's check fails naming the diverged run only; the clean cell's check records every test loss
    with pytest.raises(status.TrainingDiverged, match=r"1 of 3 runs of this grid cell diverged") as err:
        status.check_trained([str(d / "train_metrics.json") for d in dirs])
    assert runs[0]["run_id"] in str(err.value) and runs[1]["run_id"] not in str(err.value)
    record = status.check_trained([str(d / "train_metrics.json") for d in clean])
    assert [r["run_id"] for r in record["runs"]] == [r["run_id"] for r in runs]


def test_killed_ensemble_resumes_to_the_same_weights(tiny_config, data, tmp_path, monkeypatch):
    from aedissect.nets.interventions import freeze_variant

    runs = cell_runs(make_config(tiny_config, "vae", epochs=4, checkpoint_every=1))
    # and freeze variants of the first seed, as a freeze cell stacks them: members that share their seed's generator
    runs += [freeze_variant(runs[0], spec) for spec in ("encoder", "suffix-1")]
    device = training.setup_torch(1, "cpu")
    reference = ensemble.train_ensemble(runs, data, device)
    resume = tmp_path / ".ensemble.resume.pt"

    def fit(path):
        return ensemble.train_ensemble(runs, data, device, path)

    assert killed_while_saving(monkeypatch, fit, resume)["epoch"] == 2
    resumed = ensemble.train_ensemble(runs, data, device, resume)
    for ref, res in zip(reference, resumed, strict=True):
        for key in ref["state"]:
            assert torch.equal(ref["state"][key], res["state"][key]), key
        assert res["history"] == ref["history"] and res["metrics"] == ref["metrics"]
        assert torch.equal(res["epoch_states"][2]["layers.0.0.weight"], ref["epoch_states"][2]["layers.0.0.weight"])
    # the last epoch is checkpointed too: a rerun after the cell finished (a kill while saving it) trains nothing
    assert torch.load(resume, weights_only=True)["epoch"] == 4
    again = ensemble.train_ensemble(runs, data, device, resume)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in reference]


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("freeze", [None, "encoder"])
def test_a_member_with_kl_warmup_equals_its_one_by_one_training(tiny_config, data, likelihood, freeze):
    """vae.kl_warmup_epochs: every member gets the rate's weight of its step, as its own ``train`` does (2 of 3
    epochs warm up, so the weight is below beta for most steps and at beta after)."""
    cfg = make_config(tiny_config, "vae")
    cfg["vae"] |= {"likelihood": likelihood, "kl_warmup_epochs": 2}
    study.validate(cfg, SCHEMA)
    runs = cell_runs(cfg, freeze=freeze)
    device = training.setup_torch(1, "cpu")
    together = ensemble.train_ensemble(runs, data, device)
    sequential = [training.train(run, data, device) for run in runs]
    for run, ens, seq in zip(runs, together, sequential, strict=True):
        assert_same_training(ens, seq, ensemble.frozen_names(build_model(run, 12), run))
        pd.testing.assert_frame_equal(
            pd.DataFrame(ens["history"]), pd.DataFrame(seq["history"]), check_exact=False, atol=1e-4, rtol=1e-4
        )
    # the warm-up changes the training (with the encoder frozen it cannot: the rate's gradient only reaches the
    # encoder), and members with another warm-up do not stack with these
    plain = copy.deepcopy(runs[0])
    del plain["vae"]["kl_warmup_epochs"]
    without = training.train(plain, data, device)["state"]
    changed = any(not torch.equal(value, sequential[0]["state"][key]) for key, value in without.items())
    assert changed == (freeze is None)
    assert ensemble.stack_key(plain, None, 12) != ensemble.stack_key(runs[0], None, 12)


def assert_same_training(ens: dict, seq: dict, frozen: set[str]):
    """An ensemble member against its one-by-one training: same start, same trajectory within float tolerance, and
    its frozen parameters bitwise where they started."""
    assert_states_close(ens["init_state"], seq["init_state"], atol=0)
    assert_states_close(ens["state"], seq["state"])
    for key in frozen:
        assert torch.equal(ens["state"][key], ens["init_state"][key]), key
    assert [h["epoch"] for h in ens["history"]] == [h["epoch"] for h in seq["history"]]
    for key, value in seq["metrics"].items():
        assert ens["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_every_kind_of_member_equals_its_one_by_one_training(tiny_config, data, kind, weight_decay):
    """Seeds x freeze specs (the freeze sweep of a cell), layers re-initialised from trained weights (retraining
    one layer), stitches between two frozen networks, and members with a shorter budget: each stacked with others
    of its kind by ``train_members``, each equal to its own ``train``."""
    from aedissect.nets import interventions as iv

    cfg = make_config(tiny_config, kind, weight_decay=weight_decay)
    runs = cell_runs(cfg)[:2]
    device = training.setup_torch(1, "cpu")
    trained = [training.train(run, data, device) for run in runs]
    models = []
    for run, result in zip(runs, trained, strict=True):
        model = build_model(run, 12)
        model.load_state_dict(result["state"])
        models.append(model)

    members, starts, names = [], [], []
    # the symmetric design's mirror specs: a code map (its own stack: one more module) and the VAE's logvar head,
    # frozen in part (a mask per element)
    mirror = "+code+logvar" if kind == "vae" else "+code"
    for run in runs:  # the freeze sweep: every seed, every spec
        for spec in ("encoder", "decoder+bias", "suffix-1", f"encoder{mirror}", f"both{mirror}+bias"):
            members.append(iv.freeze_variant(run, spec))
            starts.append(None)
            names.append(f"s{run['seed']}__{spec}")
    short = copy.deepcopy(runs[1])
    short["training"] = short["training"] | {"epochs": 2, "keep_epochs": [1]}
    members.append(short)  # a shorter budget
    starts.append(None)
    names.append("short")
    for run, model, result in zip(runs, models, trained, strict=True):  # retraining one layer
        for layer in (0, model.n_layers - 1):
            members.append(iv.retrain_run(run, 2) | {"freeze": f"except-{layer}"})
            starts.append(iv.with_layer(model, layer, result["init_state"]))
            names.append(f"{run['run_id']}__retrain-{layer}")
    options = {"epochs": 2, "batch_size": 32, "lr": 0.01}
    for a, b in ((0, 1), (1, 0)):  # stitches
        run, stitched = iv.stitch_start(models[a], models[b], runs[b], data, options, device)
        members.append(run)
        starts.append(stitched)
        names.append(f"stitch-{a}-{b}")

    together = ensemble.train_members(members, data, device, names, starts, ensemble=True)
    apart = ensemble.train_members(members, data, device, names, [copy.deepcopy(m) for m in starts], ensemble=False)
    for name, run, start, ens, seq in zip(names, members, starts, together, apart, strict=True):
        module = start if start is not None else build_model(run, 12)
        assert ens["status"] == seq["status"] == "ok", name
        assert_same_training(ens, seq, ensemble.frozen_names(module, run))
    assert len(together[names.index("short")]["history"]) == 2  # the short member stopped after its own budget
    # a stitch trains only its stitch: both networks stay bitwise what they were
    stitch = together[-1]
    networks = [k for k in stitch["state"] if not k.startswith("stitch.")]
    assert networks and all(torch.equal(stitch["state"][k], stitch["init_state"][k]) for k in networks)
    assert not torch.equal(stitch["state"]["stitch.weight"], stitch["init_state"]["stitch.weight"])
