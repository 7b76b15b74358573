"""Figures, each drawn from one tidy table and nothing else."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aedissect import datasets
from aedissect.analysis import style
from aedissect.analysis.stats import mean_ci


def _grid(rows: list, cols: list, width: float, row_height: float, **kwargs):
    """A panel grid at most ``width`` times MAX_HEIGHT / PAGE_WIDTH tall (``style.grid_height``, scaled to width)."""
    height = style.grid_height(len(rows), row_height * style.PAGE_WIDTH / width, 0) * width / style.PAGE_WIDTH
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(width, height), squeeze=False, **kwargs)
    return fig, axes


def training_curves(curves: pd.DataFrame):
    """Test loss per epoch, mean over the seeds that trained, one line per architecture; rows data sets, columns
    kinds."""
    style.apply()
    curves = curves[curves["status"] == "ok"]
    colours = style.table_arch_colours(curves)
    datasets, kinds = sorted(curves["dataset"].unique()), sorted(curves["kind"].unique())
    fig, axes = _grid(datasets, kinds, style.PAGE_WIDTH, 1.8, sharex=True)
    test = curves[curves["split"] == "test"]
    for (i, dataset), (j, kind) in ((a, b) for a in enumerate(datasets) for b in enumerate(kinds)):
        ax = axes[i, j]
        panel = test[(test["dataset"] == dataset) & (test["kind"] == kind)]
        for (arch, z), group in panel.groupby(["arch", "bottleneck"]):
            mean = group.groupby("epoch")["loss"].mean()
            ax.plot(
                mean.index,
                mean.values,
                color=colours[arch],
                lw=1.0,
                ls="-" if z == panel["bottleneck"].max() else ":",
                label=f"{arch}, z={z}",
            )
        if (panel["loss"] > 0).all():
            ax.set_yscale("log")
        elif len(panel):
            # a loss that crosses zero (Gaussian -ELBO) cannot go on a log axis: let the first epochs run off
            # the top so that the differences between the converged curves stay visible
            means = panel.groupby(["arch", "bottleneck", "epoch"])["loss"].mean().reset_index()
            late = means[means["epoch"] >= means["epoch"].min() + 0.15 * (means["epoch"].max() - means["epoch"].min())]
            low, high = float(means["loss"].min()), float(late["loss"].max())
            if high > low:
                ax.set_ylim(low - 0.05 * (high - low), high + 0.1 * (high - low))
        ax.set_title(f"{dataset}, {kind.upper()}")
        if i == len(datasets) - 1:
            ax.set_xlabel("epoch")
        ax.set_ylabel("test MSE\nper element" if kind == "ae" else "test −ELBO\n(nats per sample)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    style.legend(fig, handles, labels)
    return fig


def reconstruction_error(metrics: pd.DataFrame):
    """Test MSE per architecture: seeds as dots, mean and 95% CI as a bar; AE vs VAE side by side; PCA-z's test MSE
    (the table's ``pca_mse``, where it has one) as a dotted line across each data set and bottleneck's panel."""
    style.apply()
    ok = metrics[metrics["status"] == "ok"]
    colours = style.table_arch_colours(ok)
    datasets, bottlenecks = sorted(ok["dataset"].unique()), sorted(ok["bottleneck"].unique())
    archs = list(ok.sort_values(["family", "arch"])["arch"].unique())
    kinds = sorted(ok["kind"].unique())
    fig, axes = _grid(datasets, bottlenecks, style.PAGE_WIDTH, 1.9)
    width = 0.8 / len(kinds)
    for (i, dataset), (j, z) in ((a, b) for a in enumerate(datasets) for b in enumerate(bottlenecks)):
        ax = axes[i, j]
        for k, kind in enumerate(kinds):
            for a, arch in enumerate(archs):
                values = ok[
                    (ok["dataset"] == dataset) & (ok["bottleneck"] == z) & (ok["kind"] == kind) & (ok["arch"] == arch)
                ]["test_mse"].to_numpy()
                if values.size == 0:
                    continue
                x = a + (k - (len(kinds) - 1) / 2) * width
                s = mean_ci(values)
                ax.bar(
                    x,
                    s["mean"],
                    width * 0.9,
                    color=colours[arch],
                    alpha=0.35 if kind == "vae" else 0.8,
                    hatch="//" if kind == "vae" else None,
                    edgecolor=colours[arch],
                    linewidth=0.6,
                )
                if s["n"] > 1:
                    ax.errorbar(
                        x,
                        s["mean"],
                        yerr=[[s["mean"] - s["ci95_low"]], [s["ci95_high"] - s["mean"]]],
                        color="0.2",
                        lw=0.8,
                        capsize=2,
                    )
                ax.scatter(
                    np.full(values.size, x),
                    values,
                    s=6,
                    color="0.1",
                    zorder=3,
                    marker=style.KIND_MARKERS.get(kind, "o"),
                )
        pca = ok[(ok["dataset"] == dataset) & (ok["bottleneck"] == z)].get("pca_mse", pd.Series(dtype=float)).dropna()
        if len(pca):
            ax.axhline(float(pca.iloc[0]), **style.REFERENCE_STYLE)
        ax.set_xticks(range(len(archs)), archs, rotation=20, ha="right")
        ax.set_title(f"{dataset}, bottleneck z={z}")
        if j == 0:
            ax.set_ylabel("test MSE per element")
    # the key as a legend below the panels (constrained layout keeps it clear of the tick labels)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    key = [
        Patch(facecolor="0.55", edgecolor="0.3", label="AE (solid)"),
        Patch(facecolor="0.85", edgecolor="0.5", hatch="//", label="VAE (hatched)"),
        Line2D([], [], color="0.2", lw=0.8, marker="_", markersize=6, label="mean, 95% CI over seeds"),
        Line2D([], [], color="0.1", ls="none", marker="o", markersize=3, label="single seeds"),
    ]
    if "pca_mse" in ok and ok["pca_mse"].notna().any():
        key.append(style.reference_handle("PCA-z: top z principal components of train"))
    style.legend(fig, key)
    return fig


def reconstruction_grid(recon: pd.DataFrame, dataset: str, kind: str, n_examples: int):
    """Inputs (top row) and reconstructions of the first seed of one model kind, one row per architecture and z
    (one figure per kind: both kinds in one would be too tall to see whole on a screen).

    Each example is drawn as the data-set registry says: an image (of the recorded image shape), a line
    (sequences; the input in grey behind each reconstruction), or a strip of cells (unordered features).
    """
    style.apply()
    draw = datasets.REGISTRY[dataset].draw
    table = recon[(recon["dataset"] == dataset) & (recon["kind"] == kind) & (recon["example"] < n_examples)]
    if table.empty:  # a diverged run records no examples: the figure says so rather than failing the study
        fig, ax = plt.subplots(figsize=(style.PAGE_WIDTH * 0.6, 0.6))
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"{dataset}, {kind.upper()}: no model trained (every run diverged)", ha="center")
        return fig
    shape = tuple(int(s) for s in table["image_shape"].iloc[0].split("x")) if draw == "image" else (1, -1)
    examples = sorted(table["example"].unique())
    models = (
        table[["family", "arch", "bottleneck"]]
        .drop_duplicates()
        .sort_values(["family", "arch", "bottleneck"])
        .itertuples(index=False)
    )
    rows = [("input", None)] + [(f"{kind.upper()} {m.arch} z={m.bottleneck}", m) for m in models]
    first = table[table["run_id"] == table["run_id"].iloc[0]]
    fig, axes = _grid(rows, examples, style.PAGE_WIDTH * 0.6, 0.25 if draw == "strip" else 0.42)
    for r, (label, model) in enumerate(rows):
        for c, example in enumerate(examples):
            ax = axes[r, c]
            if model is None:
                sel = first[first["example"] == example]
            else:
                sel = table[
                    (table["arch"] == model.arch)
                    & (table["bottleneck"] == model.bottleneck)
                    & (table["example"] == example)
                ]
            sel = sel.sort_values("feature")
            inputs = sel["input"].to_numpy()
            values = (inputs if model is None else sel["reconstruction"].to_numpy()).clip(0, 1)
            if draw == "line":
                if model is not None:
                    ax.plot(inputs, color="0.7", lw=0.8)
                ax.plot(values, color="0.1", lw=0.8)
                ax.set_ylim(-0.05, 1.05)
            else:
                img = values.reshape(shape)
                if img.ndim == 3:  # stored channel-first: CIFAR's three channels, or mnist5k's one
                    img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
                ax.imshow(
                    img,
                    cmap="gray_r" if img.ndim == 2 else None,
                    vmin=0,
                    vmax=1,
                    aspect="equal" if draw == "image" else "auto",
                    interpolation="nearest",
                )
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"{dataset}: test inputs and reconstructions (seed {int(table['seed'].iloc[0])})", fontsize=8)
    return fig
