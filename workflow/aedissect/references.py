"""Closed-form optima that a trained network is checked against: numpy and scipy only, float64 throughout.

- ``pca_reference``: the best rank-z linear autoencoder (PCA fitted on train) and its test MSE.
- ``principal_angles`` / ``largest_principal_angle``: how far apart two column spaces are, in degrees.
- ``ppca_optimum`` / ``ppca_negative_elbo`` / ``linear_vae_negative_elbo``: the global optimum of a linear
  VAE with a fixed Gaussian likelihood std and a diagonal posterior, which is probabilistic PCA
  (Tipping & Bishop 1999; Lucas et al. 2019, "Don't blame the ELBO!"), and its negative ELBO.
- ``no_latent_negative_elbo``: the negative ELBO of the same VAE whose code carries nothing, the zero of what a
  code can gain.
- ``ridge_optimum``: the least-squares / ridge linear decoder from frozen features.

Arrays are (n_samples, n_features); tensors are accepted too (``metrics.as_float64``).
"""

from __future__ import annotations

import numpy as np

from aedissect.metrics import as_float64


def _train_covariance(train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train mean, and eigenvalues (descending) and eigenvectors of the 1/n train covariance.

    Eigenvalues within rounding of 0 (at most d * eps * the largest, eigh's absolute accuracy) are set to 0,
    so that rank-deficient data (a bottleneck's image) has exact zeros and an infinite eigen gap.
    """
    mean = train.mean(axis=0)
    centred = train - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / train.shape[0])
    eigenvalues = eigenvalues[::-1]
    tiny = train.shape[1] * np.finfo(np.float64).eps * max(eigenvalues[0], 0.0)
    return mean, np.where(eigenvalues > tiny, eigenvalues, 0.0), eigenvectors[:, ::-1]


def _check_latent(z: int, d: int) -> None:
    if not 1 <= z <= d:
        raise ValueError(f"the latent size must be in [1, {d}] for {d} input dimensions, not {z}")


def pca_reference(train, test, z: int) -> dict:
    """The optimal rank-``z`` linear autoencoder: PCA on the train split, scored on the test split.

    The train split is centred with its own mean and that mean is used for the test split, as a trained
    network's biases would. Returns

    - ``mse``: test reconstruction MSE per element (mean over samples and dimensions, as ``nn.MSELoss()``);
    - ``components``: (d, z) orthonormal top eigenvectors of the train covariance;
    - ``mean``: the train mean;
    - ``eigenvalues``: all d eigenvalues of the train covariance, descending. They use 1/n, not 1/(n - 1)
      (``metrics.covariance_eigenvalues`` does), so that the train reconstruction MSE is exactly
      sum(eigenvalues[z:]) / d, the quantity a network trained on that split minimises;
    - ``eigen_gap``: lambda_z / lambda_{z+1}; inf when lambda_{z+1} = 0, and for z = d, where no direction is
      discarded; NaN when both are 0. A small gap means the top-z subspace is ill-determined, so a large
      principal angle to a trained network's subspace is then no evidence against convergence.
    """
    train, test = as_float64(train), as_float64(test)
    d = train.shape[1]
    _check_latent(z, d)
    mean, eigenvalues, eigenvectors = _train_covariance(train)
    components = eigenvectors[:, :z]
    centred = test - mean
    recon = centred @ components @ components.T
    top, nxt = eigenvalues[z - 1], (eigenvalues[z] if z < d else 0.0)
    if nxt > 0:
        gap = top / nxt
    else:
        gap = float("inf") if top > 0 else float("nan")
    return {
        "mse": float(np.mean((centred - recon) ** 2)),
        "components": components,
        "mean": mean,
        "eigenvalues": eigenvalues,
        "eigen_gap": float(gap),
    }


def _orthonormal_basis(A: np.ndarray, tol: float | None) -> np.ndarray:
    """An orthonormal basis of the column space, rank decided as numpy.linalg.matrix_rank does.

    An SVD rather than a plain QR: a decoder with collapsed (zero) columns is rank deficient, and QR would
    return arbitrary directions for them.
    """
    u, s, _ = np.linalg.svd(A, full_matrices=False)
    if tol is None:
        tol = s.max(initial=0.0) * max(A.shape) * np.finfo(np.float64).eps
    return u[:, s > tol]


def principal_angles(A, B, tol: float | None = None) -> np.ndarray:
    """Principal angles in degrees, ascending, between the column spaces of A (d, p) and B (d, q).

    There are min(rank A, rank B) of them (Björck & Golub 1973). Cosines come from the singular values of
    Qa'Qb, sines from those of the part of Qb outside span(A), both clipped to [0, 1]; each angle is taken
    from whichever is better conditioned (below 45 degrees the sine), since arccos alone loses all precision
    for angles under about 1e-8 rad (Knyazev & Argentati 2002). ``tol``: singular values at or below it count
    as rank deficiency (default: as numpy.linalg.matrix_rank). Empty when either space is {0}.
    """
    A, B = as_float64(A), as_float64(B)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B need the same ambient dimension: {A.shape[0]} vs {B.shape[0]}")
    qa, qb = _orthonormal_basis(A, tol), _orthonormal_basis(B, tol)
    if min(qa.shape[1], qb.shape[1]) == 0:
        return np.empty(0)
    if qb.shape[1] > qa.shape[1]:
        qa, qb = qb, qa  # the sines below pair up with the cosines only when qb is the smaller space
    cos = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)  # descending
    sin = np.clip(np.linalg.svd(qb - qa @ (qa.T @ qb), compute_uv=False)[::-1], 0.0, 1.0)  # ascending
    angles = np.where(cos > np.sqrt(0.5), np.arcsin(sin), np.arccos(cos))
    return np.degrees(angles)


def largest_principal_angle(A, B, tol: float | None = None) -> float:
    """The largest principal angle in degrees (0: one space contains the other); NaN when either space is {0}."""
    angles = principal_angles(A, B, tol)
    return float(angles.max()) if angles.size else float("nan")


def linear_vae_negative_elbo(
    x, enc_weight, enc_bias, posterior_var, dec_weight, dec_bias, sigma: float, beta: float = 1.0
) -> dict:
    """The negative ELBO of a linear VAE per sample, with the Gaussian expectations in closed form.

    Model: p(z) = N(0, I), p(x | z) = N(dec_weight z + dec_bias, sigma^2 I) with ``sigma`` fixed, and
    q(z | x) = N(enc_weight x + enc_bias, diag(posterior_var)); ``posterior_var`` is (z,) or (n, z).
    With m = E_q[z] and s^2 = posterior_var,

        distortion = (|x - W m - c|^2 + sum_j s_j^2 |w_j|^2) / (2 sigma^2) + d log sigma + d/2 log 2 pi
        rate       = 1/2 sum_j (m_j^2 + s_j^2 - 1 - log s_j^2)                       (KL(q || p(z)))

    the expectations of the project's per-sample loss ``0.5 ((x - out) / sigma)^2.sum(1) + d log sigma +
    0.5 d log 2 pi`` and of its rate. Returns ``loss`` = mean(distortion + beta rate), ``distortion`` and
    ``rate`` (each the mean over samples), and ``per_sample`` (n,), the loss of each sample.
    """
    x = as_float64(x)
    V, b = np.asarray(enc_weight, np.float64), np.asarray(enc_bias, np.float64)
    W, c = np.asarray(dec_weight, np.float64), np.asarray(dec_bias, np.float64)
    s2 = np.asarray(posterior_var, np.float64)
    d = x.shape[1]
    m = x @ V.T + b
    residual = x - m @ W.T - c
    spread = np.broadcast_to(s2, m.shape) @ np.sum(W**2, axis=0)  # E|W(z - m)|^2 = sum_j s_j^2 |w_j|^2
    distortion = (np.sum(residual**2, axis=1) + spread) / (2.0 * sigma**2)
    distortion += d * np.log(sigma) + 0.5 * d * np.log(2.0 * np.pi)
    rate = 0.5 * np.sum(m**2 + s2 - 1.0 - np.log(s2), axis=1)
    per_sample = distortion + beta * rate
    return {
        "loss": float(per_sample.mean()),
        "distortion": float(distortion.mean()),
        "rate": float(rate.mean()),
        "per_sample": per_sample,
    }


def ppca_optimum(train, z: int, sigma: float, beta: float = 1.0) -> dict:
    """The global optimum of a linear VAE with fixed likelihood std ``sigma`` and a diagonal posterior.

    For beta = 1 it is maximum-likelihood probabilistic PCA with sigma held fixed (Tipping & Bishop 1999,
    eq. 7): W = U_z (Lambda_z - sigma^2 I)^{1/2}, with U_z, Lambda_z the top-z eigenvectors and eigenvalues of
    the 1/n train covariance and every column with lambda_i <= sigma^2 zero (a collapsed latent: its posterior
    is the prior). The posterior is then exactly N(M^{-1} W'(x - mean), sigma^2 M^{-1}) with M = W'W + sigma^2 I
    diagonal, so the diagonal-posterior ELBO is tight and its optimum is pPCA's (Lucas et al. 2019).

    beta != 1: the objective per sample is (|x - Wm|^2 + sum_j s_j^2 |w_j|^2) / (2 sigma^2) + beta KL + const;
    divided by beta it is the beta = 1 objective with sigma^2 replaced by beta sigma^2, up to a constant. So
    the optimum is the one above with sigma^2 -> beta sigma^2 everywhere (thresholds, M, posterior variance);
    only the likelihood constant d log sigma keeps the true sigma.

    Returns the decoder ``W`` (d, z) and ``mean`` (its bias, the train mean); the encoder mean map
    ``enc_weight`` (z, d) = M^{-1} W' and ``enc_bias`` = -enc_weight @ mean; ``posterior_var`` (z,) =
    beta sigma^2 / (|w_j|^2 + beta sigma^2) (1 for a collapsed latent); ``active`` (z,) bool and
    ``n_active``; ``subspace`` (d, n_active), an orthonormal basis of the row space of the encoder mean map,
    which is also the decoder's column space (compare a trained VAE's by ``principal_angles``; it is
    determined only up to rotations inside eigenvalue ties); and ``eigenvalues`` of the train covariance.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    if not beta > 0:
        raise ValueError(f"beta must be positive, not {beta}")
    train = as_float64(train)
    _check_latent(z, train.shape[1])
    mean, eigenvalues, eigenvectors = _train_covariance(train)
    noise = beta * sigma**2
    top = eigenvalues[:z]
    active = top > noise
    scale = np.sqrt(np.where(active, top - noise, 0.0))
    W = eigenvectors[:, :z] * scale
    col_sq = scale**2  # W'W is diagonal
    enc_weight = (W / (col_sq + noise)).T
    return {
        "W": W,
        "mean": mean,
        "enc_weight": enc_weight,
        "enc_bias": -enc_weight @ mean,
        "posterior_var": noise / (col_sq + noise),
        "active": active,
        "n_active": int(active.sum()),
        "subspace": eigenvectors[:, :z][:, active],
        "eigenvalues": eigenvalues,
    }


def ppca_negative_elbo(train, test, z: int, sigma: float, beta: float = 1.0) -> dict:
    """The test-set negative ELBO per sample of the optimal linear VAE fitted on ``train`` (``ppca_optimum``).

    Evaluated explicitly (``linear_vae_negative_elbo``), not as a marginal likelihood: it is the loss a
    linear VAE trained to convergence on ``train`` reaches on ``test``, in the project's convention (sum over
    dimensions and latents, mean over samples, constants included). For beta = 1 the posterior is exact, so
    on any split it also equals minus the mean pPCA log density N(x; mean, WW' + sigma^2 I).

    Returns ``loss``, ``distortion`` and ``rate`` on the test split, and ``optimum``, ``ppca_optimum``'s dict
    (``subspace`` there is the posterior-mean subspace).
    """
    optimum = ppca_optimum(train, z, sigma, beta)
    elbo = linear_vae_negative_elbo(
        test,
        optimum["enc_weight"],
        optimum["enc_bias"],
        optimum["posterior_var"],
        optimum["W"],
        optimum["mean"],
        sigma,
        beta,
    )
    return {"loss": elbo["loss"], "distortion": elbo["distortion"], "rate": elbo["rate"], "optimum": optimum}


def no_latent_negative_elbo(train, test, sigma: float) -> float:
    """The test-set negative ELBO per sample of the linear VAE whose code carries nothing: the decoder outputs the
    train mean whatever the code, the posterior is the prior (rate 0, so beta does not enter), sigma fixed.

    It is the pPCA optimum with every latent collapsed (``ppca_optimum`` when beta sigma^2 >= lambda_1), and
    ``ppca_negative_elbo`` can only be below it on the train split: the gap between the two is what a code can gain,
    the scale a trained VAE's excess over pPCA is measured on (``aedissect.controls``). Equal to
    mean |x - train mean|^2 / (2 sigma^2) + d log sigma + d/2 log 2 pi."""
    train, test = as_float64(train), as_float64(test)
    d = train.shape[1]
    nothing = np.zeros((1, d))
    elbo = linear_vae_negative_elbo(test, nothing, np.zeros(1), np.ones(1), nothing.T, train.mean(axis=0), sigma)
    return elbo["loss"]


def ridge_optimum(
    features_train, targets_train, features_test, targets_test, lam: float = 0.0, fit_intercept: bool = True
) -> dict:
    """The linear decoder minimising |Y - H W - b|^2 + lam |W|^2 on the train split, scored on both splits.

    ``lam`` is scikit-learn's Ridge(alpha) convention: on the raw (unscaled) features and not multiplied by n,
    unlike ``metrics.ridge_reconstruction``. The intercept is unpenalised and handled by centring. Solved by
    one SVD of the centred features; for lam = 0 singular values at or below numpy.linalg.lstsq's default
    cutoff are dropped, giving the minimum-norm least-squares solution, so collinear (e.g. dead ReLU)
    features are fine. Returns ``mse_test`` and ``mse_train`` per element (as ``nn.MSELoss()``),
    ``weights`` (features, targets) and ``intercept`` (targets,).
    """
    if lam < 0:
        raise ValueError(f"lam must be non-negative, not {lam}")
    H, Y = as_float64(features_train), as_float64(targets_train)
    H_test, Y_test = as_float64(features_test), as_float64(targets_test)
    for feats, targs, split in ((H, Y, "train"), (H_test, Y_test, "test")):
        if feats.shape[0] != targs.shape[0]:
            raise ValueError(
                f"{split}: features and targets need the same samples: {feats.shape[0]} vs {targs.shape[0]}"
            )
    h_mean = H.mean(axis=0) if fit_intercept else np.zeros(H.shape[1])
    y_mean = Y.mean(axis=0) if fit_intercept else np.zeros(Y.shape[1])
    u, s, vt = np.linalg.svd(H - h_mean, full_matrices=False)
    cutoff = s.max(initial=0.0) * max(H.shape) * np.finfo(np.float64).eps
    keep = s > cutoff if lam == 0 else s > 0
    shrink = np.zeros_like(s)
    shrink[keep] = s[keep] / (s[keep] ** 2 + lam)
    weights = vt.T @ (shrink[:, None] * (u.T @ (Y - y_mean)))
    intercept = y_mean - h_mean @ weights
    return {
        "mse_test": float(np.mean((H_test @ weights + intercept - Y_test) ** 2)),
        "mse_train": float(np.mean((H @ weights + intercept - Y) ** 2)),
        "weights": weights,
        "intercept": intercept,
    }
