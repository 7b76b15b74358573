"""The paper's summary figure, drawn from results/paper/findings_runs.csv only."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aedissect.analysis import style
from aedissect.analysis.findings import QUANTITY_LABELS
from aedissect.analysis.stats import mean_ci

# what the verdict reads: R1's completion offset, R2's Shapley share, and beside them the leave-one-out share and
# its control (a study without the symmetric design has no Shapley share: its panel is left out)
PANELS = [
    ("twonn_completion_offset", "R1: compression\ncompletes (TwoNN; layers\nfrom the bottleneck)", 0.0),
    ("encoder_share_shapley", "R2: encoder share\n(Shapley; symmetric\ndesign, converged runs)", 0.5),
    ("encoder_share", "leave-one-out share\n(output bias trained)", 0.5),
    ("encoder_share_frozen_output_bias", "control: leave-one-out,\noutput bias frozen too", 0.5),
]


def verdict_summary(per_run: pd.DataFrame):
    """Per data set (rows) and quantity (columns): every model as a dot, the mean over seeds with its 95% CI.

    Rows of each panel are family x kind; the bottleneck (offset 0) and the even split (share 0.5) are marked.
    """
    style.apply()
    panels = [p for p in PANELS if p[0] in set(per_run["quantity"])]
    if not panels:
        panels = [(q, QUANTITY_LABELS.get(q, q), None) for q in sorted(per_run["quantity"].unique())[:3]]
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
                ax.set_xlabel(label)
            ax.set_title(dataset if j == 0 else "", loc="left", fontweight="bold")
    handles = style.family_handles(families, kinds) + [style.bottleneck_handle()]
    if any(reference is not None and not quantity.endswith("offset") for quantity, _, reference in panels):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.6", lw=0.7, ls=":", label="even split (0.5)"))
    style.legend(fig, handles)
    return fig
