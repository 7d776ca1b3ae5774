"""Zero-shot classification: logits from cached embeddings, softmax, top-k accuracy; the
``zeroshot_accuracy`` evaluator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Optional

import numpy as np
import pandas as pd
from scipy.special import softmax as _scipy_softmax

from ._join import class_labels, join_images, need_classifier
from .intervals import mean_of
from .result import MetricResult, metric_row, rows_frame

if TYPE_CHECKING:
    from clipdyn.io import Classifier

__all__ = ["l2_normalize", "zero_shot_logits", "softmax", "topk_accuracy", "CLASS_SUBSET_MODES",
           "class_subset_columns", "score_class_subset"]

#: how a dataset whose classes are a subset of the class set is scored: ``restrict`` (logits of
#: the dataset's classes only, as the ImageNet-R/-A papers and CLIP_benchmark do) or ``all``
#: (argmax over the whole class set, the label mapped to its class-set index)
CLASS_SUBSET_MODES = ("restrict", "all")


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` divided by its L2 norm along ``axis`` (float64); all-zero rows stay zero.

    Example:
        >>> l2_normalize(np.array([[3.0, 4.0]]))
        array([[0.6, 0.8]])
    """
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def zero_shot_logits(image_emb: np.ndarray, class_weights: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP zero-shot logits ``logit_scale * cos(image, class)``, shape (N, C).

    Definition: image embeddings (N, D) and class weights (C, D) are each L2-normalised
    (the weights already are; they are normalised again defensively), and the cosine
    similarities are multiplied by ``logit_scale``, the checkpoint's learned multiplier
    (``exp`` of the stored parameter, about 100 for a trained CLIP).

    Range: [-logit_scale, logit_scale]. Higher means more like that class.

    Example:
        >>> zero_shot_logits(np.array([[1.0, 0.0]]), np.eye(2), 100.0)
        array([[100.,   0.]])
    """
    image_emb = np.asarray(image_emb)
    class_weights = np.asarray(class_weights)
    if image_emb.ndim != 2 or class_weights.ndim != 2 or image_emb.shape[1] != class_weights.shape[1]:
        raise ValueError(f"image embeddings {image_emb.shape} and class weights {class_weights.shape} "
                         "must be (N, D) and (C, D) with the same D")
    return float(logit_scale) * (l2_normalize(image_emb) @ l2_normalize(class_weights).T)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float64).

    Range: each slice is non-negative and sums to 1.

    Example:
        >>> softmax(np.array([0.0, np.log(3.0)]))
        array([0.25, 0.75])
    """
    return _scipy_softmax(np.asarray(logits, dtype=np.float64), axis=axis)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks: Iterable[int] = (1, 5)) -> dict:
    """Fraction of samples whose true class is among the ``k`` highest logits.

    Definition: for each ``k`` in ``ks``, mean over samples of
    ``labels[i] in argtop_k(logits[i])``. Ties in the logits are broken towards the lower
    class index (a stable sort), so a tie never counts twice. ``k`` larger than the number
    of classes C is undefined (it would be trivially 1) and gives NaN.

    Range: [0, 1], higher is better. Returns ``{"top1": ..., "top5": ...}`` (key
    ``f"top{k}"``); NaN for every k when there are no samples.

    Example:
        >>> topk_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), ks=(1, 2))
        {'top1': 0.5, 'top2': 1.0}
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ValueError(f"logits {logits.shape} must be (N, C) and labels {labels.shape} must be (N,)")
    n, c = logits.shape
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must lie in [0, {c}); got [{labels.min()}, {labels.max()}]")
    out = {}
    if n == 0:
        return {f"top{k}": float("nan") for k in ks}
    ahead = true_class_rank(logits, labels)
    for k in ks:
        out[f"top{k}"] = float("nan") if k > c or k < 1 else float(np.mean(ahead < k))
    return out


def true_class_rank(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per sample, the number of classes ahead of the true class in a stable descending sort of the
    logits (0 = top-1 hit; a top-k hit is ``rank < k``), as :func:`topk_accuracy` counts them."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = logits.shape
    true = logits[np.arange(n), labels][:, None]
    return (logits > true).sum(axis=1) + ((logits == true) & (np.arange(c)[None, :] < labels[:, None])).sum(axis=1)


def classifier_logits(dataset: str, X: np.ndarray, classifier: "Classifier", scale: Optional[float] = None
                      ) -> np.ndarray:
    """Zero-shot logits of ``dataset``'s embeddings ``X`` under ``classifier`` (at its own logit scale
    unless ``scale`` is given), after checking that both come from a model of the same width."""
    W = np.asarray(classifier.W)
    if W.shape[1] != X.shape[1]:
        raise ValueError(f"dataset {dataset!r}: embeddings have dimension {X.shape[1]} but the classifier "
                         f"{W.shape[1]}; they come from different models")
    return zero_shot_logits(X, W, classifier.logit_scale if scale is None else scale)


def class_subset_columns(dataset_classnames, classset_classnames):
    """The class-set column of each of the dataset's classes, or None when they are the same list.

    ``dataset_classnames``: the dataset's class names in label order (e.g. ``classnames.txt`` of
    ``clip-benchmark/wds_imagenet-r``: the 200 ImageNet-R classes, named and ordered as in the
    ImageNet-1k list, which is how CLIP_benchmark's ``builder.py`` masks the 1000 names by
    ImageNet-R's WordNet ids). Each name is matched to the first class-set entry of that name
    after the previous match, so names repeated in the class set (open_clip's ImageNet list
    has "missile" and "sunglasses" twice) resolve in order. Returns an int array (len = number
    of dataset classes), or None when the dataset ships no names or the same names as the class
    set, or as many names as the class set (its labels are then class-set indices, as for an
    image folder named by WordNet ids). Raises ValueError naming the dataset classes the class
    set lacks.

    Example:
        >>> class_subset_columns(["cat", "dog"], ["ant", "cat", "bee", "dog"]).tolist()
        [1, 3]
        >>> class_subset_columns(["a", "b"], ["a", "b"]) is None
        True
    """
    if not dataset_classnames:
        return None
    ds = [str(c) for c in dataset_classnames]
    cs = [str(c) for c in classset_classnames]
    if len(ds) == len(cs):
        return None
    positions: dict = {}
    for j, name in enumerate(cs):
        positions.setdefault(name, []).append(j)
    cols, missing, last = [], [], -1
    for name in ds:
        options = positions.get(name, [])
        after = [j for j in options if j > last]
        if not options:
            missing.append(name)
            continue
        j = after[0] if after else options[0]
        cols.append(j)
        last = j
    if missing:
        raise ValueError(f"{len(missing)} of the dataset's {len(ds)} classes are not in the class set "
                         f"({len(cs)} classes), e.g. {missing[:5]}")
    if len(set(cols)) != len(cols):
        raise ValueError("two of the dataset's classes map to the same class-set class")
    return np.asarray(cols, dtype=np.int64)


def score_class_subset(logits: np.ndarray, labels: np.ndarray, columns, mode: str = "restrict"):
    """Logits and labels for scoring a dataset whose classes are ``columns`` of the class set.

    ``mode="restrict"`` (default): ``logits[:, columns]`` with the labels as they are (indices
    into the dataset's classes): the model chooses among the dataset's classes only, as in
    hendrycks' ImageNet-R/-A evaluation (``output[:, indices_in_1k]``) and CLIP_benchmark (a
    classifier of the dataset's 200 class names). ``mode="all"``: every class-set logit, labels
    mapped to ``columns[label]``. ``columns=None`` (same classes) returns the inputs unchanged.

    Example:
        >>> lg = np.array([[0.0, 5.0, 1.0]]); y = np.array([1])
        >>> score_class_subset(lg, y, np.array([0, 2]))[0].tolist()
        [[0.0, 1.0]]
        >>> score_class_subset(lg, y, np.array([0, 2]), "all")[1].tolist()
        [2]
    """
    if mode not in CLASS_SUBSET_MODES:
        raise ValueError(f"class_subset must be one of {CLASS_SUBSET_MODES}, got {mode!r}")
    if columns is None:
        return logits, labels
    columns = np.asarray(columns, dtype=np.int64)
    if mode == "restrict":
        return np.asarray(logits)[:, columns], labels
    return logits, columns[np.asarray(labels, dtype=np.int64)]


def dataset_logits(dataset: str, X: np.ndarray, images: pd.DataFrame, tables: Mapping, classifier: "Classifier",
                   class_subset: str = "restrict"):
    """``(logits, labels)`` of ``dataset``'s images under ``classifier``, scored on the dataset's own
    classes: when the dataset ships class names (``tables[dataset].classnames``) that are a subset
    of the classifier's (:func:`class_subset_columns`), :func:`score_class_subset` with
    ``class_subset`` (``restrict``: logits of those classes only; ``all``: every class, labels
    mapped); otherwise the labels index the classifier's classes."""
    logits = classifier_logits(dataset, X, classifier)
    table = tables[dataset]
    try:
        columns = class_subset_columns(getattr(table, "classnames", None), classifier.classnames)
    except ValueError as e:
        raise ValueError(f"dataset {dataset!r}: {e}; use a class set that holds them") from None
    labels = class_labels(dataset, images, logits.shape[1] if columns is None else len(columns))
    return score_class_subset(logits, labels, columns, class_subset)


# ----------------------------------------------------------------------------- evaluator

def zeroshot_accuracy(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Top-1 and top-5 zero-shot accuracy on ``images.label`` (measures ``zeroshot_top1``,
    ``zeroshot_top5``; top-5 is NaN for fewer than 5 classes). A dataset whose classes are a
    subset of the class set (ImageNet-R/-A: 200 of ImageNet's 1000) is scored on its own
    classes (``options["class_subset"]``, :func:`dataset_logits`); ``predicted`` in the details is
    then an index into the dataset's classes."""
    need_classifier("zeroshot_accuracy", classifier)
    name = inputs["dataset"]
    X, images, _ = join_images(name, embeddings, tables, ["label"])
    logits, labels = dataset_logits(name, X, images, tables, classifier, options.get("class_subset", "restrict"))
    acc = topk_accuracy(logits, labels, ks=(1, 5))
    rows = [metric_row("zeroshot_top1", name, "", acc["top1"], len(labels)),
            metric_row("zeroshot_top5", name, "", acc["top5"], len(labels))]
    rank = true_class_rank(logits, labels)
    # intervals over the images (top-5 has none where it is undefined: fewer than 5 classes)
    stats = [mean_of(rank < 1, name), mean_of(rank < 5, name) if logits.shape[1] >= 5 else None]
    pred = logits.argmax(axis=1)
    details = pd.DataFrame({"image_id": images["image_id"], "label": labels, "predicted": pred})
    return MetricResult(rows_frame(rows), details, stats)
