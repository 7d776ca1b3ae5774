"""What an evaluator returns: tidy rows, one per measured quantity, and an optional details table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

import pandas as pd

if TYPE_CHECKING:
    from .intervals import Statistic

__all__ = ["MetricResult", "ROW_COLUMNS", "metric_row", "rows_frame"]

#: columns of :attr:`MetricResult.rows`
ROW_COLUMNS = ["measure", "dataset", "variant", "value", "n"]


@dataclass
class MetricResult:
    """Metric rows (columns :data:`ROW_COLUMNS`), an optional per-image/per-trial table, and per row the
    :class:`~clipdyn.metrics.intervals.Statistic` its value is (over the row's sampling unit), from
    which the metric step draws the row's bootstrap interval (None: no interval for that row)."""

    rows: pd.DataFrame
    details: Optional[pd.DataFrame] = None
    stats: Optional[List[Optional["Statistic"]]] = None


def rows_frame(rows: List[dict]) -> pd.DataFrame:
    """Rows built with :func:`metric_row` as a frame with the columns and types of :data:`ROW_COLUMNS`."""
    df = pd.DataFrame(rows, columns=ROW_COLUMNS)
    return df.astype({"measure": str, "dataset": str, "variant": str, "value": "float64", "n": "int64"})


def metric_row(measure: str, dataset: str, variant: str, value: float, n: int) -> dict:
    """One row: ``value`` of ``measure`` on ``dataset`` (``variant``), from ``n`` images/trials/datasets.
    ``measure`` is one of the measures the kind declares in :mod:`clipdyn.metrics.registry`."""
    return {"measure": measure, "dataset": dataset, "variant": variant, "value": float(value), "n": int(n)}
