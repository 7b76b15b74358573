"""Intervention figures, each drawn from one tidy table: freeze sweep, criticality heatmap, stitching matrix."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from aedissect import style
from aedissect.stats import mean_ci


def _arch_colours(table: pd.DataFrame) -> dict:
    families = table.groupby("family")["arch"].unique()
    return style.arch_colours({family: list(archs) for family, archs in families.items()})


def freeze_prefix(freeze: pd.DataFrame):
    """Test MSE against the number of layers frozen at init from the input (k = 0: the normal run).

    Rows: data set and model kind (AE vs VAE); columns: architecture family; one line per architecture and
    bottleneck size, mean with 95% CI over seeds; dashed verticals mark each architecture's bottleneck (k at
    which the whole encoder is frozen).
    """
    style.apply()
    table = freeze[freeze["side"].isin(["none", "prefix"])]
    colours = _arch_colours(table)
    rows = list(table[["dataset", "kind"]].drop_duplicates().sort_values(["dataset", "kind"]).itertuples(index=False))
    families = [f for f in style.FAMILY_COLOURS if f in set(table["family"])]
    fig, axes = plt.subplots(
        len(rows), len(families), figsize=(style.PAGE_WIDTH, 1.8 * len(rows)), squeeze=False, sharex=True
    )
    for i, row in enumerate(rows):
        for j, family in enumerate(families):
            ax = axes[i, j]
            panel = table[(table["dataset"] == row.dataset) & (table["kind"] == row.kind) & (table["family"] == family)]
            zs = sorted(panel["bottleneck"].unique())
            for (arch, z), group in panel.groupby(["arch", "bottleneck"]):
                stats = pd.DataFrame([{"k": k} | mean_ci(g["test_mse"]) for k, g in group.groupby("k")])
                ax.plot(stats["k"], stats["mean"], marker="o", ms=2.5, lw=1.0, color=colours[arch],
                        ls="-" if z == max(zs) else ":", label=f"{arch}, z={z}")  # fmt: skip
                ax.fill_between(stats["k"], stats["ci95_low"], stats["ci95_high"], color=colours[arch], alpha=0.2, lw=0)
            for bc in sorted(panel["bottleneck_cut"].unique()):
                style.mark_bottleneck(ax, bc)
            if (panel["test_mse"] > 0).all() and len(panel):
                ax.set_yscale("log")
            ax.set_title(f"{row.dataset}, {row.kind.upper()}, {family}")
            ax.set_xlabel("layers frozen at init (prefix k)")
            ax.set_ylabel("test MSE per element")
            if len(panel):
                ax.legend(frameon=False, fontsize=5)
    return fig


def _heatmap(ax, values: pd.DataFrame, bottleneck_layers: dict, vmax: float):
    data = values.to_numpy(dtype=float)
    image = ax.imshow(np.log10(data), cmap="magma_r", vmin=0.0, vmax=vmax, aspect="auto")
    for (r, c), v in np.ndenumerate(data):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.1f}" if v < 100 else f"{v:.0f}", ha="center", va="center", fontsize=5,
                    color="white" if np.log10(v) > 0.6 * vmax else "black")  # fmt: skip
    for r, arch in enumerate(values.index):
        c = bottleneck_layers[arch]
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="#56B4E9", lw=1.2))
    ax.set_yticks(range(len(values.index)), values.index)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in values.columns])
    ax.set_xlabel("layer (0: first encoder layer)")
    return image


def criticality_heatmap(table: pd.DataFrame):
    """Test MSE ratio (intervened over trained) per layer and architecture, mean over seeds and bottlenecks.

    Columns: re-initialisation to the layer's own init and re-randomisation; rows: data set and kind. The
    colour is log10 of the ratio; the blue box marks each architecture's bottleneck layer.
    """
    style.apply()
    interventions = [i for i in ("reinit", "rerandom") if i in set(table["intervention"])]
    rows = list(table[["dataset", "kind"]].drop_duplicates().sort_values(["dataset", "kind"]).itertuples(index=False))
    sub = table[table["intervention"].isin(interventions)]
    vmax = max(float(np.log10(sub["ratio"].clip(lower=1.0)).max()), 0.5) if len(sub) else 1.0
    order = list(table.sort_values(["family", "arch"])["arch"].unique())
    bottleneck_layers = table[table["side"] == "bottleneck"].groupby("arch")["layer"].first().to_dict()
    fig, axes = plt.subplots(len(rows), len(interventions), figsize=(style.PAGE_WIDTH, 1.6 * len(rows)), squeeze=False)
    image = None
    for i, row in enumerate(rows):
        for j, name in enumerate(interventions):
            ax = axes[i, j]
            panel = sub[(sub["dataset"] == row.dataset) & (sub["kind"] == row.kind) & (sub["intervention"] == name)]
            values = panel.pivot_table(index="arch", columns="layer", values="ratio", aggfunc="mean").reindex(order)
            image = _heatmap(ax, values, bottleneck_layers, vmax)
            label = "re-initialisation" if name == "reinit" else "re-randomisation"
            ax.set_title(f"{row.dataset}, {row.kind.upper()}: {label}")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="log10 test MSE ratio")
    return fig


def stitching_matrix(table: pd.DataFrame):
    """Mean stitching penalty (test MSE of A's prefix -> trained affine stitch -> B's suffix, minus B's own)
    for every pair of architectures; diagonal: the same architecture, other seeds. Rows: data set and kind;
    columns: bottleneck size."""
    style.apply()
    trained = table[(table["stitch"] == "trained") & (table["pair_type"] != "self")]
    rows = list(table[["dataset", "kind"]].drop_duplicates().sort_values(["dataset", "kind"]).itertuples(index=False))
    zs = sorted(table["bottleneck"].unique())
    order = list(table.sort_values(["family", "arch"])["arch"].unique())
    fig, axes = plt.subplots(len(rows), len(zs), figsize=(style.PAGE_WIDTH, 1.9 * len(rows)), squeeze=False)
    limit = float(np.nanmax(np.abs(trained["penalty"]))) if len(trained) else 1.0
    image = None
    for i, row in enumerate(rows):
        for j, z in enumerate(zs):
            ax = axes[i, j]
            panel = trained[
                (trained["dataset"] == row.dataset) & (trained["kind"] == row.kind) & (trained["bottleneck"] == z)
            ]
            values = panel.pivot_table(index="a_arch", columns="arch", values="penalty", aggfunc="mean")
            values = values.reindex(index=order, columns=order)
            image = ax.imshow(values.to_numpy(dtype=float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            for (r, c), v in np.ndenumerate(values.to_numpy(dtype=float)):
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.3f}", ha="center", va="center", fontsize=5)
            ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
            ax.set_yticks(range(len(order)), order)
            ax.set_xlabel("B (suffix)")
            ax.set_ylabel("A (prefix)")
            ax.set_title(f"{row.dataset}, {row.kind.upper()}, z={z}")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="stitching penalty (test MSE)")
    return fig
