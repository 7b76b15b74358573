"""Freezing at init, re-initialisation, retraining one layer and stitching (issue 4)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from aedissect import config, io, plans
from aedissect.analysis import intervention_tables
from aedissect.nets import ensemble, optim, training
from aedissect.nets import interventions as iv
from aedissect.nets import models as aemodels
from aedissect.plans import parse_spec

ConfigError, resolve_run, build_model = config.ConfigError, config.resolve_run, aemodels.build_model

STUDY = {
    "datasets": ["digits", "factors"],
    "model_kinds": ["ae", "vae"],
    "architectures": {
        "sym": {"family": "symmetric", "encoder": [10], "decoder": [10]},
        "enc-heavy": {"family": "encoder-heavy", "encoder": [10, 8], "decoder": []},
    },
    "bottlenecks": [3, 4],
    "activations": ["relu"],
    "seeds": [0, 1],
    "training": {"epochs": 3, "batch_size": 32, "lr": 0.01, "weight_decay": 0.0, "keep_epochs": [1], "ensemble": False},
    "vae": {"beta": 1.0, "likelihood": "bernoulli", "sigma": 0.1},
    "interventions": {"cells": {"datasets": ["digits"], "bottlenecks": [4]}, "freeze": {"sides": ["prefix"], "k": {}}},
}
DEVICE = torch.device("cpu")


def make_run(kind="ae", arch="sym", seed=0, z=3):
    return resolve_run(STUDY, "digits", kind, arch, z, "relu", seed)


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    return {"x_train": torch.rand(96, 12, generator=gen), "x_test": torch.rand(40, 12, generator=gen)}


@pytest.fixture(scope="module")
def trained(data):
    """Trained AE and VAE runs with their payloads, as jobs.save_run would store them."""
    torch.use_deterministic_algorithms(True)
    out = {}
    for kind in ("ae", "vae"):
        for seed in (0, 1):
            run = make_run(kind, seed=seed)
            result = training.train(run, data, DEVICE)
            model = build_model(run, 12)
            model.load_state_dict(result["state"])
            out[kind, seed] = (run, model, result)
    return out


def layer_params(state, layers):
    return {k: v for k, v in state.items() if any(k.startswith(f"layers.{i}.") for i in layers)}


# ---------------------------------------------------------------- freezing


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_prefix_0_is_the_normal_run_bitwise(data, trained, kind):
    run, _, normal = trained[kind, 0]
    variant = training.train(iv.freeze_variant(run, "prefix-0"), data, DEVICE)
    assert normal["state"].keys() == variant["state"].keys()
    for key in normal["state"]:
        assert torch.equal(normal["state"][key], variant["state"][key]), key
    assert variant["history"] == normal["history"]
    assert variant["metrics"] == normal["metrics"]


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_freeze_encoder_keeps_the_encoder_bitwise_at_init_and_trains_the_decoder(data, kind):
    run = iv.freeze_variant(make_run(kind, arch="enc-heavy"), "encoder")
    result = training.train(run, data, DEVICE)
    model = build_model(run, 12)
    enc = range(model.bottleneck_cut)
    dec = range(model.bottleneck_cut, model.n_layers)
    for key, value in layer_params(result["state"], enc).items():
        assert torch.equal(value, result["init_state"][key]), key
    changed = [not torch.equal(v, result["init_state"][k]) for k, v in layer_params(result["state"], dec).items()]
    assert changed and all(changed)
    # and the freshly built model's init is that same init: frozen means "at the run's own seeded init"
    for key, value in build_model(run, 12).state_dict().items():
        assert torch.equal(value, result["init_state"][key])


def test_a_frozen_layer_gets_no_optimiser_state(data, monkeypatch):
    made = []

    class Recording(optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(optim, "Adam", Recording)
    run = iv.freeze_variant(make_run("ae"), "suffix-2")
    training.train(run, data, DEVICE)
    (optimizer,) = made
    model = build_model(run, 12)
    frozen = set(model.frozen_layers("suffix-2"))
    assert frozen == {model.n_layers - 2, model.n_layers - 1}
    in_optimizer = {id(p) for p in optimizer.params}
    assert len(optimizer.state) == len(in_optimizer) > 0  # every trainable parameter has state after training
    n_trainable = sum(len(list(model.layers[i].parameters())) for i in range(model.n_layers) if i not in frozen)
    assert len(in_optimizer) == n_trainable


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_decoder_plus_bias_trains_only_the_encoder_and_the_output_bias(data, kind):
    run = iv.freeze_variant(make_run(kind), "decoder+bias")
    result = training.train(run, data, DEVICE)
    model = build_model(run, 12)
    output_bias = f"layers.{model.n_layers - 1}.0.bias"
    for key, value in result["state"].items():
        moved = not torch.equal(value, result["init_state"][key])
        assert moved == (int(key.split(".")[1]) < model.bottleneck_cut or key == output_bias), key
    # the free bias is what lets the frozen decoder fit the data's mean: lower loss than the textbook freeze
    textbook = training.train(iv.freeze_variant(make_run(kind), "decoder"), data, DEVICE)
    assert result["metrics"]["test_mse"] < textbook["metrics"]["test_mse"]


@pytest.mark.parametrize("arch", ["sym", "enc-heavy"])
def test_freeze_specs_cover_the_sweep_and_agree_with_the_model_api(arch):
    run = make_run(arch=arch)
    model = build_model(run, 12)
    L, bc = model.n_layers, model.bottleneck_cut
    options = {"sides": ["prefix", "suffix"], "k": {}, "frozen_output_bias": False, "symmetric": False}
    specs = plans.freeze_specs(run, options)
    # every spec that reaches the output layer leaves its bias free
    assert specs == (
        ["encoder", "decoder+bias"] + [f"prefix-{k}" for k in range(1, L)] + [f"suffix-{k}+bias" for k in range(1, L)]
    )
    with_control = plans.freeze_specs(run, options | {"frozen_output_bias": True})
    assert with_control == (
        ["encoder", "decoder+bias", "decoder"]
        + [f"prefix-{k}" for k in range(1, L)]
        + [spec for k in range(1, L) for spec in (f"suffix-{k}+bias", f"suffix-{k}")]
    )
    # the symmetric design (the schema's default): the frozen encoder's mirror and the both-frozen baseline
    symmetric = plans.freeze_specs(run, options | {"symmetric": True, "code_map": True, "logvar_head": True})
    assert symmetric[:4] == ["encoder", "encoder+code", "decoder+bias", "both+code+bias"]
    vae = plans.freeze_specs(make_run("vae", arch=arch), options | {"symmetric": True})
    assert vae[:4] == ["encoder", "encoder+code+logvar", "decoder+bias", "both+code+logvar+bias"]
    off = plans.freeze_specs(run, options | {"symmetric": True, "code_map": False})
    assert off[:3] == ["encoder", "decoder+bias", "both+bias"]  # the mirror is then plain encoder
    assert plans.variant_key(run, "encoder+code") != plans.variant_key(run, "encoder")
    assert plans.variant_key(run, "encoder+logvar") == plans.variant_key(run, "encoder")  # the AE has no head
    for spec in with_control:
        layers, bias_frozen = plans.frozen_set(run, spec)
        assert list(layers) == model.frozen_layers(spec)
        assert bias_frozen == (f"layers.{L - 1}.0.bias" in model.frozen_parameters(spec))
    assert plans.frozen_set(run, "encoder") == plans.frozen_set(run, f"prefix-{bc}")
    assert plans.frozen_set(run, "decoder+bias") == plans.frozen_set(run, f"suffix-{L - bc}+bias")
    assert plans.frozen_set(run, "decoder+bias") != plans.frozen_set(run, "decoder")
    with pytest.raises(ConfigError, match="interventions.freeze.k.sym"):
        options = {"sides": ["prefix"], "k": {"sym": [4]}, "frozen_output_bias": True}
        plans.freeze_specs(make_run(arch="sym"), options)


def test_the_sweep_trains_on_the_first_seeds_only_and_the_share_specs_on_every_seed():
    options = {"sides": ["prefix", "suffix"], "k": {}, "frozen_output_bias": True, "symmetric": True}
    config = {"seeds": [5, 3, 9, 1], "interventions": {"freeze": options | {"sweep_seeds": 2}}}
    swept = [seed for seed in config["seeds"] if plans.sweeps(make_run(seed=seed), config)]
    assert swept == [5, 3]  # the first two of `seeds`, in the study's order
    assert all(plans.sweeps(make_run(seed=s), {**config, "interventions": {"freeze": options}}) for s in (9, 1))
    run = make_run(seed=9)
    full, share_only = plans.freeze_specs(run, options), plans.freeze_specs(run, options, sweep=False)
    assert share_only == ["encoder", "encoder+code", "decoder+bias", "decoder", "both+code+bias"]
    assert full[: len(share_only)] == share_only
    assert all(parse_spec(spec)["side"] in ("prefix", "suffix") for spec in full[len(share_only) :])


def test_freeze_runs_select_the_configured_cells():
    runs = plans.intervention_runs(STUDY, config.grid(STUDY))
    assert runs and {(r["dataset"], r["bottleneck"]) for r in runs} == {("digits", 4)}
    assert len(runs) == 2 * 2 * 2  # kinds x architectures x seeds


def trained_specs(monkeypatch) -> list[str]:
    """The freeze specs ``ensemble.train`` is called with from now on, in order (it still trains them)."""
    calls = []
    real_train = ensemble.train

    def counting_train(spec_run, *args, **kwargs):
        calls.append(spec_run["freeze"])
        return real_train(spec_run, *args, **kwargs)

    monkeypatch.setattr(ensemble, "train", counting_train)
    return calls


def test_freeze_cell_writes_a_run_per_spec_and_trains_aliases_once(data, tmp_path, monkeypatch):
    run = make_run("ae", arch="sym")
    torch.save(data, tmp_path / "data.pt")
    calls = trained_specs(monkeypatch)
    # encoder = prefix-2 and decoder+bias = suffix-2+bias for this architecture
    specs = ["encoder", "decoder+bias", "decoder", "prefix-1", "prefix-2", "suffix-2+bias"]
    iv.train_freeze_cell([run], {run["run_id"]: specs}, str(tmp_path / "data.pt"), [str(tmp_path / "s0")], 1, "cpu")
    assert calls == ["encoder", "decoder+bias", "decoder", "prefix-1"]
    metrics = {spec: io.read_json(tmp_path / "s0" / spec / "train_metrics.json") for spec in specs}
    assert metrics["prefix-2"]["same_as"] == "encoder"
    assert metrics["suffix-2+bias"]["same_as"] == "decoder+bias"
    assert {spec: m["output_bias"] for spec, m in metrics.items()} == {
        "encoder": "trained", "decoder+bias": "trained", "decoder": "frozen",
        "prefix-1": "trained", "prefix-2": "trained", "suffix-2+bias": "trained",
    }  # fmt: skip
    assert metrics["prefix-2"]["test_loss"] == metrics["encoder"]["test_loss"]
    direct = training.train(iv.freeze_variant(run, "prefix-2"), data, DEVICE)["metrics"]["test_loss"]
    assert direct == metrics["prefix-2"]["test_loss"]


def test_encoder_share_formula_on_a_constructed_table():
    rows = []
    for rid, (full, enc, dec, dec_bias) in {"a": (1.0, 4.0, 2.0, 1.5), "b": (0.5, 0.5, 1.5, 1.0)}.items():
        for spec, loss in (("none", full), ("encoder", enc), ("decoder", dec), ("decoder+bias", dec_bias)):
            rows.append({"run_id": rid, "freeze": spec, "test_loss": loss, "test_mse": 2 * loss, "dataset": "d"})
    share = intervention_tables.encoder_share(pd.DataFrame(rows))
    share = share.set_index(["run_id", "metric", "output_bias"])["value"]
    assert share["a", "test_loss", "frozen"] == pytest.approx(3.0 / (3.0 + 1.0))
    assert share["a", "test_mse", "frozen"] == pytest.approx(6.0 / (6.0 + 2.0))
    assert share["a", "test_loss", "trained"] == pytest.approx(3.0 / (3.0 + 0.5))
    assert (share["b", "test_loss"] == 0.0).all()  # freezing the encoder costs nothing: the decoder does all the work


# ---------------------------------------------------------------- re-initialisation and retraining


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_putting_a_layers_own_weights_back_changes_nothing(data, trained, kind):
    run, model, result = trained[kind, 0]
    reference = training.evaluate(model, data["x_test"], run)
    for layer in range(model.n_layers):
        restored = iv.with_layer(model, layer, result["state"])
        for key, value in model.state_dict().items():
            assert torch.equal(restored.state_dict()[key], value)
        assert training.evaluate(restored, data["x_test"], run) == reference


def test_reinit_and_rerandom_touch_only_their_layer(trained):
    _, model, result = trained["ae", 0]
    layer = 1
    reinit = iv.with_layer(model, layer, result["init_state"]).state_dict()
    rerand = iv.rerandomised(model, layer, seed=7).state_dict()
    again = iv.rerandomised(model, layer, seed=7).state_dict()
    for key, value in model.state_dict().items():
        if key.startswith(f"layers.{layer}."):
            assert torch.equal(reinit[key], result["init_state"][key])
            assert not torch.equal(rerand[key], result["init_state"][key])  # a fresh draw, not the own init
            assert torch.equal(rerand[key], again[key])  # seeded
            fan_in = model.layers[layer][0].in_features
            assert rerand[key].abs().max() <= fan_in**-0.5  # nn.Linear's init distribution: U(-1/sqrt(fan_in), .)
        else:
            assert torch.equal(reinit[key], value) and torch.equal(rerand[key], value)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_criticality_rows(data, trained, kind):
    run, model, result = trained[kind, 0]
    payload = {"state": result["state"], "init_state": result["init_state"], "epoch_states": result["epoch_states"]}
    options = {"factor": 1.5, "rerandom_seed": 1000, "retrain_epochs": 2}
    rows = pd.DataFrame(iv.criticality(run, model, payload, data, options, DEVICE))
    expected = {"trained", "reinit", "rerandom", "rewind-1", "retrain"}
    assert set(rows["intervention"]) == expected
    assert len(rows) == model.n_layers * len(expected)
    own = rows[rows["intervention"] == "trained"]
    assert (own["ratio"] == 1.0).all() and not own["critical"].any()
    assert (rows["critical"] == (rows["ratio"] > 1.5)).all()
    mse = training.evaluate(model, data["x_test"], run)["test_mse"]
    assert (rows["trained_test_mse"] == mse).all()
    sides = rows.drop_duplicates("layer").set_index("layer")["side"]
    assert sides[model.bottleneck_layer] == "bottleneck"
    assert set(sides[: model.bottleneck_layer]) <= {"encoder"}
    assert set(sides[model.bottleneck_layer + 1 :]) == {"decoder"}
    # recovered = share of the re-initialisation's loss increase that retraining the layer won back
    reinit = rows[rows["intervention"] == "reinit"].set_index("layer")["test_mse"]
    for row in rows[rows["intervention"] == "retrain"].itertuples():
        if reinit[row.layer] > mse:
            assert row.recovered == pytest.approx((reinit[row.layer] - row.test_mse) / (reinit[row.layer] - mse))
    # the mean predictor's test MSE from the data; three epochs on uniform noise hardly beat it (the AE does not:
    # its damage has no scale, NaN; test_normalised_damage_... checks it on a model that learnt something)
    mean_mse = float(((data["x_test"].double() - data["x_train"].double().mean(0)) ** 2).mean())
    assert np.allclose(rows["mean_predictor_test_mse"], mean_mse, rtol=1e-12)
    if mse < mean_mse:
        assert rows["damage"].to_numpy() == pytest.approx(((rows["test_mse"] - mse) / (mean_mse - mse)).to_numpy())
        assert (own["damage"] == 0.0).all()
    else:
        assert rows["damage"].isna().all()
    assert rows.groupby("layer")["params"].first().tolist() == iv.layer_parameters(model)
    assert rows.groupby("layer")["params"].first().sum() == sum(p.numel() for p in model.parameters())


def test_normalised_damage_is_0_for_the_trained_weights_and_1_for_the_mean_predictor():
    data = low_rank_data()
    run = make_run("ae")
    run["training"] = run["training"] | {"epochs": 30, "keep_epochs": []}
    result = training.train(run, data, DEVICE)
    model = build_model(run, 12)
    model.load_state_dict(result["state"])
    mse = training.evaluate(model, data["x_test"], run)["test_mse"]
    mean_mse = iv.mean_predictor_mse(data["x_train"], data["x_test"])
    assert mse < 0.5 * mean_mse  # trained: better than predicting the training mean
    payload = {"state": result["state"], "init_state": result["init_state"], "epoch_states": {}}
    options = {"factor": 2.0, "rerandom_seed": 1000, "retrain_epochs": 0}
    rows = pd.DataFrame(iv.criticality(run, model, payload, data, options, DEVICE))
    assert (rows.loc[rows["intervention"] == "trained", "damage"] == 0.0).all()
    reinit = rows[rows["intervention"] == "reinit"]
    assert reinit["damage"].to_numpy() == pytest.approx(((reinit["test_mse"] - mse) / (mean_mse - mse)).to_numpy())
    assert (reinit["damage"] > 0).all()
    # the mean predictor as a network: the output layer's weights zero, its bias the training mean (a Bernoulli
    # VAE's logits: the mean's logit), so every test sample is reconstructed as the training mean
    mean = copy.deepcopy(model)
    out = mean.layers[-1][0]
    x_mean = data["x_train"].mean(0)
    with torch.no_grad():
        out.weight.zero_()
        out.bias.copy_(x_mean)
    predicted = training.evaluate(mean, data["x_test"], run)["test_mse"]
    assert predicted == pytest.approx(mean_mse, rel=1e-5)
    assert iv.normalised_damage(mse, mse, mean_mse) == 0.0
    assert iv.normalised_damage(predicted, mse, mean_mse) == pytest.approx(1.0, rel=1e-4)
    # twice the mean predictor's gap is 2; a model no better than the mean predictor has no scale: NaN
    assert iv.normalised_damage(mse + 2 * (mean_mse - mse), mse, mean_mse) == pytest.approx(2.0)
    assert np.isnan(iv.normalised_damage(1.0, mean_mse, mean_mse))


def test_the_criticality_figure_shows_the_normalised_damage_where_the_table_has_it():
    from aedissect.analysis import plotting_interventions

    rows = []
    archs = {"sym": ["enc1", "bottleneck", "dec1", "output"], "enc": ["enc1", "bottleneck", "output"]}
    for arch, names in archs.items():
        for layer, name in enumerate(names):
            side = {0: "encoder", 1: "bottleneck"}.get(layer, "decoder")
            for intervention in ("reinit", "rerandom"):
                rows.append(
                    {"dataset": "d", "kind": "ae", "family": "f", "arch": arch, "layer": layer, "layer_name": name}
                    | {"side": side, "intervention": intervention, "ratio": 1.0 + layer, "damage": 0.25 * layer}
                )
    table = pd.DataFrame(rows)
    fig = plotting_interventions.criticality_heatmap(table)
    texts = {t.get_text() for ax in fig.axes[:2] for t in ax.texts}
    assert {"0.00", "0.25", "0.50", "0.75"} <= texts  # the damage, not the ratio
    assert fig.axes[-1].get_ylabel() == "normalised damage (0: trained, 1: mean predictor)"
    old = plotting_interventions.criticality_heatmap(table.drop(columns="damage"))  # an older table: the ratio
    assert "4.0" in {t.get_text() for ax in old.axes[:2] for t in ax.texts}
    assert "log scale" in old.axes[-1].get_ylabel()


def test_retraining_one_layer_changes_only_that_layer(data, trained):
    run, model, result = trained["ae", 0]
    layer = 2
    start = iv.with_layer(model, layer, result["init_state"])
    spec = iv.retrain_run(run, 2) | {"freeze": f"except-{layer}"}
    out = training.train(spec, data, DEVICE, model=start)
    for key, value in out["state"].items():
        if key.startswith(f"layers.{layer}."):
            assert not torch.equal(value, result["init_state"][key])
            assert torch.equal(out["init_state"][key], result["init_state"][key])
        else:
            assert torch.equal(value, result["state"][key]), key
    assert len(out["history"]) == 2


# ---------------------------------------------------------------- stitching


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_identity_stitch_of_a_model_to_itself_gives_its_own_loss_exactly(data, trained, kind):
    run, model, _ = trained[kind, 0]
    stitched = iv.Stitched(model, model, iv.identity_stitch((3,), (3,)), run)
    own = training.evaluate(model, data["x_test"], run)
    assert training.evaluate(stitched, data["x_test"], run)["test_mse"] == own["test_mse"]
    with torch.no_grad():
        assert torch.equal(stitched(data["x_test"]), training.reconstruction(model, data["x_test"], run))


def test_trained_stitch_moves_only_the_stitch(data, trained):
    run_a, a, _ = trained["ae", 0]
    run_b, b, _ = trained["ae", 1]
    before_a, before_b = copy.deepcopy(a.state_dict()), copy.deepcopy(b.state_dict())
    options = {"epochs": 3, "batch_size": 32, "lr": 0.01}
    fitted = iv.fit_stitch(a, b, run_b, data, options, DEVICE)
    identity = training.evaluate(iv.Stitched(a, b, iv.identity_stitch((3,), (3,)), run_b), data["x_test"], run_b)
    start = iv.Stitched(a, b, iv.least_squares_stitch(a, b, data["x_train"]), run_b)
    start_mse = training.evaluate(start, data["x_test"], run_b)["test_mse"]
    assert fitted["test_mse"] < start_mse < identity["test_mse"]  # matching the codes helps, training more
    for key, value in a.state_dict().items():
        assert torch.equal(value, before_a[key])
    for key, value in b.state_dict().items():
        assert torch.equal(value, before_b[key])


def test_stitch_pairs():
    runs = [make_run(arch=arch, seed=seed) for arch in ("sym", "enc-heavy") for seed in (0, 1)]
    pairs = plans.stitch_pairs(runs, ["seed", "arch"])
    types = {(runs[i]["arch"], runs[i]["seed"], runs[j]["arch"], runs[j]["seed"]): t for i, j, t in pairs}
    assert types[("sym", 0, "sym", 0)] == "self"
    assert types[("sym", 0, "sym", 1)] == "seed"
    assert types[("sym", 0, "enc-heavy", 0)] == "arch"
    assert ("sym", 0, "enc-heavy", 1) not in types
    assert len(pairs) == 4 + 4 + 4  # self, other seed, other arch with the same seed
    assert len(plans.stitch_pairs(runs, ["seed", "arch", "arch-seed"])) == 16


def test_seed_pairs_are_a_cycle_over_the_seeds():
    """n seeds give n seed pairs per architecture, each seed once as A and once as B, whatever the run order."""
    seeds = [3, 0, 2, 1, 4]
    runs = [make_run(arch=arch, seed=seed) for seed in seeds for arch in ("sym", "enc-heavy")]
    pairs = [(runs[i], runs[j]) for i, j, kind in plans.stitch_pairs(runs, ["seed"]) if kind == "seed"]
    assert len(pairs) == 2 * len(seeds)
    for arch in ("sym", "enc-heavy"):
        edges = {(a["seed"], b["seed"]) for a, b in pairs if a["arch"] == arch}
        assert all(b["arch"] == a["arch"] for a, b in pairs)
        assert edges == {(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)}


def test_least_squares_stitch_of_a_model_to_itself_is_the_identity(trained, data):
    _, model, _ = trained["ae", 0]
    stitch = iv.least_squares_stitch(model, model, data["x_train"])
    assert torch.allclose(stitch.weight, torch.eye(3), atol=1e-5)
    assert torch.allclose(stitch.bias, torch.zeros(3), atol=1e-5)


def test_killed_freeze_cell_resumes_bitwise_and_skips_finished_variants(data, tmp_path, monkeypatch):
    run = make_run("ae", arch="sym")
    run["training"]["checkpoint_every"] = 1
    torch.save(data, tmp_path / "data.pt")
    specs = {run["run_id"]: ["encoder", "decoder+bias", "prefix-1"]}

    def freeze_cell(out, state_dir):
        iv.train_freeze_cell([run], specs, str(tmp_path / "data.pt"), [str(out)], 1, "cpu", state_dir)

    freeze_cell(tmp_path / "reference", None)
    real_evaluate, calls = training.evaluate, {"n": 0}

    def counting_evaluate(*args, **kwargs):  # once per epoch and once at the end of every training
        calls["n"] += 1
        if calls["n"] == calls.get("kill_at"):
            raise KeyboardInterrupt("killed")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", counting_evaluate)
    state = tmp_path / ".s.resume"
    calls["kill_at"] = 6  # epoch 2 of the second variant: the first is finished, the second checkpointed at 1
    with pytest.raises(KeyboardInterrupt):
        freeze_cell(tmp_path / "killed", state)
    assert sorted(p.name for p in state.glob("*.pt")) == ["s0__decoder+bias.pt", "s0__encoder.pt"]
    calls.update(n=0, kill_at=None)
    freeze_cell(tmp_path / "killed", state)
    # the finished variant only evaluated, the second resumed at epoch 2, the third trained in full
    assert calls["n"] == 1 + (2 + 1) + (3 + 1)
    assert not state.exists(), "the job's checkpoints go once its outputs are written"
    for spec in specs[run["run_id"]]:
        for name in ("train_metrics.json", "train_log.csv"):
            reference = (tmp_path / "reference" / spec / name).read_bytes()
            assert (tmp_path / "killed" / spec / name).read_bytes() == reference, (spec, name)


def test_a_checkpoint_is_used_only_by_the_training_that_starts_from_the_same_weights(data, trained, tmp_path, caplog):
    _, a, _ = trained["ae", 0]
    run_b, b, _ = trained["ae", 1]
    run_b = copy.deepcopy(run_b)
    run_b["training"]["checkpoint_every"] = 1
    options = {"epochs": 2, "batch_size": 32, "lr": 0.01}
    resume = tmp_path / "stitch.pt"  # training.checkpoint_path(tmp_path, "stitch")
    fresh = iv.fit_stitch(a, b, run_b, data, options, DEVICE)
    assert iv.fit_stitch(a, b, run_b, data, options, DEVICE, tmp_path) == fresh
    assert torch.load(resume, weights_only=True)["epoch"] == 2  # kept: the job removes its state folder at its end
    assert iv.fit_stitch(a, b, run_b, data, options, DEVICE, tmp_path) == fresh  # restored, not retrained
    # the same stitch config from another A: the checkpoint is not this training's
    other = copy.deepcopy(b)
    with caplog.at_level("WARNING", logger="aedissect.nets.training"):
        from_b = iv.fit_stitch(other, b, run_b, data, options, DEVICE, tmp_path)
    assert "unusable" in caplog.text
    assert from_b == iv.fit_stitch(other, b, run_b, data, options, DEVICE)


# ---------------------------------------------------------------- stitching at every cut, normalised (issue 15)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_a_model_stitched_to_itself_gives_zero_penalty_at_every_cut(data, trained, kind):
    """The identity stitch at any hidden cut gives the model's own reconstruction bitwise (penalty exactly 0), and the
    least-squares start of a self-stitch reproduces it on the training data it is fitted on."""
    run, model, _ = trained[kind, 0]
    own = training.evaluate(model, data["x_test"], run)["test_mse"]
    assert plans.stitch_cuts(run, run, "self") == [(c, c) for c in range(1, model.n_layers)]
    assert plans.stitch_cuts(run, make_run(kind, arch="enc-heavy"), "arch") == [(2, 3)]
    for cut in range(1, model.n_layers):
        shape = iv.cut_shape(model, cut, data["x_test"])
        assert shape == (model.forward_to(data["x_test"], cut).shape[1],)
        identity = iv.Stitched(model, model, iv.identity_stitch(shape, shape), run, cut, cut)
        assert training.evaluate(identity, data["x_test"], run)["test_mse"] - own == 0, cut
        start = iv.least_squares_stitch(model, model, data["x_train"], cut, cut)
        fitted = iv.Stitched(model, model, start, run, cut, cut)
        with torch.no_grad():
            expected = training.reconstruction(model, data["x_train"], run)
            assert torch.allclose(fitted(data["x_train"]), expected, atol=1e-5), cut


def test_stitches_at_two_cuts_of_equal_width_are_never_one_ensemble(data, trained):
    """sym's cuts 1 and 3 are both 10 wide: the stitched modules have the same shapes, the runs name their cuts."""
    run, a, _ = trained["ae", 0]
    _, b, _ = trained["ae", 1]
    options = {"epochs": 1, "batch_size": 32, "lr": 0.01}
    one = iv.stitch_start(a, b, run, data, options, DEVICE, 1, 1)
    three = iv.stitch_start(a, b, run, data, options, DEVICE, 3, 3)
    assert iv.cut_shape(a, 1, data["x_test"]) == iv.cut_shape(a, 3, data["x_test"])
    assert ensemble.stack_key(*one, 12) != ensemble.stack_key(*three, 12)
    assert one[1].frozen_parameters("none") == [n for n, _ in one[1].named_parameters() if not n.startswith("stitch.")]
    assert all(p.requires_grad for p in a.parameters()), "a stitch leaves its networks as they were"


def test_normalised_penalties_on_a_hand_made_table():
    rows = [
        # stitch, test_mse; B's own 0.1, the mean predictor 0.5; the init_a control 0.3
        ("identity", 0.9), ("trained", 0.12), ("init_a", 0.3),
    ]  # fmt: skip
    table = pd.DataFrame(
        [
            {"run_id_a": "a", "run_id_b": "b", "cut_a": 2, "cut_b": 2, "stitch": stitch, "test_mse": mse}
            | {"b_test_mse": 0.1, "mean_predictor_test_mse": 0.5}
            for stitch, mse in rows
        ]
    )
    table["penalty"] = table["test_mse"] - table["b_test_mse"]
    other_cut = table.assign(cut_a=3, cut_b=3, test_mse=[0.9, 0.2, 0.05])  # init_a better than B: no normalisation
    out = iv.normalised_penalties(pd.concat([table, other_cut], ignore_index=True))
    first = out[out["cut_a"] == 2].set_index("stitch")
    assert first.loc["init_a", "normalised_penalty_init_a"] == 1.0
    assert first.loc["trained", "normalised_penalty_init_a"] == pytest.approx(0.02 / 0.2)
    assert first.loc["identity", "normalised_penalty_init_a"] == pytest.approx(0.8 / 0.2)
    assert first.loc["trained", "normalised_penalty_mean"] == pytest.approx(0.02 / 0.4)
    assert (first["init_a_test_mse"] == 0.3).all()
    second = out[out["cut_a"] == 3].set_index("stitch")
    assert second["normalised_penalty_init_a"].isna().all()
    assert second.loc["trained", "normalised_penalty_mean"] == pytest.approx(0.1 / 0.4)


@pytest.fixture(scope="module")
def structured_data():
    """Three latent factors and a little noise, which a few epochs of training learn to encode (uniform noise has
    no code to learn)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.sigmoid((torch.rand(280, 3, generator=gen) * 4 - 2) @ torch.randn(3, 12, generator=gen))
    x = x + 0.05 * torch.randn(x.shape, generator=gen)
    return {"x_train": x[:200], "x_test": x[200:]}


@pytest.fixture(scope="module")
def stitch_group(structured_data, tmp_path_factory):
    """A group of two architectures x two seeds (AE), saved as the train job saves them, stitched by the job."""
    folder = tmp_path_factory.mktemp("stitch_group")
    torch.save(structured_data, folder / "data.pt")
    runs, paths = [], []
    for arch in ("sym", "enc-heavy"):
        for seed in (0, 1):
            run = make_run("ae", arch=arch, seed=seed)
            run["training"] |= {"epochs": 20}
            result = training.train(run, structured_data, DEVICE)
            path = folder / f"{arch}-{seed}.pt"
            torch.save({"config": run, "in_dim": 12, "status": "ok", "state": result["state"]}
                       | {"init_state": result["init_state"], "epoch_states": {}}, path)  # fmt: skip
            runs.append(run)
            paths.append(str(path))
    options = {"pair_types": ["seed", "arch"], "fit_self": False, "epochs": 2, "batch_size": 32, "lr": 0.01}
    out = folder / "stitching.csv"
    iv.stitching_group(runs, paths, str(folder / "data.pt"), options, 1, "cpu", str(out))
    return runs, pd.read_csv(out), str(out)


def test_the_stitching_job_stitches_one_architecture_at_every_cut_and_two_at_the_bottleneck(
    structured_data, stitch_group
):
    runs, table, _ = stitch_group
    layers = {run["arch"]: plans.n_layers(run) for run in runs}
    for (pair_type, arch), rows in table.groupby(["pair_type", "a_arch"]):
        if pair_type in ("self", "seed"):
            assert sorted(set(rows["cut_b"])) == list(range(1, layers[arch])), (pair_type, arch)
            assert (rows["cut_a"] == rows["cut_b"]).all()
        else:
            assert set(rows["cut_side"]) == {"bottleneck"} and set(rows["cut_offset"]) == {0}
    # the model stitched to itself (identity) at every cut: zero penalty, exactly
    identity = table[(table["pair_type"] == "self") & (table["stitch"] == "identity")]
    assert len(identity) == sum(layers[run["arch"]] - 1 for run in runs)
    assert (identity["penalty"] == 0).all()
    assert (identity["mean_predictor_test_mse"] > identity["b_test_mse"]).all()
    assert (identity["normalised_penalty_mean"] == 0).all()
    # every fitted pair and cut has its init_a control, whose own normalised penalty is 1
    fitted = table[table["pair_type"] != "self"]
    assert set(fitted["stitch"]) == {"identity", "trained", "init_a"}
    init_a = fitted[fitted["stitch"] == "init_a"]
    assert len(init_a) == len(fitted) / 3
    assert (init_a["normalised_penalty_init_a"] == 1.0).all()
    assert (init_a["init_a_test_mse"] == init_a["test_mse"]).all()
    data = structured_data
    mean = ((data["x_test"].double() - data["x_train"].double().mean(0)) ** 2).mean().item()
    assert table["mean_predictor_test_mse"].to_numpy() == pytest.approx(mean, rel=1e-9)
    assert set(table["stitch_objective"]) == {iv.STITCH_OBJECTIVE}
    assert set(table[table["cut_side"] == "bottleneck"]["cut_name"]) == {"bottleneck"}


def test_the_stitching_table_and_the_swap_table_from_the_stitching_job(stitch_group):
    runs, _, path = stitch_group
    table = intervention_tables.stitching_table(runs, [path])
    sym = table[table["a_arch"] == "sym"]
    assert set(sym["a_family"]) == {"symmetric"} and set(sym["a_encoder"]) == {"10"} and set(sym["a_decoder"]) == {"10"}
    assert (table["run_id"] == table["run_id_b"]).all()
    swap = intervention_tables.swap_table(table)
    pair = swap[(swap["level"] == "pair") & (swap["metric"] == "normalised_penalty_init_a")]
    assert set(zip(pair["pair_type"], pair["a_arch"], pair["arch"], strict=True)) == {
        ("arch", "sym", "enc-heavy"), ("arch", "enc-heavy", "sym"),
        ("seed", "sym", "sym"), ("seed", "enc-heavy", "enc-heavy"),
    }  # fmt: skip
    assert set(pair["n"]) == {2} and pair["mean"].notna().all()
    summary = intervention_tables.stitching_summary(table)
    assert set(summary["metric"]) == set(intervention_tables.STITCH_PENALTIES)
    assert {"cut_name", "cut_side", "cut_offset"} <= set(summary.columns)


def hand_made_stitching(values: dict) -> pd.DataFrame:
    """A stitching table at the bottleneck: (pair_type, a_arch, b_arch) -> normalised penalties, one per seed."""
    family = {"sym": "symmetric", "wide": "symmetric", "enc": "encoder-heavy"}
    rows = []
    for (pair_type, a_arch, arch), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            for stitch in ("trained", "init_a", "identity"):
                rows.append(
                    {"dataset": "digits", "kind": "ae", "activation": "relu", "epochs": 3, "batch_size": 32}
                    | {"lr": 0.01, "beta": float("nan"), "likelihood": "mse", "stitch_objective": iv.STITCH_OBJECTIVE}
                    | {"pair_type": pair_type, "a_arch": a_arch, "a_family": family[a_arch], "a_encoder": "10"}
                    | {"a_decoder": "10", "arch": arch, "family": family[arch], "encoder": "10", "decoder": "10"}
                    | {"bottleneck": 3, "seed": seed, "stitch": stitch, "cut_side": "bottleneck", "penalty": value / 10}
                    | {"normalised_penalty_init_a": value if stitch == "trained" else 1.0}
                    | {"normalised_penalty_mean": value / 2}
                )  # fmt: skip
    # a stitch at a hidden cut, and one from a model to itself: neither is in the swap matrix
    rows.append(rows[0] | {"cut_side": "encoder", "normalised_penalty_init_a": 99.0})
    rows.append(rows[0] | {"pair_type": "self", "normalised_penalty_init_a": 99.0})
    return pd.DataFrame(rows)


def test_the_swap_table_on_a_hand_made_stitching_table():
    stitching = hand_made_stitching(
        {
            ("arch", "sym", "enc"): [0.1, 0.2, 0.3],
            ("arch", "wide", "enc"): [0.3, 0.4, 0.5],
            ("arch", "sym", "wide"): [0.2, 0.3, 0.4],
            ("arch", "enc", "sym"): [0.5, 0.5, 0.8],
            ("seed", "sym", "sym"): [0.0, 0.02, 0.04],
        }
    )
    swap = intervention_tables.swap_table(stitching)
    assert list(swap.columns) == intervention_tables.SWAP_COLUMNS
    assert 99.0 not in set(swap["mean"]) and set(swap["pair_type"]) == {"arch", "seed"}
    pair = swap[(swap["level"] == "pair") & (swap["metric"] == "normalised_penalty_init_a")]
    one = pair[(pair["a_arch"] == "sym") & (pair["arch"] == "enc")].iloc[0]
    assert one["mean"] == pytest.approx(0.2) and one["n"] == 3
    half = 4.302653 * 0.1 / 3**0.5  # t(0.975, 2) x std / sqrt(n)
    assert one[["ci95_low", "ci95_high"]].tolist() == pytest.approx([0.2 - half, 0.2 + half], abs=1e-5)
    assert one["a_family"] == "symmetric" and one["family"] == "encoder-heavy" and one["stitch_objective"]
    # family level: each seed's mean over the family's encoders (sym, wide) into every other decoder, then over seeds
    family = swap[(swap["level"] == "family") & (swap["metric"] == "normalised_penalty_init_a")]
    symmetric = family[(family["a_family"] == "symmetric") & (family["pair_type"] == "arch")].iloc[0]
    assert symmetric["mean"] == pytest.approx(0.3) and symmetric["n"] == 3
    assert symmetric["std"] == pytest.approx(0.1)
    assert (symmetric[["a_arch", "arch", "bottleneck"]] == "all").all()
    control = family[(family["a_family"] == "symmetric") & (family["pair_type"] == "seed")].iloc[0]
    assert control["mean"] == pytest.approx(0.02)
    mean = swap[(swap["level"] == "family") & (swap["metric"] == "normalised_penalty_mean")]
    symmetric_mean = mean[(mean["a_family"] == "symmetric") & (mean["pair_type"] == "arch")].iloc[0]
    assert symmetric_mean["mean"] == pytest.approx(0.15)


def test_the_per_cut_stitching_figure_reads_same_architecture_seed_pairs_per_cut():
    from aedissect.analysis import plotting_interventions as plots

    stitching = hand_made_stitching(
        {("seed", "sym", "sym"): [0.1, 0.2, 0.3], ("arch", "sym", "enc"): [0.5, 0.5, 0.5]}
    ).assign(cut_offset=0)
    # its stitch at a hidden cut goes (this test puts its own there); its self pair (99) stays, to be left out
    stitching = stitching[(stitching["cut_side"] == "bottleneck") | (stitching["pair_type"] == "self")]
    # the same seed pairs at the encoder's cut -1, one seed without a finite value (not counted), and 1.5 at cut 1
    hidden = stitching[(stitching["pair_type"] == "seed") & (stitching["cut_side"] == "bottleneck")]
    hidden = hidden.assign(cut_offset=-1, cut_side="encoder")
    hidden.loc[(hidden["seed"] == 2) & (hidden["stitch"] == "trained"), "normalised_penalty_init_a"] = np.nan
    above = hidden.assign(cut_offset=1, cut_side="decoder", normalised_penalty_init_a=1.5)
    lines = plots.stitching_cut_lines(pd.concat([stitching, hidden, above], ignore_index=True))
    assert list(lines.columns) == plots.CUT_LINE_COLUMNS
    # the seed pairs of sym only (no arch pair, no init_a or identity stitch, no self pair), one row per cut
    assert set(lines["arch"]) == {"sym"} and lines["cut_offset"].tolist() == [-1, 0, 1]
    at = lines.set_index("cut_offset")
    assert at.loc[0, "mean"] == pytest.approx(0.2) and at.loc[0, "n"] == 3
    half = 4.302653 * 0.1 / 3**0.5
    assert at.loc[0, ["ci95_low", "ci95_high"]].tolist() == pytest.approx([0.2 - half, 0.2 + half], abs=1e-5)
    assert at.loc[-1, "mean"] == pytest.approx(0.15) and at.loc[-1, "n"] == 2
    fig = plots.stitching_by_cut(pd.concat([stitching, hidden, above], ignore_index=True))
    (ax,) = [a for a in fig.axes if a.get_title()]
    assert ax.get_title() == "digits, AE"
    # the mean above 1 is drawn at 1 and written out
    assert max(ax.get_lines()[0].get_ydata()) == plots.CUT_Y_LIMIT
    assert [t.get_text() for t in ax.texts] == ["1.50↑"]
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---------------------------------------------------------------- the symmetric freezing design (issue 15)


def mirror_spec(kind: str, base: str = "encoder") -> str:
    return base + ("+code+logvar" if kind == "vae" else "+code") + ("+bias" if base == "both" else "")


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("arch", ["sym", "enc-heavy"])
def test_code_map_at_the_identity_leaves_the_function_unchanged_bitwise(data, kind, arch):
    run = make_run(kind, arch=arch)
    plain = build_model(run, 12)
    mapped = build_model(iv.freeze_variant(run, mirror_spec(kind)), 12)
    assert "code_map.weight" not in plain.state_dict(), "a normal run has no code map"
    assert "code_map.weight" in mapped.state_dict()
    # the layers' seeded init is that of the model without the map
    for key, value in plain.state_dict().items():
        assert torch.equal(value, mapped.state_dict()[key]), key
    x = data["x_test"]
    for a, b in zip(plain.all_cuts(x), mapped.all_cuts(x), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(plain(x), mapped(x))
    if kind == "vae":
        assert torch.equal(plain.posterior_stats(x), mapped.posterior_stats(x))
        eps = torch.randn(x.shape[0], run["bottleneck"], generator=torch.Generator().manual_seed(0))
        terms = [training.loss_terms(m, x, run, None, eps)["loss"] for m in (plain, mapped)]
        assert torch.equal(*terms)


def test_a_frozen_identity_code_map_trains_exactly_as_without_it(data):
    """train_freeze_cell gives every variant of a cell a code map (frozen at the identity where its spec does not
    train one) so that they stack into one ensemble: the textbook variants' training does not change."""
    run = iv.freeze_variant(make_run("ae", arch="enc-heavy"), "encoder")
    plain = training.train(run, data, DEVICE)
    mapped = training.train(run, data, DEVICE, model=build_model(run, 12, code_map=True))
    for key, value in plain["state"].items():
        assert torch.equal(value, mapped["state"][key]), key
    assert torch.equal(mapped["state"]["code_map.weight"], torch.eye(3))
    assert plain["metrics"] == mapped["metrics"]


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("ensemble_on", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_the_mirror_trains_code_map_and_logvar_head_while_the_encoder_stays_at_init(
    data, kind, ensemble_on, weight_decay
):
    run = iv.freeze_variant(make_run(kind, arch="enc-heavy"), mirror_spec(kind))
    run["training"] = run["training"] | {"weight_decay": weight_decay}
    # in an ensemble, stacked with a textbook variant (its map frozen at the identity, its logvar head frozen)
    other = iv.freeze_variant(run, "encoder")
    models = [build_model(r, 12, code_map=True) for r in (run, other)]
    result, textbook = ensemble.train_members([run, other], data, DEVICE, ["m", "t"], models, ensemble=ensemble_on)
    init, state = result["init_state"], result["state"]
    model = build_model(run, 12)
    b, z = model.bottleneck_layer, run["bottleneck"]
    for key in init:
        layer = None if key.startswith("code_map.") else int(key.split(".")[1])
        if layer is not None and layer < b:
            assert torch.equal(state[key], init[key]), key  # the encoder's hidden layers: bitwise at init
        elif layer == b:
            assert torch.equal(state[key][:z], init[key][:z]), key  # the mean head: bitwise at init
            assert torch.equal(state[key][z:], init[key][z:]) == (kind == "ae"), key  # the logvar head trains
        else:
            assert not torch.equal(state[key], init[key]), key  # code map and decoder train
    # the textbook variant beside it: the whole encoder and its (identity) map stay
    for key in textbook["init_state"]:
        if key.startswith("code_map.") or int(key.split(".")[1]) <= b:
            assert torch.equal(textbook["state"][key], textbook["init_state"][key]), key


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_both_frozen_moves_only_the_affine_pieces(data, kind):
    run = iv.freeze_variant(make_run(kind, arch="sym"), mirror_spec(kind, "both"))
    result = training.train(run, data, DEVICE)
    model = build_model(run, 12)
    b, z, L = model.bottleneck_layer, run["bottleneck"], model.n_layers
    moving = {"code_map.weight", "code_map.bias", f"layers.{L - 1}.0.bias"}
    for key, value in result["state"].items():
        init = result["init_state"][key]
        if key in moving:
            assert not torch.equal(value, init), key
        elif kind == "vae" and key.startswith(f"layers.{b}."):
            assert torch.equal(value[:z], init[:z]) and not torch.equal(value[z:], init[z:]), key
        else:
            assert torch.equal(value, init), key


def shapley_table():
    """A freeze table of two runs by hand: L_full, the textbook and the symmetric variants, and L_both."""
    losses = {
        "a": {"none": 1.0, "encoder": 4.0, "encoder+code": 3.0, "decoder": 2.0, "decoder+bias": 1.5,
              "both+code+bias": 5.0},
        "b": {"none": 0.5, "encoder": 0.5, "encoder+code": 0.5, "decoder": 1.5, "decoder+bias": 1.0,
              "both+code+bias": 0.5},
    }  # fmt: skip
    rows = []
    for rid, by_spec in losses.items():
        for spec, loss in by_spec.items():
            rows.append(
                {"run_id": rid, "freeze": spec, "test_loss": loss, "test_mse": 2 * loss, "dataset": "d"}
                | {"params_encoder": 30.0, "params_decoder": 10.0}
            )
    return pd.DataFrame(rows)


def test_encoder_share_gives_the_shapley_share_of_the_symmetric_design_beside_the_textbook_rows():
    from aedissect.analysis import findings

    share = intervention_tables.encoder_share(shapley_table())
    key = ["run_id", "metric", "method", "design"]
    shapley = share[(share["method"] == "shapley") & (share["design"] == "symmetric")].set_index(key)
    row = shapley.loc["a", "test_loss", "shapley", "symmetric"]
    # phi_enc = ((L_both - L_dec) + (L_enc - L_full)) / 2 with the symmetric L_enc (encoder+code) and L_dec
    # (decoder+bias): ((5 - 1.5) + (3 - 1)) / 2 = 2.75; phi_dec = ((5 - 3) + (1.5 - 1)) / 2 = 1.25
    assert (row["phi_enc"], row["phi_dec"]) == (pytest.approx(2.75), pytest.approx(1.25))
    assert row["value"] == pytest.approx(2.75 / 4.0) and row["reason"] == ""
    assert (row["loss_full"], row["loss_enc_frozen"], row["loss_dec_frozen"], row["loss_both_frozen"]) == (
        1.0, 3.0, 1.5, 5.0,
    )  # fmt: skip
    assert (row["spec_enc"], row["spec_dec"], row["spec_both"]) == ("encoder+code", "decoder+bias", "both+code+bias")
    assert shapley.loc["a", "test_mse", "shapley", "symmetric"]["value"] == pytest.approx(2.75 / 4.0)
    # L_both = L_full: training removes nothing, so there is no share to divide
    b = shapley.loc["b", "test_loss", "shapley", "symmetric"]
    assert pd.isna(b["value"]) and "L_both - L_full <= 0" in b["reason"]
    # the symmetric design's leave-one-out share: (3 - 1) / ((3 - 1) + (1.5 - 1))
    loo = share[(share["method"] == "leave_one_out") & (share["design"] == "symmetric")].set_index(key)
    assert loo.loc["a", "test_loss", "leave_one_out", "symmetric"]["value"] == pytest.approx(2.0 / 2.5)
    # today's textbook rows: selectable by method and design, or by output_bias alone as findings does
    textbook = share[(share["method"] == "leave_one_out") & (share["design"] == "textbook")]
    assert len(textbook) == len(share[share["output_bias"].isin(["trained", "frozen"])]) == 2 * 2 * 2
    textbook = textbook.set_index(["run_id", "metric", "output_bias"])["value"]
    assert textbook["a", "test_loss", "trained"] == pytest.approx(3.0 / (3.0 + 0.5))
    assert textbook["a", "test_loss", "frozen"] == pytest.approx(3.0 / (3.0 + 1.0))
    per_run = findings.encoder_shares(share)
    quantities = ["encoder_share", "encoder_share_frozen_output_bias", "encoder_share_shapley"]
    indicators = ["shapley_excluded", "shapley_unchecked"]  # whether the run's frozen variants converged
    assert sorted(per_run["quantity"].unique()) == quantities + indicators
    assert len(per_run) == 2 * 5  # one per run and quantity: the symmetric leave-one-out rows stay out
    shapley = share[(share["method"] == "shapley") & (share["metric"] == "test_loss")].set_index("run_id")["value"]
    ours = per_run[per_run["quantity"] == "encoder_share_shapley"].set_index("run_id")["value"]
    pd.testing.assert_series_equal(ours.sort_index(), shapley.sort_index(), check_names=False)
    assert (share["param_fraction_encoder"] == 0.75).all() and (share["param_fraction_decoder"] == 0.25).all()
    fractions = findings.parameter_fractions(share)  # findings reports the fraction beside the shares, once per run
    assert fractions["run_id"].tolist() == ["a", "b"] and (fractions["value"] == 0.75).all()


def test_each_share_says_whether_the_frozen_variants_it_uses_converged():
    freeze = shapley_table()
    # run a: the frozen encoder with its code map stopped short of its optimum, the both-frozen one reached it,
    # the frozen decoder has no closed form; run b: only the both-frozen variant could be checked, and converged
    flags = {("a", "encoder+code"): False, ("a", "both+code+bias"): True, ("a", "encoder"): True,
             ("b", "both+code+bias"): True}  # fmt: skip
    keys = zip(freeze["run_id"], freeze["freeze"], strict=True)
    freeze["converged"] = [flags.get(key, float("nan")) for key in keys]
    share = intervention_tables.encoder_share(freeze)

    def row(run_id, method, design, output_bias=None):
        chosen = share[(share["run_id"] == run_id) & (share["metric"] == "test_loss") & (share["method"] == method)]
        chosen = chosen[chosen["design"] == design]
        if output_bias is not None:
            chosen = chosen[chosen["output_bias"] == output_bias]
        assert len(chosen) == 1
        return chosen.iloc[0]

    a = row("a", "shapley", "symmetric")
    assert a["converged"] is False and a["unconverged_specs"] == "encoder+code"
    assert a["unchecked_specs"] == "decoder+bias"
    b = row("b", "shapley", "symmetric")
    assert b["converged"] is True and b["unconverged_specs"] == ""
    assert b["unchecked_specs"] == "encoder+code; decoder+bias"
    # the textbook rows of run a use encoder (converged) and decoder+bias (unchecked); of run b nothing is checked
    textbook = row("a", "leave_one_out", "textbook", "trained")
    assert textbook["converged"] is True and textbook["unchecked_specs"] == "decoder+bias"
    assert pd.isna(row("b", "leave_one_out", "textbook", "trained")["converged"])
    # the summary carries each side's parameter fraction and how many runs had an unconverged variant
    summary = intervention_tables.share_summaries(
        share.assign(kind="ae", bottleneck=3, activation="relu", family="f", arch="x", seed=[0, 1] * (len(share) // 2))
    )
    assert {"param_fraction_encoder", "param_fraction_decoder", "n_unconverged"} <= set(summary.columns)
    assert (summary["param_fraction_encoder"] == 0.75).all()
    shapley = summary[(summary["method"] == "shapley") & (summary["metric"] == "test_loss")]
    assert shapley["n_unconverged"].tolist() == [1, 1]  # per architecture and per family


def parameter_share_table():
    """encoder_share.csv by hand: six architectures whose encoder parameter fractions span 0.1 to 0.9, five seeds,
    share = 0.2 + 0.5 x fraction plus seed noise that averages to 0 within every architecture."""
    fractions = {"a": 0.1, "dec-heavy-matched": 0.24, "b": 0.4, "c": 0.6, "enc-heavy-matched": 0.76, "d": 0.9}
    noise = [-0.02, -0.01, 0.0, 0.01, 0.02]
    rows = []
    for arch, f in fractions.items():
        for seed, e in enumerate(noise):
            rows.append(
                {"run_id": f"d/ae/{arch}/s{seed}", "dataset": "d", "kind": "ae", "arch": arch, "seed": seed}
                | {"epochs": 40, "batch_size": 64, "lr": 0.005, "beta": float("nan"), "likelihood": float("nan")}
                | {"metric": "test_loss", "method": "shapley", "design": "symmetric", "output_bias": float("nan")}
                | {"value": 0.2 + 0.5 * f + e * (1 + f), "param_fraction_encoder": f, "converged": True}
                | {"params_encoder": 1000 * f, "params_decoder": 1000 * (1 - f)}
            )
    return pd.DataFrame(rows)


def test_the_share_against_the_parameter_fraction_recovers_a_known_slope():
    table = parameter_share_table()
    # an unconverged run and a NaN share: left out (else the slope would move)
    extra = table.iloc[[0, 1]].assign(seed=[7, 8], value=[5.0, float("nan")], converged=[False, True])
    out = intervention_tables.share_vs_parameters(pd.concat([table, extra], ignore_index=True), n_boot=500)
    assert len(out.drop_duplicates(["dataset", "kind", "metric", "method", "design"])) == 1
    by = out.set_index(["estimate", "arch"])
    slope, intercept, half = by.loc["slope", "all"], by.loc["intercept", "all"], by.loc["share_at_half", "all"]
    assert slope["value"] == pytest.approx(0.5) and intercept["value"] == pytest.approx(0.2)
    assert half["value"] == pytest.approx(0.45) and half["note"] == "inside the fractions measured"
    for row in (slope, intercept, half):
        assert row["ci95_low"] < row["value"] < row["ci95_high"]
        assert row["boot95_low"] <= row["value"] <= row["boot95_high"]
    assert (slope["n_runs"], slope["n_archs"], slope["n_seeds"], slope["n_excluded"]) == (30, 6, 5, 1)
    assert (slope["fraction_min"], slope["fraction_max"]) == (0.1, 0.9)
    # the t-interval with the models as observations is the textbook one (scipy's linregress)
    from scipy import stats

    fit = stats.linregress(table["param_fraction_encoder"], table["value"])
    t = stats.t.ppf(0.975, len(table) - 2)
    assert slope["ci95_high"] - slope["value"] == pytest.approx(t * fit.stderr)
    assert intercept["ci95_high"] - intercept["value"] == pytest.approx(t * fit.intercept_stderr)
    assert by.loc["r_squared", "all"]["value"] == pytest.approx(fit.rvalue**2)
    # at matched parameter counts: the difference of the two matched architectures, and what the line predicts
    # from their fractions alone, 0.5 x (0.76 - 0.24)
    assert by.loc["matched_share", "enc-heavy-matched"]["value"] == pytest.approx(0.2 + 0.5 * 0.76)
    assert by.loc["matched_share", "dec-heavy-matched"]["param_fraction_encoder"] == 0.24
    difference = by.loc["matched_difference", "enc-heavy-matched - dec-heavy-matched"]
    predicted = by.loc["matched_difference_predicted", "enc-heavy-matched - dec-heavy-matched"]
    assert difference["value"] == pytest.approx(0.26) and predicted["value"] == pytest.approx(0.26)
    assert difference["ci95_low"] < 0.26 < difference["ci95_high"] and difference["n_seeds"] == 5
    assert predicted["ci95_low"] == pytest.approx(slope["ci95_low"] * 0.52)
    # the line through the architectures' means: a bootstrap over architectures that all lie on it gives the slope
    line = table.assign(value=0.2 + 0.5 * table["param_fraction_encoder"] + table["seed"] * 0.001)
    exact = intervention_tables.share_vs_parameters(line, n_boot=200).set_index("estimate")
    assert exact.loc["slope", "boot95_low"] == pytest.approx(0.5) == exact.loc["slope", "boot95_high"]
    # two architectures: every bootstrap replicate that fits is their line, no interval
    two = table[table["arch"].isin(["a", "d"])]
    two = intervention_tables.share_vs_parameters(two, n_boot=100).set_index("estimate")
    assert two.loc["slope", "value"] == pytest.approx(0.5) and np.isnan(two.loc["slope", "boot95_low"])
    # one architecture: no line
    alone = intervention_tables.share_vs_parameters(table[table["arch"] == "a"], n_boot=100).set_index("estimate")
    assert np.isnan(alone.loc["slope", "value"]) and np.isnan(alone.loc["slope", "boot95_low"])
    assert "matched_share" not in alone.index


def low_rank_data():
    """Data on a 3-dimensional subspace plus a little noise: a frozen random encoder of width 3 keeps most of it."""
    gen = torch.Generator().manual_seed(3)
    basis, factors = torch.randn(3, 12, generator=gen), torch.randn(200, 3, generator=gen)
    x = 2 * factors @ basis + 0.1 * torch.randn(200, 12, generator=gen)
    return {"x_train": x[:150], "x_test": x[150:]}


def test_ridge_optimum_marks_an_under_trained_frozen_run_unconverged_and_a_long_trained_one_converged():
    synthetic = low_rank_data()
    # the frozen encoder's mirror: only its code map and the (single, linear) decoder layer train
    run = iv.freeze_variant(make_run("ae", arch="enc-heavy"), "encoder+code")
    out = {}
    for name, epochs, lr in (("short", 1, 1e-3), ("long", 200, 0.02)):
        variant = copy.deepcopy(run)
        variant["training"] = variant["training"] | {"epochs": epochs, "lr": lr, "keep_epochs": []}
        result = training.train(variant, synthetic, DEVICE)
        out[name] = iv.variant_metrics(variant, result, synthetic, DEVICE)
    for metrics in out.values():
        assert metrics["optimum_reason"] == "" and metrics["optimum_mse"] > 0
        assert metrics["train_mse"] >= metrics["optimum_mse"] * (1 - 1e-4)  # the optimum is a lower bound
    assert out["short"]["optimum_mse"] == out["long"]["optimum_mse"]  # the features are frozen at the same init
    assert out["short"]["converged"] is False
    assert out["long"]["converged"] is True, out["long"]
    assert out["long"]["converged_tolerance"] == plans.CONVERGED_TOLERANCE
    assert out["long"]["params_encoder"] == (12 * 10 + 10) + (10 * 8 + 8) + (8 * 3 + 3)
    assert out["long"]["params_decoder"] == 3 * 12 + 12


@pytest.mark.parametrize("spec", ["encoder", "encoder+code", "both+code+bias", "both+bias"])
def test_the_closed_form_optimum_is_a_lower_bound_the_training_approaches(spec):
    synthetic = low_rank_data()
    run = iv.freeze_variant(make_run("ae", arch="enc-heavy"), spec)
    run["training"] = run["training"] | {"epochs": 100, "lr": 0.02, "keep_epochs": []}
    result = training.train(run, synthetic, DEVICE)
    metrics = iv.variant_metrics(run, result, synthetic, DEVICE)
    start = iv.variant_metrics(run | {"training": run["training"]}, result | {"state": result["init_state"]},
                               synthetic, DEVICE)  # fmt: skip
    assert metrics["optimum_reason"] == ""
    assert metrics["optimum_mse"] * (1 - 1e-4) <= metrics["train_mse"]
    # training closes most of the gap between the init and the optimum
    gap = (metrics["train_mse"] - metrics["optimum_mse"]) / (start["train_mse"] - metrics["optimum_mse"])
    assert gap < 0.25, gap


@pytest.mark.parametrize(
    "kind,arch,spec,reason",
    [
        ("vae", "enc-heavy", "encoder+code+logvar", "VAE"),
        ("ae", "sym", "encoder+code", "a nonlinear activation follows a trainable layer"),
        ("ae", "sym", "both+code+bias", "a nonlinear activation follows a trainable layer"),
        ("ae", "enc-heavy", "decoder+bias", "a nonlinear activation follows a trainable layer"),
        ("ae", "enc-heavy", "prefix-1", "a nonlinear activation follows a trainable layer"),
    ],
)
def test_no_closed_form_where_the_trainable_part_is_not_linear(data, kind, arch, spec, reason):
    run = iv.freeze_variant(make_run(kind, arch=arch), spec)
    model = build_model(run, 12)
    optimum = iv.closed_form_optimum(model, spec, data["x_train"], data["x_test"])
    assert pd.isna(optimum["optimum_mse"]) and reason in optimum["optimum_reason"]


def test_freeze_cell_stacks_the_mirror_variants_with_the_others_and_records_the_optimum(data, tmp_path, monkeypatch):
    run = make_run("ae", arch="enc-heavy")
    run["training"] = run["training"] | {"ensemble": True}
    torch.save(data, tmp_path / "data.pt")
    stacks = []
    real = ensemble.train_ensemble

    def counting(runs, *args, **kwargs):
        stacks.append([r["freeze"] for r in runs])
        return real(runs, *args, **kwargs)

    monkeypatch.setattr(ensemble, "train_ensemble", counting)
    specs = ["encoder", "encoder+code", "decoder+bias", "both+code+bias", "prefix-1"]
    iv.train_freeze_cell([run], {run["run_id"]: specs}, str(tmp_path / "data.pt"), [str(tmp_path / "s0")], 1, "cpu")
    # the encoder-heavy net's decoder is its output layer: with the encoder frozen it is linear in what trains, solved
    assert stacks == [["decoder+bias", "prefix-1"]], "one ensemble: the textbook variant carries a frozen identity map"
    metrics = {spec: io.read_json(tmp_path / "s0" / spec / "train_metrics.json") for spec in specs}
    for spec in ("encoder", "encoder+code", "both+code+bias"):
        assert metrics[spec]["optimum_reason"] == "" and metrics[spec]["optimum_mse"] > 0, spec
        assert metrics[spec]["solved"] == "closed_form" and metrics[spec]["converged"] is True
        assert metrics[spec]["train_mse"] == metrics[spec]["optimum_mse"]
    assert metrics["prefix-1"]["solved"] == metrics["decoder+bias"]["solved"] == "trained"
    assert metrics["encoder"]["optimum_mse"] == metrics["encoder+code"]["optimum_mse"]  # the same function class
    assert metrics["prefix-1"]["converged"] is None and metrics["prefix-1"]["optimum_reason"]
    table = intervention_tables.freeze_table([run], [str(tmp_path)], []).set_index("freeze")
    assert table.loc["encoder+code", "side"] == "encoder" and table.loc["encoder+code", "code_map"]
    assert table.loc["both+code+bias", "side"] == "both" and not table.loc["encoder", "code_map"]
    assert table.loc["encoder", "optimum_mse"] == metrics["encoder"]["optimum_mse"]
    assert table.loc["encoder", "converged"] == metrics["encoder"]["converged"]
    assert pd.isna(table.loc["prefix-1", "converged"])


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_a_freeze_cell_solves_the_variants_with_a_closed_form_instead_of_training_them(
    data, tmp_path, monkeypatch, activation
):
    run = resolve_run(STUDY, "digits", "ae", "sym", 3, activation, 0)
    torch.save(data, tmp_path / "data.pt")
    calls = trained_specs(monkeypatch)
    # prefix-3 trains the output layer alone: affine in its parameters on frozen features; prefix-1 (relu) is not
    specs = ["prefix-1", "prefix-3"]
    iv.train_freeze_cell([run], {run["run_id"]: specs}, str(tmp_path / "data.pt"), [str(tmp_path / "s0")], 1, "cpu")
    assert calls == (["prefix-1"] if activation == "relu" else []), "a linear network's variants are all solved"
    metrics = {spec: io.read_json(tmp_path / "s0" / spec / "train_metrics.json") for spec in specs}
    solved = metrics["prefix-3"]
    assert solved["solved"] == "closed_form" and solved["converged"] is True
    assert metrics["prefix-1"]["solved"] == ("trained" if activation == "relu" else "closed_form")
    # independently: least squares of the output layer (weights and bias) on the frozen net's features, in float64
    model = build_model(run, 12).double()
    design = {}
    for split in ("x_train", "x_test"):
        h = model.forward_to(data[split].double(), model.n_layers - 1).detach()
        design[split] = torch.cat([h, torch.ones(h.shape[0], 1, dtype=h.dtype)], dim=1)
    fit = torch.linalg.lstsq(design["x_train"], data["x_train"].double(), driver="gelsd").solution
    for split, key in (("x_train", "train_mse"), ("x_test", "test_mse")):
        mse = float((design[split] @ fit - data[split].double()).pow(2).mean())
        assert solved[key] == pytest.approx(mse, rel=1e-9), key
    assert solved["test_loss"] == solved["test_mse"] == solved["optimum_test_mse"]
    assert solved["psnr"] == pytest.approx(10 * np.log10(1 / solved["test_mse"]))
    log = pd.read_csv(tmp_path / "s0" / "prefix-3" / "train_log.csv")
    assert log.empty and list(log.columns) == ["epoch", "train_loss", "test_loss", "run_id", "freeze"]
    table = intervention_tables.freeze_table([run], [str(tmp_path)], []).set_index("freeze")
    assert table.loc["prefix-3", "solved"] == "closed_form"
    assert table.loc["prefix-3", "test_mse"] == solved["test_mse"]


@pytest.mark.parametrize("together", [False, True])
def test_killed_freeze_cell_with_the_symmetric_design_resumes_bitwise(data, tmp_path, monkeypatch, together):
    run = make_run("vae", arch="enc-heavy")
    run["training"] = run["training"] | {"checkpoint_every": 1, "ensemble": together}
    torch.save(data, tmp_path / "data.pt")
    specs = {run["run_id"]: ["encoder", "encoder+code+logvar", "decoder+bias", "both+code+logvar+bias"]}

    def freeze_cell(out, state_dir):
        iv.train_freeze_cell([run], specs, str(tmp_path / "data.pt"), [str(out)], 1, "cpu", state_dir)

    freeze_cell(tmp_path / "reference", None)
    real_epoch, calls = training.Progress.epoch, {"n": 0}

    def killing_epoch(self, *args, **kwargs):  # epoch 2 of the first training: epoch 1 is checkpointed
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(training.Progress, "epoch", killing_epoch)
    state = tmp_path / ".s.resume"
    with pytest.raises(KeyboardInterrupt):
        freeze_cell(tmp_path / "killed", state)
    (checkpoint,) = state.glob("*.pt")
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    monkeypatch.setattr(training.Progress, "epoch", real_epoch)
    freeze_cell(tmp_path / "killed", state)
    for spec in specs[run["run_id"]]:
        for name in ("train_metrics.json", "train_log.csv"):
            reference = (tmp_path / "reference" / spec / name).read_bytes()
            assert (tmp_path / "killed" / spec / name).read_bytes() == reference, (spec, name)


# ---------------------------------------------------------------- training.init: centred


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("with_code_map", [False, True])
def test_a_centred_freeze_variant_starts_from_its_normal_runs_saved_init_state(
    data, tmp_path, monkeypatch, kind, with_code_map
):
    from aedissect.nets import jobs

    run = make_run(kind, arch="sym")  # a decoder with a hidden layer: the AE's frozen-encoder variants train
    run["training"] = run["training"] | {"init": "centred", "epochs": 1, "ensemble": True, "checkpoint_every": 1}
    torch.save(data, tmp_path / "data.pt")
    jobs.train_runs([run], str(tmp_path / "data.pt"), {"sha256": "x"}, [str(tmp_path / "run")], 1, "cpu", 2)
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["init_state"]
    default = build_model(run, 12).state_dict()
    assert not torch.equal(saved["layers.0.0.bias"], default["layers.0.0.bias"]), "the saved init is centred"
    captured = []
    real = iv.train_members

    def capturing(variants, *args, **kwargs):
        results = real(variants, *args, **kwargs)
        captured.extend(zip(variants, results, strict=True))
        return results

    monkeypatch.setattr(iv, "train_members", capturing)
    specs = ["encoder", mirror_spec(kind)] if with_code_map else ["encoder", "prefix-1"]
    iv.train_freeze_cell([run], {run["run_id"]: specs}, str(tmp_path / "data.pt"), [str(tmp_path / "f")], 1, "cpu")
    assert [v["freeze"] for v, _ in captured] == specs
    for variant, result in captured:
        for key, value in saved.items():
            assert torch.equal(result["init_state"][key], value), (variant["freeze"], key)
        frozen = [k for k in build_model(variant, 12).frozen_parameters(variant["freeze"]) if k in saved]
        assert "layers.0.0.weight" in frozen
        for key in frozen:  # the frozen part of the encoder: bitwise at the normal run's saved (centred) init
            assert torch.equal(result["state"][key], saved[key]), (variant["freeze"], key)


def fit_by_descent(model: aemodels.GridAutoencoder, spec: str, x: torch.Tensor, steps: int = 400) -> float:
    """The training MSE a freeze variant reaches when its trainable parameters (``frozen_parameters``' complement)
    are fitted by L-BFGS in float64: the independent computation the closed form is checked against."""
    model = copy.deepcopy(model).double()
    frozen = set(model.frozen_parameters(spec))
    params = [p for name, p in model.named_parameters() if name not in frozen]
    x = x.double()
    opt = torch.optim.LBFGS(params, lr=1, max_iter=steps, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = ((model(x) - x) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    with torch.no_grad():
        return float(((model(x) - x) ** 2).mean())


@pytest.mark.parametrize(
    "arch,spec",
    [
        ("linear", "encoder+code"),
        ("linear", "decoder+bias"),
        ("linear", "decoder"),
        ("linear", "both+code+bias"),
        ("linear", "prefix-1"),
        ("linear", "prefix-3"),
        ("linear", "suffix-1"),
        ("linear", "suffix-2+bias"),
        ("linear", "both+bias"),
        ("enc-heavy", "encoder+code"),
        ("enc-heavy", "both+code+bias"),
    ],
)
def test_the_closed_form_optimum_equals_an_independent_fit_of_the_trainable_part(arch, spec):
    synthetic = low_rank_data()
    widths = {"linear": ([7], [9], "linear"), "enc-heavy": ([10, 8], [], "relu")}[arch]
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = aemodels.GridAutoencoder(12, widths[0], 3, widths[1], widths[2], "ae", code_map=True)
    optimum = iv.closed_form_optimum(model, spec, synthetic["x_train"], synthetic["x_test"])
    assert optimum["optimum_reason"] == ""
    descended = fit_by_descent(model, spec, synthetic["x_train"])
    assert descended == pytest.approx(optimum["optimum_mse"], rel=1e-5)
    assert optimum["optimum_test_mse"] > 0


def test_no_closed_form_where_a_frozen_layer_lies_between_two_that_train():
    synthetic = low_rank_data()
    model = aemodels.GridAutoencoder(12, [7], 3, [9], "linear", "ae", code_map=True)
    optimum = iv.closed_form_optimum(model, "except-0+code", synthetic["x_train"], synthetic["x_test"])
    assert pd.isna(optimum["optimum_mse"]) and "not one block" in optimum["optimum_reason"]
