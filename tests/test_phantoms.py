"""Phantoms: networks whose answer is known by construction, and the rules checked on them."""

import numpy as np
import pandas as pd
import pytest
import torch

from aedissect import references
from aedissect.analysis import calibration, findings
from aedissect.nets import phantoms


@pytest.fixture(scope="module")
def factor_data():
    """A small data set with known factors: x a smooth nonlinear map of 3 uniform factors plus noise."""
    gen = torch.Generator().manual_seed(0)
    f = torch.rand(700, 3, generator=gen) * 2 - 1
    w1, w2 = torch.randn(3, 16, generator=gen), torch.randn(16, 12, generator=gen) / 4
    x = torch.sigmoid(torch.tanh(f @ w1) @ w2) + 0.03 * torch.randn(700, 12, generator=gen)
    return {"x_train": x[:500], "x_test": x[500:], "factors_train": f[:500], "factors_test": f[500:]}


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_the_linear_phantom_is_the_closed_form_optimum_behind_a_gauge(factor_data, kind):
    x = factor_data["x_train"]
    phantom = phantoms.linear_phantom(x, 4, seed=3, kind=kind, sigma=0.05)
    X = x.double().numpy()
    with torch.no_grad():
        out = phantom.model.double()(x.double()).numpy()
        code = phantom.model.forward_to(x.double(), phantom.model.bottleneck_cut).numpy()
    if kind == "ae":
        ref = references.pca_reference(X, X, 4)
        expected = (X - ref["mean"]) @ ref["components"] @ ref["components"].T + ref["mean"]
        subspace = ref["components"]
    else:
        opt = references.ppca_optimum(X, 4, 0.05)
        expected = (X - opt["mean"]) @ opt["enc_weight"].T @ opt["W"].T + opt["mean"]
        subspace = opt["subspace"]
    np.testing.assert_allclose(out, expected, atol=1e-6)  # the weights are float32
    # the code spans the principal subspace's coordinates, mixed by a gauge that is not the identity
    fit = np.linalg.lstsq(np.c_[code, np.ones(len(code))], (X - X.mean(0)) @ subspace, rcond=None)
    assert np.abs(np.c_[code, np.ones(len(code))] @ fit[0] - (X - X.mean(0)) @ subspace).max() < 1e-5
    assert not np.allclose(np.abs(np.corrcoef(code.T, ((X - X.mean(0)) @ subspace).T)), np.eye(2 * code.shape[1]))


def test_every_twin_computes_its_original_function(factor_data):
    built = phantoms.build_phantoms(factor_data, 4, ["ae"], 0.1, seed=1)
    names = [p.name for p in built]
    assert names == [n for base in ("linear", "planted-encoder", "planted-unmixing", "planted-compressing")
                     for n in (base, f"{base}/reparametrised")]  # fmt: skip
    for original, twin in zip(built[::2], built[1::2], strict=True):
        assert twin.twin_of == original.name and twin.expected == original.expected
        assert twin.extra["function_gap"] < 1e-4
        assert not torch.equal(original.model.layers[0][0].weight, twin.model.layers[0][0].weight)


def test_the_planted_layers_compute_what_they_were_planted_to(factor_data):
    planted = {p.name: p for p in phantoms.planted_phantoms(factor_data, seed=0)}
    x, f = factor_data["x_test"], factor_data["factors_test"]
    with torch.no_grad():
        code = planted["planted-encoder"].model.forward_to(x, planted["planted-encoder"].model.bottleneck_cut)
        unmixed = planted["planted-unmixing"].model.forward_to(x, 5)  # the decoder's second hidden layer
        dropped = planted["planted-compressing"].model.forward_to(x, 4)

    def r2(pred, target):
        return 1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()

    assert r2(code, f) > 0.8 and r2(unmixed - 1, f) > 0.8 and r2(dropped - 1, f) > 0.8
    assert planted["planted-compressing"].model.latent_dim == phantoms.COMPRESSING_COMPONENTS


def test_the_linear_work_share_is_the_closed_form_of_each_frozen_half(factor_data):
    rows = phantoms.linear_work_shares(factor_data, 3, seeds=[0, 1])
    X, X_test = (factor_data[k].double().numpy() for k in ("x_train", "x_test"))
    for row in rows:
        # independently: a frozen random decoder D with a free encoder and output bias reconstructs the orthogonal
        # projection of the centred data onto D's column space
        with torch.random.fork_rng():
            torch.manual_seed(row["seed"])
            model = phantoms.GridAutoencoder(12, [42], 3, [42], "linear", "ae", True)
        with torch.no_grad():
            basis = torch.cat([torch.zeros(1, 3), torch.eye(3)]).double()
            out = model.double().forward_from(basis, model.bottleneck_cut).numpy()
        q, _ = np.linalg.qr((out[1:] - out[0]).T)
        mean = X.mean(0)
        projected = (X_test - mean) @ q @ q.T + mean
        assert row["L_dec"] == pytest.approx(float(((X_test - projected) ** 2).mean()), rel=1e-6)
        assert row["L_full"] == pytest.approx(references.pca_reference(X, X_test, 3)["mse"])
        assert row["L_full"] < min(row["L_enc"], row["L_dec"]) and max(row["L_enc"], row["L_dec"]) < row["L_both"]
        assert 0 < row["share"] < 1


def profile_rows(phantom: str, values: dict, bottleneck: int, dataset: str = "d") -> pd.DataFrame:
    """A phantom's trained layer profile: per metric its value at each cut 0..L."""
    rows = []
    for metric, per_cut in values.items():
        last = len(per_cut) - 1
        for cut, value in enumerate(per_cut):
            side = "bottleneck" if cut == bottleneck else "encoder" if cut < bottleneck else "decoder"
            rows.append((dataset, phantom, "trained", cut, f"c{cut}", side, cut / last, metric, value))
    columns = ["dataset", "phantom", "state", "cut", "layer", "side", "relative_depth", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def test_the_abstraction_gain_is_the_best_decoder_layer_against_the_code():
    profile = profile_rows("p", {"factor_r2_linear": [0.9, 0.95, 0.8, 0.93, 0.85, 0.99]}, 2)
    gains = calibration.abstraction_gains(profile, column="phantom")
    assert gains["value"].tolist() == [pytest.approx(0.93 - 0.8)]  # the output cut is not a decoder layer
    no_decoder = profile_rows("q", {"factor_r2_linear": [0.9, 0.95, 0.8, 0.99]}, 2)
    assert calibration.abstraction_gains(no_decoder, column="phantom").empty
    assert calibration.abstraction_outcome(calibration.ABSTRACTION_MARGIN) == "encoder"
    assert calibration.abstraction_outcome(calibration.ABSTRACTION_MARGIN + 1e-9) == "decoder"


def test_a_rule_that_misses_a_phantom_is_left_out_of_the_verdict():
    twonn = {"twonn_mle": [9, 6, 3, 3, 3, 9]}
    late = {"twonn_mle": [9, 6, 6, 3, 3, 9]}
    profiles = pd.concat(
        [
            profile_rows("good", twonn | {"factor_r2_linear": [0.9, 0.9, 0.9, 0.9, 0.9, 0.9]}, 2),
            profile_rows("unmix", twonn | {"factor_r2_linear": [0.9, 0.9, 0.8, 0.95, 0.9, 0.9]}, 2),
            profile_rows("compress", late, 2),
        ]
    )
    listing = pd.DataFrame(
        [
            ("d", "good", "compression", "encoder"),
            ("d", "good", "abstraction", "encoder"),
            ("d", "unmix", "abstraction", "decoder"),
            ("d", "compress", "compression", "decoder"),
            ("d", "good", "work", "even"),
        ],
        columns=["dataset", "phantom", "rule", "expected"],
    ).assign(description="")
    work = pd.DataFrame({"dataset": "d", "phantom": "good", "share": [0.2, 0.21, 0.19]})
    table = calibration.phantom_table(profiles, work, listing)
    got = table.set_index(["phantom", "rule"])["got"].to_dict()
    assert got == {
        ("good", "compression"): "encoder",
        ("compress", "compression"): "decoder",
        ("good", "abstraction"): "encoder",
        ("unmix", "abstraction"): "decoder",
        ("good", "work"): "decoder",
    }
    calibrated = calibration.calibrated(table)
    assert calibrated["compression"] == calibrated["abstraction"] == ""
    assert "good on d: expected even, got decoder" in calibrated["work"]
    text = "\n".join(calibration.phantoms_markdown(table, calibrated))
    assert "**R2 work** is left out of the verdicts" in text and "**R1 compression** enters the verdicts" in text
    # no phantom table: no rule is calibrated
    assert all(calibration.calibrated(None).values())


def test_the_verdict_combines_only_the_rules_that_enter_it():
    assert findings.combine("encoder", "no data", "encoder") == "yes"
    assert findings.combine("encoder", "decoder") == "no"
    assert findings.combine("encoder", "mixed") == "partly"
    assert findings.combine("no data") == "undecided"


def test_a_rule_variant_that_misses_a_phantom_makes_no_verdict_fragile():
    # the linear phantom's TwoNN minimum lies one cut into the decoder, within 10% of the code's: the variant "at
    # the minimum itself" calls it decoder, the 10% band encoder
    profiles = profile_rows("linear", {"twonn": [9, 6, 5.2, 5.0, 9]}, 2)
    listing = pd.DataFrame(
        [("d", "linear", "compression", "encoder", "")],
        columns=["dataset", "phantom", "rule", "expected", "description"],
    )
    work = pd.DataFrame(columns=["dataset", "phantom", "share", "loo_share"])
    checks = calibration.setting_checks(profiles, work, listing, [("R1 band", 0.0), ("R1 band", 0.1)])
    assert "linear on d: expected encoder, got decoder" in checks["R1 band", 0.0]
    assert checks["R1 band", 0.1] == ""
    assert calibration.setting_checks(None, None, None, [("R1 band", 0.1)])["R1 band", 0.1]
    sweep = pd.DataFrame(
        {"dataset": "d", "kind": "ae", "family": "f", "setting": "R1 band", "value": [0.0, 0.1]}
        | {"compression": ["decoder", "encoder"], "work": "no data", "verdict": ["no", "yes"]}
        | {"baseline_verdict": "yes", "same_as_baseline": [False, True]}
    ).assign(phantoms=[checks["R1 band", 0.0], checks["R1 band", 0.1]])
    verdicts = pd.DataFrame([{"dataset": "d", "kind": "ae", "family": "f", "verdict": "yes", "evidence": "e"}])
    assert not findings.mark_fragile(verdicts, sweep)["fragile"].iloc[0]
    # the same flip from a variant that passes its phantoms makes the verdict fragile
    assert findings.mark_fragile(verdicts, sweep.assign(phantoms=""))["fragile"].iloc[0]
    assert "R1 at the minimum itself †" in findings.sensitivity_table(sweep).columns


def test_the_linear_vae_as_trained_is_ppca_with_its_decoder_scale_first_and_wiggling_collapsed_latents(factor_data):
    """The linear VAE at pPCA as trained nets hold it: the same reconstruction as the optimum, the first decoder layer
    weighing each latent by pPCA's |w_j|, the collapsed means at COLLAPSED_SNR of their posterior std, which
    ``posterior_scale`` reads."""
    from aedissect.nets import probes

    x = factor_data["x_train"]
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.double().numpy(), rowvar=False, bias=True)))[::-1]
    sigma = float(np.sqrt(np.sqrt(eig[1] * eig[2])))  # two of the four latents active, two collapsed
    wiggle = phantoms.linear_phantom(x, 4, 0, "vae", sigma, collapsed_snr=phantoms.COLLAPSED_SNR)
    opt = references.ppca_optimum(x.double().numpy(), 4, sigma)
    assert opt["n_active"] == 2 and wiggle.name == "linear-vae-as-trained"
    first_decoder = wiggle.model.layers[wiggle.model.bottleneck_cut][0].weight.detach().double()
    np.testing.assert_allclose(first_decoder.norm(dim=0).numpy(), np.linalg.norm(opt["W"], axis=0), atol=1e-6)
    with torch.no_grad():
        mu, logvar = wiggle.model.posterior(x)
        out = wiggle.model(x).double().numpy()
    X = x.double().numpy()
    np.testing.assert_allclose(out, (X - opt["mean"]) @ opt["enc_weight"].T @ opt["W"].T + opt["mean"], atol=1e-5)
    collapsed = ~opt["active"]
    np.testing.assert_allclose(mu[:, collapsed].std(0, correction=0).numpy(), phantoms.COLLAPSED_SNR, rtol=1e-4)
    scale = probes.posterior_scale(wiggle.model, x)
    np.testing.assert_allclose(scale.numpy(), np.sqrt(opt["posterior_var"]), rtol=1e-5)
    assert probes.posterior_scale(phantoms.linear_phantom(x, 4, 0, "ae").model, x) is None
    with pytest.raises(ValueError, match="collapsed latents"):
        phantoms.linear_phantom(x, 2, 0, "vae", sigma, collapsed_snr=0.1)  # both latents active: nothing to wiggle
