"""Out-of-distribution detection: MCM scores, AUROC and FPR at 95% TPR."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ._join import as_list, join_images, need_classifier
from .intervals import Statistic, weighted_ranks
from .result import MetricResult, metric_row, rows_frame
from .zeroshot import classifier_logits, softmax, zero_shot_logits

__all__ = ["mcm_scores", "auroc", "fpr_at_95_tpr", "fpr_at_95_tpr_closest", "FPR95_MODES"]


def mcm_scores(image_emb: np.ndarray, class_weights: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Maximum concept matching (MCM) score of each image (Ming et al. 2022).

    Definition: ``max_c softmax_c(cos(image, class_c) / temperature)`` over the
    in-distribution classes, from L2-normalised embeddings (the checkpoint's logit scale
    is NOT applied; ``temperature`` plays its part, 1 in the paper).

    Range: [1/C, 1]; higher = more in-distribution.

    Example:
        >>> mcm_scores(np.array([[1.0, 0.0]]), np.eye(2)).round(4)
        array([0.7311])
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(zero_shot_logits(image_emb, class_weights, 1.0 / temperature), axis=1).max(axis=1)


def _check(in_scores, out_scores):
    a = np.asarray(in_scores, dtype=np.float64).ravel()
    b = np.asarray(out_scores, dtype=np.float64).ravel()
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("OOD scores contain NaN")
    return a, b


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve for telling in-distribution from OOD images.

    Definition: in-distribution is the positive class and a higher score means "more
    in-distribution". Equals the probability that a random ID image scores above a random
    OOD image, ties counting one half (Mann-Whitney U / (n_in n_out)), which is what
    ``sklearn.metrics.roc_auc_score`` computes.

    Range: [0, 1], higher is better; 0.5 = chance. NaN if either set is empty.

    Example:
        >>> auroc([0.9, 0.8, 0.4], [0.3, 0.4])
        0.9166666666666666
    """
    a, b = _check(in_scores, out_scores)
    if a.size == 0 or b.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


def fpr_at_95_tpr(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """False-positive rate on OOD images at the threshold that keeps 95% of ID images.

    Definition: images with score >= t are called in-distribution. Among the thresholds
    ``t`` at the observed scores, take the largest with TPR = fraction of ID scores >= t at
    least 0.95, and report FPR = fraction of OOD scores >= t there (the first point of
    ``sklearn.metrics.roc_curve`` with ``tpr >= 0.95``).

    Range: [0, 1], lower is better. NaN if either set is empty.

    Example:
        >>> fpr_at_95_tpr(np.arange(20.0), [0.5, 10.5, 30.0])   # t = 1 keeps 19 of 20
        0.6666666666666666
    """
    a, b = _check(in_scores, out_scores)
    if a.size == 0 or b.size == 0:
        return float("nan")
    thresholds = np.unique(np.concatenate([a, b]))[::-1]
    tpr = (a.size - np.searchsorted(np.sort(a), thresholds, side="left")) / a.size
    fpr = (b.size - np.searchsorted(np.sort(b), thresholds, side="left")) / b.size
    return float(fpr[np.argmax(tpr >= 0.95)])


# ----------------------------------------------------------------------------- evaluator

def fpr_at_95_tpr_closest(in_scores: np.ndarray, out_scores: np.ndarray, recall_level: float = 0.95) -> float:
    """FPR on OOD images at the operating point whose TPR is CLOSEST to ``recall_level`` (MCM's FPR95).

    Definition (deeplearning-wisc/MCM ``utils/detection_util.py``, ``fpr_and_fdr_at_recall``, with
    ID as the positive class): the curve has one point per distinct score ``t`` (descending),
    TPR = fraction of ID scores >= t, FP = number of OOD scores >= t, cut at the first point that
    reaches TPR 1, and one extra point (TPR 1, FP 0) appended; the point with the smallest
    ``|TPR - recall_level|`` is taken (among equals, the one with the LOWEST threshold, i.e. the
    most false positives), and FPR = FP there / number of OOD images. Unlike
    :func:`fpr_at_95_tpr` the chosen TPR may lie below 0.95, and where several thresholds give
    the same TPR the lowest is taken, not the highest.

    Range: [0, 1], lower is better. NaN if either set is empty.

    Example:
        >>> fpr_at_95_tpr_closest(np.arange(20.0), [0.5, 10.5, 30.0])  # TPR 0.95 at t=1 and t=0.5: the lower
        1.0
    """
    a, b = _check(in_scores, out_scores)
    if a.size == 0 or b.size == 0:
        return float("nan")
    thresholds = np.unique(np.concatenate([a, b]))[::-1]
    tp = a.size - np.searchsorted(np.sort(a), thresholds, side="left")
    fp = b.size - np.searchsorted(np.sort(b), thresholds, side="left")
    last = int(np.argmax(tp == a.size))              # first point with every ID image kept
    recall = np.r_[tp[:last + 1][::-1] / a.size, 1.0]
    fps = np.r_[fp[:last + 1][::-1], 0]
    return float(fps[np.argmin(np.abs(recall - recall_level))] / b.size)


#: how ``ood_fpr95`` picks its operating point: ``mcm`` (TPR closest to 0.95, MCM's code) or
#: ``at_least`` (the first threshold with TPR >= 0.95, as sklearn's roc_curve read at 0.95)
FPR95_MODES = ("mcm", "at_least")


def ood_detection_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """MCM out-of-distribution detection against the in-distribution classes.

    Per OOD dataset: ``ood_auroc`` and ``ood_fpr95``, variant ``mcm``, with MCM scores at
    ``options["temperature"]`` (default 1.0); ``n`` = in-distribution + OOD images. The class
    text embeddings are the classifier's: ``options["prompts"]`` ``"mcm"`` (default) expects one
    built with MCM's single prompt (class set ``templates: mcm``, checked with the config and
    here when the classifier records its templates); ``"classset"`` accepts any.
    ``options["fpr95"]``: ``"mcm"`` (default, :func:`fpr_at_95_tpr_closest`) or ``"at_least"``
    (:func:`fpr_at_95_tpr`).
    """
    need_classifier("ood_detection", classifier)
    prompts = options.get("prompts", "mcm")
    if prompts not in ("mcm", "classset"):
        raise ValueError(f"ood_detection option prompts must be 'mcm' or 'classset', got {prompts!r}")
    built_with = (getattr(classifier, "meta", None) or {}).get("templates")
    if prompts == "mcm" and built_with not in (None, "mcm"):
        raise ValueError(f"ood_detection: prompts 'mcm' needs a classifier built with MCM's prompt (class set "
                         f"templates: mcm), got one built with templates {built_with!r}")
    ind = inputs["in_distribution"]
    oods = as_list(inputs.get("ood"))
    if not oods:
        raise ValueError("ood_detection needs at least one dataset in role 'ood'")
    T = float(options.get("temperature", 1.0))
    fpr_mode = options.get("fpr95", "mcm")
    if fpr_mode not in FPR95_MODES:
        raise ValueError(f"ood_detection option fpr95 must be one of {FPR95_MODES}, got {fpr_mode!r}")
    fpr95 = fpr_at_95_tpr_closest if fpr_mode == "mcm" else fpr_at_95_tpr
    X, images, _ = join_images(ind, embeddings, tables, [])
    classifier_logits(ind, X, classifier)  # dimension check
    s_in = mcm_scores(X, classifier.W, T)
    rows, stats, details = [], [], [pd.DataFrame({"dataset": ind, "image_id": images["image_id"], "mcm": s_in})]
    for name in oods:
        Xo, io, _ = join_images(name, embeddings, tables, [])
        classifier_logits(name, Xo, classifier)
        s_out = mcm_scores(Xo, classifier.W, T)
        n = len(s_in) + len(s_out)
        rows += [metric_row("ood_auroc", name, "mcm", auroc(s_in, s_out), n),
                 metric_row("ood_fpr95", name, "mcm", fpr95(s_in, s_out), n)]
        # intervals: the ID and the OOD images are two strata, each resampled within itself
        stats += [auroc_statistic(s_in, s_out, ind, name), fpr95_statistic(s_in, s_out, fpr_mode, ind, name)]
        details.append(pd.DataFrame({"dataset": name, "image_id": io["image_id"], "mcm": s_out}))
    return MetricResult(rows_frame(rows), pd.concat(details, ignore_index=True), stats)


def auroc_statistic(in_scores, out_scores, in_stream: str, out_stream: str) -> Statistic:
    """:func:`auroc` as a function of ID and OOD image weights (Mann-Whitney U of the resampled
    scores, from weighted average ranks), vectorised over resamples."""
    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    both = np.concatenate([a, b])

    def fn(w_in, w_out):
        k = max(w_in.shape[0], w_out.shape[0])
        w = np.concatenate([np.broadcast_to(w_in, (k, a.size)), np.broadcast_to(w_out, (k, b.size))], axis=1)
        ranks = weighted_ranks(w, both)
        n_in, n_out = w[:, :a.size].sum(axis=1), w[:, a.size:].sum(axis=1)
        u = np.sum(w[:, :a.size] * ranks[:, :a.size], axis=1) - n_in * (n_in + 1) / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_in * n_out > 0, u / (n_in * n_out), np.nan)

    return Statistic(fn, ((in_stream, a.size), (out_stream, b.size)))


def fpr95_statistic(in_scores, out_scores, mode: str, in_stream: str, out_stream: str) -> Statistic:
    """:func:`fpr_at_95_tpr_closest` (``mode="mcm"``) or :func:`fpr_at_95_tpr` (``"at_least"``) as a
    function of ID and OOD image weights, vectorised over resamples: the ROC points are the weighted
    counts of ID and OOD images at or above each distinct score (descending); a score no drawn image
    has repeats its predecessor's point, which changes neither rule's choice."""
    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    both = np.concatenate([a, b])
    order = np.argsort(-both, kind="stable")
    desc = both[order]
    ends = np.r_[np.flatnonzero(np.diff(desc)) , len(desc) - 1]  # last index of each distinct score
    is_in = (order < a.size)

    def fn(w_in, w_out):
        k = max(w_in.shape[0], w_out.shape[0])
        w = np.concatenate([np.broadcast_to(w_in, (k, a.size)), np.broadcast_to(w_out, (k, b.size))], axis=1)
        w = w[:, order]
        tp = np.cumsum(w * is_in, axis=1)[:, ends]
        fp = np.cumsum(w * ~is_in, axis=1)[:, ends]
        n_in, n_out = tp[:, -1:], fp[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = tp / n_in
            if mode == "at_least":
                g = np.argmax(tpr >= 0.95, axis=1)
            else:
                last = np.argmax(tp >= n_in, axis=1)
                dist = np.abs(tpr - 0.95)
                dist[np.arange(tp.shape[1])[None, :] > last[:, None]] = np.inf
                best = dist.min(axis=1, keepdims=True)
                g = tp.shape[1] - 1 - np.argmax((dist == best)[:, ::-1], axis=1)  # the lowest threshold
            rows = np.arange(k)
            out = fp[rows, g] / n_out[:, 0]
        return np.where((n_in[:, 0] > 0) & (n_out[:, 0] > 0), out, np.nan)

    return Statistic(fn, ((in_stream, a.size), (out_stream, b.size)))
