"""The tidy metric table in: reading series for the figures and Table 1 (their files are
written with :func:`clipdyn.atomic.atomic_path`: a killed job never leaves a half-written figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import INTERVAL_COLUMNS, METRIC_COLUMNS
from .spec import ACCURACY_MEASURES, FigureSpec, Series

_KEY = ["model", "epoch", "metric", "measure", "dataset", "variant"]


def check_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metric table with checked columns and types; one row per (model, epoch, metric, measure, dataset,
    variant).

    The interval columns (``se``, ``ci_low``, ``ci_high``) are kept, NaN where the table has none.
    Raises ValueError naming the missing columns or the first duplicated rows:
    two values for one point would be drawn as a zig-zag or silently averaged.
    """
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"metric table lacks columns {missing}; it has {list(metrics.columns)}")
    df = metrics[METRIC_COLUMNS + [c for c in INTERVAL_COLUMNS if c in metrics.columns]].copy()
    for col in INTERVAL_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64") if col in df else np.nan
    for col in ("model", "metric", "measure", "dataset", "variant"):
        df[col] = df[col].fillna("").astype(str)
    df["epoch"] = df["epoch"].astype("int64")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    dup = df.duplicated(_KEY, keep=False)
    if dup.any():
        raise ValueError("metric table has several values for one point; first of them:\n"
                         + df.loc[dup, _KEY + ["value"]].head(6).to_string(index=False))
    return df


def values(metrics: pd.DataFrame, model: str, series: Series, spec: FigureSpec | None = None,
           factor: float = 1.0) -> pd.DataFrame:
    """``epoch``, ``value``, ``ci_low``, ``ci_high`` of one model for one series, sorted by epoch, NaN values
    dropped (the interval is NaN where the table has none).

    Accuracy metrics are multiplied by ``factor`` (see :meth:`FigureSpec.accuracy_factor`).
    """
    m = metrics
    rows = m[(m["model"] == model) & (m["measure"] == series.measure) & (m["dataset"] == series.dataset)
             & (m["variant"] == series.variant)]
    if series.metric:
        rows = rows[rows["metric"] == series.metric]
    cols = ["epoch", "value"] + [c for c in ("ci_low", "ci_high") if c in rows.columns]
    out = rows[cols].dropna(subset=["epoch", "value"]).sort_values("epoch").reset_index(drop=True)
    for col in ("ci_low", "ci_high"):
        if col not in out:
            out[col] = np.nan
    if series.measure in ACCURACY_MEASURES:
        for col in ("value", "ci_low", "ci_high"):
            out[col] = out[col] * factor
    return out


def has_interval(v: pd.DataFrame) -> bool:
    """Whether any point of :func:`values` has a finite interval to draw."""
    return bool(len(v)) and bool(np.isfinite(v["ci_low"].to_numpy(float)).any())


def x_of(epochs, model: str, spec: FigureSpec, metrics: pd.DataFrame, x_axis: str,
         total: float | None = None) -> np.ndarray:
    """Epochs, or fractions of training (``epoch / total_epochs``) for ``x_axis == "fraction"``."""
    epochs = np.asarray(epochs, dtype=float)
    if x_axis == "epoch":
        return epochs
    return epochs / (total if total is not None else spec.total_epochs_of(model, metrics))


