"""Texture/shape bias on cue-conflict images (Geirhos et al. 2019, model-vs-human)."""

from __future__ import annotations

from importlib import resources
from typing import Sequence

import numpy as np
import pandas as pd

from ._join import join_images, need_classifier
from .intervals import ratio_of_sums
from .result import MetricResult, metric_row, rows_frame
from .zeroshot import classifier_logits, softmax

__all__ = ["load_imagenet16_mapping", "category_decisions", "shape_bias", "MODEL_VS_HUMAN_LOGIT_SCALE",
           "decision_logit_scale"]

#: the fixed multiplier of model-vs-human's CLIP wrapper (bethgelab/model-vs-human,
#: ``modelvshuman/models/wrappers/pytorch.py``, ``ClipPytorchModel.forward_batch``:
#: ``logits = 100. * image_features @ zeroshot_weights``), whose softmax the 16-way decision averages
MODEL_VS_HUMAN_LOGIT_SCALE = 100.0


def decision_logit_scale(option, checkpoint_scale: float) -> float:
    """The logit scale of the softmax behind the 16-way decision.

    ``option`` (the metric option ``logit_scale``): ``"model_vs_human"`` (default) = 100, as
    model-vs-human's CLIP wrapper; ``"checkpoint"`` = the checkpoint's own learned scale
    (``checkpoint_scale``), which is small early in training; or a positive number.

    Example:
        >>> decision_logit_scale("model_vs_human", 14.3), decision_logit_scale("checkpoint", 14.3)
        (100.0, 14.3)
    """
    if option is None or option == "model_vs_human":
        return MODEL_VS_HUMAN_LOGIT_SCALE
    if option == "checkpoint":
        return float(checkpoint_scale)
    if isinstance(option, (int, float)) and not isinstance(option, bool) and option > 0:
        return float(option)
    raise ValueError(f"shape_bias option logit_scale must be 'model_vs_human', 'checkpoint' or a positive "
                     f"number, got {option!r}")


def load_imagenet16_mapping() -> pd.DataFrame:
    """The packaged 16-category mapping: columns ``category``, ``imagenet_index``, ``wnid``.

    207 rows: each of the 16 cue-conflict categories (airplane, bear, ..., truck) with the
    ImageNet-1k class indices that belong to it, as in model-vs-human.

    Example:
        >>> m = load_imagenet16_mapping()
        >>> m.category.nunique(), len(m)
        (16, 207)
    """
    with resources.files("clipdyn").joinpath("metrics/imagenet16_categories.csv").open() as f:
        return pd.read_csv(f)


def category_decisions(probs: np.ndarray, mapping: pd.DataFrame) -> np.ndarray:
    """A model's 16-way decision from its 1000-way probabilities.

    Definition (model-vs-human's ``ImageNetProbabilitiesTo16ClassesMapping``): each
    category scores the MEAN probability of its ImageNet classes; the decision is the
    category with the highest score. Categories are considered in sorted (alphabetical)
    order, so an exact tie goes to the alphabetically first category.

    Args:
        probs: (N, K) class probabilities (softmax output), K > max ``imagenet_index``.
        mapping: DataFrame with columns ``category`` and ``imagenet_index``.

    Returns: (N,) array of category names (object dtype).

    Example:
        >>> m = pd.DataFrame({"category": ["cat", "cat", "dog"], "imagenet_index": [0, 1, 2]})
        >>> category_decisions(np.array([[0.3, 0.3, 0.4], [0.5, 0.4, 0.1]]), m).tolist()
        ['dog', 'cat']
    """
    probs = np.asarray(probs, dtype=np.float64)
    missing = {"category", "imagenet_index"} - set(mapping.columns)
    if missing:
        raise ValueError(f"category mapping lacks columns {sorted(missing)}")
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, K), got {probs.shape}")
    idx = mapping["imagenet_index"].to_numpy(dtype=np.int64)
    if len(idx) == 0 or idx.min() < 0 or idx.max() >= probs.shape[1]:
        raise ValueError(f"category mapping indices must lie in [0, {probs.shape[1]}) and be non-empty")
    categories = np.array(sorted(mapping["category"].astype(str).unique()), dtype=object)
    scores = np.stack([probs[:, idx[mapping["category"].astype(str).to_numpy() == c]].mean(axis=1)
                       for c in categories], axis=1)
    return categories[np.argmax(scores, axis=1)]


def shape_bias(shape: Sequence[str], texture: Sequence[str], predicted: Sequence[str]) -> dict:
    """Shape bias, texture bias and cue-conflict accuracies from 16-way decisions.

    Definition (Geirhos et al. 2019): images whose shape and texture class coincide are
    excluded. Of the remaining ``n_images``, a *shape hit* is a decision equal to the shape
    class and a *texture hit* one equal to the texture class.

    - ``shape_bias`` = shape hits / (shape hits + texture hits); ``texture_bias`` = 1 - that.
      Range [0, 1]; a description, not a score (humans are ~0.96, ImageNet CNNs ~0.2).
      NaN when there are no hits at all.
    - ``shape_accuracy`` = shape hits / n_images, ``texture_accuracy`` = texture hits /
      n_images: 16-class accuracy w.r.t. the shape (resp. texture) label. Range [0, 1].
      NaN when no image is left after the exclusion.
    - ``fraction_correct_shape`` = shape hits / ``n_all``, ``fraction_correct_texture`` = texture
      hits / ``n_all``: model-vs-human's "fraction-correct-shape"/"-texture"
      (``modelvshuman/plotting/analyses.py``, ``ShapeBias.analysis``), which divide by ALL
      images, the excluded ones included (1,280 for the stimuli, against 1,200 conflict images).
      NaN for no images.
    - counts ``n_shape_hits``, ``n_texture_hits``, ``n_images`` (after exclusion), ``n_all``.

    Example:
        >>> r = shape_bias(["cat", "dog", "car"], ["dog", "cat", "car"], ["cat", "cat", "car"])
        >>> r["shape_bias"], r["n_images"], r["n_shape_hits"], r["n_texture_hits"]
        (0.5, 2, 1, 1)
    """
    shape = np.asarray(shape, dtype=object).astype(str)
    texture = np.asarray(texture, dtype=object).astype(str)
    predicted = np.asarray(predicted, dtype=object).astype(str)
    if not (shape.shape == texture.shape == predicted.shape) or shape.ndim != 1:
        raise ValueError(f"shape, texture and predicted must be 1-D of equal length; got "
                         f"{shape.shape}, {texture.shape}, {predicted.shape}")
    keep = shape != texture
    s_hits = int(np.sum(predicted[keep] == shape[keep]))
    t_hits = int(np.sum(predicted[keep] == texture[keep]))
    n = int(keep.sum())
    hits = s_hits + t_hits
    sb = s_hits / hits if hits else float("nan")
    return {
        "shape_bias": sb,
        "texture_bias": 1.0 - sb if hits else float("nan"),
        "shape_accuracy": s_hits / n if n else float("nan"),
        "texture_accuracy": t_hits / n if n else float("nan"),
        "n_shape_hits": s_hits,
        "n_texture_hits": t_hits,
        "n_images": n,
        "fraction_correct_shape": s_hits / len(shape) if len(shape) else float("nan"),
        "fraction_correct_texture": t_hits / len(shape) if len(shape) else float("nan"),
        "n_all": int(len(shape)),
    }


# ----------------------------------------------------------------------------- evaluator

def shape_bias_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Shape/texture bias on cue-conflict images (``images.shape``, ``images.texture``).

    ``options["decision"]``: ``"imagenet_mapping"`` (default) turns the 1000-way softmax
    into a 16-way decision by the mean probability of each category's ImageNet classes
    (mapping CSV from ``options["category_mapping"]``, else the packaged one); the softmax is
    taken at ``options["logit_scale"]`` (:func:`decision_logit_scale`: default
    ``"model_vs_human"`` = 100, or ``"checkpoint"`` = the learned scale, or a number).
    ``"category_prompts"`` uses a classifier whose classes are the categories themselves
    (decision = argmax, which no scale changes). ``n`` is the number of hits (shape + texture)
    for the biases, the number of cue-conflict images (shape != texture) for the
    ``cue_conflict_*_accuracy`` rows, and the number of all images for model-vs-human's
    ``fraction_correct_*`` rows (same hits, divided by every image).
    """
    need_classifier("shape_bias", classifier)
    name = inputs["dataset"]
    decision = options.get("decision", "imagenet_mapping")
    X, images, _ = join_images(name, embeddings, tables, ["shape", "texture"])
    logits = classifier_logits(name, X, classifier,
                               decision_logit_scale(options.get("logit_scale"), classifier.logit_scale))
    if decision == "imagenet_mapping":
        path = options.get("category_mapping")
        mapping = pd.read_csv(path) if path else load_imagenet16_mapping()
        missing = [c for c in ("category", "imagenet_index") if c not in mapping.columns]
        if missing:
            raise ValueError(f"category mapping {path or '(packaged imagenet16)'} lacks column(s) {missing}")
        if mapping["imagenet_index"].max() >= logits.shape[1]:
            raise ValueError(f"dataset {name!r}: the category mapping refers to ImageNet class "
                             f"{mapping['imagenet_index'].max()} but the classifier has {logits.shape[1]} "
                             "classes; decision 'imagenet_mapping' needs the 1000-class ImageNet classifier")
        predicted = category_decisions(softmax(logits, axis=1), mapping)
        categories = set(mapping["category"].astype(str))
    elif decision == "category_prompts":
        predicted = np.asarray(classifier.classnames, dtype=object)[logits.argmax(axis=1)]
        categories = set(map(str, classifier.classnames))
    else:
        raise ValueError(f"shape_bias option decision must be 'imagenet_mapping' or 'category_prompts', "
                         f"got {decision!r}")
    shape, texture = images["shape"].astype(str), images["texture"].astype(str)
    unknown = sorted((set(shape) | set(texture)) - categories)
    if unknown:
        raise ValueError(f"dataset {name!r}: shape/texture classes {unknown} are not among the decision's "
                         f"categories {sorted(categories)}")
    r = shape_bias(shape, texture, predicted)
    hits = r["n_shape_hits"] + r["n_texture_hits"]
    rows = [metric_row("shape_bias", name, decision, r["shape_bias"], hits),
            metric_row("texture_bias", name, decision, r["texture_bias"], hits),
            metric_row("cue_conflict_shape_accuracy", name, decision, r["shape_accuracy"], r["n_images"]),
            metric_row("cue_conflict_texture_accuracy", name, decision, r["texture_accuracy"], r["n_images"]),
            metric_row("fraction_correct_shape", name, decision, r["fraction_correct_shape"], r["n_all"]),
            metric_row("fraction_correct_texture", name, decision, r["fraction_correct_texture"], r["n_all"])]
    details = pd.DataFrame({"image_id": images["image_id"], "shape": shape.to_numpy(),
                            "texture": texture.to_numpy(), "predicted": np.asarray(predicted, dtype=str)})
    return MetricResult(rows_frame(rows), details, shape_bias_statistics(shape, texture, predicted, name))


def shape_bias_statistics(shape, texture, predicted, stream: str) -> list:
    """The :func:`shape_bias` rows' values as functions of image weights (in the evaluator's row order),
    for intervals over the cue-conflict images (all of them, the excluded ones included, so that
    ``fraction_correct_*`` and the biases resample the same images)."""
    shape, texture = np.asarray(shape, dtype=str), np.asarray(texture, dtype=str)
    predicted = np.asarray(predicted, dtype=str)
    keep = (shape != texture).astype(np.float64)
    s_hit = keep * (predicted == shape)
    t_hit = keep * (predicted == texture)
    ones = np.ones(len(shape))
    return [ratio_of_sums(s_hit, s_hit + t_hit, stream), ratio_of_sums(t_hit, s_hit + t_hit, stream),
            ratio_of_sums(s_hit, keep, stream), ratio_of_sums(t_hit, keep, stream),
            ratio_of_sums(s_hit, ones, stream), ratio_of_sums(t_hit, ones, stream)]
