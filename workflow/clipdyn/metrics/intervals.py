"""Bootstrap intervals of metric values over each measure's own sampling unit.

A metric value is a statistic of *units* (images, image pairs, triplets; for OOD detection the
in-distribution and the OOD images, two strata). Each evaluator states, per row, a
:class:`Statistic`: a vectorised function of unit *weights* (one weight matrix of shape (K, n)
per stratum, row k = how often each unit is drawn in resample k) and the strata it reads. The
value itself is the statistic at weight 1 for every unit; a bootstrap replicate is the statistic at
the multiplicities of one resample (``resample_counts``).

Resamples are drawn once per (seed, number of units, stream): rows that share a unit set (the
clean and noisy accuracies of the same images; every row of one dataset) are resampled jointly,
and the same images get the same resample at every epoch, so resample k of every epoch is one
alternative study (Table 1's rank correlations use that). A stratum named by its own stream (the
OOD datasets) is resampled within itself, independently of the others.

Intervals: ``percentile`` (default; the (1-level)/2 and (1+level)/2 quantiles of the finite
replicates) or ``bca`` (Efron's bias-corrected and accelerated interval; the acceleration from a
delete-a-group jackknife of at most :data:`JACKKNIFE_GROUPS` groups per stratum, which is the
ordinary jackknife for up to that many units). The standard error is the standard deviation of the
finite replicates. A value whose replicates are all undefined (e.g. a shape bias of resamples with
no hits) gets NaN.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.special import ndtr, ndtri

from ..io import INTERVAL_COLUMNS  # the columns a metric row gains

__all__ = ["Statistic", "resample_counts", "bootstrap", "summarise", "interval_fields", "mean_of",
           "ratio_of_sums", "per_resample", "weighted_pearson", "weighted_ranks", "weighted_spearman",
           "weighted_kendall", "weighted_sums", "METHODS", "JACKKNIFE_GROUPS", "INTERVAL_COLUMNS"]

#: interval methods
METHODS = ("percentile", "bca")
#: most jackknife groups per stratum for the BCa acceleration
JACKKNIFE_GROUPS = 100


@dataclass(frozen=True)
class Statistic:
    """A row's value as a function of unit weights.

    ``fn(*weights)``: one (K, n_s) float array per stratum -> (K,) values. ``strata``: per stratum,
    ``(stream, n_s)``; units of one stream with one ``n`` are resampled jointly wherever they occur.
    """

    fn: Callable[..., np.ndarray]
    strata: Tuple[Tuple[str, int], ...]
    #: the last result on shared (read-only) resample weights, so a statistic that is part of
    #: another (a dataset's correlation inside the mean over datasets) is computed once
    _memo: list = field(default_factory=list, compare=False, repr=False)

    def __call__(self, *weights: np.ndarray) -> np.ndarray:
        shared = all(not w.flags.writeable for w in weights)
        if shared and self._memo and len(self._memo[0]) == len(weights) \
                and all(a is b for a, b in zip(self._memo[0], weights)):
            return self._memo[1]
        out = np.asarray(self.fn(*weights), dtype=np.float64).reshape(-1)
        if shared:
            self._memo[:] = [weights, out]  # holds the weights: their ids cannot be reused meanwhile
        return out


def _stream_seed(seed: int, n: int, stream: str) -> list:
    return [int(seed), int(n), zlib.crc32(str(stream).encode())]


@lru_cache(maxsize=8)
def _counts(n: int, resamples: int, seed: int, stream: str) -> np.ndarray:
    rng = np.random.default_rng(_stream_seed(seed, n, stream))
    idx = rng.integers(0, n, size=(resamples, n))
    flat = (idx + (np.arange(resamples) * n)[:, None]).reshape(-1)
    counts = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)
    counts.setflags(write=False)
    return counts


def resample_counts(n: int, resamples: int, seed: int, stream: str = "") -> np.ndarray:
    """(resamples, n) multiplicities of ``n`` units drawn with replacement, the same for the same
    ``(n, resamples, seed, stream)``; each row sums to ``n``. Read-only (shared by every row).

    Example:
        >>> c = resample_counts(5, 3, seed=0)
        >>> c.shape, c.sum(axis=1).tolist(), bool((c == resample_counts(5, 3, seed=0)).all())
        ((3, 5), [5.0, 5.0, 5.0], True)
    """
    if n < 1:
        raise ValueError(f"cannot resample {n} units")
    return _counts(int(n), int(resamples), int(seed), str(stream))


def _jackknife_weights(n: int, seed: int, stream: str) -> np.ndarray:
    g = min(n, JACKKNIFE_GROUPS)
    group = np.random.default_rng(_stream_seed(seed, n, stream + "/jackknife")).permutation(n) % g
    return (group[None, :] != np.arange(g)[:, None]).astype(np.float64)


def summarise(estimate: float, replicates: np.ndarray, method: str = "percentile", level: float = 0.95,
              jackknife: Optional[np.ndarray] = None) -> dict:
    """``se``, ``ci_low``, ``ci_high`` of ``estimate`` from its bootstrap ``replicates``.

    ``bca`` needs ``jackknife`` (the statistic with each unit, or group of units, left out).
    NaN where fewer than two replicates are finite or the estimate is NaN.

    Example:
        >>> r = summarise(0.5, np.linspace(0.4, 0.6, 1001))
        >>> round(r["ci_low"], 3), round(r["ci_high"], 3)
        (0.405, 0.595)
    """
    if method not in METHODS:
        raise ValueError(f"intervals method must be one of {METHODS}, got {method!r}")
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    nan = {"se": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    if reps.size < 2 or not np.isfinite(estimate):
        return nan
    alpha = (1.0 - level) / 2.0
    probs = np.array([alpha, 1.0 - alpha])
    if method == "bca":
        below = (np.sum(reps < estimate) + 0.5 * np.sum(reps == estimate)) / reps.size
        z0 = ndtri(np.clip(below, 1.0 / (reps.size + 1), 1.0 - 1.0 / (reps.size + 1)))
        a = 0.0
        jk = np.asarray(jackknife if jackknife is not None else [], dtype=np.float64)
        jk = jk[np.isfinite(jk)]
        if jk.size >= 2:
            d = jk.mean() - jk
            denom = 6.0 * np.sum(d ** 2) ** 1.5
            a = float(np.sum(d ** 3) / denom) if denom > 0 else 0.0
        z = ndtri(probs)
        probs = ndtr(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
    lo, hi = np.quantile(reps, probs)
    return {"se": float(np.std(reps, ddof=1)), "ci_low": float(lo), "ci_high": float(hi)}


def bootstrap(stat: Statistic, resamples: int = 1000, seed: int = 0, method: str = "percentile",
              level: float = 0.95) -> dict:
    """The value of ``stat`` with its interval: ``estimate``, ``se``, ``ci_low``, ``ci_high`` and
    ``replicates`` ((resamples,) float array, resample k of every stratum's stream).

    Example (the mean of 0/1 outcomes, an accuracy):
        >>> y = np.r_[np.ones(80), np.zeros(20)]
        >>> r = bootstrap(mean_of(y, "images"), resamples=2000)
        >>> r["estimate"], round(r["se"], 2)
        (0.8, 0.04)
    """
    ones = [np.ones((1, n)) for _, n in stat.strata]
    estimate = float(stat(*ones)[0])
    replicates = stat(*[resample_counts(n, resamples, seed, s) for s, n in stat.strata])
    jack = None
    if method == "bca":
        parts = []
        for i, (s, n) in enumerate(stat.strata):
            w = [np.ones((1, m)) for _, m in stat.strata]
            w[i] = _jackknife_weights(n, seed, s)
            w = [np.broadcast_to(x, (w[i].shape[0], x.shape[1])) for x in w]
            parts.append(stat(*w))
        jack = np.concatenate(parts)
    return {"estimate": estimate, **summarise(estimate, replicates, method, level, jack), "replicates": replicates}


def interval_fields(stat: Optional[Statistic], settings: Optional[Mapping]) -> dict:
    """The interval columns of one row (and its ``replicates``, float32) under the ``intervals:``
    settings (``enabled``, ``resamples``, ``method``, ``seed``, ``level``); NaN columns and no
    replicates when intervals are off or the row has no statistic."""
    settings = dict(settings or {})
    if stat is None or not settings.get("enabled", False):
        return {"se": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "replicates": np.zeros(0, dtype=np.float32)}
    r = bootstrap(stat, int(settings["resamples"]), int(settings["seed"]), settings["method"],
                  float(settings["level"]))
    return {"se": r["se"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
            "replicates": r["replicates"].astype(np.float32)}


# ----------------------------------------------------------------------------- common statistics

def weighted_sums(w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``w @ m`` for a narrow ``m`` (n, c), one matrix-vector product per column: a small-by-thin
    matrix product in a multi-threaded BLAS costs more in thread start-up than the sums (measured:
    10x slower on a busy 2-core machine), a matrix-vector product is single-threaded."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim == 1:
        return w @ m
    return np.stack([w @ np.ascontiguousarray(m[:, j]) for j in range(m.shape[1])], axis=1)


def _weighted_mean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    tot = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (w @ x) / np.where(tot > 0, tot, 1.0), np.nan)


def mean_of(values: Sequence[float], stream: str) -> Statistic:
    """The mean of per-unit ``values`` (an accuracy: the mean of 0/1 hits) over the units of ``stream``."""
    x = np.asarray(values, dtype=np.float64)
    return Statistic(lambda w: _weighted_mean(w, x), ((stream, len(x)),))


def ratio_of_sums(num: Sequence[float], den: Sequence[float], stream: str) -> Statistic:
    """``sum(num) / sum(den)`` over the units of ``stream`` (NaN where the denominator is 0)."""
    a, b = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)

    def fn(w):
        d = w @ b
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d != 0, (w @ a) / np.where(d != 0, d, 1.0), np.nan)

    return Statistic(fn, ((stream, len(a)),))


def per_resample(fn: Callable[..., float], arrays: Sequence[Sequence[np.ndarray]],
                 strata: Sequence[Tuple[str, int]]) -> Statistic:
    """A statistic computed resample by resample: ``fn(*stratum_arrays)`` on the units drawn
    (repeated by their weight). ``arrays``: per stratum, the per-unit arrays ``fn`` reads.
    For statistics that are not sums over units (rank correlations, an FPR at a TPR)."""
    arrays = [[np.asarray(a) for a in group] for group in arrays]

    def stat(*weights):
        k = weights[0].shape[0]
        out = np.empty(k)
        for row in range(k):
            args = []
            for group, w in zip(arrays, weights):
                take = np.repeat(np.arange(w.shape[1]), np.rint(w[row]).astype(np.int64))
                args.extend(a[take] for a in group)
            out[row] = fn(*args)
        return out

    return Statistic(stat, tuple((str(s), int(n)) for s, n in strata))


def weighted_pearson(w: np.ndarray, x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` with unit weights ``w`` (K, n) -> (K,); NaN where
    either is constant under the weights. Weight = multiplicity: equal to the plain Pearson r of
    the resampled pairs.

    Example:
        >>> float(weighted_pearson(np.ones((1, 3)), [1.0, 2.0, 3.0], [2.0, 4.0, 7.0])[0]) > 0.98
        True
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    tot = w.sum(axis=1, keepdims=True)
    tot = np.where(tot > 0, tot, 1.0)
    mx, my = (w @ x)[:, None] / tot, (w @ y)[:, None] / tot
    dx, dy = x[None, :] - mx, y[None, :] - my
    cov = np.sum(w * dx * dy, axis=1)
    vx, vy = np.sum(w * dx * dx, axis=1), np.sum(w * dy * dy, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(vx * vy)
        scale = np.maximum(np.abs(mx[:, 0]), np.abs(my[:, 0])) + 1.0
        return np.where(den > 1e-12 * scale ** 2, cov / np.where(den > 0, den, 1.0), np.nan)


def weighted_ranks(w: np.ndarray, x: Sequence[float]) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of each unit's value within the resample
    that repeats unit i ``w[k, i]`` times: (K, n), as ``scipy.stats.rankdata`` of the resampled values.

    Example:
        >>> weighted_ranks(np.array([[1.0, 2.0, 0.0]]), [3.0, 1.0, 2.0]).tolist()
        [[3.0, 1.5, 2.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    group = np.cumsum(np.r_[0, np.diff(xs) != 0])  # tie group of each sorted unit
    tot = np.add.reduceat(w[:, order], starts, axis=1)  # (K, groups)
    before = np.cumsum(tot, axis=1) - tot
    rank_g = before + (tot + 1.0) / 2.0
    out = np.empty_like(w, dtype=np.float64)
    out[:, order] = rank_g[:, group]
    return out


def weighted_spearman(w: np.ndarray, x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Spearman rho of ``x`` and ``y`` under unit weights ``w`` (K, n) -> (K,): the weighted Pearson
    correlation of their :func:`weighted_ranks`, equal to ``scipy.stats.spearmanr`` of the resample."""
    rx, ry = weighted_ranks(w, x), weighted_ranks(w, y)
    tot = w.sum(axis=1, keepdims=True)
    tot = np.where(tot > 0, tot, 1.0)
    mx, my = np.sum(w * rx, axis=1, keepdims=True) / tot, np.sum(w * ry, axis=1, keepdims=True) / tot
    dx, dy = rx - mx, ry - my
    cov = np.sum(w * dx * dy, axis=1)
    den = np.sqrt(np.sum(w * dx * dx, axis=1) * np.sum(w * dy * dy, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, cov / np.where(den > 0, den, 1.0), np.nan)


def _tied_pairs(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per resample, the number of pairs of drawn items with equal ``x`` (copies of one unit included)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    tot = np.add.reduceat(w[:, order], starts, axis=1)
    return 0.5 * (np.sum(tot * tot, axis=1) - w.sum(axis=1))


def weighted_kendall(w: np.ndarray, x: Sequence[float], y: Sequence[float], chunk: int = 2_000_000) -> np.ndarray:
    """Kendall's tau-b of ``x`` and ``y`` under unit weights ``w`` (K, n) -> (K,), equal to
    ``scipy.stats.kendalltau`` of the resample (copies of one unit are tied in both): ``(C - D) /
    sqrt((P - T_x)(P - T_y))`` with ``C - D = w S w / 2`` for the pair-concordance matrix ``S``,
    built in column blocks of at most ``chunk`` entries (cost K n^2, memory n * block)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    step = max(1, chunk // max(n, 1))
    cd = np.zeros(w.shape[0])
    w32 = w.astype(np.float32)  # integer weights and signs: exact in float32 up to 2^24 per sum
    for j in range(0, n, step):
        s = (np.sign(x[:, None] - x[None, j:j + step]) * np.sign(y[:, None] - y[None, j:j + step])).astype(np.float32)
        cd += np.sum((w32 @ s).astype(np.float64) * w[:, j:j + step], axis=1)
    cd *= 0.5
    tot = w.sum(axis=1)
    pairs = 0.5 * tot * (tot - 1)
    den = np.sqrt((pairs - _tied_pairs(w, x)) * (pairs - _tied_pairs(w, y)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, cd / np.where(den > 0, den, 1.0), np.nan)
