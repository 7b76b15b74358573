"""Intervention figures, each drawn from one tidy table: freeze sweep, criticality heatmap, the swap matrix."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

from aedissect.analysis import style
from aedissect.analysis.findings import SWAP_METRIC, SWAP_THRESHOLD
from aedissect.analysis.stats import mean_ci


def freeze_prefix(freeze: pd.DataFrame):
    """Test MSE against the number of layers frozen at init from the input (k = 0: the normal run).

    Rows: data set and model kind (AE vs VAE); columns: architecture family; one line per architecture and
    bottleneck size, mean with 95% CI over seeds; dashed verticals mark each architecture's bottleneck (k at
    which the whole encoder is frozen).
    """
    style.apply()
    table = freeze[freeze["side"].isin(["none", "prefix"])]
    colours = style.table_arch_colours(table)
    rows = list(table[["dataset", "kind"]].drop_duplicates().sort_values(["dataset", "kind"]).itertuples(index=False))
    families = [f for f in style.FAMILY_COLOURS if f in set(table["family"])]
    fig, axes = plt.subplots(
        len(rows),
        len(families),
        figsize=(style.PAGE_WIDTH, style.grid_height(len(rows), 1.7, 0.5)),
        squeeze=False,
        sharex=True,
        sharey="row",
    )
    for i, row in enumerate(rows):
        for j, family in enumerate(families):
            ax = axes[i, j]
            panel = table[(table["dataset"] == row.dataset) & (table["kind"] == row.kind) & (table["family"] == family)]
            zs = sorted(panel["bottleneck"].unique())
            log = len(panel) > 0 and (panel["test_mse"] > 0).all()
            # On the log axis a band reaching zero or below would run off the bottom: its lower end stops at half
            # the smallest single-seed MSE of the panel, the axis' lower edge (the caption says so).
            floor = panel["test_mse"].min() / 2 if log else -np.inf
            for (arch, z), group in panel.groupby(["arch", "bottleneck"]):
                stats = pd.DataFrame([{"k": k} | mean_ci(g["test_mse"]) for k, g in group.groupby("k")])
                ax.plot(stats["k"], stats["mean"], marker="o", ms=2.5, lw=1.0, color=colours[arch],
                        ls="-" if z == max(zs) else ":", label=f"{arch}, z={z}")  # fmt: skip
                low = np.maximum(stats["ci95_low"], floor)
                ax.fill_between(stats["k"], low, stats["ci95_high"], color=colours[arch], alpha=0.2, lw=0)
            for bc in sorted(panel["bottleneck_cut"].unique()):
                style.mark_bottleneck(ax, bc)
            if log:
                ax.set_yscale("log")
                # labels at 1, 2 and 5 x 10^n only: a row within one decade still gets two, and the minor ticks'
                # own labels (2, 3, 4, 6 x 10^n) no longer run into each other
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=12))
                ax.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{row.dataset}, {row.kind.upper()}, {family}")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if i == len(rows) - 1:
                ax.set_xlabel("prefix k frozen at init")  # short: a longer label ran into the next panel's
    fig.supylabel("test MSE per element")  # once for the grid: a label per row overlapped the next row's
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    handles = dict(sorted(handles.items()))
    handles["bottleneck (whole encoder frozen)"] = style.bottleneck_handle()
    style.legend(fig, list(handles.values()), list(handles))
    return fig


CELL_FONTSIZE = 6.5  # numbers inside heatmap cells: legible at page width


def _heatmap(ax, values: pd.DataFrame, bottleneck_layers: dict, norm, digits: int = 1):
    """The value itself, coloured by ``norm`` (log for the ratio, linear for the damage), so that the numbers and
    the colour bar agree."""
    data = values.to_numpy(dtype=float)
    image = ax.imshow(data, cmap="magma_r", norm=norm, aspect="auto")
    for (r, c), v in np.ndenumerate(data):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.{digits}f}" if abs(v) < 10 else f"{v:.0f}", ha="center", va="center",
                    fontsize=CELL_FONTSIZE, color="white" if norm(v) > 0.6 else "black")  # fmt: skip
    for r, arch in enumerate(values.index):
        c = bottleneck_layers[arch]
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="#56B4E9", lw=1.5))
    ax.set_yticks(range(len(values.index)), values.index)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in values.columns])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image


def criticality_heatmap(table: pd.DataFrame):
    """Damage per layer and architecture, mean over seeds and bottlenecks: the normalised damage
    (MSE_intervened - MSE) / (MSE_mean_predictor - MSE) where the table has it (0: none, 1: as bad as predicting
    the training mean; linear colour scale from 0 to at least 1), else the test MSE ratio (intervened over
    trained, log colour scale).

    Columns: re-initialisation to the layer's own init and re-randomisation; rows: data set and kind. Cells
    print the value; the blue box marks each architecture's bottleneck layer.
    """
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import LogLocator, StrMethodFormatter

    style.apply()
    interventions = [i for i in ("reinit", "rerandom") if i in set(table["intervention"])]
    rows = list(table[["dataset", "kind"]].drop_duplicates().sort_values(["dataset", "kind"]).itertuples(index=False))
    sub = table[table["intervention"].isin(interventions)]
    damage = "damage" in sub.columns and sub["damage"].notna().any()
    value = "damage" if damage else "ratio"
    if damage:
        top = float(np.nanmax(sub["damage"].to_numpy(dtype=float)))
        norm = Normalize(vmin=0.0, vmax=max(top, 1.0), clip=True)  # negative damage (the layer helped) reads as 0
    else:
        vmax = max(float(np.log10(sub["ratio"].clip(lower=1.0)).max()), 0.5) if len(sub) else 1.0
        norm = LogNorm(vmin=1.0, vmax=10**vmax, clip=True)  # ratios below 1 (the layer did not matter) read as 1
    order = list(table.sort_values(["family", "arch"])["arch"].unique())
    bottleneck_layers = table[table["side"] == "bottleneck"].groupby("arch")["layer"].first().to_dict()
    fig, axes = plt.subplots(
        len(rows), len(interventions), figsize=(style.PAGE_WIDTH, style.grid_height(len(rows), 1.45, 0.4)),
        squeeze=False,
        sharex=True, sharey=True,
    )  # fmt: skip
    image = None
    for i, row in enumerate(rows):
        for j, name in enumerate(interventions):
            ax = axes[i, j]
            panel = sub[(sub["dataset"] == row.dataset) & (sub["kind"] == row.kind) & (sub["intervention"] == name)]
            values = panel.pivot_table(index="arch", columns="layer", values=value, aggfunc="mean").reindex(order)
            image = _heatmap(ax, values, bottleneck_layers, norm, digits=2 if damage else 1)
            label = "re-initialisation" if name == "reinit" else "re-randomisation"
            ax.set_title(f"{row.dataset}, {row.kind.upper()}: {label}")
    fig.supxlabel("layer index (0: first encoder layer; blue box: bottleneck layer)", fontsize=8)
    if image is not None and damage:
        label = "normalised damage (0: trained, 1: mean predictor)"
        fig.colorbar(image, ax=axes, shrink=0.6, label=label)
    elif image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.6, label="test MSE ratio, intervened / trained (log scale)")
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        bar.ax.yaxis.set_minor_formatter(StrMethodFormatter(""))
    return fig


def stitching_matrix(swap: pd.DataFrame, metric: str = SWAP_METRIC):
    """The swap matrix (swap.csv, ``level = pair``): A's encoder into B's decoder through a trained affine stitch at
    the bottleneck, the penalty normalised by the init_a control ((stitched - B) / (init_a stitched - B); 0: as good
    as B, 1: no better than an untrained encoder of A's shape), mean over seeds, for every pair of architectures;
    diagonal (dotted): the same architecture from the next seed, R3's control. Rows: data set and kind; columns:
    bottleneck size; one colour scale for all (the values are normalised). Bold: the 95% CI over seeds lies below
    rule R3's threshold (``findings.SWAP_THRESHOLD``)."""
    style.apply()
    pairs = swap[(swap["level"].astype(str) == "pair") & (swap["metric"] == metric)].copy()
    pairs["bottleneck"] = pairs["bottleneck"].astype(float).astype(int)
    rows = list(pairs[["dataset", "kind"]].drop_duplicates().sort_values(["dataset", "kind"]).itertuples(index=False))
    zs = sorted(pairs["bottleneck"].unique())
    families = {
        **dict(zip(pairs["a_arch"], pairs["a_family"], strict=True)),
        **dict(zip(pairs["arch"], pairs["family"], strict=True)),
    }
    order = sorted(families, key=lambda arch: (families[arch], arch))
    fig, axes = plt.subplots(
        max(len(rows), 1), max(len(zs), 1), figsize=(style.PAGE_WIDTH, style.grid_height(len(rows), 1.55, 1.0)),
        squeeze=False, sharex=True, sharey=True,
    )  # fmt: skip
    finite = pairs["mean"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    limit = min(1.0, max(SWAP_THRESHOLD * 2, float(np.abs(finite).max()) if finite.size else 1.0))
    image = None
    for i, row in enumerate(rows):
        for j, z in enumerate(zs):
            ax = axes[i, j]
            panel = pairs[(pairs["dataset"] == row.dataset) & (pairs["kind"] == row.kind) & (pairs["bottleneck"] == z)]
            means = panel.pivot_table(index="a_arch", columns="arch", values="mean", aggfunc="first")
            highs = panel.pivot_table(index="a_arch", columns="arch", values="ci95_high", aggfunc="first")
            means = means.reindex(index=order, columns=order).to_numpy(dtype=float)
            highs = highs.reindex(index=order, columns=order).to_numpy(dtype=float)
            image = ax.imshow(np.clip(means, -limit, limit), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            for (r, c), v in np.ndenumerate(means):
                if np.isfinite(v):
                    text = f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}"
                    ax.text(c, r, text.replace("-", "\N{MINUS SIGN}"), ha="center", va="center",
                            fontsize=CELL_FONTSIZE, color="white" if abs(v) > 0.6 * limit else "black",
                            fontweight="bold" if highs[r, c] < SWAP_THRESHOLD else "normal")  # fmt: skip
            for d in range(len(order)):  # the diagonal: the same architecture, the next seed (the control)
                ax.add_patch(Rectangle((d - 0.5, d - 0.5), 1, 1, fill=False, ec="0.4", lw=0.6, ls=":"))
            ax.set_xticks(range(len(order)), order, rotation=25, ha="right")
            ax.set_yticks(range(len(order)), order)
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_title(f"{row.dataset}, {row.kind.upper()}, z={z}")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.85, aspect=12,
                     label="penalty / penalty of an\nuntrained encoder (init_a)")  # fmt: skip
    fig.supxlabel("B: decoder after the stitch", fontsize=8)
    fig.supylabel("A: encoder before the stitch", fontsize=8)
    return fig


# the per-cut stitching figure: same-architecture seed pairs (B's architecture from the next seed), trained stitch
CUT_PAIR_TYPE, CUT_STITCH = "seed", "trained"
CUT_LINE_KEY = ["dataset", "kind", "family", "arch", "activation", "bottleneck", "cut_offset"]
CUT_LINE_COLUMNS = [*CUT_LINE_KEY, "mean", "std", "n", "ci95_low", "ci95_high"]
# a panel's y axis stops here when a mean runs past it (1: no better than an untrained encoder); the clipped
# points are marked with their value
CUT_Y_LIMIT = 1.0


def stitching_cut_lines(stitching: pd.DataFrame, metric: str = SWAP_METRIC) -> pd.DataFrame:
    """The lines of ``stitching_by_cut`` from stitching.csv: per data set, kind, architecture, bottleneck and cut
    (``cut_offset``, layers from the bottleneck), the mean of ``metric`` over seeds with its 95% t-interval, for A
    and B of the same architecture and different seeds (``pair_type`` seed) joined by a trained stitch. Seeds
    whose value is not finite (the untrained encoder's penalty, the denominator, not positive) are not counted."""
    rows = stitching[
        (stitching["pair_type"].astype(str) == CUT_PAIR_TYPE)
        & (stitching["stitch"].astype(str) == CUT_STITCH)
        & (stitching["a_arch"].astype(str) == stitching["arch"].astype(str))
    ]
    out = []
    for key, group in rows.groupby(CUT_LINE_KEY, sort=True):
        out.append(dict(zip(CUT_LINE_KEY, key, strict=True)) | mean_ci(group.groupby("seed")[metric].mean()))
    return pd.DataFrame(out, columns=CUT_LINE_COLUMNS)


def stitching_by_cut(stitching: pd.DataFrame, metric: str = SWAP_METRIC):
    """The stitching penalty against the cut: A's network up to the cut, a trained affine stitch, B's network from
    the cut on, A and B the same architecture trained from different seeds; the penalty normalised by an untrained
    encoder's (init_a: 0, as good as B; 1, no better than an untrained A). One panel per data set (rows) and kind
    (columns), one line per architecture (dotted: a smaller bottleneck) with its 95% CI over seeds as a band; the
    cut in layers from the bottleneck (dashed, 0; negative: inside the encoder); dotted black: R3's threshold."""
    from matplotlib.lines import Line2D

    from aedissect.formatting import number

    style.apply()
    lines = stitching_cut_lines(stitching, metric)
    datasets = sorted(lines["dataset"].unique())
    kinds = sorted(lines["kind"].unique())
    colours = style.table_arch_colours(lines) if len(lines) else {}
    zs = sorted(lines["bottleneck"].unique())
    fig, axes = plt.subplots(
        max(len(datasets), 1), max(len(kinds), 1),
        figsize=(style.PAGE_WIDTH, style.grid_height(len(datasets), 1.9, 0.9)),
        squeeze=False, sharex=True,
    )  # fmt: skip
    handles = {}
    for i, dataset in enumerate(datasets):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            panel = lines[(lines["dataset"] == dataset) & (lines["kind"] == kind)]
            top = CUT_Y_LIMIT if (panel["mean"] > CUT_Y_LIMIT).any() else None
            for (_, arch, act, z), line in panel.groupby(CUT_LINE_KEY[2:6], sort=True):
                line = line.sort_values("cut_offset")
                label = arch if len(zs) == 1 else f"{arch}, z={z}"
                if lines[lines["arch"] == arch]["activation"].nunique() > 1:
                    label += f", {act}"
                x, mean = line["cut_offset"].to_numpy(), line["mean"].to_numpy(dtype=float)
                ls = "-" if z == max(zs) else ":"
                shown = np.minimum(mean, top) if top is not None else mean
                (handle,) = ax.plot(x, shown, marker="o", ms=2.5, lw=1.0, ls=ls, color=colours[arch], label=label)
                handles.setdefault(label, handle)
                low, high = line["ci95_low"].to_numpy(dtype=float), line["ci95_high"].to_numpy(dtype=float)
                if top is not None:
                    low, high = np.minimum(low, top), np.minimum(high, top)
                ax.fill_between(x, low, high, color=colours[arch], alpha=0.18, lw=0)
                for xi, m in zip(x, mean, strict=True):
                    if top is not None and m > top:  # clipped: its value at the top of the panel
                        ax.annotate(f"{number(m)}↑", (xi, top), xytext=(0, 2), textcoords="offset points",
                                    ha="center", va="bottom", fontsize=6, color=colours[arch])  # fmt: skip
            style.mark_bottleneck(ax, 0.0)
            ax.axhline(SWAP_THRESHOLD, **style.REFERENCE_STYLE)
            ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
            if top is not None:
                ax.set_ylim(top=top * 1.12)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_title(f"{dataset}, {kind.upper()}")
            if i == len(datasets) - 1:
                ax.set_xlabel("cut (layers from the bottleneck; negative: encoder)")
            if j == 0:
                ax.set_ylabel("penalty / untrained\nencoder's (init_a)")
    if not len(lines):
        axes[0, 0].text(0.5, 0.5, "no same-architecture stitching", ha="center", va="center",
                        transform=axes[0, 0].transAxes)  # fmt: skip
    entries = list(handles.values())
    entries += [style.bottleneck_handle(), style.reference_handle(f"R3 threshold ({SWAP_THRESHOLD:g})")]
    entries.append(Line2D([], [], color="0.5", lw=6, alpha=0.3, label="95% CI over seeds"))
    style.legend(fig, entries)
    return fig
