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
from .data import check_metrics, values
from .spec import ACCURACY_MEASURES, VARIANT_NAMES, FigureSpec, SpecLike, measure_info

#: Columns of :func:`table1`, in order.
TABLE1_COLUMNS = ["model", "label", "measure", "metric", "dataset", "variant", "better", "n_epochs",
                  "spearman_rho", "p_value", "peak_rule", "peak_epoch", "peak_value", "first_epoch", "first_value",
                  "last_epoch", "last_value", "note"]

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


def table1(metrics: pd.DataFrame, spec: SpecLike = None) -> pd.DataFrame:
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

    Accuracies are in percent, like the figures. A model without data for a measure
    gets a row with NaN values and the note "no data for this model".
    """
    spec = FigureSpec.from_config(spec)
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
                if why and not v.empty:
                    notes.append(why if not tb.empty else "no texture bias for this model")
            row["note"] = "; ".join(notes)
            rows.append(row)
    out = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    for col in ("n_epochs", "peak_epoch", "first_epoch", "last_epoch"):
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
                     "ρ with texture bias": _fmt_rho(r.spearman_rho), "p": _fmt_p(r.p_value),
                     "n": "–" if r.n_epochs is pd.NA else str(int(r.n_epochs)),
                     "Best (epoch)": _at(r.peak_value, r.peak_epoch),
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


TABLE1_CAPTION = ("Spearman rank correlation across epochs between texture bias and each measure, "
                  "the epoch where each measure is best (maximum, or minimum for lower-is-better metrics), "
                  "and its first and last values.")


def write_table1(df: pd.DataFrame, csv: Optional[os.PathLike] = None, md: Optional[os.PathLike] = None,
                 tex: Optional[os.PathLike] = None) -> list:
    """Write Table 1: every column to CSV, the readable view to Markdown and LaTeX. Returns the paths."""
    written = []
    if csv is not None:
        written.append(_write_text(csv, df.to_csv(index=False, float_format="%.6g")))
    view = display_table(df)
    if md is not None:
        written.append(_write_text(md, f"**Table 1.** {TABLE1_CAPTION}\n\n" + to_markdown(view)))
    if tex is not None:
        written.append(_write_text(tex, to_latex(view, caption=TABLE1_CAPTION)))
    return written
