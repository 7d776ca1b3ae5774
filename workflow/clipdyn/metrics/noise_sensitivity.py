"""Sensitivity to image noise: the normalised accuracy drop per corruption severity."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..specs import DEFAULT_NOISE_BASELINE, NOISE_BASELINES
from ._join import class_labels, join_images, need_classifier
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

    The baseline (``options.baseline``, :data:`clipdyn.specs.NOISE_BASELINES`): ``derived``
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
    return MetricResult(rows_frame(rows), details)
