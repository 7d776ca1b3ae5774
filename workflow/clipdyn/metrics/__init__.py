"""The study's metrics as plain functions of numpy arrays (numpy/scipy only, no torch).

One module per metric; each function's docstring states its definition, range and
direction. Import them from here in a notebook::

    from clipdyn.metrics import shape_bias, expected_calibration_error

The evaluators that turn the workflow's artifacts (embeddings, dataset tables, a
zero-shot classifier) into tidy metric rows live in :mod:`clipdyn.metrics.tasks`.
"""

from .calibration import expected_calibration_error, fit_temperature, negative_log_likelihood, split_heldout
from .low_level_alignment import alignment_correlations, dimension_scale, embedding_distance
from .mid_level_alignment import distances_for_triplets, majority_accuracy, two_afc_score
from .noise_sensitivity import noise_sensitivity
from .ood import auroc, fpr_at_95_tpr, mcm_scores
from .saliency_alignment import auc_judd, center_crop, nss, patch_similarity_map, pearson_cc, resize_map
from .shape_bias import category_decisions, load_imagenet16_mapping, shape_bias
from .zeroshot import l2_normalize, softmax, topk_accuracy, zero_shot_logits

__all__ = [
    "zero_shot_logits", "softmax", "topk_accuracy", "l2_normalize",
    "category_decisions", "load_imagenet16_mapping", "shape_bias",
    "noise_sensitivity",
    "embedding_distance", "dimension_scale", "alignment_correlations",
    "two_afc_score", "majority_accuracy", "distances_for_triplets",
    "resize_map", "center_crop", "pearson_cc", "nss", "auc_judd", "patch_similarity_map",
    "expected_calibration_error", "negative_log_likelihood", "fit_temperature", "split_heldout",
    "mcm_scores", "auroc", "fpr_at_95_tpr",
]
