"""Mid-level (perceptual similarity) alignment: 2AFC agreement with humans on NIGHTS triplets."""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import pandas as pd

from ._join import embedding_index, require_columns
from .intervals import mean_of, ratio_of_sums
from .low_level_alignment import dimension_scale, embedding_distance
from .result import MetricResult, metric_row, rows_frame

__all__ = ["two_afc_score", "majority_accuracy", "unanimous_accuracy", "distances_for_triplets", "PROTOCOLS",
           "protocol_settings"]

#: NIGHTS evaluation protocols: which distance, triplets and score each source uses.
#:
#: - ``authors``: the study authors' earlier code (pablohc97/Evaluating_Human-CLIP_Alignment_at_
#:   Different_Abstraction_Levels, ``*/Middle-NIGHTS/CLIP_*_euclidean_norm.py``): the
#:   dimension-normalised Euclidean distance of the low-level metric, every one of the 20,019
#:   triplets of ``data.csv`` (no split, no vote filter), scored by :func:`unanimous_accuracy`.
#: - ``dreamsim``: DreamSim (ssundaram21/dreamsim, ``dataset/dataset.py`` and
#:   ``evaluation/score.py``): ``1 - cos``, the ``test`` split, triplets with ``votes >= 6``,
#:   scored by :func:`two_afc_score` (model ties count 0.5).
PROTOCOLS = {
    "authors": {"distance": "dimnorm_euclidean", "split": "all", "min_votes": 0, "headline": "unanimous"},
    "dreamsim": {"distance": "cosine", "split": "test", "min_votes": 6, "headline": "2afc"},
}


def protocol_settings(options: dict) -> dict:
    """The settings of ``options["protocol"]`` (default ``"authors"``) with any of ``distance``,
    ``split``, ``min_votes`` given explicitly in ``options`` taking precedence.

    Example:
        >>> protocol_settings({"protocol": "dreamsim", "split": "all"})["split"], protocol_settings({})["distance"]
        ('all', 'dimnorm_euclidean')
    """
    name = options.get("protocol", "authors")
    if name not in PROTOCOLS:
        raise ValueError(f"mid_level_alignment option protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    out = dict(PROTOCOLS[name], protocol=name)
    out.update({k: options[k] for k in ("distance", "split", "min_votes") if k in options})
    return out


def _check(d_left, d_right, p_right):
    d_left = np.asarray(d_left, dtype=np.float64)
    d_right = np.asarray(d_right, dtype=np.float64)
    p = np.asarray(p_right, dtype=np.float64)
    if not (d_left.shape == d_right.shape == p.shape) or d_left.ndim != 1:
        raise ValueError(f"d_left {d_left.shape}, d_right {d_right.shape} and p_right {p.shape} "
                         "must be 1-D of equal length")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p_right must be a fraction of votes in [0, 1]")
    return d_left, d_right, p


def two_afc_score(d_left: np.ndarray, d_right: np.ndarray, p_right: np.ndarray) -> float:
    """Two-alternative forced choice (2AFC) score: expected agreement with a random judge.

    Definition (Zhang et al. 2018 BAPPS; Fu et al. 2023 NIGHTS): for each triplet the model
    picks the distortion closer to the reference; ``p_right`` is the fraction of human
    votes for the right image. The score is the mean over triplets of
    ``[d_left < d_right] * (1 - p) + [d_right < d_left] * p + 0.5 * [d_left == d_right]``.

    Range: [0, 1], higher is better; 0.5 = chance, and a human judge scores the
    consensus itself (``mean max(p, 1 - p)``), not 1. NaN for no triplets.

    Example:
        >>> two_afc_score([0.1, 0.5], [0.2, 0.4], [0.25, 1.0])
        0.875
    """
    d_left, d_right, p = _check(d_left, d_right, p_right)
    if len(p) == 0:
        return float("nan")
    s = (d_left < d_right) * (1 - p) + (d_right < d_left) * p + 0.5 * (d_left == d_right)
    return float(np.mean(s))


def majority_accuracy(d_left: np.ndarray, d_right: np.ndarray, p_right: np.ndarray) -> float:
    """Agreement with the human majority vote (hard 2AFC).

    Definition: the human answer is "right" when ``p_right > 0.5`` and "left" when
    ``p_right < 0.5``; triplets with a tied vote (``p_right == 0.5``) have no majority and
    are EXCLUDED. The model scores 1 when the image it finds closer is the majority's, 0
    when not, and 0.5 when its two distances are exactly equal.

    Range: [0, 1], higher is better; 0.5 = chance. NaN when no triplet has a majority.
    The number of triplets used is ``np.sum(p_right != 0.5)``.

    Example:
        >>> majority_accuracy([0.1, 0.5, 0.3], [0.2, 0.4, 0.1], [0.25, 0.5, 0.2])
        0.5
    """
    d_left, d_right, p = _check(d_left, d_right, p_right)
    keep = p != 0.5
    if not keep.any():
        return float("nan")
    return two_afc_score(d_left[keep], d_right[keep], (p[keep] > 0.5).astype(np.float64))


def unanimous_accuracy(d_left: np.ndarray, d_right: np.ndarray, p_right: np.ndarray) -> float:
    """The study authors' NIGHTS accuracy: agreement with unanimous human choices, ties count 0.

    Definition (pablohc97/Evaluating_Human-CLIP_Alignment_at_Different_Abstraction_Levels,
    ``Architecture/Middle-NIGHTS/CLIP_base16_projection_euclidean_norm.py``): a triplet counts 1
    when the model finds the right image closer (``d_right < d_left``) and every observer chose
    the right image (``p_right == 1``), or the left one closer and every observer chose left
    (``p_right == 0``); otherwise 0, so a model tie (``d_left == d_right``) and a split vote both
    count 0. The mean is over ALL triplets given (the authors divide by all 20,019). On NIGHTS,
    whose published votes are all unanimous, this equals :func:`majority_accuracy` except that
    model ties count 0 instead of 0.5.

    Range: [0, 1], higher is better; 0.5 = chance on unanimous triplets. NaN for no triplets.

    Example:
        >>> unanimous_accuracy([0.1, 0.5, 0.3, 0.2], [0.2, 0.4, 0.3, 0.1], [0.0, 1.0, 1.0, 0.6])
        0.5
    """
    d_left, d_right, p = _check(d_left, d_right, p_right)
    if len(p) == 0:
        return float("nan")
    s = (d_right < d_left) & (p == 1.0) | (d_left < d_right) & (p == 0.0)
    return float(np.mean(s))


def distances_for_triplets(X: np.ndarray, ids: Sequence[str], ref_ids: Sequence[str],
                           left_ids: Sequence[str], right_ids: Sequence[str],
                           kind: str = "cosine") -> Tuple[np.ndarray, np.ndarray]:
    """Model distances ``(d_left, d_right)`` of each triplet, from embeddings keyed by id.

    ``X`` (N, D) holds one embedding per id in ``ids``; triplet ``t`` compares
    ``ref_ids[t]`` with ``left_ids[t]`` and with ``right_ids[t]``. ``kind`` is an
    :func:`~clipdyn.metrics.low_level_alignment.embedding_distance` kind (default
    ``"cosine"``, i.e. ``1 - cos``); for ``"dimnorm_euclidean"`` the per-dimension scale is
    computed over the left and right pairs together, so both sides share one scale.
    Raises ValueError naming ids that have no embedding.

    Example:
        >>> X = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        >>> distances_for_triplets(X, ["r", "a", "b"], ["r"], ["a"], ["b"])[1]
        array([1.])
    """
    X = np.asarray(X, dtype=np.float64)
    pos = {str(k): i for i, k in enumerate(ids)}
    if len(pos) != len(X):
        raise ValueError(f"{len(X)} embeddings but {len(pos)} distinct ids")
    wanted = [list(map(str, ref_ids)), list(map(str, left_ids)), list(map(str, right_ids))]
    missing = sorted({i for col in wanted for i in col} - pos.keys())
    if missing:
        raise ValueError(f"{len(missing)} triplet image ids have no embedding, e.g. {missing[:5]}")
    ref, left, right = (X[[pos[i] for i in col]] if col else np.zeros((0, X.shape[1])) for col in wanted)
    dim_mean = None
    if kind == "dimnorm_euclidean":
        dim_mean = dimension_scale(np.concatenate([ref, ref]), np.concatenate([left, right]))
    return (embedding_distance(ref, left, kind, dim_mean=dim_mean),
            embedding_distance(ref, right, kind, dim_mean=dim_mean))


# ----------------------------------------------------------------------------- evaluator

def mid_level_alignment_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Agreement with human similarity judgements on NIGHTS-style triplets.

    Trials ``ref_id, left_id, right_id, left_vote, right_vote, votes`` (and ``split`` when the
    split is not "all"). ``options["protocol"]`` (:data:`PROTOCOLS`): ``"authors"`` (default: the
    dimension-normalised Euclidean distance over ALL triplets, as the study authors' code) or
    ``"dreamsim"`` (``1 - cos``, split ``test``, ``votes >= 6``); ``distance``, ``split`` and
    ``min_votes`` given explicitly override the protocol's. ``votes`` is the number of observers;
    the share who chose the right image is ``p = right_vote / (left_vote + right_vote)``, which
    reads both the published NIGHTS shares (left + right = 1, so p = right_vote, as in DreamSim)
    and raw counts. Trials with no votes or without embeddings are dropped.

    Variants: ``unanimous`` (:func:`unanimous_accuracy`, the authors' score: model ties and split
    votes count 0; only under protocol ``authors``), ``2afc`` (:func:`two_afc_score`, DreamSim's:
    model ties count 0.5) and ``majority`` (:func:`majority_accuracy`: vote ties excluded, model
    ties 0.5). ``n`` = triplets used (for ``majority``: those with a majority).
    """
    name = inputs["dataset"]
    settings = protocol_settings(options)
    split, min_votes, distance = settings["split"], settings["min_votes"], settings["distance"]
    cols = ["ref_id", "left_id", "right_id", "left_vote", "right_vote", "votes"]
    trials = tables[name].trials
    require_columns(trials, cols + ([] if split == "all" else ["split"]), name, "trials")
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
    pos = embedding_index(name, embeddings[name])
    t = t[t["ref_id"].isin(pos.index) & t["left_id"].isin(pos.index) & t["right_id"].isin(pos.index)]
    t = t.reset_index(drop=True)
    if t.empty:
        raise ValueError(f"dataset {name!r}: no trial left after split={split!r}, min_votes={min_votes} "
                         "and dropping trials without embeddings")
    right = pd.to_numeric(t["right_vote"]).to_numpy(np.float64)
    p = right / (pd.to_numeric(t["left_vote"]).to_numpy(np.float64) + right)
    d_left, d_right = distances_for_triplets(embeddings[name].X, pos.index, t["ref_id"], t["left_id"],
                                             t["right_id"], kind=distance)
    rows, stats = [], []
    two_afc = (d_left < d_right) * (1 - p) + (d_right < d_left) * p + 0.5 * (d_left == d_right)
    if settings["protocol"] == "authors":
        rows.append(metric_row("mid_level_alignment", name, "unanimous", unanimous_accuracy(d_left, d_right, p),
                               len(t)))
        unanimous = (d_right < d_left) & (p == 1.0) | (d_left < d_right) & (p == 0.0)
        stats.append(mean_of(unanimous, name))
    # intervals over the triplets; majority: the triplets without a majority weigh 0
    has_majority = (p != 0.5).astype(np.float64)
    pm = (p > 0.5).astype(np.float64)
    majority = has_majority * ((d_left < d_right) * (1 - pm) + (d_right < d_left) * pm + 0.5 * (d_left == d_right))
    stats += [mean_of(two_afc, name), ratio_of_sums(majority, has_majority, name)]
    rows += [metric_row("mid_level_alignment", name, "2afc", two_afc_score(d_left, d_right, p), len(t)),
             metric_row("mid_level_alignment", name, "majority", majority_accuracy(d_left, d_right, p),
                        int(np.sum(p != 0.5)))]
    details = pd.DataFrame({"ref_id": t["ref_id"], "left_id": t["left_id"], "right_id": t["right_id"],
                            "p_right": p, "d_left": d_left, "d_right": d_right})
    return MetricResult(rows_frame(rows), details, stats)
