"""What a representation holds: similarity, geometry and probes, one function per metric.

Every function takes tensors or arrays of shape (n_samples, n_features) and computes in float64.
Nothing here loops over points: distances and kernels are matrix products.

- ``linear_cka``: linear centred kernel alignment (Kornblith et al. 2019), optionally debiased
  (the unbiased HSIC estimator of Song et al. 2012), computed in feature space; ``linear_cka_matrix``: that of
  every pair of two lists of feature matrices.
- ``participation_ratio``: (sum of covariance eigenvalues)^2 / sum of their squares.
- ``pca_dimension``: the number of principal components that explain a share of the variance.
- ``twonn_dimension``: the TwoNN intrinsic dimension (Facco et al. 2017).
- ``ridge_reconstruction``: closed-form ridge regression H -> X, lambda chosen on a validation split.
- ``linear_probe_accuracy``: multinomial logistic regression H -> y, test accuracy.
"""

from __future__ import annotations

import numpy as np

DEFAULT_LAMBDAS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def as_float64(a) -> np.ndarray:
    """A 2-D float64 array from a tensor (any device) or array; a vector becomes one column."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"expected shape (n_samples, n_features), got {a.shape}")
    return a


def _centre(a) -> np.ndarray:
    a = as_float64(a)
    return a - a.mean(axis=0, keepdims=True)


def _check_pair(X: np.ndarray, Y: np.ndarray) -> None:
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y need the same samples: {X.shape[0]} vs {Y.shape[0]}")


def _hsic(As: list[np.ndarray], Bs: list[np.ndarray], debiased: bool) -> np.ndarray:
    """The HSIC term of linear CKA for every pair of the centred As[i], Bs[j]: a (len(As), len(Bs)) matrix.

    Plain: ||Y'X||_F^2 = tr(KL) of the linear kernels K = XX^T, L = YY^T; the Y'X of every pair are the blocks
    of one product of the stacked features. With ``debiased``: the unbiased HSIC of Song et al. (2012),
    HSIC_u = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), K~ = K with zero
    diagonal, from the same products without forming K or L.
    """
    n = As[0].shape[0]

    def starts(Hs):
        return np.cumsum([0] + [h.shape[1] for h in Hs[:-1]])

    def diagonal_and_row_sums(Hs):
        """Per matrix, as columns: the diagonal of its kernel and its kernel's row sums without the diagonal."""
        diagonal = np.column_stack([np.einsum("ij,ij->i", h, h) for h in Hs])
        return diagonal, np.column_stack([h @ h.sum(axis=0) for h in Hs]) - diagonal

    cross = (np.hstack(As).T @ np.hstack(Bs)) ** 2
    trace_kl = np.add.reduceat(np.add.reduceat(cross, starts(As), axis=0), starts(Bs), axis=1)
    if not debiased:
        return trace_kl
    if n < 4:
        raise ValueError("the debiased CKA needs at least 4 samples")
    kd, k1 = diagonal_and_row_sums(As)
    ld, l1 = diagonal_and_row_sums(Bs)
    trace_kl = trace_kl - kd.T @ ld
    sums = np.outer(k1.sum(axis=0), l1.sum(axis=0))
    return (trace_kl + sums / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1.T @ l1)) / (n * (n - 3))


def linear_cka_matrix(As, Bs, debiased: bool = False) -> np.ndarray:
    """``linear_cka(As[i], Bs[j], debiased)`` for every i, j: a (len(As), len(Bs)) matrix.

    Every feature matrix is centred once and every pair's cross-covariance comes from one product of the
    stacked features: the CKA matrices of a cell in a few large products instead of thousands of small ones.
    """
    As, Bs = [_centre(a) for a in As], [_centre(b) for b in Bs]
    for h in As + Bs:
        _check_pair(As[0], h)
    xy = _hsic(As, Bs, debiased)
    xx = np.array([_hsic([a], [a], debiased)[0, 0] for a in As])
    yy = np.array([_hsic([b], [b], debiased)[0, 0] for b in Bs])
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.where(np.outer(xx > 0, yy > 0), np.sqrt(np.outer(xx, yy)), 0.0)
        return np.where(denom > 0, xy / denom, np.nan)


def linear_cka(X, Y, debiased: bool = False) -> float:
    """Linear CKA = ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) of the centred features; NaN if one side is constant.

    With ``debiased`` the three HSIC terms use the unbiased estimator (Kornblith et al. 2019, after
    Song et al. 2012): close to 0 for independent data at any width, and no longer bounded by [0, 1].
    """
    return float(linear_cka_matrix([X], [Y], debiased)[0, 0])


def _gram(H: np.ndarray) -> np.ndarray:
    """H'H, or HH' where H has more columns than rows: both have the same nonzero eigenvalues, trace and Frobenius
    norm, and the smaller costs its side's cube (a 4,096-wide conv cut on 1,000 points: 0.1 s instead of 10)."""
    return H @ H.T if H.shape[1] > H.shape[0] else H.T @ H


def covariance_eigenvalues(H) -> np.ndarray:
    """Eigenvalues of the sample covariance (one per feature), largest first, clipped at 0."""
    H = _centre(H)
    eig = np.clip(np.linalg.eigvalsh(_gram(H) / max(H.shape[0] - 1, 1))[::-1], 0.0, None)
    return np.concatenate([eig, np.zeros(H.shape[1] - eig.size)])


def participation_ratio(H) -> float:
    """PR = (sum lambda)^2 / sum lambda^2 of the covariance eigenvalues = tr(C)^2 / ||C||_F^2; NaN if constant."""
    H = _centre(H)
    cov = _gram(H)
    denom = float(np.sum(cov**2))
    return float(np.trace(cov) ** 2 / denom) if denom > 0 else float("nan")


def pca_dimension(H, variance: float = 0.9) -> int:
    """The fewest principal components whose eigenvalues reach ``variance`` of the total; 0 if constant."""
    if not 0 < variance <= 1:
        raise ValueError(f"variance must be in (0, 1], not {variance}")
    eig = covariance_eigenvalues(H)
    total = eig.sum()
    if total <= 0:
        return 0
    share = np.cumsum(eig) / total
    return int(min(np.searchsorted(share, variance - 1e-12) + 1, eig.size))


def two_nearest_distances(H) -> np.ndarray:
    """Distances (n, 2) of every point to its first and second nearest other point.

    Candidates come from one Gram-matrix distance computation; their distances are then recomputed
    directly, so duplicate points get exactly 0.
    """
    H = as_float64(H)
    n = H.shape[0]
    if n < 3:
        raise ValueError("TwoNN needs at least 3 points")
    sq = np.einsum("ij,ij->i", H, H)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (H @ H.T)
    np.fill_diagonal(d2, np.inf)
    k = min(4, n - 1)  # a few spare candidates against rounding in the Gram formula
    cand = np.argpartition(d2, k - 1, axis=1)[:, :k]
    exact = np.sqrt(np.sum((H[cand] - H[:, None, :]) ** 2, axis=2))
    return np.sort(exact, axis=1)[:, :2]


def twonn_dimension(H, discard_fraction: float = 0.1) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017).

    mu_i = r2 / r1 from each point's two nearest neighbours (points with r1 = 0 dropped); with mu sorted
    and the empirical F(mu_(i)) = i / N, the line -log(1 - F) = d log mu is fitted through the origin
    by least squares after discarding the largest ``discard_fraction`` of mu. NaN with fewer than 3 usable points.
    """
    return twonn_from_distances(two_nearest_distances(H), discard_fraction)


def twonn_from_distances(r: np.ndarray, discard_fraction: float = 0.1) -> float:
    """``twonn_dimension`` from the points' two nearest distances (``two_nearest_distances``), to share them."""
    keep = r[:, 0] > 0
    mu = np.sort(r[keep, 1] / r[keep, 0])
    n = mu.size
    n_fit = int(np.floor(n * (1.0 - discard_fraction)))
    if n_fit < 3:
        return float("nan")
    x = np.log(mu[:n_fit])
    y = -np.log(1.0 - np.arange(1, n_fit + 1) / n)
    denom = float(x @ x)
    return float(x @ y / denom) if denom > 0 else float("nan")


def twonn_subsamples(H, n_subsamples: int = 5, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """TwoNN dimension on ``n_subsamples`` seeded random subsamples of ``fraction`` of the points."""
    H = as_float64(H)
    rng = np.random.default_rng(seed)
    size = max(3, int(round(H.shape[0] * fraction)))
    return np.array(
        [twonn_dimension(H[rng.choice(H.shape[0], size, replace=False)]) for _ in range(n_subsamples)],
        dtype=np.float64,
    )


def _standardizer(H: np.ndarray):
    """Centre on the fit data and divide by one scale for all features, the root mean feature variance.

    One scale, not one per feature: a unit that is nearly constant on the fit data (a ReLU unit that
    rarely fires) would otherwise be blown up on the test data and wreck the probe.
    """
    mean = H.mean(axis=0, keepdims=True)
    scale = float(np.sqrt(np.mean(H.var(axis=0))))
    scale = scale if scale > 0 else 1.0
    return lambda a: (a - mean) / scale


def _ridge_fit(H: np.ndarray, X: np.ndarray, lambdas) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights and intercepts for each lambda (penalty lambda * n on standardised features).

    From one eigendecomposition of the centred Gram matrix Hc'Hc (features x features), shared by all lambdas:
    a few times cheaper than an SVD of Hc; with more features than points, of Hc Hc' (points x points), the dual.
    Its eigenvalues carry an absolute error ~1e-16 times the largest, far below the smallest penalty lambda * n (the
    features are standardised, so the largest is ~n * width).
    """
    n = H.shape[0]
    hm, xm = H.mean(axis=0), X.mean(axis=0)
    Hc = H - hm
    out = []
    if Hc.shape[1] > n:  # more features than points: the dual, w = Hc' (Hc Hc' + lambda n I)^-1 (X - xm)
        eig, U = np.linalg.eigh(Hc @ Hc.T)
        uty = U.T @ (X - xm)
        for lam in lambdas:
            w = Hc.T @ (U @ (uty / (eig + lam * n)[:, None]))
            out.append((w, xm - hm @ w))
        return out
    eig, V = np.linalg.eigh(Hc.T @ Hc)
    vty = V.T @ (Hc.T @ (X - xm))
    for lam in lambdas:
        w = V @ (vty / (eig + lam * n)[:, None])
        out.append((w, xm - hm @ w))
    return out


def _r2(X: np.ndarray, pred: np.ndarray) -> tuple[float, np.ndarray]:
    """Pooled R^2 (1 - SSE / SST over all columns) and R^2 per column, around the scored data's own mean."""
    sse = np.sum((X - pred) ** 2, axis=0)
    sst = np.sum((X - X.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(sst > 0, 1.0 - sse / sst, np.nan)
    pooled = 1.0 - sse.sum() / sst.sum() if sst.sum() > 0 else float("nan")
    return float(pooled), per


def ridge_reconstruction(
    H_fit, X_fit, H_test, X_test, lambdas=DEFAULT_LAMBDAS, val_fraction: float = 0.2, seed: int = 0
) -> dict:
    """Closed-form ridge regression H -> X on centred, scaled H (one scale for all features) with an intercept.

    lambda (the penalty is lambda * n_samples * ||W||^2) is chosen by validation MSE on a seeded
    ``val_fraction`` of the fit data, then the model is refitted on all fit data and scored on the test
    data. Returns mse (per element), r2 (pooled over columns), r2_per_target, lambda.
    """
    H_fit, X_fit, H_test, X_test = map(as_float64, (H_fit, X_fit, H_test, X_test))
    _check_pair(H_fit, X_fit)
    _check_pair(H_test, X_test)
    scale = _standardizer(H_fit)
    H_fit, H_test = scale(H_fit), scale(H_test)
    lambdas = list(lambdas)
    if len(lambdas) > 1:
        n = H_fit.shape[0]
        perm = np.random.default_rng(seed).permutation(n)
        n_val = max(1, int(round(n * val_fraction)))
        val, tr = perm[:n_val], perm[n_val:]
        fits = _ridge_fit(H_fit[tr], X_fit[tr], lambdas)
        val_mse = [np.mean((H_fit[val] @ w + b - X_fit[val]) ** 2) for w, b in fits]
        lam = lambdas[int(np.argmin(val_mse))]
    else:
        lam = lambdas[0]
    w, b = _ridge_fit(H_fit, X_fit, [lam])[0]
    pred = H_test @ w + b
    r2, per = _r2(X_test, pred)
    return {"mse": float(np.mean((pred - X_test) ** 2)), "r2": r2, "r2_per_target": per, "lambda": float(lam)}


def _softmax_fit(H: np.ndarray, y: np.ndarray, n_classes: int, C: float, max_iter: int) -> np.ndarray:
    """Weights (features + 1, classes) minimising mean cross-entropy + ||W||^2 / (2 C n), bias unpenalised.

    The same objective as scikit-learn's LogisticRegression(C) up to the factor n, solved by L-BFGS
    with the analytic gradient.
    """
    from scipy.optimize import minimize

    n, d = H.shape
    A = np.hstack([H, np.ones((n, 1))])
    Y = np.zeros((n, n_classes))
    Y[np.arange(n), y] = 1.0
    penalty = np.ones((d + 1, 1))
    penalty[-1] = 0.0
    alpha = 1.0 / (C * n)

    def loss_grad(w):
        W = w.reshape(d + 1, n_classes)
        z = A @ W
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -np.sum(Y * logp) / n + 0.5 * alpha * np.sum(penalty * W**2)
        grad = A.T @ (np.exp(logp) - Y) / n + alpha * penalty * W
        return loss, grad.ravel()

    res = minimize(loss_grad, np.zeros((d + 1) * n_classes), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x.reshape(d + 1, n_classes)


def linear_probe_accuracy(H_fit, y_fit, H_test, y_test, C: float = 1.0, max_iter: int = 300) -> float:
    """Test accuracy of a multinomial logistic regression (L2, inverse strength ``C`` as in scikit-learn)
    on centred, scaled H (one scale for all features); labels may be any integers or strings."""
    H_fit, H_test = as_float64(H_fit), as_float64(H_test)
    y_fit, y_test = np.asarray(y_fit).ravel(), np.asarray(y_test).ravel()
    _check_pair(H_fit, y_fit[:, None])
    _check_pair(H_test, y_test[:, None])
    classes, codes = np.unique(y_fit, return_inverse=True)
    if classes.size < 2:
        return float(np.mean(y_test == classes[0]))
    scale = _standardizer(H_fit)
    W = _softmax_fit(scale(H_fit), codes, classes.size, C, max_iter)
    logits = scale(H_test) @ W[:-1] + W[-1]
    return float(np.mean(classes[np.argmax(logits, axis=1)] == y_test))
