"""One look for every figure: Okabe-Ito colours, small sans-serif type, vector PDF + PNG.

Figures are built as :class:`matplotlib.figure.Figure` objects, never through
``pyplot``, so rendering needs no display, leaves no global figure state behind
and does not change the backend of a notebook that imports this module.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..atomic import atomic_path

#: Okabe & Ito (2008) colour-blind-safe palette, black last (it is kept for "mean" lines).
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: Colour of reference lines (published curves, human values).
REFERENCE_GREY = "#6E6E6E"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

RC = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib and has the ↑/↓ arrows
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.5,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "lines.linewidth": 1.5,
    "lines.markersize": 3.5,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType so text stays editable in vector editors
    "svg.fonttype": "none",
    "figure.dpi": 100,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The clipdyn rcParams, for building and saving one figure."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches with constrained layout (no overlaps)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.04, wspace=0.06, hspace=0.08)
    return fig


def model_colours(models: list) -> dict:
    """A stable colour per model, in the given order (black is kept for means)."""
    palette = OKABE_ITO[:-1]
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


def integer_epochs(ax: Axes) -> None:
    """Epoch axes get whole-number ticks only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))


def _data_points(ax: Axes) -> np.ndarray:
    """Everything drawn in ``ax`` as points in axes coordinates (lines densely sampled)."""
    ax.get_xlim(), ax.get_ylim()  # settle autoscaling before transforming
    to_axes = ax.transData + ax.transAxes.inverted()
    pts = []
    for line in ax.get_lines():
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        if len(xy) > 1:
            t = np.linspace(0, len(xy) - 1, 10 * len(xy))
            xy = np.column_stack([np.interp(t, np.arange(len(xy)), xy[:, 0]),
                                  np.interp(t, np.arange(len(xy)), xy[:, 1])])
        pts.append(xy)
    for coll in ax.collections:
        pts.append(np.asarray(coll.get_offsets(), float))
    pts = [p for p in pts if p.size]
    if not pts:
        return np.empty((0, 2))
    xy = np.vstack(pts)
    xy = xy[np.isfinite(xy).all(axis=1)]
    return to_axes.transform(xy) if len(xy) else xy


def emptiest_corner(ax: Axes, width: float = 0.45, height: float = 0.16) -> str:
    """The corner of ``ax`` (``"lower left"`` ...) whose ``width`` x ``height`` box covers the least data."""
    pts = _data_points(ax)
    best, fewest = "lower left", None
    for corner in ("lower left", "upper left", "lower right", "upper right"):
        x0 = 0.0 if "left" in corner else 1.0 - width
        y0 = 0.0 if "lower" in corner else 1.0 - height
        inside = int(((pts[:, 0] >= x0) & (pts[:, 0] <= x0 + width)
                      & (pts[:, 1] >= y0) & (pts[:, 1] <= y0 + height)).sum()) if len(pts) else 0
        if fewest is None or inside < fewest:
            best, fewest = corner, inside
    return best


def note(ax: Axes, lines: list, empty: bool = False) -> None:
    """Write a visible note (e.g. "no data for ViT-L/14") inside a panel, in its emptiest corner.

    A measure without data is said so in the panel, never drawn as zero. ``empty``
    says nothing at all was drawn: the note goes in the middle and the value ticks,
    which would suggest a scale for data that does not exist, are removed (unless
    a reference line is there to read).
    """
    if not lines:
        return
    box = dict(boxstyle="round,pad=0.3", fc="white", ec="#E5B8A0", lw=0.5, alpha=0.9)
    if empty:
        ax.text(0.5, 0.5, "\n".join(lines), transform=ax.transAxes, ha="center", va="center",
                fontsize=7.5, color="#9A3412", style="italic", zorder=5, bbox=box)
        if not ax.get_lines():
            ax.set_yticks([])
        return
    corner = emptiest_corner(ax, height=0.06 + 0.07 * len(lines))
    x, ha = (0.02, "left") if "left" in corner else (0.98, "right")
    y, va = (0.03, "bottom") if "lower" in corner else (0.97, "top")
    ax.text(x, y, "\n".join(lines), transform=ax.transAxes, ha=ha, va=va,
            fontsize=6.5, color="#9A3412", style="italic", zorder=5, bbox=box)


def save(fig: Figure, out_pdf: Optional[os.PathLike], out_png: Optional[os.PathLike], dpi: int = 200) -> list:
    """Write the figure as vector PDF and ``dpi`` PNG, atomically; returns the paths written.

    Creation dates are left out of the files so the same metrics give byte-identical
    figures and Snakemake sees no spurious change.
    """
    written = []
    with style():
        for path, fmt, meta in ((out_pdf, "pdf", {"CreationDate": None}), (out_png, "png", {"Software": None})):
            if path is None:
                continue
            with atomic_path(path, suffix=f".{fmt}") as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)
            written.append(Path(path))
    return written
