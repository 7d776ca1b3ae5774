"""Evaluators: from loaded artifacts (embeddings, dataset tables, a zero-shot classifier) to
tidy metric rows.

One evaluator per metric *kind* (the ``kind`` of a metric in the config). Each takes

- ``embeddings``: dataset name -> :class:`~clipdyn.io.EmbeddingTable`,
- ``tables``: dataset name -> :class:`~clipdyn.datasets.DatasetTables`,
- ``classifier``: the zero-shot :class:`~clipdyn.io.Classifier` (None for kinds that need none),
- ``inputs``: the kind's roles -> dataset name(s) (see :data:`ROLES`),
- ``options``: the metric's options from the config,

and returns a :class:`MetricResult`: rows with columns ``metric, dataset, variant, value,
n`` (``n`` = the number of images, trials or datasets actually used) and an optional
per-image/per-trial ``details`` table kept for reanalysis.

Embeddings are joined to the dataset's images or trials on ``image_id``. Images without
an embedding (skipped at embedding time) are left out and ``n`` says how many were used;
embeddings of ids the manifest does not know are ignored with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .calibration import expected_calibration_error, fit_temperature, negative_log_likelihood, split_heldout
from .low_level_alignment import alignment_correlations, embedding_distance
from .mid_level_alignment import distances_for_triplets, majority_accuracy, two_afc_score
from .noise_sensitivity import noise_sensitivity
from .ood import auroc, fpr_at_95_tpr, mcm_scores
from .saliency_alignment import auc_judd, center_crop, nss, pearson_cc, resize_map
from .shape_bias import category_decisions, load_imagenet16_mapping, shape_bias
from .zeroshot import softmax, topk_accuracy, zero_shot_logits

if TYPE_CHECKING:  # keep the import light: no pyarrow just to evaluate
    from clipdyn.datasets import DatasetTables
    from clipdyn.io import Classifier, EmbeddingTable

__all__ = ["MetricResult", "EVALUATORS", "ROLES", "KIND_MODULES", "evaluate", "source_files", "ROW_COLUMNS"]

#: columns of :attr:`MetricResult.rows`
ROW_COLUMNS = ["metric", "dataset", "variant", "value", "n"]


@dataclass
class MetricResult:
    """Metric rows (columns :data:`ROW_COLUMNS`) and an optional per-image/per-trial table."""

    rows: pd.DataFrame
    details: Optional[pd.DataFrame] = None


from ..study import METRIC_KINDS as _KINDS  # noqa: E402

#: kind -> {role: "one" (a dataset name) | "list" (a list of names, may be empty)}
ROLES: Dict[str, Dict[str, str]] = {
    kind: {**{r: "one" for r in spec["one"]}, **{r: "list" for r in spec["many"]}} for kind, spec in _KINDS.items()
}

#: kind -> the metric modules it uses (``tasks`` itself is added by :func:`source_files`); one list,
#: shared with the workflow's source hashes
from ..study import METRIC_MODULES as KIND_MODULES  # noqa: E402


def source_files(kind: str) -> List[Path]:
    """The library files whose source a metric kind depends on (for a rule's source hash)."""
    _check_kind(kind)
    here = Path(__file__).parent
    return [here / f"{m}.py" for m in KIND_MODULES[kind]] + [here / "tasks.py"]


# ----------------------------------------------------------------------------- helpers

def _check_kind(kind: str) -> None:
    if kind not in EVALUATORS:
        raise ValueError(f"unknown metric kind {kind!r}; known kinds: {sorted(EVALUATORS)}")


def _as_list(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _require(df: Optional[pd.DataFrame], columns: Sequence[str], dataset: str, table: str) -> None:
    if df is None:
        raise ValueError(f"dataset {dataset!r} has no {table} table; this metric needs one with "
                         f"columns {list(columns)}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"dataset {dataset!r}: the {table} table lacks column(s) {missing} "
                         f"(it has {list(df.columns)})")


def _embedding_index(dataset: str, emb: "EmbeddingTable") -> pd.Series:
    """image_id -> row of ``emb.X``."""
    ids = pd.Index(np.asarray(emb.ids).astype(str))
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()[:5].tolist()
        raise ValueError(f"dataset {dataset!r}: the embeddings hold duplicate image ids, e.g. {dup}")
    if len(ids) != len(emb.X):
        raise ValueError(f"dataset {dataset!r}: {len(ids)} embedding ids but {len(emb.X)} embeddings")
    return pd.Series(np.arange(len(ids)), index=ids)


def _join(dataset: str, embeddings: Mapping, tables: Mapping, columns: Sequence[str]
          ) -> Tuple[np.ndarray, pd.DataFrame, Optional[np.ndarray]]:
    """Embeddings (and spatial maps) aligned with the images of ``dataset`` that have one.

    Returns ``(X, images, spatial)`` in manifest order; ``images`` has a fresh index.
    """
    emb, tab = embeddings[dataset], tables[dataset]
    pos = _embedding_index(dataset, emb)
    images = tab.images
    _require(images, ["image_id", *columns], dataset, "images")
    images = images.assign(image_id=images["image_id"].astype(str))
    if images["image_id"].duplicated().any():
        raise ValueError(f"dataset {dataset!r}: the images table repeats image ids")
    unknown = ~pos.index.isin(images["image_id"])
    if unknown.any():
        warnings.warn(f"dataset {dataset!r}: {int(unknown.sum())} embeddings have image ids the manifest "
                      f"does not list (e.g. {pos.index[unknown][:3].tolist()}); they are ignored", stacklevel=3)
    images = images[images["image_id"].isin(pos.index)].reset_index(drop=True)
    if images.empty:
        raise ValueError(f"dataset {dataset!r}: none of the {len(tab.images)} manifest images has an "
                         f"embedding ({len(pos)} embeddings)")
    rows = pos.loc[images["image_id"]].to_numpy()
    spatial = None if emb.spatial is None else np.asarray(emb.spatial)[rows]
    return np.asarray(emb.X)[rows], images, spatial


def _need_classifier(kind: str, classifier) -> None:
    if classifier is None:
        raise ValueError(f"metric kind {kind!r} needs a zero-shot classifier, and none was given")


def _logits(dataset: str, X: np.ndarray, classifier: "Classifier", scale: Optional[float] = None) -> np.ndarray:
    W = np.asarray(classifier.W)
    if W.shape[1] != X.shape[1]:
        raise ValueError(f"dataset {dataset!r}: embeddings have dimension {X.shape[1]} but the classifier "
                         f"{W.shape[1]}; they come from different models")
    return zero_shot_logits(X, W, classifier.logit_scale if scale is None else scale)


def _labels(dataset: str, images: pd.DataFrame, n_classes: int) -> np.ndarray:
    labels = pd.to_numeric(images["label"], errors="raise").to_numpy()
    if np.any(labels != np.round(labels)):
        raise ValueError(f"dataset {dataset!r}: column 'label' must hold integer class indices")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"dataset {dataset!r}: column 'label' holds class indices in "
                         f"[{labels.min()}, {labels.max()}] but the classifier has {n_classes} classes")
    return labels


def _frame(rows: List[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=ROW_COLUMNS)
    return df.astype({"metric": str, "dataset": str, "variant": str, "value": "float64", "n": "int64"})


def _row(metric: str, dataset: str, variant: str, value: float, n: int) -> dict:
    return {"metric": metric, "dataset": dataset, "variant": variant, "value": float(value), "n": int(n)}


# ----------------------------------------------------------------------------- evaluators

def zeroshot_accuracy(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Top-1 and top-5 zero-shot accuracy on ``images.label`` (metrics ``zeroshot_top1``,
    ``zeroshot_top5``; top-5 is NaN for fewer than 5 classes)."""
    _need_classifier("zeroshot_accuracy", classifier)
    name = inputs["dataset"]
    X, images, _ = _join(name, embeddings, tables, ["label"])
    logits = _logits(name, X, classifier)
    labels = _labels(name, images, logits.shape[1])
    acc = topk_accuracy(logits, labels, ks=(1, 5))
    rows = [_row("zeroshot_top1", name, "", acc["top1"], len(labels)),
            _row("zeroshot_top5", name, "", acc["top5"], len(labels))]
    pred = logits.argmax(axis=1)
    details = pd.DataFrame({"image_id": images["image_id"], "label": labels, "predicted": pred})
    return MetricResult(_frame(rows), details)


def shape_bias_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Shape/texture bias on cue-conflict images (``images.shape``, ``images.texture``).

    ``options["decision"]``: ``"imagenet_mapping"`` (default) turns the 1000-way softmax
    (at the checkpoint's logit scale) into a 16-way decision by the mean probability of
    each category's ImageNet classes (mapping CSV from ``options["category_mapping"]``,
    else the packaged one); ``"category_prompts"`` uses a classifier whose classes are the
    categories themselves (decision = argmax). ``n`` is the number of hits (shape +
    texture) for the biases and the number of cue-conflict images (shape != texture) for
    the accuracies.
    """
    _need_classifier("shape_bias", classifier)
    name = inputs["dataset"]
    decision = options.get("decision", "imagenet_mapping")
    X, images, _ = _join(name, embeddings, tables, ["shape", "texture"])
    logits = _logits(name, X, classifier)
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
    rows = [_row("shape_bias", name, decision, r["shape_bias"], hits),
            _row("texture_bias", name, decision, r["texture_bias"], hits),
            _row("cue_conflict_shape_accuracy", name, decision, r["shape_accuracy"], r["n_images"]),
            _row("cue_conflict_texture_accuracy", name, decision, r["texture_accuracy"], r["n_images"])]
    details = pd.DataFrame({"image_id": images["image_id"], "shape": shape.to_numpy(),
                            "texture": texture.to_numpy(), "predicted": np.asarray(predicted, dtype=str)})
    return MetricResult(_frame(rows), details)


def noise_sensitivity_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Top-1 accuracy per noise severity and the normalised drop from the clean accuracy.

    All rows carry the NOISY dataset's name; the clean accuracy is ``noise_accuracy``
    variant ``severity_0``. ``noise_sensitivity`` has variants ``severity_<k>`` and
    ``mean`` (over severities).
    """
    _need_classifier("noise_sensitivity", classifier)
    clean, noisy = inputs["clean"], inputs["noisy"]
    Xc, ic, _ = _join(clean, embeddings, tables, ["label"])
    Xn, inoisy, _ = _join(noisy, embeddings, tables, ["label", "severity"])
    lc = _logits(clean, Xc, classifier)
    ln = _logits(noisy, Xn, classifier)
    yc, yn = _labels(clean, ic, lc.shape[1]), _labels(noisy, inoisy, ln.shape[1])
    severity = pd.to_numeric(inoisy["severity"], errors="raise").to_numpy().astype(np.int64)
    if np.any(severity <= 0):
        raise ValueError(f"dataset {noisy!r}: column 'severity' must be >= 1 (severity 0 is the clean "
                         f"dataset {clean!r})")
    correct = ln.argmax(axis=1) == yn
    acc_clean = topk_accuracy(lc, yc, ks=(1,))["top1"]
    acc = {int(s): float(correct[severity == s].mean()) for s in np.unique(severity)}
    ns = noise_sensitivity(acc_clean, acc)
    rows = [_row("noise_accuracy", noisy, "severity_0", acc_clean, len(yc))]
    rows += [_row("noise_accuracy", noisy, f"severity_{s}", a, int((severity == s).sum())) for s, a in acc.items()]
    rows += [_row("noise_sensitivity", noisy, f"severity_{s}", v, int((severity == s).sum()))
             for s, v in ns["per_severity"].items()]
    rows.append(_row("noise_sensitivity", noisy, "mean", ns["mean"], len(yn)))
    details = pd.DataFrame({"image_id": inoisy["image_id"], "severity": severity, "label": yn,
                            "predicted": ln.argmax(axis=1)})
    return MetricResult(_frame(rows), details)


def low_level_alignment_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Correlation of embedding distance (reference vs distorted) with human quality scores.

    Per dataset: trials ``ref_id, dist_id, score, score_type`` (one score type per
    dataset: "mos", higher = better, or "dmos", higher = worse); distance from
    ``options["distance"]`` (default ``dimnorm_euclidean``, scaled over the dataset's own
    pairs). Variants ``spearman``, ``pearson``, ``kendall``, signed so higher = more
    human-like. Dataset ``mean``: the unweighted mean over the listed datasets (``n`` =
    number of datasets; NaN if any is NaN).
    """
    names = _as_list(inputs["datasets"])
    if not names:
        raise ValueError("low_level_alignment needs at least one dataset in role 'datasets'")
    kind = options.get("distance", "dimnorm_euclidean")
    rows, details, per = [], [], {v: [] for v in ("spearman", "pearson", "kendall")}
    for name in names:
        trials = tables[name].trials
        _require(trials, ["ref_id", "dist_id", "score", "score_type"], name, "trials")
        pos = _embedding_index(name, embeddings[name])
        t = trials.assign(ref_id=trials["ref_id"].astype(str), dist_id=trials["dist_id"].astype(str))
        t = t[t["ref_id"].isin(pos.index) & t["dist_id"].isin(pos.index)].reset_index(drop=True)
        if t.empty:
            raise ValueError(f"dataset {name!r}: no trial has embeddings for both its ref_id and dist_id")
        types = sorted(set(t["score_type"].astype(str).str.lower()))
        if len(types) != 1 or types[0] not in ("mos", "dmos"):
            raise ValueError(f"dataset {name!r}: column 'score_type' must be one of 'mos'/'dmos' for the whole "
                             f"dataset, found {types}")
        X = np.asarray(embeddings[name].X)
        d = embedding_distance(X[pos.loc[t["ref_id"]].to_numpy()], X[pos.loc[t["dist_id"]].to_numpy()], kind)
        score = pd.to_numeric(t["score"], errors="raise").to_numpy(dtype=np.float64)
        c = alignment_correlations(d, score, score_higher_is_better=types[0] == "mos")
        for v in per:
            rows.append(_row("low_level_alignment", name, v, c[v], len(t)))
            per[v].append(c[v])
        details.append(pd.DataFrame({"dataset": name, "ref_id": t["ref_id"], "dist_id": t["dist_id"],
                                     "score": score, "score_type": types[0], "distance": d}))
    for v, values in per.items():
        rows.append(_row("low_level_alignment", "mean", v, float(np.mean(values)), len(values)))
    return MetricResult(_frame(rows), pd.concat(details, ignore_index=True))


def mid_level_alignment_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """2AFC agreement with human similarity judgements on NIGHTS-style triplets.

    Trials ``ref_id, left_id, right_id, left_vote, right_vote, votes`` (and ``split`` when
    ``options["split"]`` is not "all"). ``votes`` is the number of observers:
    ``options["min_votes"]`` (default 0; DreamSim uses 6) keeps trials with at least that
    many. The share of observers who chose the right image is
    ``p = right_vote / (left_vote + right_vote)``, which reads both the published NIGHTS
    shares (left + right = 1, so p = right_vote, as in DreamSim) and raw counts. Trials
    with no votes or without embeddings are dropped. Distance ``options["distance"]``
    (default ``cosine``). Variant ``2afc`` (soft, all trials) and ``majority`` (hard,
    trials with a tied vote excluded).
    """
    name = inputs["dataset"]
    split = options.get("split", "all")
    min_votes = options.get("min_votes", 0)
    cols = ["ref_id", "left_id", "right_id", "left_vote", "right_vote", "votes"]
    trials = tables[name].trials
    _require(trials, cols + ([] if split == "all" else ["split"]), name, "trials")
    t = trials.copy()
    for c in ("ref_id", "left_id", "right_id"):
        t[c] = t[c].astype(str)
    if split != "all":
        t = t[t["split"].astype(str) == str(split)]
    votes = pd.to_numeric(t["votes"], errors="raise")
    lv = pd.to_numeric(t["left_vote"], errors="raise")
    rv = pd.to_numeric(t["right_vote"], errors="raise")
    if ((lv < 0) | (rv < 0)).any():
        raise ValueError(f"dataset {name!r}: columns 'left_vote'/'right_vote' must be non-negative")
    t = t[(votes >= min_votes) & (lv + rv > 0)]
    pos = _embedding_index(name, embeddings[name])
    t = t[t["ref_id"].isin(pos.index) & t["left_id"].isin(pos.index) & t["right_id"].isin(pos.index)]
    t = t.reset_index(drop=True)
    if t.empty:
        raise ValueError(f"dataset {name!r}: no trial left after split={split!r}, min_votes={min_votes} "
                         "and dropping trials without embeddings")
    right = pd.to_numeric(t["right_vote"]).to_numpy(np.float64)
    p = right / (pd.to_numeric(t["left_vote"]).to_numpy(np.float64) + right)
    d_left, d_right = distances_for_triplets(embeddings[name].X, pos.index, t["ref_id"], t["left_id"],
                                             t["right_id"], kind=options.get("distance", "cosine"))
    rows = [_row("mid_level_alignment", name, "2afc", two_afc_score(d_left, d_right, p), len(t)),
            _row("mid_level_alignment", name, "majority", majority_accuracy(d_left, d_right, p),
                 int(np.sum(p != 0.5)))]
    details = pd.DataFrame({"ref_id": t["ref_id"], "left_id": t["left_id"], "right_id": t["right_id"],
                            "p_right": p, "d_left": d_left, "d_right": d_right})
    return MetricResult(_frame(rows), details)


def _read_gray(path: str) -> np.ndarray:
    """A grayscale image as float64 (8- or 16-bit, or float)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
            im = im.convert("L")
        return np.asarray(im, dtype=np.float64)


def _fixation_mask(fixation_map: np.ndarray) -> np.ndarray:
    """Fixated pixels: above half the map's maximum. For a binary map (0/1, 0/255) that is
    every nonzero pixel; for a JPEG-compressed point map (MIT1003 ``_fixPts.jpg``) it
    drops the compression noise around the points."""
    top = fixation_map.max() if fixation_map.size else 0
    return fixation_map > top / 2.0 if top > 0 else np.zeros(fixation_map.shape, dtype=bool)


def saliency_alignment_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Agreement of the model's spatial maps (N, G, G) with human saliency.

    ``cc``: the human density map (``images.map_path``) is resized to the model's G x G
    grid (anti-aliased bilinear) and correlated with the model map. ``nss``/``auc_judd``
    (images with a ``fixation_path``; fixations = pixels above half the map's maximum,
    i.e. the nonzero pixels of a binary map): the model map is
    upsampled bilinearly to the fixation map's resolution, as in the MIT benchmark, since
    a binary fixation map cannot be shrunk without losing fixations. With
    ``options["crop"] == "center"`` the human maps are first cut to their central square,
    matching a center-cropping preprocessing; the default ``"none"`` assumes the model saw
    the whole image. Each value is the mean over images where it is defined (a constant
    map has no CC/NSS); ``n`` counts those images.
    """
    name = inputs["dataset"]
    crop = options.get("crop", "none")
    if crop not in ("none", "center"):
        raise ValueError(f"saliency_alignment option crop must be 'none' or 'center', got {crop!r}")
    if embeddings[name].spatial is None:
        raise ValueError(f"dataset {name!r}: the embeddings have no spatial maps; embed it with spatial "
                         "maps for saliency_alignment")
    _, images, spatial = _join(name, embeddings, tables, ["map_path"])
    no_map = ~images["map_path"].map(lambda v: isinstance(v, str) and bool(v))
    if no_map.any():
        raise ValueError(f"dataset {name!r}: {int(no_map.sum())} image(s) have no 'map_path' (e.g. "
                         f"{images.loc[no_map, 'image_id'].iloc[0]!r})")
    cut = center_crop if crop == "center" else (lambda m: m)
    has_fix = "fixation_path" in images.columns
    out = {"cc": [], "nss": [], "auc_judd": []}
    for i, row in enumerate(images.itertuples(index=False)):
        pred = np.asarray(spatial[i], dtype=np.float64)
        human = cut(_read_gray(row.map_path))
        out["cc"].append(pearson_cc(pred, resize_map(human, pred.shape)))
        fix_path = getattr(row, "fixation_path", None) if has_fix else None
        if isinstance(fix_path, str) and fix_path:
            fix = _fixation_mask(cut(_read_gray(fix_path)))
            up = resize_map(pred, fix.shape)
            out["nss"].append(nss(up, fix))
            out["auc_judd"].append(auc_judd(up, fix))
        else:
            out["nss"].append(np.nan)
            out["auc_judd"].append(np.nan)
    rows = []
    for variant, values in out.items():
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v)
        if variant != "cc" and not ok.any():
            continue
        rows.append(_row("saliency_alignment", name, variant, v[ok].mean() if ok.any() else np.nan, ok.sum()))
    details = pd.DataFrame({"image_id": images["image_id"], **{k: np.asarray(v) for k, v in out.items()}})
    return MetricResult(_frame(rows), details)


def calibration_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """ECE and NLL with the checkpoint's own logit scale (``raw``) and after temperature scaling.

    The temperature is fitted on a seeded held-out part (``heldout_fraction``, ``seed``) of
    the in-distribution images, ordered by image id so the split is the same at every
    epoch; ECE (``n_bins`` equal-width bins) and NLL are reported on the rest of the
    in-distribution images and on all of each ``shifted`` dataset. Metric ``temperature``
    variant ``fitted`` (dataset = in-distribution, ``n`` = images fitted on) is relative to
    the checkpoint's logit scale: the calibrated scale is ``logit_scale / T``.
    """
    _need_classifier("calibration", classifier)
    ind = inputs["in_distribution"]
    shifted = _as_list(inputs.get("shifted"))
    n_bins = int(options.get("n_bins", 15))
    X, images, _ = _join(ind, embeddings, tables, ["label"])
    order = np.argsort(images["image_id"].to_numpy(), kind="stable")
    X, images = X[order], images.iloc[order].reset_index(drop=True)
    logits = _logits(ind, X, classifier)
    labels = _labels(ind, images, logits.shape[1])
    fit, ev = split_heldout(len(labels), float(options.get("heldout_fraction", 0.2)), int(options.get("seed", 0)))
    if len(ev) == 0:
        raise ValueError(f"dataset {ind!r}: {len(labels)} image(s) are too few to fit a temperature and "
                         "evaluate on the rest")
    T = fit_temperature(logits[fit], labels[fit])
    sets = [(ind, logits[ev], labels[ev])]
    for name in shifted:
        Xs, imgs, _ = _join(name, embeddings, tables, ["label"])
        ls = _logits(name, Xs, classifier)
        sets.append((name, ls, _labels(name, imgs, ls.shape[1])))
    rows = [_row("temperature", ind, "fitted", T, len(fit))]
    for name, lg, y in sets:
        for variant, scaled in (("raw", lg), ("temperature_scaled", lg / T)):
            ece = expected_calibration_error(softmax(scaled, axis=1), y, n_bins)
            rows.append(_row("ece", name, variant, ece, len(y)))
            rows.append(_row("nll", name, variant, negative_log_likelihood(scaled, y), len(y)))
    details = pd.DataFrame({"image_id": images["image_id"], "heldout_for_fit": np.isin(np.arange(len(labels)), fit)})
    return MetricResult(_frame(rows), details)


def ood_detection_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """MCM out-of-distribution detection against the in-distribution classes.

    Per OOD dataset: ``ood_auroc`` and ``ood_fpr95``, variant ``mcm``, with MCM scores at
    ``options["temperature"]`` (default 1.0); ``n`` = in-distribution + OOD images.
    """
    _need_classifier("ood_detection", classifier)
    ind = inputs["in_distribution"]
    oods = _as_list(inputs.get("ood"))
    if not oods:
        raise ValueError("ood_detection needs at least one dataset in role 'ood'")
    T = float(options.get("temperature", 1.0))
    X, images, _ = _join(ind, embeddings, tables, [])
    _logits(ind, X, classifier)  # dimension check
    s_in = mcm_scores(X, classifier.W, T)
    rows, details = [], [pd.DataFrame({"dataset": ind, "image_id": images["image_id"], "mcm": s_in})]
    for name in oods:
        Xo, io, _ = _join(name, embeddings, tables, [])
        _logits(name, Xo, classifier)
        s_out = mcm_scores(Xo, classifier.W, T)
        n = len(s_in) + len(s_out)
        rows += [_row("ood_auroc", name, "mcm", auroc(s_in, s_out), n),
                 _row("ood_fpr95", name, "mcm", fpr_at_95_tpr(s_in, s_out), n)]
        details.append(pd.DataFrame({"dataset": name, "image_id": io["image_id"], "mcm": s_out}))
    return MetricResult(_frame(rows), pd.concat(details, ignore_index=True))


#: metric kind -> evaluator
EVALUATORS: Dict[str, Callable[..., MetricResult]] = {
    "zeroshot_accuracy": zeroshot_accuracy,
    "shape_bias": shape_bias_task,
    "noise_sensitivity": noise_sensitivity_task,
    "low_level_alignment": low_level_alignment_task,
    "mid_level_alignment": mid_level_alignment_task,
    "saliency_alignment": saliency_alignment_task,
    "calibration": calibration_task,
    "ood_detection": ood_detection_task,
}


def evaluate(kind: str, *, embeddings: Dict[str, "EmbeddingTable"], tables: Dict[str, "DatasetTables"],
             classifier: Optional["Classifier"], inputs: Dict[str, object], options: Optional[dict] = None
             ) -> MetricResult:
    """Run the evaluator of ``kind`` after checking its roles and that every dataset named in
    ``inputs`` has embeddings and tables.

    Example (in a notebook)::

        from clipdyn.io import read_embeddings, read_classifier
        res = evaluate("zeroshot_accuracy", embeddings={"imagenet": read_embeddings(p)},
                       tables={"imagenet": tables}, classifier=read_classifier(q),
                       inputs={"dataset": "imagenet"}, options={})
        res.rows
    """
    _check_kind(kind)
    roles = ROLES[kind]
    unknown = sorted(set(inputs) - set(roles))
    if unknown:
        raise ValueError(f"metric kind {kind!r} has roles {sorted(roles)}; unknown role(s) {unknown}")
    inputs = dict(inputs)
    names: List[str] = []
    for role, arity in roles.items():
        if arity == "one":
            value = inputs.get(role)
            if not isinstance(value, str) or not value:
                raise ValueError(f"metric kind {kind!r} needs role {role!r} to name one dataset, got {value!r}")
            names.append(value)
        else:
            inputs[role] = _as_list(inputs.get(role))
            names.extend(inputs[role])
    for name in dict.fromkeys(names):
        if name not in embeddings:
            raise ValueError(f"metric kind {kind!r}: no embeddings given for dataset {name!r}")
        if name not in tables:
            raise ValueError(f"metric kind {kind!r}: no dataset tables given for dataset {name!r}")
    return EVALUATORS[kind](embeddings=embeddings, tables=tables, classifier=classifier, inputs=inputs,
                            options=dict(options or {}))
