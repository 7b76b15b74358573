"""Controls: every trained network against the closed-form optimum that bounds it (numpy only, float64).

A linear AE trained to its optimum projects onto the top-z principal subspace of its training data (Baldi &
Hornik 1989); any AE whose decoder is linear reconstructs inside a z-dimensional affine subspace and so cannot
beat PCA-z on the train split; a linear VAE with a fixed Gaussian likelihood reaches probabilistic PCA with that
sigma (Tipping & Bishop 1999; Lucas et al. 2019). The optima are ``aedissect.references``; this module decides
which checks a run gets and writes each as one row:

====================================  ======================================================  =================
check                                 runs                                                    passes when
====================================  ======================================================  =================
``linear_ae_pca_mse``                 AE, activation linear                                   ratio <= 1.02
``linear_ae_subspace_angle``          AE, activation linear                                   value < 5 degrees
``linear_decoder_pca_bound``          AE whose decoder is linear (decoder [] or linear)        ratio <= 1.02 and
                                                                                              train ratio >= 0.999
``nonlinear_ae_not_worse_than_pca``   every other AE                                          ratio <= 1.02
``linear_vae_ppca_elbo``              VAE, activation linear                                  excess <= 0.02
``linear_vae_subspace_angle``         VAE, activation linear                                  value < 5 degrees
``vae_vs_ppca_elbo``                  every other VAE                                         excess <= 0.02
====================================  ======================================================  =================

Columns (``COLUMNS``): ``value`` what the trained network reaches on the test split (MSE per element, -ELBO
per sample, or the largest principal angle in degrees); ``reference`` the optimum's value (for the angle
checks: the eigen gap lambda_k / lambda_{k+1} that decides whether the subspace is well defined); ``ratio``
value / reference for MSEs; for -ELBOs the excess (value - reference) / (L0 - reference), the share of what
pPCA's code gains over a code that carries nothing (L0, ``references.no_latent_negative_elbo``) that the trained
VAE gives up (0 at pPCA, 1 at no code, negative below pPCA); empty for angles; ``threshold`` what ``ratio`` (or,
for angles, ``value``) is compared with; ``passed`` True, False, or
empty where the check does not apply or could not be measured; ``applies`` False where the check's premise
fails (an eigen gap under 1.3, a Bernoulli likelihood, a pPCA that gains nothing over no code); ``note`` why,
in words. A failed control is a row with
``passed`` False.
"""

from __future__ import annotations

import math

import numpy as np

from aedissect.config import Run
from aedissect.formatting import number
from aedissect.references import largest_principal_angle, no_latent_negative_elbo, pca_reference, ppca_negative_elbo

MSE_TOLERANCE = 1.02  # a trained net's MSE may be at most 2% above its closed-form optimum's
# -ELBO: the excess over pPCA as a share of pPCA's gain over no code, not of |-ELBO|, whose zero is set by the
# likelihood's constant d log sigma (2% of it was 0.17 nats on digits z8, 0.60 on factors): at most 2%
ELBO_EXCESS_LIMIT = 0.02
ANGLE_LIMIT = 5.0  # degrees: the largest principal angle to the optimum's subspace
MIN_EIGEN_GAP = 1.3  # lambda_k / lambda_{k+1} below this: the top-k subspace is ill-defined, the angle no evidence
IMPOSSIBLE_BELOW = 1.0 - 1e-3  # a linear decoder below PCA-z on the train split by more than this: a bug
CONVERGENCE_SHARE = 0.1  # convergence: the relative change of the test loss over the last 10% of epochs

COLUMNS = ["check", "value", "reference", "ratio", "threshold", "passed", "applies", "note"]
CHECKS = (
    "linear_ae_pca_mse",
    "linear_ae_subspace_angle",
    "linear_decoder_pca_bound",
    "nonlinear_ae_not_worse_than_pca",
    "linear_vae_ppca_elbo",
    "linear_vae_subspace_angle",
    "vae_vs_ppca_elbo",
)
# the reference per data set and bottleneck (results/controls/<dataset>/references.csv)
REFERENCE_COLUMNS = [
    "dataset",
    "bottleneck",
    "pca_mse",
    "pca_train_mse",
    "eigen_gap",
    "ppca_neg_elbo",
    "no_latent_neg_elbo",
    "ppca_n_active",
    "ppca_eigen_gap",
    "sigma",
    "beta",
]


def convergence(test_losses) -> float:
    """The relative change of the test loss over the last 10% of epochs (at least one):
    (loss[E - ceil(0.1 E)] - loss[E]) / |loss[E]|, epochs numbered 1..E. Positive: still falling; near 0:
    converged; negative: rising (overfitting or noise). NaN with fewer than 2 epochs or a non-finite loss."""
    losses = np.asarray(list(test_losses), dtype=np.float64)
    epochs = losses.size
    back = math.ceil(CONVERGENCE_SHARE * epochs)
    if epochs - back < 1 or not np.isfinite(losses).all() or losses[-1] == 0:
        return float("nan")
    return float((losses[epochs - back - 1] - losses[-1]) / abs(losses[-1]))


def is_linear(run: Run) -> bool:
    """Every hidden layer linear: the net is a product of matrices (the bottleneck and output always are)."""
    return run["activation"] == "linear"


def has_linear_decoder(run: Run) -> bool:
    """The map from the code to the output is affine: no hidden decoder layer, or no activation at all."""
    return is_linear(run) or not run["decoder"]


def checks_for(run: Run) -> list[str]:
    if run["kind"] == "ae":
        if is_linear(run):
            return ["linear_ae_pca_mse", "linear_ae_subspace_angle", "linear_decoder_pca_bound"]
        return ["linear_decoder_pca_bound"] if has_linear_decoder(run) else ["nonlinear_ae_not_worse_than_pca"]
    return ["linear_vae_ppca_elbo", "linear_vae_subspace_angle"] if is_linear(run) else ["vae_vs_ppca_elbo"]


def eigen_gap(eigenvalues: np.ndarray, k: int) -> float:
    """lambda_k / lambda_{k+1} (1-based); inf when lambda_{k+1} = 0 or k = d; NaN for k = 0."""
    if k < 1:
        return float("nan")
    top = eigenvalues[k - 1]
    nxt = eigenvalues[k] if k < eigenvalues.size else 0.0
    if nxt > 0:
        return float(top / nxt)
    return float("inf") if top > 0 else float("nan")


def reference(train, test, z: int, vae: dict | None = None) -> dict:
    """The optima a run of bottleneck ``z`` is compared with, fitted on ``train`` and scored on ``test``.

    ``vae``: the study's ``vae`` options; with a Gaussian likelihood the pPCA optimum with that sigma and beta
    is added (``ppca_*``) and the -ELBO of the VAE whose code carries nothing (``no_latent_neg_elbo``), else those
    are NaN. ``components`` and ``ppca_subspace`` are the bases the angles are measured against."""
    d = np.shape(train)[1]
    if z > d:  # the code can hold the input itself: no rank-z optimum to compare with
        nan = float("nan")
        return dict.fromkeys(REFERENCE_COLUMNS[2:], nan) | {"components": None, "ppca_subspace": None, "wide": True}
    pca = pca_reference(train, test, z)
    out = {
        "pca_mse": pca["mse"],
        # the train MSE of PCA-z is exactly the discarded variance per dimension (1/n eigenvalues)
        "pca_train_mse": float(pca["eigenvalues"][z:].sum() / d),
        "eigen_gap": pca["eigen_gap"],
        "components": pca["components"],
        "ppca_neg_elbo": float("nan"),
        "no_latent_neg_elbo": float("nan"),
        "ppca_n_active": float("nan"),
        "ppca_eigen_gap": float("nan"),
        "ppca_subspace": None,
        "sigma": float("nan"),
        "beta": float("nan"),
    }
    if vae is not None and vae["likelihood"] == "gaussian":
        ppca = ppca_negative_elbo(train, test, z, vae["sigma"], vae["beta"])
        k = ppca["optimum"]["n_active"]
        out |= {
            "ppca_neg_elbo": ppca["loss"],
            "no_latent_neg_elbo": no_latent_negative_elbo(train, test, vae["sigma"]),
            "ppca_n_active": k,
            "ppca_eigen_gap": eigen_gap(ppca["optimum"]["eigenvalues"], k),
            "ppca_subspace": ppca["optimum"]["subspace"],
            "sigma": float(vae["sigma"]),
            "beta": float(vae["beta"]),
        }
    return out


def reference_row(dataset: str, z: int, ref: dict) -> dict:
    """The scalars of ``reference`` as one row of ``REFERENCE_COLUMNS``."""
    return {"dataset": dataset, "bottleneck": int(z)} | {c: ref[c] for c in REFERENCE_COLUMNS[2:]}


def decoder_angle(decoder_weight, components) -> float:
    """The largest principal angle (degrees) between a linear decoder's column space (d, z) and PCA-z's."""
    return largest_principal_angle(decoder_weight, components)


def ppca_decoder_angle(decoder_weight, ref: dict) -> float:
    """The largest principal angle (degrees) between a linear VAE's decoder and pPCA's, on the directions pPCA
    identifies.

    pPCA's decoder is U_z (Lambda_z - beta sigma^2 I)^{1/2} R: only the n_active directions with eigenvalue above
    beta sigma^2 have a column, the others are collapsed (zero), and R leaves the column space alone. So the
    trained decoder's (d, z) n_active leading left singular vectors are compared with U_{n_active}, and a collapsed
    latent's leftover column, small but not zero, does not count as a direction. The decoder, not the
    posterior-mean map: its directions outside the data's top subspace see gradients of the size of the small
    eigenvalues and shrink too slowly for any budget of the study (factors z4 needed 640 epochs). NaN when pPCA
    keeps no latent."""
    k = ref["ppca_n_active"]
    if not k >= 1:
        return float("nan")
    left, _, _ = np.linalg.svd(np.asarray(decoder_weight, dtype=np.float64), full_matrices=False)
    return largest_principal_angle(left[:, : int(k)], ref["ppca_subspace"])


def _row(check: str, value, reference, ratio, threshold, passed, applies: bool = True, note: str = "") -> dict:
    return {
        "check": check,
        "value": float(value),
        "reference": float(reference),
        "ratio": float(ratio),
        "threshold": float(threshold),
        "passed": None if passed is None else bool(passed),
        "applies": bool(applies),
        "note": note,
    }


def _mse_row(check: str, value: float, ref: dict, note: str = "") -> dict:
    ratio = value / ref["pca_mse"]
    return _row(check, value, ref["pca_mse"], ratio, MSE_TOLERANCE, ratio <= MSE_TOLERANCE, note=note)


def _elbo_row(check: str, value: float, ref: dict, note: str) -> dict:
    """``ratio`` is the excess (L - L*) / (L0 - L*): L the trained VAE's -ELBO, L* pPCA's, L0 no code's."""
    reference, gain = ref["ppca_neg_elbo"], ref["no_latent_neg_elbo"] - ref["ppca_neg_elbo"]
    if not gain > 0:  # pPCA keeps no latent (or gains nothing on the test split): nothing to lose a share of
        note = f"{note}; pPCA gains {number(gain)} nats over no code: no scale to measure an excess on"
        return _row(check, value, reference, math.nan, ELBO_EXCESS_LIMIT, None, applies=False, note=note)
    excess = (value - reference) / gain
    note = f"{note}; excess (L - L*) / (L0 - L*) = {number(excess)} of pPCA's gain of {number(gain)} nats over no code"
    return _row(check, value, reference, excess, ELBO_EXCESS_LIMIT, excess <= ELBO_EXCESS_LIMIT, note=note)


def _angle_row(check: str, angle: float, gap: float, what: str) -> dict:
    applies = bool(np.isfinite(angle)) and gap >= MIN_EIGEN_GAP
    if applies:
        note = f"against the {what}; eigen gap {number(gap)}"
        return _row(check, angle, gap, math.nan, ANGLE_LIMIT, angle < ANGLE_LIMIT, note=note)
    why = f"eigen gap {number(gap)} < {MIN_EIGEN_GAP}: the {what} is ill-defined, an angle to it is no evidence"
    if not np.isfinite(angle):
        why = f"no {what} to compare with"
    return _row(check, angle, gap, math.nan, ANGLE_LIMIT, None, applies=False, note=why)


def _not_measured(check: str, ref: dict, applies: bool, note: str) -> dict:
    threshold = {"angle": ANGLE_LIMIT, "elbo": ELBO_EXCESS_LIMIT}.get(check.rsplit("_", 1)[1], MSE_TOLERANCE)
    reference = {
        "linear_ae_subspace_angle": ref["eigen_gap"],
        "linear_vae_subspace_angle": ref["ppca_eigen_gap"],
        "linear_vae_ppca_elbo": ref["ppca_neg_elbo"],
        "vae_vs_ppca_elbo": ref["ppca_neg_elbo"],
    }.get(check, ref["pca_mse"])
    return _row(check, math.nan, reference, math.nan, threshold, None, applies=applies, note=note)


def control_rows(run: Run, measured: dict, ref: dict) -> list[dict]:
    """One row per check of ``run`` (``checks_for``): ``run_id`` and ``COLUMNS``.

    ``measured``: what ``aedissect.nets.controls.measure`` found, or ``{"status": ..., "error": ...}`` for a run
    that diverged (its rows apply but have no value and no verdict; its training check already fails)."""
    checks = checks_for(run)
    rows = []
    if measured.get("status", "ok") != "ok":
        note = f"run {measured['status']}: {measured.get('error', 'no weights')}"
        rows = [_not_measured(check, ref, True, note) for check in checks]
    elif ref.get("wide"):
        note = f"bottleneck {run['bottleneck']} wider than the data: no rank-z optimum to compare with"
        rows = [_not_measured(check, ref, False, note) for check in checks]
    elif run["kind"] == "vae" and run["vae"]["likelihood"] != "gaussian":
        note = f"vae.likelihood {run['vae']['likelihood']}: no closed-form optimum (pPCA needs a fixed Gaussian)"
        rows = [_not_measured(check, ref, False, note) for check in checks]
    else:
        for check in checks:
            rows.append(_measured_row(check, measured, ref))
    return [{"run_id": run["run_id"], **row} for row in rows]


def _measured_row(check: str, m: dict, ref: dict) -> dict:
    if check == "linear_ae_pca_mse":
        return _mse_row(check, m["test_mse"], ref, note="linear AE vs PCA-z (Baldi & Hornik 1989)")
    if check == "linear_ae_subspace_angle":
        return _angle_row(check, m["decoder_angle"], ref["eigen_gap"], "top-z principal subspace")
    if check == "linear_decoder_pca_bound":
        row = _mse_row(check, m["test_mse"], ref)
        train_ratio = m["train_mse"] / ref["pca_train_mse"]
        row["note"] = f"train MSE / PCA-z train MSE {train_ratio:.4g}"
        if train_ratio < IMPOSSIBLE_BELOW:
            row["passed"] = False
            row["note"] += (
                f" < {IMPOSSIBLE_BELOW:g}: impossible for a linear decoder (PCA-z is optimal on the train split), a bug"
            )
        return row
    if check == "nonlinear_ae_not_worse_than_pca":
        return _mse_row(check, m["test_mse"], ref, note="a nonlinear AE should not be worse than PCA-z")
    if check == "linear_vae_ppca_elbo":
        return _elbo_row(check, m["neg_elbo"], ref, "expected test -ELBO in closed form vs pPCA (Lucas et al. 2019)")
    if check == "linear_vae_subspace_angle":
        k, z = ref["ppca_n_active"], ref["components"].shape[1]
        what = f"pPCA decoder subspace ({number(k)} of {z} latents identified: eigenvalue above beta sigma^2)"
        return _angle_row(check, m["decoder_angle"], ref["ppca_eigen_gap"], what)
    if check == "vae_vs_ppca_elbo":
        return _elbo_row(check, m["neg_elbo"], ref, f"test -ELBO as the mean of {m['elbo_samples']} draws per sample")
    raise ValueError(f"unknown check {check!r}")
