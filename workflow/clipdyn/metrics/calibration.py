"""Calibration: expected calibration error, negative log-likelihood, temperature scaling."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from ._join import as_list, class_labels, join_images, need_classifier
from .intervals import Statistic, mean_of, weighted_sums
from .result import MetricResult, metric_row, rows_frame
from .zeroshot import classifier_logits, dataset_logits, softmax

__all__ = ["expected_calibration_error", "rms_calibration_error", "negative_log_likelihood", "fit_temperature",
           "split_heldout"]


def _check(x: np.ndarray, labels: np.ndarray, what: str) -> Tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"{what} {x.shape} must be (N, C) and labels {labels.shape} must be (N,)")
    if len(labels) and (labels.min() < 0 or labels.max() >= x.shape[1]):
        raise ValueError(f"labels must lie in [0, {x.shape[1]}); got [{labels.min()}, {labels.max()}]")
    return x, labels.astype(np.int64)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15,
                               norm: str = "l1") -> float:
    """Top-label calibration error with equal-width confidence bins (torchmetrics' definition).

    Definition: confidence = max class probability, correct = (argmax == label; ties go to
    the lower class index). Bin ``b`` of ``n_bins`` holds confidences in
    ``[b / n_bins, (b + 1) / n_bins)``; as in torchmetrics (``torch.bucketize(...,
    right=True)``) a confidence of exactly 1.0 falls in an extra bin of its own. With
    ``acc_b``, ``conf_b`` the bin means and ``w_b`` the fraction of samples in the bin:

    - ``"l1"`` (ECE): ``sum_b w_b |acc_b - conf_b|``
    - ``"l2"`` (RMSCE): ``sqrt(sum_b w_b (acc_b - conf_b)**2)``
    - ``"max"`` (MCE): ``max_b |acc_b - conf_b|`` over non-empty bins.

    Range: [0, 1], lower is better. NaN for no samples.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> round(expected_calibration_error(probs, np.array([0, 1, 1]), n_bins=10), 6)
        0.333333
    """
    probs, labels = _check(probs, labels, "probs")
    if norm not in ("l1", "l2", "max"):
        raise ValueError(f"norm must be 'l1', 'l2' or 'max', got {norm!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if len(probs) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins)
    count = np.bincount(idx, minlength=n_bins + 1).astype(np.float64)
    nonempty = count > 0
    acc_b = np.bincount(idx, weights=correct, minlength=n_bins + 1)[nonempty] / count[nonempty]
    conf_b = np.bincount(idx, weights=conf, minlength=n_bins + 1)[nonempty] / count[nonempty]
    w = count[nonempty] / count.sum()
    gap = np.abs(acc_b - conf_b)
    if norm == "l1":
        return float(np.sum(w * gap))
    if norm == "l2":
        return float(np.sqrt(np.sum(w * gap ** 2)))
    return float(np.max(gap))


def rms_calibration_error(probs: np.ndarray, labels: np.ndarray, bin_size: int = 100) -> float:
    """RMS calibration error with adaptive bins, as hendrycks/imagenet-r ``utils.py`` ``calib_err``
    (``p='2'``, ``beta=100``), which its ``eval.py`` reports for ImageNet-200 and ImageNet-R.

    Definition: the top-1 confidences are sorted (``np.argsort``) and cut into consecutive bins of
    ``bin_size`` samples, the last bin running to the end (``len // bin_size`` bins); then
    ``sqrt(sum_b n_b / N * (mean conf_b - mean correct_b)^2)`` over **every bin but the last**, as
    the source's loop ``for i in range(len(bins) - 1)`` does (the most confident bin never counts;
    with fewer than ``2 * bin_size`` samples the result is 0). ``N`` counts every sample.

    Range: [0, 1], lower is better. NaN with fewer than ``bin_size`` samples (the source fails
    there: it has no bin).

    Example:
        >>> probs = np.array([[0.9, 0.1]] * 100 + [[0.6, 0.4]] * 100 + [[0.99, 0.01]] * 100)
        >>> labels = np.array([0] * 50 + [1] * 50 + [0] * 200)   # 50 % right at 0.9, all right at 0.6
        >>> round(rms_calibration_error(probs, labels), 6)       # bins 0.6 (|0.6 - 1|) and 0.9 (|0.9 - 0.5|)
        0.326599
    """
    probs, labels = _check(probs, labels, "probs")
    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    n = len(labels)
    if n < bin_size:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    order = np.argsort(confidence)
    confidence, correct = confidence[order], correct[order]
    starts = np.arange(n // bin_size) * bin_size
    total = 0.0
    for b in range(len(starts) - 1):   # the last bin (to the end) is left out, as in the source
        lo, hi = starts[b], starts[b] + bin_size
        total += bin_size / n * (confidence[lo:hi].mean() - correct[lo:hi].mean()) ** 2
    return float(np.sqrt(total))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood (cross-entropy, natural log) of the true class.

    Definition: ``mean_i (logsumexp(logits_i) - logits_i[label_i])``, computed stably.

    Range: [0, inf), lower is better; ``log C`` for uniform predictions. NaN for no samples.

    Example:
        >>> round(negative_log_likelihood(np.zeros((2, 4)), np.array([0, 3])), 6)   # log 4
        1.386294
    """
    logits, labels = _check(logits, labels, "logits")
    if len(logits) == 0:
        return float("nan")
    return float(np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: Tuple[float, float] = (1e-3, 1e3)) -> float:
    """Temperature ``T`` that minimises the NLL of ``logits / T`` (Guo et al. 2017).

    Definition: ``argmin_T negative_log_likelihood(logits / T, labels)`` for T within
    ``bounds``, found by bounded Brent search over ``log T``. The NLL is convex in ``1/T``,
    hence unimodal in ``log T``, so the search finds the global minimum. ``T`` is relative
    to the logits given: for CLIP logits that already include the checkpoint's logit scale
    ``s``, the calibrated scale is ``s / T``. ``T > 1`` softens (the model was
    over-confident), ``T < 1`` sharpens. Perfectly separable data drive ``T`` to the lower
    bound.

    Range: within ``bounds``; no direction (a diagnostic, not a score).

    Example:
        >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
        >>> fit_temperature(logits, np.array([0, 0, 1, 1])) > 1   # 1 of 4 wrong: over-confident
        True
    """
    logits, labels = _check(logits, labels, "logits")
    if len(logits) == 0:
        raise ValueError("cannot fit a temperature on no samples")
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(lambda u: negative_log_likelihood(logits * np.exp(-u), labels),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
    return float(np.exp(res.x))


def split_heldout(n: int, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic random split of ``range(n)`` into a held-out fitting part and the rest.

    Definition: ``numpy.random.default_rng(seed).permutation(n)``; the first
    ``round(fraction * n)`` indices (at least 1 and at most ``n - 1`` when ``n >= 2``) form
    ``fit_idx``, the others ``eval_idx``; both are returned sorted. The same ``(n,
    fraction, seed)`` always gives the same split, so order the samples canonically (e.g.
    by image id) before splitting to keep the split stable across epochs.

    Example:
        >>> fit, ev = split_heldout(10, 0.2, seed=0)
        >>> len(fit), len(ev), sorted(np.concatenate([fit, ev]).tolist()) == list(range(10))
        (2, 8, True)
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout fraction must lie in (0, 1), got {fraction}")
    n = int(n)
    perm = np.random.default_rng(seed).permutation(n)
    n_fit = int(round(fraction * n))
    if n >= 2:
        n_fit = min(max(n_fit, 1), n - 1)
    return np.sort(perm[:n_fit]), np.sort(perm[n_fit:])


# ----------------------------------------------------------------------------- evaluator

def calibration_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """ECE and NLL with the checkpoint's own logit scale (``raw``) and after temperature scaling.

    The temperature is fitted on a seeded held-out part (``heldout_fraction``, ``seed``) of
    the in-distribution images, ordered by image id so the split is the same at every
    epoch; ECE (``n_bins`` equal-width bins), NLL and the RMS calibration error of hendrycks/imagenet-r
    (:func:`rms_calibration_error`, adaptive bins of 100) are reported on the rest of the
    in-distribution images and on all of each ``shifted`` dataset. Measure ``temperature``
    variant ``fitted`` (dataset = in-distribution, ``n`` = images fitted on) is relative to
    the checkpoint's logit scale: the calibrated scale is ``logit_scale / T``. A shifted set whose
    classes are a subset of the class set (ImageNet-R/-A) is scored on its own classes
    (``options["class_subset"]``: ``restrict``, default, or ``all``; see
    :func:`~clipdyn.metrics.zeroshot.dataset_logits`).
    """
    need_classifier("calibration", classifier)
    ind = inputs["in_distribution"]
    shifted = as_list(inputs.get("shifted"))
    n_bins = int(options.get("n_bins", 15))
    X, images, _ = join_images(ind, embeddings, tables, ["label"])
    order = np.argsort(images["image_id"].to_numpy(), kind="stable")
    X, images = X[order], images.iloc[order].reset_index(drop=True)
    logits = classifier_logits(ind, X, classifier)
    labels = class_labels(ind, images, logits.shape[1])
    fit, ev = split_heldout(len(labels), float(options.get("heldout_fraction", 0.2)), int(options.get("seed", 0)))
    if len(ev) == 0:
        raise ValueError(f"dataset {ind!r}: {len(labels)} image(s) are too few to fit a temperature and "
                         "evaluate on the rest")
    T = fit_temperature(logits[fit], labels[fit])
    sets = [(ind, logits[ev], labels[ev])]
    for name in shifted:
        Xs, imgs, _ = join_images(name, embeddings, tables, ["label"])
        subset = options.get("class_subset", "restrict")
        sets.append((name, *dataset_logits(name, Xs, imgs, tables, classifier, subset)))
    rows = [metric_row("temperature", ind, "fitted", T, len(fit))]
    stats = [temperature_statistic(logits[fit], labels[fit], T, f"{ind}/fit")]
    for i, (name, lg, y) in enumerate(sets):
        stream = f"{ind}/eval" if i == 0 else name
        for variant, scaled in (("raw", lg), ("temperature_scaled", lg / T)):
            probs = softmax(scaled, axis=1)
            ece = expected_calibration_error(probs, y, n_bins)
            rows.append(metric_row("ece", name, variant, ece, len(y)))
            rows.append(metric_row("nll", name, variant, negative_log_likelihood(scaled, y), len(y)))
            rows.append(metric_row("rms_calibration_error", name, variant, rms_calibration_error(probs, y), len(y)))
            # intervals over the set's images; the temperature-scaled rows hold the fitted T fixed
            per_image_nll = logsumexp(scaled, axis=1) - scaled[np.arange(len(y)), y]
            stats += [ece_statistic(probs, y, n_bins, stream), mean_of(per_image_nll, stream),
                      rms_statistic(probs, y, stream)]
    details = pd.DataFrame({"image_id": images["image_id"], "heldout_for_fit": np.isin(np.arange(len(labels)), fit)})
    return MetricResult(rows_frame(rows), details, stats)


def ece_statistic(probs: np.ndarray, labels: np.ndarray, n_bins: int, stream: str) -> Statistic:
    """:func:`expected_calibration_error` (``l1``) as a function of image weights, vectorised:
    ``sum_b |sum of hits in b - sum of confidences in b| / number of images`` (the per-bin sums of
    the weighted gaps as one sparse product: each image lies in one bin)."""
    from scipy import sparse

    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins)
    # (bins, images): row b holds the gaps (hit - confidence) of the images in bin b
    gaps = sparse.csr_matrix((correct - conf, (idx, np.arange(len(conf)))), shape=(n_bins + 1, len(conf)))

    def fn(w):
        tot = w.sum(axis=1)
        per_bin = np.asarray(gaps @ w.T).T
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, np.abs(per_bin).sum(axis=1) / np.where(tot > 0, tot, 1.0), np.nan)

    return Statistic(fn, ((stream, len(conf)),))


def rms_statistic(probs: np.ndarray, labels: np.ndarray, stream: str, bin_size: int = 100,
                  chunk: int = 64) -> Statistic:
    """:func:`rms_calibration_error` as a function of image weights, vectorised: a resample is the
    images repeated by their (integer) weights, sorted by confidence, cut into bins of ``bin_size``.
    The images are sorted once (stable); with ``C`` the cumulative weights in that order and ``S``
    the cumulative weighted confidences (hits), the sum over the first ``P`` resampled images is
    ``S[j] + (P - C[j]) * conf[j]`` where image ``j`` holds position ``P``, so each bin's sums are
    differences of that at its edges (one row-wise search per resample, no per-bin loop). Equal to
    the definition where the confidences are distinct (ties among different images are ordered by
    image position here, by ``np.argsort`` there). Resamples are taken ``chunk`` at a time."""
    probs, labels = _check(probs, labels, "probs")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    conf, correct = conf[order], correct[order]
    n = len(conf)
    s = float(bin_size)

    def block(w):
        k = w.shape[0]
        C = np.cumsum(w, axis=1)                                    # (k, n) images up to and with j
        total = C[:, -1] if n else np.zeros(k)
        nb = np.floor(total / s + 1e-9).astype(np.int64)            # bins per resample
        m = int(nb.max()) if k and n else 0
        out = np.full(k, np.nan)
        if m < 1:
            return out
        P = np.minimum(np.arange(m + 1)[None, :] * s, total[:, None])  # (k, m + 1) bin edges
        off = (np.arange(k) * (float(total.max()) + 1.0))[:, None]
        j = np.searchsorted((C + off).ravel(), (P + off).ravel(), side="right").reshape(k, m + 1)
        j -= (np.arange(k) * n)[:, None]
        zero = np.zeros((k, 1))
        Cp = np.concatenate([zero, C], axis=1)
        rows = np.arange(k)[:, None]

        def prefix(x):
            Sp = np.concatenate([zero, np.cumsum(w * x, axis=1)], axis=1)
            xp = np.append(x, 0.0)
            return Sp[rows, j] + (P - Cp[rows, j]) * xp[j]

        gap = (np.diff(prefix(conf), axis=1) - np.diff(prefix(correct), axis=1)) / s   # (k, m)
        counted = np.arange(m)[None, :] < (nb - 1)[:, None]         # every bin but the last
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.sqrt(np.sum(np.where(counted, s / total[:, None] * gap ** 2, 0.0), axis=1))
        return np.where(nb >= 1, err, np.nan)

    def fn(w):
        w = np.asarray(w, dtype=np.float64)[:, order]
        return np.concatenate([block(w[i:i + chunk]) for i in range(0, len(w), chunk)]) if len(w) else np.zeros(0)

    return Statistic(fn, ((stream, n),))


#: grid of log-temperature offsets around the fitted one on which resampled fits are searched
_LOG_T_GRID = np.linspace(-1.0, 1.0, 41)


def temperature_statistic(logits: np.ndarray, labels: np.ndarray, T: float, stream: str) -> Statistic:
    """The fitted temperature as a function of fitting-image weights: each resample's weighted NLL is
    evaluated on a grid of log T within ``T * e^(+-1)`` (41 points; the per-image NLL is computed once
    per grid point, so a resample costs one matrix product) and its minimum refined by a parabola
    through the three nearest grid points. A resample whose fit leaves the grid gets its edge."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    u = np.log(T) + _LOG_T_GRID
    true = logits[np.arange(len(labels)), labels]
    per = np.stack([logsumexp(logits * np.exp(-v), axis=1) - true * np.exp(-v) for v in u], axis=1)  # (n, G)

    def fn(w):
        loss = weighted_sums(w, per) / w.sum(axis=1, keepdims=True)
        j = np.clip(np.argmin(loss, axis=1), 1, len(u) - 2)
        rows = np.arange(len(j))
        y0, y1, y2 = loss[rows, j - 1], loss[rows, j], loss[rows, j + 1]
        h = u[1] - u[0]
        den = y0 - 2 * y1 + y2
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = np.where(den > 0, 0.5 * h * (y0 - y2) / np.where(den > 0, den, 1.0), 0.0)
        return np.exp(np.clip(u[j] + np.clip(shift, -h, h), u[0], u[-1]))

    return Statistic(fn, ((stream, len(labels)),))
