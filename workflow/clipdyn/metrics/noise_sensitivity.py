"""Sensitivity to image noise: the normalised accuracy drop per corruption severity."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..config.specs import DEFAULT_NOISE_BASELINE, NOISE_BASELINES
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
    """Top-1 accuracy per noise severity and the normalised drop from the baseline accuracy.

    The baseline (``options.baseline``, :data:`clipdyn.config.specs.NOISE_BASELINES`): ``derived``
    (default) is the NOISY dataset's severity-0 images, the same geometry and JPEG round trip as
    the noisy severities without the noise, so that the drop is the noise's alone; ``clean`` is
    the CLEAN dataset through the model's own preprocessing (the noisy severities then differ
    from it by ImageNet-C's Resize(256)+CenterCrop(224) and JPEG as well; severity-0 rows of the
    noisy dataset are left out).

    All rows carry the NOISY dataset's name; the baseline accuracy is ``noise_accuracy``
    variant ``severity_0``. ``noise_sensitivity`` has variants ``severity_<k>`` and
    ``mean`` (over severities >= 1).
    """
    need_classifier("noise_sensitivity", classifier)
    baseline = options.get("baseline", DEFAULT_NOISE_BASELINE)
    if baseline not in NOISE_BASELINES:
        raise ValueError(f"noise_sensitivity: options.baseline must be one of {list(NOISE_BASELINES)}, "
                         f"not {baseline!r}")
    clean, noisy = inputs["clean"], inputs["noisy"]
    Xn, inoisy, _ = join_images(noisy, embeddings, tables, ["label", "severity"])
    ln = classifier_logits(noisy, Xn, classifier)
    yn = class_labels(noisy, inoisy, ln.shape[1])
    severity = pd.to_numeric(inoisy["severity"], errors="raise").to_numpy().astype(np.int64)
    if np.any(severity < 0):
        raise ValueError(f"dataset {noisy!r}: column 'severity' must be >= 0 (0: the noise-free baseline)")
    correct = ln.argmax(axis=1) == yn
    base = severity == 0
    if baseline == "derived":
        if not base.any():
            raise ValueError(
                f"dataset {noisy!r} has no severity-0 images, the noise-free baseline of options.baseline "
                f"'derived': add 0 to datasets.{noisy}.severities, or set the metric's options.baseline: "
                f"clean (the clean dataset {clean!r} through the model's own preprocessing)")
        acc_clean, n_clean = float(correct[base].mean()), int(base.sum())
    else:
        Xc, ic, _ = join_images(clean, embeddings, tables, ["label"])
        lc = classifier_logits(clean, Xc, classifier)
        yc = class_labels(clean, ic, lc.shape[1])
        acc_clean, n_clean = topk_accuracy(lc, yc, ks=(1,))["top1"], len(yc)
    noise = ~base
    if not noise.any():
        raise ValueError(f"dataset {noisy!r} has no images at a noise severity >= 1")
    acc = {int(s): float(correct[severity == s].mean()) for s in np.unique(severity[noise])}
    ns = noise_sensitivity(acc_clean, acc)
    rows = [metric_row("noise_accuracy", noisy, "severity_0", acc_clean, n_clean)]
    rows += [metric_row("noise_accuracy", noisy, f"severity_{s}", a, int((severity == s).sum()))
             for s, a in acc.items()]
    rows += [metric_row("noise_sensitivity", noisy, f"severity_{s}", v, int((severity == s).sum()))
             for s, v in ns["per_severity"].items()]
    rows.append(metric_row("noise_sensitivity", noisy, "mean", ns["mean"], int(noise.sum())))
    keep = noise | base if baseline == "derived" else noise
    details = pd.DataFrame({"image_id": inoisy["image_id"], "severity": severity, "label": yn,
                            "predicted": ln.argmax(axis=1)})[keep].reset_index(drop=True)
    source = inoisy["source_id"].astype(str).to_numpy() if "source_id" in inoisy.columns else None
    if baseline == "derived":
        # the severity-0 images pair with their noisy versions through the clean image they derive from
        base_ids = source[base] if source is not None else inoisy["image_id"].astype(str).to_numpy()[base]
        base_stream = f"{noisy}/sources" if source is not None else f"{noisy}/severity_0"
        base_hit = correct[base]
    else:
        base_ids, base_stream = ic["image_id"].astype(str).to_numpy(), clean
        base_hit = lc.argmax(axis=1) == yc
    stats = noise_statistics(base_hit, base_ids, correct[noise], severity[noise],
                             source[noise] if source is not None else None, base_stream, noisy)
    return MetricResult(rows_frame(rows), details, stats)


def noise_statistics(base_hit, base_ids, noisy_hit, severity, source_ids, base: str, noisy: str) -> list:
    """The rows' values (in the evaluator's order: baseline accuracy, accuracy per severity, drop
    per severity, mean drop) as functions of unit weights, for intervals.

    ``base_ids``: the baseline images' ids as the noisy images' ``source_ids`` name them (the clean
    set's image ids for ``baseline: clean``; the severity-0 images' ``source_id`` for ``derived``).
    Paired (every noisy image's source is a baseline id): the unit is the source image, and a
    resample draws each source with its baseline image(s) and all its noisy versions, so the
    baseline and noisy accuracies of the drop move together; the stream is ``base``. Otherwise (a
    noisy set not derived from the baseline's images) the baseline and the noisy images are two
    strata, ``base`` and ``noisy``, each resampled within itself."""
    base_hit = np.asarray(base_hit, dtype=np.float64)
    noisy_hit = np.asarray(noisy_hit, dtype=np.float64)
    severity = np.asarray(severity)
    levels = np.unique(severity)
    pos: dict = {}
    for b in base_ids:
        pos.setdefault(b, len(pos))
    paired = source_ids is not None and all(s in pos for s in source_ids)
    if paired:
        nu = len(pos)
        bunit = np.array([pos[b] for b in base_ids], dtype=np.int64)
        unit = np.array([pos[s] for s in source_ids], dtype=np.int64)
        bhits = np.bincount(bunit, weights=base_hit, minlength=nu)
        bcount = np.bincount(bunit, minlength=nu).astype(np.float64)
        hits = np.stack([np.bincount(unit, weights=noisy_hit * (severity == s), minlength=nu) for s in levels], 1)
        count = np.stack([np.bincount(unit, weights=(severity == s).astype(float), minlength=nu) for s in levels], 1)
        strata = ((base, nu),)

        def parts(w):
            return (w @ bhits) / (w @ bcount), weighted_sums(w, hits) / weighted_sums(w, count)
    else:
        hits = noisy_hit[:, None] * (severity[:, None] == levels[None, :])
        count = (severity[:, None] == levels[None, :]).astype(np.float64)
        strata = ((base, len(base_hit)), (noisy, len(noisy_hit)))

        def parts(wc, wn):
            return (wc @ base_hit) / wc.sum(axis=1), weighted_sums(wn, hits) / weighted_sums(wn, count)

    def drops(*w):
        with np.errstate(invalid="ignore", divide="ignore"):
            c, a = parts(*w)
            return np.where(c[:, None] != 0, (c[:, None] - a) / np.where(c[:, None] != 0, c[:, None], 1.0), np.nan)

    def pick(fn, j):
        return Statistic(lambda *w: fn(*w)[:, j], strata)

    def base_acc(*w):
        with np.errstate(invalid="ignore", divide="ignore"):
            return parts(*w)[0]

    def noisy_acc(*w):
        with np.errstate(invalid="ignore", divide="ignore"):
            return parts(*w)[1]

    out = [Statistic(base_acc, strata)]
    out += [pick(noisy_acc, j) for j in range(len(levels))]
    out += [pick(drops, j) for j in range(len(levels))]
    out.append(Statistic(lambda *w: drops(*w).mean(axis=1), strata))
    return out
