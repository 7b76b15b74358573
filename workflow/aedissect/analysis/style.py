"""The one figure style: two-column paper sizes, a colourblind-safe palette, one colour per family."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from aedissect.io import atomic_path  # noqa: E402

# Okabe & Ito (2008), safe for the common colour-vision deficiencies; a conv family in the lighter hue of its
# dense counterpart's (Tol's wine for the conv decoder: Okabe & Ito's yellow is unreadable on white)
FAMILY_COLOURS = {
    "symmetric": "#0072B2",
    "encoder-heavy": "#D55E00",
    "decoder-heavy": "#009E73",
    "linear": "#CC79A7",
    "conv-symmetric": "#56B4E9",
    "conv-encoder": "#E69F00",
    "conv-decoder": "#882255",
}
KIND_MARKERS = {"ae": "o", "vae": "s"}
COLUMN_WIDTH = 3.35  # inches, one column of a two-column paper
PAGE_WIDTH = 7.0
# Snakemake's report scales a figure to the width of its pane and centres it vertically, so a figure taller than
# the pane loses its top rows (out of reach of the scroll bar). In a 1400 x 900 window the pane is about 1100 x 880
# pixels: a figure no taller than 0.7 of its width fits with a margin.
MAX_HEIGHT = 0.7 * PAGE_WIDTH
BOTTLENECK_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 0.9, "zorder": 0}
# a closed-form reference drawn beside trained models (PCA-z's test MSE): black, dotted, above the bars
REFERENCE_STYLE = {"color": "0.0", "linestyle": ":", "linewidth": 1.0, "zorder": 4}

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # embed TrueType so that the PDF text stays editable
    "svg.hashsalt": "aedissect",
    "figure.constrained_layout.use": True,
}


def apply() -> None:
    plt.rcParams.update(RC)


def arch_colours(archs_by_family: dict[str, list[str]]) -> dict[str, str]:
    """A colour per architecture: the family colour, lightened for the second and later member."""
    from matplotlib.colors import to_rgb

    colours = {}
    for family, archs in archs_by_family.items():
        base = to_rgb(FAMILY_COLOURS[family])
        for i, arch in enumerate(sorted(archs)):
            mix = min(0.55, 0.4 * i)
            colours[arch] = tuple(c + (1 - c) * mix for c in base)
    return colours


def table_arch_colours(table) -> dict[str, tuple]:
    """The colour of every architecture in a table with ``family`` and ``arch`` columns."""
    families = table.groupby("family")["arch"].unique()
    return arch_colours({family: list(archs) for family, archs in families.items()})


def grid_height(n_rows: int, row_height: float, extra: float) -> float:
    """The height of a figure of ``n_rows`` panel rows plus ``extra`` inches of titles and legends: rows are
    ``row_height`` tall unless that would pass MAX_HEIGHT, then they share what is left of it."""
    return min(n_rows * row_height + extra, MAX_HEIGHT)


def mark_bottleneck(ax, x: float, horizontal: bool = False) -> None:
    """The bottleneck, drawn the same way in every depth plot (a grey dashed line at depth ``x``).

    ``horizontal=True`` draws it across a plot whose y axis is depth (e.g. a cut x cut heatmap row).
    """
    (ax.axhline if horizontal else ax.axvline)(x, **BOTTLENECK_STYLE)


def bottleneck_handle(label: str = "bottleneck"):
    """A legend entry for the bottleneck line."""
    from matplotlib.lines import Line2D

    return Line2D([], [], label=label, **{k: v for k, v in BOTTLENECK_STYLE.items() if k != "zorder"})


def reference_handle(label: str):
    """A legend entry for a closed-form reference line (``REFERENCE_STYLE``)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], label=label, **{k: v for k, v in REFERENCE_STYLE.items() if k != "zorder"})


def legend_columns(labels: list[str], width: float = PAGE_WIDTH) -> int:
    """The most legend columns whose entries fit across ``width`` inches (a legend wider than the figure is cut off
    at both sides). Matplotlib fills the columns top to bottom, the first ``len % ncol`` of them one entry longer;
    a column is as wide as its longest label (about 0.6 em per character at the legend's font size) plus its
    handle and the spacing (about 5 em)."""
    em = RC["legend.fontsize"] / 72
    for ncol in range(len(labels), 1, -1):
        rows, longer = divmod(len(labels), ncol)
        sizes = [rows + 1] * longer + [rows] * (ncol - longer)
        starts = [sum(sizes[:k]) for k in range(ncol)]
        columns = [labels[start : start + size] for start, size in zip(starts, sizes, strict=True)]
        if sum(max(map(len, column)) * 0.6 * em + 5 * em for column in columns if column) <= width:
            return ncol
    return 1


def legend(fig, handles: list, labels: list[str] | None = None, loc: str = "outside lower center") -> None:
    """The figure's legend, in as many columns as fit across the page (``legend_columns``)."""
    labels = [h.get_label() for h in handles] if labels is None else list(labels)
    fig.legend(handles, labels, loc=loc, ncol=legend_columns(labels), frameon=False)


def family_handles(families=None, kinds=None):
    """Legend entries: one per architecture family (its fixed colour) and one per model kind (its marker)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=FAMILY_COLOURS[f], lw=2, label=f) for f in (families or FAMILY_COLOURS)]
    for kind in kinds or []:
        handles.append(
            Line2D([], [], color="0.3", marker=KIND_MARKERS[kind], ls="none", markersize=4, label=kind.upper())
        )
    return handles


def save(fig, pdf_path, png_path, dpi: int) -> None:
    """Write a figure as vector PDF and PNG, each through a temporary file; metadata fixed for byte-stable PDFs."""
    for path, fmt in ((pdf_path, "pdf"), (png_path, "png")):
        if path is None:
            continue
        with atomic_path(Path(path)) as tmp:
            metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
    plt.close(fig)
