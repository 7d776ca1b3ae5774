"""Robustness views over all checkpoints (every model x epoch), after "Toward a
Holistic Evaluation of Robustness in CLIP Models": calibration, OOD detection and
shape bias against ImageNet zero-shot accuracy.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .data import check_metrics, values
from .spec import VARIANT_NAMES, FigureSpec, Series, SpecLike, measure_info
from .style import MARKERS, REFERENCE_GREY, model_colours, new_figure, note, save, style


def _pairs(metrics: pd.DataFrame, model: str, x: Series, y: Series, factor: float) -> pd.DataFrame:
    """``epoch, x, y`` of one model over the checkpoints where both were measured, with the intervals
    ``x_low, x_high, y_low, y_high`` (NaN where there are none)."""
    xs = values(metrics, model, x, factor=factor).rename(columns={"value": "x", "ci_low": "x_low",
                                                                  "ci_high": "x_high"})
    ys = values(metrics, model, y, factor=factor).rename(columns={"value": "y", "ci_low": "y_low",
                                                                  "ci_high": "y_high"})
    return xs.merge(ys, on="epoch").sort_values("epoch")


def _error_bars(ax: Axes, pts: pd.DataFrame, colour: str) -> None:
    """Each point's 95% bootstrap intervals on both axes, as thin bars (none where there are none)."""
    for axis in ("x", "y"):
        lo, hi = pts[f"{axis}_low"].to_numpy(float), pts[f"{axis}_high"].to_numpy(float)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if not ok.any():
            continue
        centre = pts[axis].to_numpy(float)[ok]
        err = np.vstack([np.maximum(centre - lo[ok], 0), np.maximum(hi[ok] - centre, 0)])
        other = pts["y" if axis == "x" else "x"].to_numpy(float)[ok]
        xy = (centre, other) if axis == "x" else (other, centre)
        ax.errorbar(*xy, **{f"{axis}err": err}, fmt="none", ecolor=colour, elinewidth=0.6, alpha=0.5,
                    capsize=0, zorder=2.5)


def _scatter(ax: Axes, pts: pd.DataFrame, colour: str, marker: str, filled: bool = True) -> None:
    # A faint line in epoch order shows where training went; the points are the checkpoints.
    ax._clipdyn_points = getattr(ax, "_clipdyn_points", []) + list(zip(pts["x"], pts["y"]))
    ax.plot(pts["x"], pts["y"], color=colour, lw=0.6, alpha=0.35, zorder=2)
    if {"x_low", "y_low"} <= set(pts.columns):
        _error_bars(ax, pts, colour)
    ax.scatter(pts["x"], pts["y"], s=16, marker=marker, zorder=3, linewidths=0.9,
               facecolors=colour if filled else "white", edgecolors=colour)


def robustness_figures(metrics: pd.DataFrame, spec: SpecLike = None,
                       out_pdf: Optional[os.PathLike] = None, out_png: Optional[os.PathLike] = None) -> Figure:
    """One figure, three scatter panels over every checkpoint of ``scale_models``.

    x is always the checkpoint's zero-shot top-1 on the accuracy panel's ImageNet set.
    (a) ECE, raw (hollow markers) and after temperature scaling (filled), on each of
    ``ece_datasets`` (one marker shape per set); (b) OOD detection AUROC (variant
    ``mcm``) on each of ``ood_datasets`` (one marker shape per set), with chance at
    0.5; (c) shape bias on the cue-conflict stimuli, with the human value. Colour is
    the model; a faint line joins a model's checkpoints in epoch order. A zoo of final
    models (one checkpoint each) is one point per model; ``robust_fit: theil_sen`` adds a
    robust linear fit through each panel's points, as the robustness study relates each
    metric to ImageNet accuracy across models.
    """
    spec = FigureSpec.from_config(spec)
    metrics = check_metrics(metrics)
    models = spec.resolve_scale_models(metrics)
    colours = model_colours(models)
    factor = spec.accuracy_factor(metrics)
    acc = spec.series(metrics, "zeroshot_top1")
    x_label = f"zero-shot top-1 accuracy (%){' on ' + acc.dataset if acc else ''}  ↑ better"

    with style():
        fig = new_figure(7.2, 3.2)
        ax_ece, ax_ood, ax_shape = fig.subplots(1, 3, sharex=True)
        model_key = [Line2D([], [], ls="", marker="o", color=colours[m], label=spec.label(m)) for m in models]
        key = []

        # (a) calibration
        ece_sets = _ece_sets(metrics, spec, acc)
        missing = set()
        variants = [v for v in ("raw", "temperature_scaled")
                    if ((metrics["measure"] == "ece") & (metrics["variant"] == v)).any()]
        for model in models:
            drawn = False
            for i, dataset in enumerate(ece_sets):
                for variant in variants:
                    pts = _pairs(metrics, model, acc, Series("ece", dataset, variant), factor) if acc else []
                    if len(pts):
                        _scatter(ax_ece, pts, colours[model], MARKERS[i % len(MARKERS)], variant != "raw")
                        drawn = True
            if not drawn:
                missing.add(model)
        for variant, words in (("raw", "ECE raw"), ("temperature_scaled", "ECE temperature-scaled")):
            if variant in variants:
                key.append(Line2D([], [], ls="", marker="o", mec="#555555", label=words,
                                  mfc="white" if variant == "raw" else "#555555"))
        key += _set_key(ece_sets, "ECE on")
        _panel(ax_ece, "Calibration", ", ".join(ece_sets), measure_info("ece").axis_label(),
               [m for m in models if m in missing], spec,
               len(models))

        # (b) OOD detection
        ood = spec.series(metrics, "ood_auroc")
        ood_sets = _ood_sets(metrics, spec, ood)
        missing = set()
        for model in models:
            drawn = False
            for i, dataset in enumerate(ood_sets):
                pts = _pairs(metrics, model, acc, Series("ood_auroc", dataset, ood.variant), factor) if acc else []
                if len(pts):
                    _scatter(ax_ood, pts, colours[model], MARKERS[i % len(MARKERS)])
                    drawn = True
            if not drawn:
                missing.add(model)
        if ood_sets:
            ax_ood.axhline(0.5, color=REFERENCE_GREY, lw=0.8, ls=":", zorder=1)
            ax_ood.annotate("chance", xy=(0.99, 0.5), xycoords=("axes fraction", "data"), xytext=(0, 2),
                            textcoords="offset points", ha="right", va="bottom", fontsize=6.5,
                            color=REFERENCE_GREY)
            lo, hi = ax_ood.get_ylim()
            ax_ood.set_ylim(min(lo, 0.45), max(hi, 0.55))
        key += _set_key(ood_sets, "OOD:")
        _panel(ax_ood, "OOD detection",
               f"{VARIANT_NAMES.get(ood.variant, ood.variant)} score; " + ", ".join(ood_sets) if ood else "",
               measure_info("ood_auroc").axis_label(), [m for m in models if m in missing], spec,
               len(models))

        # (c) shape bias
        shape = spec.series(metrics, "shape_bias")
        missing = []
        for model in models:
            pts = _pairs(metrics, model, acc, shape, factor) if acc and shape else []
            if len(pts):
                _scatter(ax_shape, pts, colours[model], "o")
            else:
                missing.append(model)
        if spec.human_texture_bias is not None:
            h = 1.0 - float(spec.human_texture_bias["value"])
            ax_shape.axhline(h, color=REFERENCE_GREY, ls="--", lw=1.0, zorder=1)
            ax_shape.annotate(f"humans: {h:.2f}", xy=(0.99, h), xycoords=("axes fraction", "data"),
                              xytext=(0, -3), textcoords="offset points", ha="right", va="top", fontsize=6.5,
                              color=REFERENCE_GREY)
        ax_shape.set_ylim(-0.02, 1.02)
        _panel(ax_shape, "Shape bias",
               ", ".join(p for p in (shape.dataset, VARIANT_NAMES.get(shape.variant, shape.variant)) if p)
               if shape else "", measure_info("shape_bias").axis_label(), missing, spec, len(models))

        if spec.robust_fit:
            for ax in (ax_ece, ax_ood, ax_shape):
                robust_line(ax, getattr(ax, "_clipdyn_points", []))
        fig.supxlabel(x_label, fontsize=8)
        handles, ncols = _two_row_legend(model_key, key)
        fig.legend(handles=handles, loc="outside upper center", ncols=ncols)
    if out_pdf is not None or out_png is not None:
        save(fig, out_pdf, out_png, dpi=spec.dpi)
    return fig


def theil_sen(x, y) -> Optional[tuple]:
    """(slope, intercept) of the Theil-Sen fit (median of pairwise slopes; scipy.stats.theilslopes),
    or None with fewer than three points or no spread in x."""
    import numpy as np
    from scipy.stats import theilslopes

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    slope, intercept, _, _ = theilslopes(y, x, method="joint")  # intercept: median of y - slope x
    return float(slope), float(intercept)


def robust_line(ax: Axes, points: list) -> None:
    """Draw the Theil-Sen line through ``points`` across the panel, with its slope."""
    import numpy as np

    fit = theil_sen([p[0] for p in points], [p[1] for p in points]) if points else None
    if fit is None:
        return
    lo, hi = ax.get_xlim()
    xs = np.array([lo, hi])
    ax.plot(xs, fit[0] * xs + fit[1], color=REFERENCE_GREY, lw=0.9, ls="-.", zorder=1)
    ax.set_xlim(lo, hi)
    ax.annotate(f"Theil-Sen slope {fit[0]:.3g} (n={len(points)})", xy=(0.01, 0.01), xycoords="axes fraction",
                ha="left", va="bottom", fontsize=6, color=REFERENCE_GREY)


def _ece_sets(metrics: pd.DataFrame, spec: FigureSpec, acc: Optional[Series]) -> list:
    available = sorted(metrics.loc[metrics["measure"] == "ece", "dataset"].unique())
    if spec.ece_datasets is not None:
        return [d for d in spec.ece_datasets if d in available]
    if acc is not None and acc.dataset in available:
        return [acc.dataset]
    return available


def _ood_sets(metrics: pd.DataFrame, spec: FigureSpec, ood: Optional[Series]) -> list:
    if ood is None:
        return []
    rows = metrics[(metrics["measure"] == "ood_auroc") & (metrics["variant"] == ood.variant)]
    available = sorted(rows["dataset"].unique())
    if spec.ood_datasets is not None:
        return [d for d in spec.ood_datasets if d in available]
    return available


def _two_row_legend(first: list, second: list, max_cols: int = 5) -> tuple[list, int]:
    """Handles for a legend with models on the first row and marker meanings on the second.

    Matplotlib fills legend columns top to bottom, so the two rows are interleaved,
    padded with invisible entries; with more entries than ``max_cols`` they just flow.
    """
    n = max(len(first), len(second))
    if n > max_cols or not second:
        both = first + second
        return both, min(len(both), max_cols)
    blank = lambda: Line2D([], [], ls="", label=" ")  # noqa: E731
    first = first + [blank() for _ in range(n - len(first))]
    second = second + [blank() for _ in range(n - len(second))]
    return [h for pair in zip(first, second) for h in pair], n


def _set_key(datasets: list, prefix: str) -> list:
    """Legend entries for the marker shape of each set (none needed for a single set)."""
    if len(datasets) < 2:
        return []
    return [Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], mfc="#555555", mec="#555555",
                   label=f"{prefix} {d}") for i, d in enumerate(datasets)]


def _panel(ax: Axes, title: str, subtitle: str, y_label: str, missing: list, spec: FigureSpec,
           n_models: int) -> None:
    ax.set_title(title, loc="left", pad=12)
    if subtitle:
        ax.text(0.0, 1.01, subtitle, transform=ax.transAxes, ha="left", va="bottom", fontsize=6.5,
                color=REFERENCE_GREY)
    ax.set_ylabel(y_label)
    note(ax, [f"no data for {spec.label(m)}" for m in missing], empty=len(missing) == n_models)
