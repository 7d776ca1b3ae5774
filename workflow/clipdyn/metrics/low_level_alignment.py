"""Low-level (image quality) alignment: embedding distance vs human quality judgements."""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats

from ._join import as_list, embedding_index, require_columns
from .intervals import Statistic, weighted_kendall, weighted_pearson, weighted_spearman
from .result import MetricResult, metric_row, rows_frame
from .zeroshot import l2_normalize

__all__ = ["DISTANCES", "dimension_scale", "embedding_distance", "alignment_correlations"]

#: the distances :func:`embedding_distance` knows
DISTANCES = ("dimnorm_euclidean", "cosine", "euclidean")


def dimension_scale(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Per-dimension mean squared difference over a set of pairs, shape (D,).

    ``m_k = mean_i (ref[i, k] - dist[i, k])**2``: the scale that
    ``dimnorm_euclidean`` divides dimension ``k`` by.

    Example:
        >>> dimension_scale(np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 2.0], [3.0, 0.0]]))
        array([5., 2.])
    """
    ref, dist = _check_pairs(ref, dist)
    return np.mean((ref - dist) ** 2, axis=0)


def _check_pairs(ref, dist):
    ref = np.asarray(ref, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != dist.shape:
        raise ValueError(f"ref {ref.shape} and dist {dist.shape} must both be (N, D)")
    return ref, dist


def embedding_distance(ref: np.ndarray, dist: np.ndarray, kind: str = "dimnorm_euclidean",
                       dim_mean: Optional[np.ndarray] = None) -> np.ndarray:
    """Distance between paired embeddings (row ``i`` of ``ref`` vs row ``i`` of ``dist``), shape (N,).

    Kinds:

    - ``"dimnorm_euclidean"`` (dimension-normalised Euclidean):
      ``d_i = sqrt( mean_k (ref[i,k] - dist[i,k])**2 / m_k )`` with
      ``m_k = mean_i (ref[i,k] - dist[i,k])**2`` over the pairs of the dataset
      (:func:`dimension_scale`) unless ``dim_mean`` supplies ``m`` (e.g. computed on
      another set). Each dimension's squared difference is expressed in units of its own
      mean squared difference, so over the dataset every dimension contributes exactly 1
      on average to the mean and none dominates by scale. Dimensions with ``m_k == 0`` (no
      pair differs there) carry no information and are left out of the mean. Over the
      dataset, ``mean_i d_i**2 == 1``.
    - ``"cosine"``: ``1 - cos(ref_i, dist_i)``, range [0, 2].
    - ``"euclidean"``: plain Euclidean distance of the raw embeddings.

    Range: >= 0; 0 = identical. Lower means "the model sees no difference".

    Example:
        >>> ref = np.zeros((2, 2)); dist = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> embedding_distance(ref, dist).round(4)   # both dimensions weigh the same
        array([0.4472, 1.3416])
        >>> embedding_distance(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]), kind="cosine")
        array([1.])
    """
    ref, dist = _check_pairs(ref, dist)
    if kind == "cosine":
        return 1.0 - np.sum(l2_normalize(ref) * l2_normalize(dist), axis=1)
    if kind == "euclidean":
        return np.sqrt(np.sum((ref - dist) ** 2, axis=1))
    if kind == "dimnorm_euclidean":
        m = dimension_scale(ref, dist) if dim_mean is None else np.asarray(dim_mean, dtype=np.float64)
        if m.shape != (ref.shape[1],):
            raise ValueError(f"dim_mean must have shape ({ref.shape[1]},), got {m.shape}")
        if np.any(m < 0):
            raise ValueError("dim_mean must be non-negative (it is a mean squared difference)")
        used = m > 0
        if not used.any():
            return np.zeros(len(ref))
        sq = (ref[:, used] - dist[:, used]) ** 2 / m[used]
        return np.sqrt(sq.mean(axis=1))
    raise ValueError(f"unknown distance kind {kind!r}; known: {DISTANCES}")


def alignment_correlations(distance: np.ndarray, score: np.ndarray, score_higher_is_better: bool) -> dict:
    """Rank and linear correlation between model distances and human quality scores.

    Definition: Spearman's rho, Pearson's r and Kendall's tau-b (``scipy.stats``) between
    ``distance`` and ``score``, signed so that HIGHER = MORE HUMAN-LIKE: a model agrees with
    humans when its distance falls as the mean opinion score (MOS, higher = better
    quality) rises, and rises as a differential MOS (DMOS, higher = worse) rises. So the
    correlations are negated when ``score_higher_is_better`` (MOS) and kept as they are
    for DMOS. p-values are two-sided and do not depend on the sign.

    Range: [-1, 1] each, higher is better. NaN (with NaN p-value) when either input is
    constant or has fewer than 2 (Pearson/Spearman) or 2 (Kendall) entries.

    Returns: ``{"spearman", "pearson", "kendall", "spearman_p", "pearson_p", "kendall_p"}``.

    Example:
        >>> r = alignment_correlations([0.1, 0.2, 0.3], [5.0, 4.0, 1.0], score_higher_is_better=True)
        >>> r["spearman"], r["kendall"]
        (1.0, 1.0)
    """
    d = np.asarray(distance, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if d.shape != s.shape or d.ndim != 1:
        raise ValueError(f"distance {d.shape} and score {s.shape} must be 1-D of equal length")
    sign = -1.0 if score_higher_is_better else 1.0
    out = {}
    degenerate = len(d) < 2 or np.ptp(d) == 0 or np.ptp(s) == 0
    for name, fn in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr), ("kendall", stats.kendalltau)):
        if degenerate:
            r, p = float("nan"), float("nan")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fn(d, s)
            r, p = float(res[0]), float(res[1])
        out[name] = sign * r if np.isfinite(r) else float("nan")
        out[f"{name}_p"] = p
    return out


# ----------------------------------------------------------------------------- evaluator

def low_level_alignment_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Correlation of embedding distance (reference vs distorted) with human quality scores.

    Per dataset: trials ``ref_id, dist_id, score, score_type`` (one score type per
    dataset: "mos", higher = better, or "dmos", higher = worse); distance from
    ``options["distance"]`` (default ``dimnorm_euclidean``, scaled over the dataset's own
    pairs). Variants ``spearman``, ``pearson``, ``kendall``, signed so higher = more
    human-like. Dataset ``mean``: the unweighted mean over the listed datasets (``n`` =
    number of datasets; NaN if any is NaN).
    """
    names = as_list(inputs["datasets"])
    if not names:
        raise ValueError("low_level_alignment needs at least one dataset in role 'datasets'")
    kind = options.get("distance", "dimnorm_euclidean")
    rows, details, per = [], [], {v: [] for v in ("spearman", "pearson", "kendall")}
    stats, by_variant = [], {v: [] for v in per}
    for name in names:
        trials = tables[name].trials
        require_columns(trials, ["ref_id", "dist_id", "score", "score_type"], name, "trials")
        pos = embedding_index(name, embeddings[name])
        t = trials.assign(ref_id=trials["ref_id"].astype(str), dist_id=trials["dist_id"].astype(str))
        t = t[t["ref_id"].isin(pos.index) & t["dist_id"].isin(pos.index)].reset_index(drop=True)
        if t.empty:
            raise ValueError(f"dataset {name!r}: no trial has embeddings for both its ref_id and dist_id")
        types = sorted(set(t["score_type"].astype(str).str.lower()))
        if len(types) != 1 or types[0] not in ("mos", "dmos"):
            raise ValueError(f"dataset {name!r}: column 'score_type' must be one of 'mos'/'dmos' for the whole "
                             f"dataset, found {types}")
        X = np.asarray(embeddings[name].X)
        d = embedding_distance(X[pos.loc[t["ref_id"]].to_numpy()], X[pos.loc[t["dist_id"]].to_numpy()], kind)
        score = pd.to_numeric(t["score"], errors="raise").to_numpy(dtype=np.float64)
        c = alignment_correlations(d, score, score_higher_is_better=types[0] == "mos")
        sign = -1.0 if types[0] == "mos" else 1.0
        for v in per:
            rows.append(metric_row("low_level_alignment", name, v, c[v], len(t)))
            per[v].append(c[v])
            stat = correlation_statistic(v, d, score, sign, name)
            stats.append(stat)
            by_variant[v].append(stat)
        details.append(pd.DataFrame({"dataset": name, "ref_id": t["ref_id"], "dist_id": t["dist_id"],
                                     "score": score, "score_type": types[0], "distance": d}))
    for v, values in per.items():
        rows.append(metric_row("low_level_alignment", "mean", v, float(np.mean(values)), len(values)))
        stats.append(mean_over_strata(by_variant[v]))
    return MetricResult(rows_frame(rows), pd.concat(details, ignore_index=True), stats)


def correlation_statistic(variant: str, distance, score, sign: float, stream: str) -> Statistic:
    """One dataset's correlation (``variant``), signed as :func:`alignment_correlations`, as a function
    of pair weights: the unit is the (reference, distorted) pair. All three are vectorised over
    resamples (Kendall's tau-b as a weighted pair count, cost resamples x pairs^2)."""
    d, s = np.asarray(distance, dtype=np.float64), np.asarray(score, dtype=np.float64)
    if variant == "spearman":
        return Statistic(lambda w: sign * weighted_spearman(w, d, s), ((stream, len(d)),))
    if variant == "pearson":
        return Statistic(lambda w: sign * weighted_pearson(w, d, s), ((stream, len(d)),))
    return Statistic(lambda w: sign * weighted_kendall(w, d, s), ((stream, len(d)),))


def mean_over_strata(parts) -> Statistic:
    """The unweighted mean of several datasets' statistics, each dataset a stratum of its own."""
    strata = tuple(st for p in parts for st in p.strata)
    sizes = [len(p.strata) for p in parts]

    def fn(*w):
        out, i = [], 0
        for p, k in zip(parts, sizes):
            out.append(p(*w[i:i + k]))
            i += k
        return np.mean(out, axis=0)

    return Statistic(fn, strata)
