"""The study's metrics: one module per metric kind, each with its definitions as plain functions of
numpy arrays (numpy/scipy only, no torch; each docstring states the definition, range and direction)
and the kind's evaluator, which turns the workflow's artifacts (embeddings, dataset tables, a
zero-shot classifier) into tidy rows. Import the functions from here in a notebook::

    from clipdyn.metrics import shape_bias, expected_calibration_error

Every kind (its roles, class-set need, evaluator module and output rows) is declared in
:mod:`clipdyn.metrics.registry`; :func:`clipdyn.metrics.registry.evaluate` runs a kind's evaluator.

The functions below are imported on first use, so that importing one metric module (or the
registry) does not import every other: a metric job's code identity follows the imports it makes.
"""

import importlib
import sys
import types

#: public function -> the module under clipdyn.metrics that defines it
_FUNCTIONS = {
    **dict.fromkeys(["zero_shot_logits", "softmax", "topk_accuracy", "l2_normalize"], "zeroshot"),
    **dict.fromkeys(["category_decisions", "load_imagenet16_mapping", "shape_bias"], "shape_bias"),
    **dict.fromkeys(["noise_sensitivity"], "noise_sensitivity"),
    **dict.fromkeys(["embedding_distance", "dimension_scale", "alignment_correlations"], "low_level_alignment"),
    **dict.fromkeys(["two_afc_score", "majority_accuracy", "distances_for_triplets"], "mid_level_alignment"),
    **dict.fromkeys(["resize_map", "center_crop", "pearson_cc", "nss", "auc_judd", "patch_similarity_map"],
                    "saliency_alignment"),
    **dict.fromkeys(["expected_calibration_error", "negative_log_likelihood", "fit_temperature", "split_heldout"],
                    "calibration"),
    **dict.fromkeys(["mcm_scores", "auroc", "fpr_at_95_tpr"], "ood"),
}

__all__ = list(_FUNCTIONS)


def __getattr__(name: str):
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_FUNCTIONS))


class _Package(types.ModuleType):
    """Keeps ``clipdyn.metrics.shape_bias`` (and ``noise_sensitivity``) the function of that name.

    Importing a submodule binds it as an attribute of its package; where a function has its
    module's name, that binding would make ``from clipdyn.metrics import shape_bias`` return the
    module or the function depending on what was imported first. The module stays importable by
    its full name (``from clipdyn.metrics.shape_bias import ...``, ``importlib.import_module``).
    """

    def __setattr__(self, name, value):
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
