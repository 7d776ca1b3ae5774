"""Figures 1-3: metrics over training, epoch by epoch.

- Figure 1: the base model's ImageNet zero-shot top-1 (with the published curve)
  and its texture bias on cue-conflict stimuli (with the human value).
- Figure 2: the base model's noise sensitivity, low-level, mid-level and saliency
  alignment.
- Figure 3: the same for the scale models together, with accuracy and texture bias.
"""

from __future__ import annotations

import os
import textwrap
from typing import Mapping, Optional

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .data import check_metrics, has_interval, values, x_of
from .spec import VARIANT_NAMES, FigureSpec, Series, SpecLike, measure_info, reference_curve
from .style import OKABE_ITO, REFERENCE_GREY, integer_epochs, model_colours, new_figure, note, save, style

#: Draw point markers when a line has at most this many epochs.
MARKER_MAX_POINTS = 60

#: Longest line (characters) of the human reference's source written beside its line or in a legend.
HUMAN_SOURCE_WIDTH = 45

#: Panels of Figure 2 (and the lower row of Figure 3), in reading order.
ALIGNMENT_MEASURES = ["noise_sensitivity", "low_level_alignment", "mid_level_alignment", "saliency_alignment"]


#: Longest line (in characters) of a panel's y label: a longer axis text is wrapped, so that the
#: label stays within the height of a panel of Figures 2 and 3 (the caption carries the detail).
Y_LABEL_WIDTH = 24


def _y_label(measure: str, variant: str = "") -> str:
    """The measure's axis text, wrapped to :data:`Y_LABEL_WIDTH`, with its better direction below."""
    info = measure_info(measure)
    text = info.axis.format(variant=VARIANT_NAMES.get(variant, variant))
    lines = textwrap.wrap(text, Y_LABEL_WIDTH, break_on_hyphens=False) or [text]
    return "\n".join(lines + ([info.arrow] if info.arrow else []))


def _x_label(x_axis: str) -> str:
    return "epoch" if x_axis == "epoch" else "fraction of training (epoch / total epochs)"


def _style_x(ax: Axes, x_axis: str, label: bool = True) -> None:
    if label:
        ax.set_xlabel(_x_label(x_axis))
    if x_axis == "epoch":
        integer_epochs(ax)
    else:
        ax.set_xlim(-0.02, 1.02)


def _title(ax: Axes, series: Optional[Series], measure: str) -> None:
    """Metric name as the panel title, the dataset/variant it uses in small grey type below it."""
    info = measure_info(measure)
    ax.set_title(info.title, loc="left", pad=12)
    if series is not None and series.describe():
        parts = [series.dataset, VARIANT_NAMES.get(series.variant, series.variant)]
        ax.text(0.0, 1.01, ", ".join(p for p in parts if p), transform=ax.transAxes, ha="left", va="bottom",
                fontsize=6.5, color=REFERENCE_GREY)


def _human_line(ax: Axes, spec: FigureSpec, measure: str, with_source: bool) -> Optional[Line2D]:
    """The human value as a dashed line, labelled on the line itself (with its source when asked)."""
    h = spec.human_texture_bias
    if h is None or measure not in ("texture_bias", "shape_bias"):
        return None
    value = float(h["value"]) if measure == "texture_bias" else 1.0 - float(h["value"])
    source = h.get("source") or "human observers"
    line = ax.axhline(value, color=REFERENCE_GREY, ls="--", lw=1.0, zorder=1, label=f"humans: {value:.2f}")
    wrapped = textwrap.fill(f"({textwrap.shorten(source, 90)})", HUMAN_SOURCE_WIDTH)
    text = f"humans: {value:.2f}" + (f"\n{wrapped}" if with_source else "")
    # above the line for the low human texture bias, below it for the high human shape bias
    below = value > 0.5
    ax.annotate(text, xy=(0.99, value), xycoords=("axes fraction", "data"), xytext=(0, -3 if below else 3),
                textcoords="offset points", ha="right", va="top" if below else "bottom", fontsize=6.5,
                color=REFERENCE_GREY, zorder=4)
    return line


def _bias_limits(ax: Axes, measure: str) -> None:
    # Biases are fractions of decisions: show their whole range so that the
    # distance to the human value is not exaggerated by zooming.
    if measure in ("texture_bias", "shape_bias"):
        ax.set_ylim(-0.02, 1.02)


def _reference(ax: Axes, spec: FigureSpec, metrics: pd.DataFrame, model: str, x_axis: str,
               measured: pd.DataFrame, colour: str, label: str) -> Optional[Line2D]:
    ref = spec.reference_curves.get(model)
    if not ref:
        return None
    curve = reference_curve(ref)
    total = spec.total_epochs_of(model, metrics)
    if ref.get("clip", True) and len(measured):
        lo, hi = measured["epoch"].min(), measured["epoch"].max()
        curve = curve[(curve["epoch"] >= lo) & (curve["epoch"] <= hi)]
    if curve.empty:
        return None
    x = x_of(curve["epoch"], model, spec, metrics, x_axis, total=total)
    (line,) = ax.plot(x, curve["value"], color=colour, lw=0.8, ls=(0, (4, 2)), alpha=0.9, zorder=2,
                      label=label)
    return line


def interval_band(ax: Axes, x, v: pd.DataFrame, colour: str, alpha: float = 0.18) -> None:
    """The points' 95% bootstrap intervals as a band behind their line (nothing where there are none)."""
    if not has_interval(v):
        return
    lo, hi = v["ci_low"].to_numpy(float), v["ci_high"].to_numpy(float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.fill_between(np.asarray(x, dtype=float), lo, hi, where=ok, color=colour, alpha=alpha, lw=0, zorder=2.5,
                    interpolate=False)


def _line_panel(ax: Axes, metrics: pd.DataFrame, spec: FigureSpec, measure: str, models: list,
                colours: Mapping[str, str], x_axis: str, factor: float, *, published: bool = False,
                human: bool = True, series: Optional[Series] = None, x_label: bool = True) -> list:
    """One measure over training for several models; returns the models without data.

    Models without data are named in a note inside the panel, never drawn as zero.
    """
    series = series or spec.series(metrics, measure)
    missing = []
    for model in models:
        v = values(metrics, model, series, spec, factor) if series is not None else pd.DataFrame()
        colour = colours[model]
        if len(v):
            x = x_of(v["epoch"], model, spec, metrics, x_axis)
            interval_band(ax, x, v, colour)
            ax.plot(x, v["value"], color=colour, zorder=3,
                    marker="o" if len(v) <= MARKER_MAX_POINTS else None, label=spec.label(model))
        else:
            missing.append(model)
        if published:
            ref_colour = REFERENCE_GREY if len(models) == 1 else colour
            _reference(ax, spec, metrics, model, x_axis, v if len(v) else pd.DataFrame(), ref_colour,
                       "published" if len(models) == 1 else f"{spec.label(model)}, published")
    if human:
        _human_line(ax, spec, measure, with_source=len(models) == 1)
    _bias_limits(ax, measure)
    _title(ax, series, measure)
    ax.set_ylabel(_y_label(measure, series.variant if series else ""))
    _style_x(ax, x_axis, x_label)
    note(ax, [f"no data for {spec.label(m)}" for m in missing], empty=len(missing) == len(models))
    return missing


def _finish(fig: Figure, spec: FigureSpec, out_pdf, out_png) -> Figure:
    if out_pdf is not None or out_png is not None:
        save(fig, out_pdf, out_png, dpi=spec.dpi)
    return fig


def figure1(metrics: pd.DataFrame, spec: SpecLike = None, out_pdf: Optional[os.PathLike] = None,
            out_png: Optional[os.PathLike] = None, x_axis: Optional[str] = None) -> Figure:
    """Figure 1: the base model's zero-shot ImageNet top-1 and its texture bias over training.

    Left: zero-shot top-1 (%) per epoch, with the published curve of the same run
    as a thin dashed grey line labelled "published" when ``reference_curves`` names
    one. Right: texture bias on the cue-conflict stimuli per epoch, with the human
    value as a dashed horizontal line labelled with its source.
    Writes ``out_pdf``/``out_png`` when given; returns the figure.
    """
    spec = FigureSpec.from_config(spec)
    metrics = check_metrics(metrics)
    x_axis = x_axis or spec.x_axis
    model = spec.resolve_base_model(metrics)
    colours = {model: OKABE_ITO[0]}
    factor = spec.accuracy_factor(metrics)
    with style():
        fig = new_figure(7.0, 2.7)
        ax_acc, ax_tex = fig.subplots(1, 2, sharex=True)
        _line_panel(ax_acc, metrics, spec, "zeroshot_top1", [model], colours, x_axis, factor, published=True)
        _line_panel(ax_tex, metrics, spec, "texture_bias", [model], colours, x_axis, factor)
        # the human line is labelled where it is drawn; a legend is needed only beside a published curve
        if len(ax_acc.get_lines()) > 1:
            ax_acc.legend(loc="best")
        fig.suptitle(f"{spec.label(model)} over training", fontsize=9)
    return _finish(fig, spec, out_pdf, out_png)


def _low_level_panel(ax: Axes, metrics: pd.DataFrame, spec: FigureSpec, model: str, colour: str,
                     x_axis: str, x_label: bool = True) -> list:
    """Low-level alignment: the chosen dataset (``mean`` by default) bold, every other dataset thin."""
    measure = "low_level_alignment"
    main = spec.series(metrics, measure)
    if main is None:
        _title(ax, None, measure)
        ax.set_ylabel(_y_label(measure))
        _style_x(ax, x_axis, x_label)
        note(ax, [f"no data for {spec.label(model)}"], empty=True)
        return [model]
    rows = metrics[(metrics["measure"] == measure) & (metrics["variant"] == main.variant)]
    others = [d for d in sorted(rows["dataset"].unique()) if d != main.dataset]
    thin_colours = [c for c in OKABE_ITO[:-1] if c != colour]
    drawn = 0
    for i, dataset in enumerate(others):
        v = values(metrics, model, Series(measure, dataset, main.variant, main.metric))
        if len(v):
            ax.plot(x_of(v["epoch"], model, spec, metrics, x_axis), v["value"], lw=0.9,
                    color=thin_colours[i % len(thin_colours)], alpha=0.9, zorder=2,
                    marker="." if len(v) <= MARKER_MAX_POINTS else None, label=dataset)
            drawn += 1
    v = values(metrics, model, main)
    if len(v):
        label = "mean of datasets" if main.dataset == "mean" else main.dataset
        interval_band(ax, x_of(v["epoch"], model, spec, metrics, x_axis), v, colour)
        ax.plot(x_of(v["epoch"], model, spec, metrics, x_axis), v["value"], lw=2.4, color=colour, zorder=3,
                marker="o" if len(v) <= MARKER_MAX_POINTS else None, label=label)
        drawn += 1
    _title(ax, Series(measure, "", main.variant), measure)
    ax.set_ylabel(_y_label(measure, main.variant))
    _style_x(ax, x_axis, x_label)
    if drawn:
        handles, labels = ax.get_legend_handles_labels()
        # the bold line was drawn last (on top) but belongs first in the legend
        ax.legend(handles[::-1], labels[::-1], loc="best")
        return []
    note(ax, [f"no data for {spec.label(model)}"], empty=True)
    return [model]


def figure2(metrics: pd.DataFrame, spec: SpecLike = None, out_pdf: Optional[os.PathLike] = None,
            out_png: Optional[os.PathLike] = None, x_axis: Optional[str] = None) -> Figure:
    """Figure 2: the base model's robustness and human alignment over training, 2 x 2 panels.

    Noise sensitivity (variant ``mean``: normalised accuracy drop averaged over
    severities), low-level alignment (dataset ``mean`` bold, each IQA dataset thin),
    mid-level alignment (2AFC) and saliency alignment (CC).
    """
    spec = FigureSpec.from_config(spec)
    metrics = check_metrics(metrics)
    x_axis = x_axis or spec.x_axis
    model = spec.resolve_base_model(metrics)
    colour = OKABE_ITO[0]
    factor = spec.accuracy_factor(metrics)
    with style():
        fig = new_figure(7.0, 5.0)
        axes = fig.subplots(2, 2, sharex=True).ravel()
        for ax, measure in zip(axes, ALIGNMENT_MEASURES):
            if measure == "low_level_alignment":
                _low_level_panel(ax, metrics, spec, model, colour, x_axis, x_label=False)
            else:
                _line_panel(ax, metrics, spec, measure, [model], {model: colour}, x_axis, factor, x_label=False)
        fig.supxlabel(_x_label(x_axis), fontsize=8)
        fig.suptitle(f"{spec.label(model)} over training: robustness and alignment with humans", fontsize=9)
    return _finish(fig, spec, out_pdf, out_png)


#: Panels of Figure 3, in reading order (2 x 3).
FIGURE3_MEASURES = ["zeroshot_top1", "texture_bias"] + ALIGNMENT_MEASURES


def figure3(metrics: pd.DataFrame, spec: SpecLike = None, out_pdf: Optional[os.PathLike] = None,
            out_png: Optional[os.PathLike] = None, x_axis: Optional[str] = None) -> Figure:
    """Figure 3: the scale models together over training, 2 x 3 panels.

    Zero-shot top-1 (with published curves where configured), texture bias (with
    the human value), noise sensitivity, low-level (dataset ``mean``), mid-level
    (2AFC) and saliency (CC) alignment; one colour per model, one legend above the
    panels. ``x_axis="fraction"`` puts runs of different lengths on one axis.
    """
    spec = FigureSpec.from_config(spec)
    metrics = check_metrics(metrics)
    x_axis = x_axis or spec.x_axis
    models = spec.resolve_scale_models(metrics)
    colours = model_colours(models)
    factor = spec.accuracy_factor(metrics)
    with style():
        fig = new_figure(7.2, 5.0)
        axes = fig.subplots(2, 3, sharex=True).ravel()
        for ax, measure in zip(axes, FIGURE3_MEASURES):
            _line_panel(ax, metrics, spec, measure, models, colours, x_axis, factor,
                        published=measure == "zeroshot_top1", x_label=False)
        fig.supxlabel(_x_label(x_axis), fontsize=8)
        handles = [Line2D([], [], color=colours[m], marker="o", label=spec.label(m)) for m in models]
        if any(m in spec.reference_curves for m in models):
            handles.append(Line2D([], [], color=REFERENCE_GREY, lw=0.8, ls=(0, (4, 2)), label="published"))
        if spec.human_texture_bias is not None:
            source = textwrap.shorten(spec.human_texture_bias.get("source") or "human observers", 90)
            handles.append(Line2D([], [], color=REFERENCE_GREY, lw=1.0, ls="--",
                                  label=textwrap.fill(f"humans ({source})", HUMAN_SOURCE_WIDTH)))
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 5))
    return _finish(fig, spec, out_pdf, out_png)
