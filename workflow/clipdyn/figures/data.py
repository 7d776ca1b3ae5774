"""The tidy metric table in, files out: reading series for the figures and Table 1, and
writing their files atomically (a killed job never leaves a half-written figure)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..io import METRIC_COLUMNS
from .spec import ACCURACY_MEASURES, FigureSpec, Series

_KEY = ["model", "epoch", "metric", "measure", "dataset", "variant"]


def check_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metric table with checked columns and types; one row per (model, epoch, metric, measure, dataset,
    variant).

    Raises ValueError naming the missing columns or the first duplicated rows:
    two values for one point would be drawn as a zig-zag or silently averaged.
    """
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"metric table lacks columns {missing}; it has {list(metrics.columns)}")
    df = metrics[METRIC_COLUMNS].copy()
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
    """``epoch``, ``value`` of one model for one series, sorted by epoch, NaN values dropped.

    Accuracy metrics are multiplied by ``factor`` (see :meth:`FigureSpec.accuracy_factor`).
    """
    m = metrics
    rows = m[(m["model"] == model) & (m["measure"] == series.measure) & (m["dataset"] == series.dataset)
             & (m["variant"] == series.variant)]
    if series.metric:
        rows = rows[rows["metric"] == series.metric]
    out = rows[["epoch", "value"]].dropna().sort_values("epoch").reset_index(drop=True)
    if series.measure in ACCURACY_MEASURES:
        out["value"] = out["value"] * factor
    return out


def x_of(epochs, model: str, spec: FigureSpec, metrics: pd.DataFrame, x_axis: str,
         total: float | None = None) -> np.ndarray:
    """Epochs, or fractions of training (``epoch / total_epochs``) for ``x_axis == "fraction"``."""
    epochs = np.asarray(epochs, dtype=float)
    if x_axis == "epoch":
        return epochs
    return epochs / (total if total is not None else spec.total_epochs_of(model, metrics))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_target(path: os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    The result gets the usual permissions (0666 less the umask), not the private
    0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
