"""Truncation figures, each drawn from one tidy table: layer profiles, CKA heatmaps, encoding loci."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aedissect.analysis import style
from aedissect.analysis.stats import summarize
from aedissect.config import FAMILIES

METRIC_LABELS = {
    "linear_r2": "ridge R² (h → x)",
    "nonlinear_r2": "MLP R² (h → x)",
    "linear_mse": "ridge MSE (h → x)",
    "nonlinear_mse": "MLP MSE (h → x)",
    "label_accuracy": "label probe\naccuracy",
    "factor_r2_linear": "factor R², linear",
    "factor_r2_nonlinear": "factor R², MLP",
    "twonn": "TwoNN dimension",
    "twonn_mle": "TwoNN dimension (MLE)",
    "jacobian_rank": "Jacobian\nrank",
    "jacobian_pr": "Jacobian PR",
    "jacobian_reduction_share": "share of rank\nreduction",
    "participation_ratio": "participation\nratio",
    "pca_dim_90": "PCA dim.\n(90%)",
    "pca_dim_99": "PCA dim.\n(99%)",
    "width": "width",
    "cka_bottleneck": "CKA to bottleneck",
    "cka_input": "CKA to input",
    "cka_output": "CKA to output",
    "cka_seeds": "CKA across seeds",
}
LOCUS_LABELS = {
    "twonn_min": "min TwoNN dimension",
    "pr_min": "min participation ratio",
    "cka_bottleneck_max": "max CKA to bottleneck\n(outside it)",
    "factor_r2_95": "factor R² (linear)\nreaches 95% of its max",
    "factor_r2_max": "max factor R²\n(linear)",
}
Z_STYLES = ["-", "--", ":", "-."]
# The main metrics of the per-data-set layer profile, in parts: all of them in one figure would be too tall to see
# whole on a screen
PROFILE_PARTS = {
    "content": ["linear_r2", "nonlinear_r2", "label_accuracy", "factor_r2_linear", "factor_r2_nonlinear"],
    "dimension": ["twonn", "participation_ratio", "pca_dim_90", "jacobian_rank"],
    "similarity": ["cka_bottleneck", "cka_input", "cka_seeds"],
}


def _families(table: pd.DataFrame) -> list[str]:
    present = set(table["family"])
    return [f for f in FAMILIES if f in present]


INIT_STYLE = {"lw": 0.6, "ls": (0, (3, 1.5)), "alpha": 0.7}  # the same network at its initial weights


def profile_grid(table: pd.DataFrame, metrics: list[str], datasets: list[str] | None = None, init: bool = False):
    """Each metric against relative depth: rows (data set, metric), columns family x kind.

    One line per architecture and bottleneck (colour: architecture, line style: bottleneck), the mean over
    seeds of the trained models with its Student-t 95% band; dashed verticals mark each architecture's
    bottleneck. With ``init``, the mean of the same networks at their initial weights (rows with ``state``
    ``init``) beside each line, thin, dashed, in its colour, without a band.
    """
    style.apply()
    datasets = datasets or sorted(table["dataset"].unique())
    table = table[table["dataset"].isin(datasets) & table["metric"].isin(metrics)]
    at_init = table[table["state"] == "init"] if init and "state" in table else table.iloc[:0]
    table = table[table["state"] == "trained"] if "state" in table else table
    rows = [(d, m) for d in datasets for m in metrics if ((table["dataset"] == d) & (table["metric"] == m)).any()]
    if not rows:
        raise ValueError(f"no rows for metrics {metrics} in data sets {datasets}")
    families, kinds = _families(table), sorted(table["kind"].unique())
    columns = [(f, k) for f in families for k in kinds]
    colours = style.table_arch_colours(table)
    zs = sorted(table["bottleneck"].unique())
    by = ["dataset", "metric", "family", "kind", "arch", "bottleneck", "cut", "relative_depth"]
    summary = summarize(table, by)
    init_mean = at_init.groupby(by, sort=True)["value"].mean().reset_index()
    bottlenecks = table[table["side"] == "bottleneck"].groupby(["family", "arch"])["relative_depth"].first()
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=(style.PAGE_WIDTH, style.grid_height(len(rows), 1.2, 0.9)),
        squeeze=False,
        sharex=True,
        sharey="row",  # one data set and metric per row: the same scale in every column
    )
    for i, (dataset, metric) in enumerate(rows):
        for j, (family, kind) in enumerate(columns):
            ax = axes[i, j]
            panel = summary[
                (summary["dataset"] == dataset)
                & (summary["metric"] == metric)
                & (summary["family"] == family)
                & (summary["kind"] == kind)
            ]
            init_panel = init_mean[
                (init_mean["dataset"] == dataset)
                & (init_mean["metric"] == metric)
                & (init_mean["family"] == family)
                & (init_mean["kind"] == kind)
            ]
            for (arch, _), line in init_panel.groupby(["arch", "bottleneck"]):
                line = line.sort_values("relative_depth")
                ax.plot(line["relative_depth"], line["value"], color=colours[arch], **INIT_STYLE)
            for depth in sorted(set(bottlenecks[family].values)) if family in bottlenecks else []:
                style.mark_bottleneck(ax, depth)
            for (arch, z), line in panel.groupby(["arch", "bottleneck"]):
                line = line.sort_values("relative_depth")
                ls = Z_STYLES[zs.index(z) % len(Z_STYLES)]
                ax.plot(
                    line["relative_depth"],
                    line["mean"],
                    color=colours[arch],
                    ls=ls,
                    lw=1.0,
                    marker=".",
                    ms=3,
                    label=f"{arch}, z={z}",
                )
                if line["ci95_low"].notna().any():
                    ax.fill_between(
                        line["relative_depth"],
                        line["ci95_low"],
                        line["ci95_high"],
                        color=colours[arch],
                        alpha=0.15,
                        lw=0,
                    )
            if i == 0:
                # eight columns leave no room for a hyphenated family name on one line: break it at its hyphen
                name = family.replace("-", "-\n") if len(columns) > 6 else family
                ax.set_title(f"{name}\n{kind.upper()}")
            if j == 0:
                ax.set_ylabel(f"{dataset}\n{METRIC_LABELS.get(metric, metric)}")
            ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
            ax.set_xlim(-0.05, 1.05)
    # one x label for the whole grid: a label per column would collide with its neighbours at page width
    fig.supxlabel("relative depth (cut / L: 0 input, 1 output)", fontsize=plt.rcParams["axes.labelsize"])
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    handles["bottleneck"] = style.bottleneck_handle()
    if not at_init.empty:
        from matplotlib.lines import Line2D

        handles["at init (thin)"] = Line2D([], [], color="0.3", **INIT_STYLE)
    style.legend(fig, list(handles.values()), list(handles), loc="outside upper center")
    return fig


def layer_profile(table: pd.DataFrame, dataset: str, part: str):
    """One part (PROFILE_PARTS) of the main truncation metrics of one data set against relative depth
    (layer_profiles.csv)."""
    present = set(table.loc[table["dataset"] == dataset, "metric"])
    # the dimension part shows the untrained network too: how much of the compression is the architecture's
    return profile_grid(table, [m for m in PROFILE_PARTS[part] if m in present], [dataset], init=part == "dimension")


def geometry_profiles(table: pd.DataFrame):
    """TwoNN dimension and participation ratio against relative depth, every data set (layer_profiles.csv)."""
    return profile_grid(table, ["twonn", "participation_ratio"])


def reconstruction_profiles(table: pd.DataFrame):
    """What each cut holds about the input: ridge and MLP reconstruction R², every data set (layer_profiles.csv)."""
    return profile_grid(table, ["linear_r2", "nonlinear_r2"])


def _mean_matrix(rows: pd.DataFrame, n_cuts: int, symmetrize: bool) -> np.ndarray:
    m = np.full((n_cuts, n_cuts), np.nan)
    means = rows.groupby(["cut_a", "cut_b"])["cka"].mean()
    for (a, b), v in means.items():
        m[a, b] = v
    if symmetrize:  # seed pairs are stored once (a < b): cut i of A vs cut j of B and its mirror are both valid
        m = np.nanmean(np.stack([m, m.T]), axis=0)
    return m


def cka_heatmaps(table: pd.DataFrame, dataset: str):
    """Linear CKA between cuts (cka_matrices.csv): within a model (mean over seeds) and across seeds (mean
    over seed pairs, both orders), one row per architecture, columns kind x bottleneck x (within, across)."""
    style.apply()
    table = table[table["dataset"] == dataset]
    archs = list(table.sort_values(["family", "arch"])["arch"].unique())
    kinds, zs = sorted(table["kind"].unique()), sorted(table["bottleneck"].unique())
    columns = [(k, z, w) for k in kinds for z in zs for w in ("within", "across")]
    fig, axes = plt.subplots(
        len(archs), len(columns), figsize=(style.PAGE_WIDTH, style.grid_height(len(archs), 0.95, 0.6)), squeeze=False
    )
    image = None
    for i, arch in enumerate(archs):
        for j, (kind, z, which) in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            cell = table[(table["arch"] == arch) & (table["kind"] == kind) & (table["bottleneck"] == z)]
            same = cell["seed_a"] == cell["seed_b"]
            rows = cell[same] if which == "within" else cell[~same]
            if i == 0:
                ax.set_title(f"{kind.upper()} z={z}\n{which}", fontsize=6)
            if j == 0:
                ax.set_ylabel(arch, fontsize=6)
            if rows.empty:
                ax.set_axis_off()
                continue
            names = cell.drop_duplicates("cut_a").sort_values("cut_a")["layer_a"].tolist()
            m = _mean_matrix(rows, len(names), symmetrize=which == "across")
            image = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            bn = names.index("bottleneck")
            ax.axhline(bn, color="w", lw=0.4, ls="--")
            ax.axvline(bn, color="w", lw=0.4, ls="--")
            ax.set_xticks(range(len(names)), [n[:3] for n in names], fontsize=4, rotation=90)
            if j == 0:
                ax.set_yticks(range(len(names)), [n[:3] for n in names], fontsize=4)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="linear CKA")
    fig.suptitle(f"{dataset}: linear CKA between cuts (white dashes: bottleneck)")
    return fig


def encoding_locus(table: pd.DataFrame):
    """Where each criterion puts the encoding, in layers from the bottleneck (encoding_locus.csv): one dot per
    run, the mean over runs as a bar; rows data sets, columns criteria, x family, AE and VAE side by side."""
    style.apply()
    datasets, loci = sorted(table["dataset"].unique()), [c for c in LOCUS_LABELS if c in set(table["locus"])]
    families, kinds = _families(table), sorted(table["kind"].unique())
    fig, axes = plt.subplots(
        len(datasets),
        len(loci),
        figsize=(style.PAGE_WIDTH, style.grid_height(len(datasets), 1.7, 0.8)),
        squeeze=False,
        sharey=True,
        sharex=True,
    )
    rng = np.random.default_rng(0)
    width = 0.8 / len(kinds)
    for i, dataset in enumerate(datasets):
        for j, locus in enumerate(loci):
            ax = axes[i, j]
            style.mark_bottleneck(ax, 0, horizontal=True)
            for a, family in enumerate(families):
                for k, kind in enumerate(kinds):
                    sel = table[
                        (table["dataset"] == dataset)
                        & (table["locus"] == locus)
                        & (table["family"] == family)
                        & (table["kind"] == kind)
                    ]["offset"].to_numpy(dtype=float)
                    if sel.size == 0:
                        continue
                    x = a + (k - (len(kinds) - 1) / 2) * width
                    colour = style.FAMILY_COLOURS[family]
                    ax.bar(
                        x,
                        sel.mean(),
                        width * 0.9,
                        color=colour,
                        alpha=0.35 if kind == "vae" else 0.7,
                        hatch="//" if kind == "vae" else None,
                        edgecolor=colour,
                        lw=0.6,
                    )
                    ax.scatter(
                        x + rng.uniform(-0.15, 0.15, sel.size) * width,
                        sel,
                        s=4,
                        color="0.1",
                        zorder=3,
                        marker=style.KIND_MARKERS.get(kind, "o"),
                    )
            ax.set_xticks(range(len(families)), families if i == len(datasets) - 1 else [], rotation=20, ha="right")
            if i == 0:
                ax.set_title(LOCUS_LABELS[locus])
            if j == 0:
                ax.set_ylabel(f"{dataset}\nlayers from bottleneck")
    # the key as a legend below the panels (a free-floating footnote ran into the tick labels)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    key = [
        Patch(facecolor="0.55", edgecolor="0.3", label="AE (solid)"),
        Patch(facecolor="0.85", edgecolor="0.5", hatch="//", label="VAE (hatched)"),
        Line2D([], [], color="0.1", ls="none", marker="o", markersize=3, label="single runs"),
        style.bottleneck_handle("bottleneck (< 0: inside the encoder, > 0: inside the decoder)"),
    ]
    style.legend(fig, key)
    return fig
