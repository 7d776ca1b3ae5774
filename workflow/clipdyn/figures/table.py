"""Table 1: how texture bias moves with every other measure over training.

Per model and measure: the Spearman rank correlation across epochs between
texture bias and the measure, the epoch where the measure is best, and its first
and last values.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy import stats

from ..atomic import atomic_path
from ..config.specs import IntervalSettings
from .data import check_metrics, values
from .spec import ACCURACY_MEASURES, VARIANT_NAMES, FigureSpec, SpecLike, measure_info

#: Columns of :func:`table1`, in order.
TABLE1_COLUMNS = ["model", "label", "measure", "metric", "dataset", "variant", "better", "n_epochs",
                  "spearman_rho", "rho_ci_low", "rho_ci_high", "p_value", "peak_rule", "peak_epoch",
                  "peak_epoch_low", "peak_epoch_high", "peak_value", "first_epoch", "first_value",
                  "last_epoch", "last_value", "ci_level", "note"]

#: Coverage of Table 1's intervals (rho and the peak epoch) unless one is given: the ``intervals: level``
#: default, the coverage of the metric rows' own intervals.
TABLE_LEVEL = IntervalSettings.level

#: Fewest shared epochs for which a rank correlation is reported.
MIN_EPOCHS = 3


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    if len(a) < MIN_EPOCHS:
        return math.nan, math.nan, f"fewer than {MIN_EPOCHS} shared epochs (n={len(a)})"
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, math.nan, "constant over epochs: correlation undefined"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        res = stats.spearmanr(a, b)
    return float(res.statistic), float(res.pvalue), ""


def _summary(v: pd.DataFrame, better: Optional[str]) -> dict:
    """Peak (best value; the minimum for lower-is-better metrics), first and last values."""
    if v.empty:
        return dict(peak_rule="", peak_epoch=pd.NA, peak_value=math.nan, first_epoch=pd.NA,
                    first_value=math.nan, last_epoch=pd.NA, last_value=math.nan)
    rule = "min" if better == "lower" else "max"
    # v is sorted by epoch, so idxmin/idxmax pick the earliest epoch among ties
    at = v["value"].idxmin() if rule == "min" else v["value"].idxmax()
    return dict(peak_rule=rule, peak_epoch=int(v.at[at, "epoch"]), peak_value=float(v.at[at, "value"]),
                first_epoch=int(v["epoch"].iloc[0]), first_value=float(v["value"].iloc[0]),
                last_epoch=int(v["epoch"].iloc[-1]), last_value=float(v["value"].iloc[-1]))


def replicate_matrix(metrics: pd.DataFrame, model: str, series, epochs) -> Optional[np.ndarray]:
    """(len(epochs), B) bootstrap replicates of one model's series at ``epochs`` (the metric rows'
    ``replicates`` column; resample k draws the same units at every epoch), or None when any epoch
    lacks them (intervals off, or a table without the column)."""
    if series is None or "replicates" not in metrics.columns or not len(epochs):
        return None
    m = metrics
    rows = m[(m["model"] == model) & (m["measure"] == series.measure) & (m["dataset"] == series.dataset)
             & (m["variant"] == series.variant)]
    if series.metric:
        rows = rows[rows["metric"] == series.metric]
    by_epoch = {int(e): r for e, r in zip(rows["epoch"], rows["replicates"])}
    reps = [by_epoch.get(int(e)) for e in epochs]
    if any(r is None or len(r) == 0 for r in reps) or len({len(r) for r in reps}) != 1:
        return None
    return np.stack([np.asarray(r, dtype=np.float64) for r in reps])


def rho_interval(tb: np.ndarray, m: np.ndarray, level: float = TABLE_LEVEL) -> tuple[float, float]:
    """Percentile interval of the Spearman rho across epochs over whole-study resamples: column k of
    ``tb`` and ``m`` ((epochs, B) replicates) is one alternative study. NaN when fewer than half the
    resamples give a defined rho (a constant series).

    Example:
        >>> e = np.arange(5.0)[:, None]
        >>> rho_interval(e + np.zeros((5, 100)), -e + np.zeros((5, 100)))
        (-1.0, -1.0)
    """
    if tb.shape[0] < MIN_EPOCHS:
        return math.nan, math.nan
    ok = np.isfinite(tb).all(axis=0) & np.isfinite(m).all(axis=0)
    ra, rb = stats.rankdata(tb[:, ok], axis=0), stats.rankdata(m[:, ok], axis=0)
    ra, rb = ra - ra.mean(axis=0), rb - rb.mean(axis=0)
    den = np.sqrt((ra ** 2).sum(axis=0) * (rb ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=0) / den
    rho = rho[np.isfinite(rho) & (den > 0)]
    if rho.size < max(2, tb.shape[1] // 2):
        return math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(rho, [alpha, 1 - alpha])
    return float(lo), float(hi)


def peak_range(m: np.ndarray, epochs, better: Optional[str], level: float = TABLE_LEVEL) -> tuple:
    """The range of epochs holding ``level`` of the resampled peaks: each whole-study resample
    (column of ``m``) has its best epoch (earliest among ties); the range runs from the
    (1-level)/2 to the (1+level)/2 quantile of those epochs (epochs that occur, no interpolation).

    Example:
        >>> m = np.array([[0.0] * 10, [1.0] * 9 + [0.0], [0.5] * 9 + [2.0]])
        >>> peak_range(m, [1, 2, 3], "higher")
        (2, 3)
    """
    epochs = np.asarray(epochs)
    ok = np.isfinite(m).all(axis=0)
    if not ok.any():
        return pd.NA, pd.NA
    at = np.argmin(m[:, ok], axis=0) if better == "lower" else np.argmax(m[:, ok], axis=0)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(epochs[at], [alpha, 1 - alpha], method="inverted_cdf")
    return int(lo), int(hi)


def table1(metrics: pd.DataFrame, spec: SpecLike = None, level: Optional[float] = None) -> pd.DataFrame:
    """Table 1 as a DataFrame with the columns :data:`TABLE1_COLUMNS`.

    For every model of ``scale_models`` (default: every model) there is one row for
    texture bias itself (its peak, first and last values; no correlation), then one
    row per measure of ``table_measures`` present in the table, on the dataset and
    variant the figures use (see :meth:`FigureSpec.series`).

    - ``spearman_rho``, ``p_value``: ``scipy.stats.spearmanr`` between texture bias
      and the measure over the epochs where both have a finite value (``n_epochs``
      of them); NaN with a ``note`` when fewer than 3 epochs are shared or either
      series is constant. A positive rho means the measure rises as texture bias rises.
    - ``peak_epoch``, ``peak_value``: the epoch where the measure is at its best,
      i.e. its maximum for higher-is-better metrics and its minimum for
      lower-is-better ones (texture bias, noise sensitivity, ECE, NLL, FPR@95);
      ``peak_rule`` says which. Ties go to the earliest epoch.
    - ``first_*``, ``last_*``: the measure at the first and last measured epoch.
    - ``rho_ci_low``, ``rho_ci_high``: the percentile interval of rho with coverage ``level``
      (``ci_level``; default the ``intervals: level`` default, 0.95) over whole-study bootstrap
      resamples (:func:`rho_interval`: resample k draws the same images at every epoch, so it is one
      alternative study; rho is recomputed on each); ``peak_epoch_low``, ``peak_epoch_high``: the
      range of epochs holding ``level`` of the resampled peaks (:func:`peak_range`). Read from the
      metric rows' ``replicates`` (:mod:`clipdyn.metrics.intervals`); NaN when the table has none.
      Both are percentile intervals whatever ``intervals: method`` says: BCa needs a jackknife of
      rho over images, which the replicates do not hold.

    Accuracies are in percent, like the figures. A model without data for a measure
    gets a row with NaN values and the note "no data for this model".
    """
    spec = FigureSpec.from_config(spec)
    level = TABLE_LEVEL if level is None else float(level)
    if not 0 < level < 1:
        raise ValueError(f"Table 1: the interval level must lie between 0 and 1, not {level!r} "
                         "(intervals: level in the config)")
    raw = metrics
    metrics = check_metrics(metrics)
    factor = spec.accuracy_factor(metrics)
    models = spec.resolve_scale_models(metrics)
    tex_series = spec.series(metrics, "texture_bias")
    present = [m for m in dict.fromkeys(spec.table_measures) if m != "texture_bias"
               and spec.series(metrics, m) is not None]
    rows = []
    for model in models:
        tb = values(metrics, model, tex_series) if tex_series is not None else pd.DataFrame(columns=["epoch", "value"])
        for measure in ["texture_bias"] + present:
            series = tex_series if measure == "texture_bias" else spec.series(metrics, measure)
            info = measure_info(measure)
            row = dict(model=model, label=spec.label(model), measure=measure,
                       metric=series.metric if series else "", dataset=series.dataset if series else "",
                       variant=series.variant if series else "", better=info.better or "")
            v = values(metrics, model, series, spec, factor) if series is not None else pd.DataFrame(
                columns=["epoch", "value"])
            v = v[np.isfinite(v["value"].astype(float))].reset_index(drop=True)
            row.update(_summary(v, info.better))
            reps = replicate_matrix(raw, model, series, v["epoch"].tolist())
            low, high = peak_range(reps, v["epoch"], info.better, level) if reps is not None else (pd.NA, pd.NA)
            row.update(peak_epoch_low=low, peak_epoch_high=high, rho_ci_low=math.nan, rho_ci_high=math.nan,
                       ci_level=level)
            notes = []
            if v.empty:
                notes.append("no data for this model")
            if measure == "texture_bias":
                row.update(n_epochs=len(v), spearman_rho=math.nan, p_value=math.nan)
                notes.append("reference series of the correlations")
            else:
                both = tb.merge(v, on="epoch", suffixes=("_tb", "_m"))
                both = both[np.isfinite(both["value_tb"].astype(float))]
                rho, p, why = _spearman(both["value_tb"].to_numpy(float), both["value_m"].to_numpy(float))
                row.update(n_epochs=len(both), spearman_rho=rho, p_value=p)
                shared = both["epoch"].tolist()
                rt, rm = replicate_matrix(raw, model, tex_series, shared), replicate_matrix(raw, model, series, shared)
                if np.isfinite(rho) and rt is not None and rm is not None and rt.shape == rm.shape:
                    row["rho_ci_low"], row["rho_ci_high"] = rho_interval(rt, rm, level)
                if why and not v.empty:
                    notes.append(why if not tb.empty else "no texture bias for this model")
            row["note"] = "; ".join(notes)
            rows.append(row)
    out = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    for col in ("n_epochs", "peak_epoch", "peak_epoch_low", "peak_epoch_high", "first_epoch", "last_epoch"):
        out[col] = out[col].astype("Int64")
    return out


# -- writing --------------------------------------------------------------------

def _fmt_value(x: Any) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.4g}" if abs(x) < 1000 else f"{x:.0f}"


def _fmt_p(p: Any) -> str:
    if p is None or p is pd.NA or not math.isfinite(float(p)):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _fmt_rho(r: Any) -> str:
    if r is None or r is pd.NA or not math.isfinite(float(r)):
        return "–"
    return f"{r:+.2f}"


def _at(value: Any, epoch: Any) -> str:
    if epoch is None or epoch is pd.NA:
        return "–"
    return f"{_fmt_value(value)} (ep. {int(epoch)})"


def _missing(x: Any) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and not math.isfinite(x))


def _rho_cell(r: Any, lo: Any, hi: Any) -> str:
    text = _fmt_rho(r)
    if _missing(lo) or _missing(hi) or text == "–":
        return text
    return f"{text} [{_fmt_rho(lo)}, {_fmt_rho(hi)}]"


def _percent(level: float) -> str:
    return f"{100 * float(level):.4g}%"


def _peak_cell(value: Any, epoch: Any, lo: Any, hi: Any, level: float = TABLE_LEVEL) -> str:
    text = _at(value, epoch)
    if _missing(lo) or _missing(hi) or text == "–":
        return text
    span = f"{int(lo)}" if int(lo) == int(hi) else f"{int(lo)}–{int(hi)}"
    return text[:-1] + f"; {_percent(level)}: {span})"


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as strings for reading: one column per quantity, metrics with their set and variant."""
    rows = []
    for r in df.itertuples(index=False):
        info = measure_info(r.measure)
        what = ", ".join(p for p in (r.dataset, VARIANT_NAMES.get(r.variant, r.variant)) if p)
        name = info.title + (f" ({what})" if what else "")
        if r.measure in ACCURACY_MEASURES:
            name += ", %"
        arrow = {"higher": "↑", "lower": "↓"}.get(r.better, "")
        rows.append({"Model": r.label, "Metric": f"{name} {arrow}".strip(),
                     "ρ with texture bias": _rho_cell(r.spearman_rho, r.rho_ci_low, r.rho_ci_high),
                     "p": _fmt_p(r.p_value),
                     "n": "–" if r.n_epochs is pd.NA else str(int(r.n_epochs)),
                     "Best (epoch)": _peak_cell(r.peak_value, r.peak_epoch, r.peak_epoch_low, r.peak_epoch_high,
                                                r.ci_level),
                     "First (epoch)": _at(r.first_value, r.first_epoch),
                     "Last (epoch)": _at(r.last_value, r.last_epoch),
                     "Note": r.note})
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of string cells (no tabulate needed)."""
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")
    header = [cell(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "ρ": r"$\rho$", "τ": r"$\tau$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "–": "--"}


def tex_escape(text: Any) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "tab:texture-bias-correlations") -> str:
    """A booktabs LaTeX table of string cells, written by hand (pandas' to_latex needs jinja2)."""
    cols = list(df.columns)
    align = "ll" + "r" * (len(cols) - 3) + "p{4cm}" if cols and cols[-1] == "Note" else "l" * len(cols)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(tex_escape(c) for c in cols) + r" \\", r"\midrule"]
    previous = None
    for row in df.itertuples(index=False):
        cells = [tex_escape(x) for x in row]
        if previous is not None and row[0] != previous:
            lines.append(r"\midrule")
        previous = row[0]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    lines += [rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _write_text(path: os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def table1_caption(level: float = TABLE_LEVEL) -> str:
    """Table 1's caption, for intervals of coverage ``level``."""
    alpha = (1 - float(level)) / 2
    return ("Spearman rank correlation across epochs between texture bias and each measure, "
            "the epoch where each measure is best (maximum, or minimum for lower-is-better metrics), "
            f"and its first and last values. In brackets: {_percent(level)} bootstrap intervals over whole-study "
            f"resamples (the same images resampled at every epoch): for rho, its {_percent(alpha)} and "
            f"{_percent(1 - alpha)} quantiles; for the best epoch, the range of epochs holding {_percent(level)} "
            "of the resampled peaks.")


def write_table1(df: pd.DataFrame, csv: Optional[os.PathLike] = None, md: Optional[os.PathLike] = None,
                 tex: Optional[os.PathLike] = None) -> list:
    """Write Table 1: every column to CSV, the readable view to Markdown and LaTeX. Returns the paths."""
    written = []
    if csv is not None:
        written.append(_write_text(csv, df.to_csv(index=False, float_format="%.6g")))
    view = display_table(df)
    levels = df["ci_level"].dropna().unique() if "ci_level" in df else []
    caption = table1_caption(levels[0] if len(levels) else TABLE_LEVEL)
    if md is not None:
        written.append(_write_text(md, f"**Table 1.** {caption}\n\n" + to_markdown(view)))
    if tex is not None:
        written.append(_write_text(tex, to_latex(view, caption=caption)))
    return written
