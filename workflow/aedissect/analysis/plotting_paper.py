"""The paper's summary figure, drawn from results/paper/findings_runs.csv and, for rule R3, the family-level
stitching penalties of results/paper/verdicts.csv."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aedissect.analysis import style
from aedissect.analysis.calibration import ABSTRACTION_MARGIN
from aedissect.analysis.findings import QUANTITY_LABELS, SWAP_THRESHOLD
from aedissect.analysis.stats import mean_ci

# what the verdict reads: R1's completion offset, RA's abstraction gain (data with known factors), R2's Shapley share
# and beside it the leave-one-out share (a study without the symmetric design has no Shapley share: its panel is
# left out); R2 is drawn whether or not it passed its phantoms
PANELS = [
    ("twonn_completion_offset", "R1: compression\ncompletes (TwoNN;\nlayers from the\nbottleneck)", 0.0),
    ("abstraction_gain", "RA: best decoder\nlayer's factor R²\nminus the code's\n(margin dotted)", ABSTRACTION_MARGIN),
    ("encoder_share_shapley", "R2: Shapley share\nof the encoder\n(symmetric design,\nconverged runs)", 0.5),
    ("encoder_share", "leave-one-out\nshare (output\nbias trained)", 0.5),
]
# R3 (swap), beside them: the family's encoders in front of other architectures' decoders, against its control
R3_PANEL = ("swap", "R3: swap penalty /\nuntrained encoder's\n(hollow: same arch,\nother seed)", SWAP_THRESHOLD)
# the panels' labels, four short lines each: five panels share the page's width
XLABEL_SIZE = 7
# the control's marker sits this far below its group's row
CONTROL_SHIFT = 0.28
SWAP_POINT_COLUMNS = ["dataset", "kind", "family", "pair", "mean", "ci95_low", "ci95_high", "n", "swap"]


def swap_points(verdicts: pd.DataFrame | None) -> pd.DataFrame:
    """R3's panel from the verdict table: per data set, kind and family, the cross-architecture penalty (``pair``
    arch: ``swap_mean``, ``swap_ci95_low``, ...) and its control (``pair`` seed: ``swap_control_*``), with R3's
    outcome; rows without a mean are left out, and a table without R3's columns gives none."""
    rows = []
    if verdicts is not None and "swap_mean" in verdicts.columns:
        for row in verdicts.to_dict("records"):
            for pair, prefix in (("arch", "swap"), ("seed", "swap_control")):
                values = {k: float(row.get(f"{prefix}_{k}", np.nan)) for k in ("mean", "ci95_low", "ci95_high", "n")}
                if np.isfinite(values["mean"]):
                    rows.append({c: row[c] for c in ("dataset", "kind", "family")} | {"pair": pair} | values
                                | {"swap": row.get("swap")})  # fmt: skip
    return pd.DataFrame(rows, columns=SWAP_POINT_COLUMNS)


def _swap_panel(ax, points: pd.DataFrame, ylabels: list[tuple[str, str]]) -> None:
    """R3 in one panel: per family x kind row the cross-architecture mean with its 95% CI (filled, the family's
    colour) and the control below it (hollow); R3's threshold dotted."""
    for y, (family, kind) in enumerate(ylabels):
        for pair, shift, face in (("arch", 0.0, None), ("seed", CONTROL_SHIFT, "white")):
            sel = points[(points["family"] == family) & (points["kind"] == kind) & (points["pair"] == pair)]
            if sel.empty:
                continue
            row, colour = sel.iloc[0], style.FAMILY_COLOURS[family]
            cross = face is None
            if np.isfinite(row["ci95_low"]):
                ax.plot([row["ci95_low"], row["ci95_high"]], [y + shift] * 2, color=colour, lw=1.4 if cross else 0.8)
            ax.scatter(
                [row["mean"]],
                [y + shift],
                s=22 if cross else 14,
                marker=style.KIND_MARKERS.get(kind, "o"),
                color=colour if cross else face,
                edgecolor="black" if cross else colour,
                linewidth=0.5 if cross else 0.9,
                zorder=4,
            )
    if points.empty:  # as the other panels say it
        ax.text(0.5, 0.5, "not measured\nfor this data set", transform=ax.transAxes, ha="center", va="center",
                fontsize=7, color="0.4")  # fmt: skip
    ax.axvline(SWAP_THRESHOLD, **style.REFERENCE_STYLE)
    ax.axvline(0.0, color="0.8", lw=0.6, zorder=0)


def verdict_summary(per_run: pd.DataFrame, verdicts: pd.DataFrame | None = None):
    """Per data set (rows) and quantity (columns): every model as a dot, the mean over seeds with its 95% CI.

    Rows of each panel are family x kind; the bottleneck (offset 0) and the even split (share 0.5) are marked.
    With the verdict table, a last panel shows rule R3 (``swap_points``): the family's normalised swap penalty
    across architectures with its 95% CI, its control (same architecture, other seed) and R3's threshold.
    """
    style.apply()
    panels = [p for p in PANELS if p[0] in set(per_run["quantity"])]
    if not panels:
        panels = [(q, QUANTITY_LABELS.get(q, q), None) for q in sorted(per_run["quantity"].unique())[:3]]
    points = swap_points(verdicts)
    if len(points):
        panels.append(R3_PANEL)
    datasets = sorted(per_run["dataset"].unique())
    families = [f for f in style.FAMILY_COLOURS if f in set(per_run["family"])]
    kinds = sorted(per_run["kind"].unique())
    ylabels = [(f, k) for f in families for k in kinds]
    fig, axes = plt.subplots(
        len(datasets),
        len(panels),
        figsize=(style.PAGE_WIDTH, style.grid_height(len(datasets), 0.22 * len(ylabels), 0.75)),
        squeeze=False,
        sharey=True,
        sharex="col",
    )
    rng = np.random.default_rng(0)
    for i, dataset in enumerate(datasets):
        for j, (quantity, label, reference) in enumerate(panels):
            ax = axes[i, j]
            if (quantity, label, reference) == R3_PANEL:
                _swap_panel(ax, points[points["dataset"] == dataset], ylabels)
                low, high = points[["mean", "ci95_low"]].min().min(), points[["mean", "ci95_high"]].max().max()
                ax.set_xlim(min(0.0, low) - 0.03, max(high, 1.5 * reference) + 0.03)
                ax.set_yticks(range(len(ylabels)), [f"{f}, {k.upper()}" for f, k in ylabels])
                ax.set_ylim(len(ylabels) - 0.5, -0.5)
                if i == len(datasets) - 1:
                    ax.set_xlabel(label, fontsize=XLABEL_SIZE)
                continue
            table = per_run[(per_run["dataset"] == dataset) & (per_run["quantity"] == quantity)]
            finite = table["value"].to_numpy(dtype=float)
            finite = finite[np.isfinite(finite)]
            if finite.size == 0:
                ax.text(
                    0.5,
                    0.5,
                    "not measured\nfor this data set",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="0.4",
                )
            for y, (family, kind) in enumerate(ylabels):
                sel = table[(table["family"] == family) & (table["kind"] == kind)]
                values = sel["value"].to_numpy(dtype=float)
                values = values[np.isfinite(values)]
                if values.size == 0:
                    continue
                colour = style.FAMILY_COLOURS[family]
                jitter = rng.uniform(-0.15, 0.15, values.size)
                ax.scatter(values, y + jitter, s=5, color=colour, alpha=0.45, lw=0, zorder=2)
                s = mean_ci(sel.groupby("seed")["value"].mean().to_numpy())
                if s["n"] > 1 and np.isfinite(s["ci95_low"]):
                    ax.plot([s["ci95_low"], s["ci95_high"]], [y, y], color=colour, lw=1.4, zorder=3)
                ax.scatter(
                    [s["mean"]],
                    [y],
                    s=22,
                    color=colour,
                    marker=style.KIND_MARKERS.get(kind, "o"),
                    edgecolor="black",
                    linewidth=0.5,
                    zorder=4,
                )
            if quantity.endswith("offset"):
                style.mark_bottleneck(ax, 0.0)
                ax.xaxis.get_major_locator().set_params(integer=True)
            elif reference is not None:
                ax.axvline(reference, color="0.6", lw=0.7, ls=":", zorder=0)
            if quantity.startswith("encoder_share"):
                ax.set_xlim(-0.05, 1.05)
            elif quantity == "abstraction_gain":  # R² points: the margin and the phantoms' range in view
                column = per_run.loc[per_run["quantity"] == quantity, "value"].to_numpy(dtype=float)
                column = column[np.isfinite(column)]
                low, high = min(column.min(initial=0.0), 0.0), max(column.max(initial=0.0), 2 * reference)
                ax.set_xlim(low - 0.1 * (high - low), high + 0.1 * (high - low))
            else:
                # the dots of every data set set the column's range (one scale per column); a wide CI (few
                # seeds) runs off the panel instead of squashing it
                column = per_run.loc[per_run["quantity"] == quantity, "value"].to_numpy(dtype=float)
                column = column[np.isfinite(column)]
                if column.size:
                    ax.set_xlim(min(column.min(), 0) - 1.0, max(column.max(), 0) + 1.0)
            ax.set_yticks(range(len(ylabels)), [f"{f}, {k.upper()}" for f, k in ylabels])
            ax.set_ylim(len(ylabels) - 0.5, -0.5)
            if i == len(datasets) - 1:
                ax.set_xlabel(label, fontsize=XLABEL_SIZE)
            ax.set_title(dataset if j == 0 else "", loc="left", fontweight="bold")
    from matplotlib.lines import Line2D

    handles = style.family_handles(families, kinds) + [style.bottleneck_handle()]
    if any(quantity.startswith("encoder_share") and reference is not None for quantity, _, reference in panels):
        handles.append(Line2D([], [], color="0.6", lw=0.7, ls=":", label="even split (0.5); RA's margin"))
    if len(points):
        handles.append(style.reference_handle(f"R3 threshold ({SWAP_THRESHOLD:g})"))
    style.legend(fig, handles)
    return fig
