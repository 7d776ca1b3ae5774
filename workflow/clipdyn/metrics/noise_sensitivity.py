"""Sensitivity to image noise: the normalised accuracy drop per corruption severity."""

from __future__ import annotations

from typing import Mapping

import numpy as np

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
