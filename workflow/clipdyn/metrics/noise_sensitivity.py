"""Sensitivity to image noise: the normalised accuracy drop per corruption severity."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ._join import class_labels, join_images, need_classifier
from .intervals import Statistic, weighted_sums
from .result import MetricResult, metric_row, rows_frame
from .zeroshot import classifier_logits, topk_accuracy

__all__ = ["noise_sensitivity"]


def noise_sensitivity(clean_accuracy: float, noisy_accuracy: Mapping[int, float]) -> dict:
    """Relative accuracy drop under noise, per severity and averaged.

    Definition: for each severity ``s``, ``(clean - noisy[s]) / clean``; ``mean`` is the
    unweighted mean over the given severities.

    Range: (-inf, 1]; 0 = unaffected, 1 = all accuracy lost (negative if noise helps).
    Higher = more sensitive = worse. NaN when the clean accuracy is 0 (nothing to lose)
    and ``mean`` is NaN when no severity is given.

    Returns: ``{"per_severity": {severity: drop, ...}, "mean": float}`` with severities in
    ascending order.

    Example:
        >>> noise_sensitivity(0.5, {1: 0.25, 2: 0.0})
        {'per_severity': {1: 0.5, 2: 1.0}, 'mean': 0.75}
    """
    clean = float(clean_accuracy)
    per = {}
    for s in sorted(noisy_accuracy):
        per[s] = (clean - float(noisy_accuracy[s])) / clean if clean != 0 else float("nan")
    mean = float(np.mean(list(per.values()))) if per else float("nan")
    return {"per_severity": per, "mean": mean}


# ----------------------------------------------------------------------------- evaluator

def noise_sensitivity_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Top-1 accuracy per noise severity and the normalised drop from the clean accuracy.

    All rows carry the NOISY dataset's name; the clean accuracy is ``noise_accuracy``
    variant ``severity_0``. ``noise_sensitivity`` has variants ``severity_<k>`` and
    ``mean`` (over severities).
    """
    need_classifier("noise_sensitivity", classifier)
    clean, noisy = inputs["clean"], inputs["noisy"]
    Xc, ic, _ = join_images(clean, embeddings, tables, ["label"])
    Xn, inoisy, _ = join_images(noisy, embeddings, tables, ["label", "severity"])
    lc = classifier_logits(clean, Xc, classifier)
    ln = classifier_logits(noisy, Xn, classifier)
    yc, yn = class_labels(clean, ic, lc.shape[1]), class_labels(noisy, inoisy, ln.shape[1])
    severity = pd.to_numeric(inoisy["severity"], errors="raise").to_numpy().astype(np.int64)
    if np.any(severity <= 0):
        raise ValueError(f"dataset {noisy!r}: column 'severity' must be >= 1 (severity 0 is the clean "
                         f"dataset {clean!r})")
    correct = ln.argmax(axis=1) == yn
    acc_clean = topk_accuracy(lc, yc, ks=(1,))["top1"]
    acc = {int(s): float(correct[severity == s].mean()) for s in np.unique(severity)}
    ns = noise_sensitivity(acc_clean, acc)
    rows = [metric_row("noise_accuracy", noisy, "severity_0", acc_clean, len(yc))]
    rows += [metric_row("noise_accuracy", noisy, f"severity_{s}", a, int((severity == s).sum()))
             for s, a in acc.items()]
    rows += [metric_row("noise_sensitivity", noisy, f"severity_{s}", v, int((severity == s).sum()))
             for s, v in ns["per_severity"].items()]
    rows.append(metric_row("noise_sensitivity", noisy, "mean", ns["mean"], len(yn)))
    details = pd.DataFrame({"image_id": inoisy["image_id"], "severity": severity, "label": yn,
                            "predicted": ln.argmax(axis=1)})
    clean_hit = lc.argmax(axis=1) == yc
    source = inoisy["source_id"].astype(str).to_numpy() if "source_id" in inoisy.columns else None
    stats = noise_statistics(clean_hit, ic["image_id"].astype(str).to_numpy(), correct, severity, source,
                             clean, noisy)
    return MetricResult(rows_frame(rows), details, stats)


def noise_statistics(clean_hit, clean_ids, noisy_hit, severity, source_ids, clean: str, noisy: str) -> list:
    """The rows' values (in the evaluator's order: clean accuracy, accuracy per severity, drop per
    severity, mean drop) as functions of unit weights, for intervals.

    Paired (every noisy image names a clean image of the clean set in ``source_ids``, as a derived
    dataset's manifest does): the unit is the clean image, and a resample draws each clean image
    with all its noisy versions, so the clean and noisy accuracies of the drop move together.
    Otherwise (a noisy set not derived from the clean one) the clean and the noisy images are two
    strata, each resampled within itself."""
    clean_hit = np.asarray(clean_hit, dtype=np.float64)
    noisy_hit = np.asarray(noisy_hit, dtype=np.float64)
    levels = np.unique(severity)
    pos = {c: i for i, c in enumerate(clean_ids)}
    paired = source_ids is not None and all(s in pos for s in source_ids)
    if paired:
        unit = np.array([pos[s] for s in source_ids], dtype=np.int64)
        nc = len(clean_hit)
        hits = np.stack([np.bincount(unit, weights=noisy_hit * (severity == s), minlength=nc) for s in levels], 1)
        count = np.stack([np.bincount(unit, weights=(severity == s).astype(float), minlength=nc) for s in levels], 1)
        strata = ((clean, nc),)

        def parts(w):
            return (w @ clean_hit) / w.sum(axis=1), weighted_sums(w, hits) / weighted_sums(w, count)
    else:
        hits = noisy_hit[:, None] * (severity[:, None] == levels[None, :])
        count = (severity[:, None] == levels[None, :]).astype(np.float64)
        strata = ((clean, len(clean_hit)), (noisy, len(noisy_hit)))

        def parts(wc, wn):
            return (wc @ clean_hit) / wc.sum(axis=1), weighted_sums(wn, hits) / weighted_sums(wn, count)

    def drops(*w):
        with np.errstate(invalid="ignore", divide="ignore"):
            c, a = parts(*w)
            return np.where(c[:, None] != 0, (c[:, None] - a) / np.where(c[:, None] != 0, c[:, None], 1.0), np.nan)

    def pick(fn, j):
        return Statistic(lambda *w: fn(*w)[:, j], strata)

    def noisy_acc(*w):
        with np.errstate(invalid="ignore", divide="ignore"):
            return parts(*w)[1]

    out = [Statistic(lambda *w: parts(*w)[0], strata)]
    out += [pick(noisy_acc, j) for j in range(len(levels))]
    out += [pick(drops, j) for j in range(len(levels))]
    out.append(Statistic(lambda *w: drops(*w).mean(axis=1), strata))
    return out
