"""NIGHTS protocols against independent ports of their sources' formulas (issue 13.4).

- authors: pablohc97/Evaluating_Human-CLIP_Alignment_at_Different_Abstraction_Levels,
  ``Architecture/Middle-NIGHTS/CLIP_base16_projection_euclidean_norm.py``: per-dimension squared
  differences of (ref, left) and (ref, right) over all triplets, each dimension divided by the
  mean of the two per-dimension means, sqrt of the mean over dimensions; a triplet counts when
  ``d_left > d_right and right_vote == 1`` or ``d_left < d_right and left_vote == 1``; divided by
  all triplets.
- dreamsim: ssundaram21/dreamsim ``dataset/dataset.py`` (votes >= 6, split), ``dreamsim/model.py``
  (distance ``1 - cos``), ``evaluation/score.py`` (2AFC with ties 0.5).
"""

import numpy as np
import pytest

from clipdyn.metrics.mid_level_alignment import (
    PROTOCOLS,
    distances_for_triplets,
    protocol_settings,
    two_afc_score,
    unanimous_accuracy,
)


def authors_nights_accuracy(ref, left, right, left_vote, right_vote):
    """Loop port of the authors' script (written from its formula)."""
    n, dim = ref.shape
    d1 = np.zeros((n, dim))
    d2 = np.zeros((n, dim))
    for i in range(n):
        d1[i] = (ref[i] - left[i]) ** 2
        d2[i] = (ref[i] - right[i]) ** 2
    means = (d1.mean(axis=0) + d2.mean(axis=0)) / 2
    dist1 = np.sqrt((d1 / means).mean(axis=1))
    dist2 = np.sqrt((d2 / means).mean(axis=1))
    correct = 0
    for i in range(n):
        if dist1[i] > dist2[i] and right_vote[i] == 1:
            correct += 1
        elif dist1[i] < dist2[i] and left_vote[i] == 1:
            correct += 1
    return correct / n


def dreamsim_nights_2afc(ref, left, right, right_vote, votes, split, want_split="test"):
    keep = (votes >= 6) & (split == want_split)
    cos = lambda a, b: np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    d0 = 1 - cos(ref[keep], left[keep])
    d1 = 1 - cos(ref[keep], right[keep])
    t = right_vote[keep]
    return float(np.mean((d0 < d1) * (1 - t) + (d1 < d0) * t + (d1 == d0) * 0.5))


def _triplets(seed, n=200, dim=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3 * n, dim)) * rng.uniform(0.1, 10, size=dim)  # dimensions of very different scale
    ids = [f"i{k}" for k in range(3 * n)]
    ref, left, right = ids[:n], ids[n:2 * n], ids[2 * n:]
    right_vote = rng.integers(0, 2, size=n).astype(float)     # NIGHTS: unanimous shares
    right_vote[:10] = [0.5, 0.6, 0.4, 1, 0, 0.5, 1, 0, 0.2, 0.8]   # a few split votes too
    return X, ids, ref, left, right, right_vote


@pytest.mark.parametrize("seed", range(4))
def test_authors_protocol_matches_their_script(seed):
    X, ids, ref, left, right, rv = _triplets(seed)
    dl, dr = distances_for_triplets(X, ids, ref, left, right, kind="dimnorm_euclidean")
    pos = {k: i for i, k in enumerate(ids)}
    take = lambda col: X[[pos[k] for k in col]]
    expected = authors_nights_accuracy(take(ref), take(left), take(right), 1 - rv, rv)
    assert unanimous_accuracy(dl, dr, rv) == pytest.approx(expected, abs=1e-12)


def test_authors_score_counts_ties_and_split_votes_as_zero():
    # model tie, split vote, all-equal votes
    assert unanimous_accuracy([0.3], [0.3], [1.0]) == 0.0
    assert unanimous_accuracy([0.3], [0.1], [0.8]) == 0.0
    assert unanimous_accuracy([0.3, 0.3], [0.1, 0.1], [1.0, 1.0]) == 1.0
    assert unanimous_accuracy([0.1, 0.1], [0.3, 0.3], [1.0, 1.0]) == 0.0
    assert np.isnan(unanimous_accuracy([], [], []))
    # the 2AFC score gives a model tie half credit instead
    assert two_afc_score([0.3], [0.3], [1.0]) == 0.5


def test_authors_constant_embeddings_tie_everywhere():
    X = np.ones((3, 4))
    dl, dr = distances_for_triplets(X, ["r", "a", "b"], ["r"], ["a"], ["b"], kind="dimnorm_euclidean")
    assert dl[0] == dr[0] == 0.0
    assert unanimous_accuracy(dl, dr, [1.0]) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_dreamsim_protocol_matches_its_code(seed):
    X, ids, ref, left, right, rv = _triplets(seed)
    rng = np.random.default_rng(seed + 10)
    votes = rng.integers(4, 9, size=len(ref))
    split = rng.choice(["train", "val", "test"], size=len(ref))
    keep = (votes >= 6) & (split == "test")
    sel = lambda col: [c for c, k in zip(col, keep) if k]
    dl, dr = distances_for_triplets(X, ids, sel(ref), sel(left), sel(right), kind="cosine")
    pos = {k: i for i, k in enumerate(ids)}
    take = lambda col: X[[pos[k] for k in col]]
    expected = dreamsim_nights_2afc(take(ref), take(left), take(right), rv, votes, split)
    assert two_afc_score(dl, dr, rv[keep]) == pytest.approx(expected, abs=1e-12)


def test_protocol_settings():
    assert protocol_settings({}) == dict(PROTOCOLS["authors"], protocol="authors")
    s = protocol_settings({"protocol": "dreamsim"})
    assert (s["distance"], s["split"], s["min_votes"], s["headline"]) == ("cosine", "test", 6, "2afc")
    assert protocol_settings({"protocol": "dreamsim", "min_votes": 0})["min_votes"] == 0
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocol_settings({"protocol": "bapps"})


# ----------------------------------------------------------------------------- the evaluator

def _nights_tables(seed=0, n=120):
    import pandas as pd

    from clipdyn.data.formats import DatasetTables
    from clipdyn.io import EmbeddingTable

    X, ids, ref, left, right, rv = _triplets(seed, n=n)
    rng = np.random.default_rng(seed + 1)
    votes = rng.integers(4, 9, size=n)
    split = rng.choice(["train", "val", "test"], size=n)
    trials = pd.DataFrame({"ref_id": ref, "left_id": left, "right_id": right, "left_vote": 1 - rv,
                           "right_vote": rv, "votes": votes, "split": split})
    images = pd.DataFrame({"image_id": ids, "path": "", "member": ""})
    return (X, ids, ref, left, right, rv, votes, split,
            {"n": EmbeddingTable(ids=np.array(ids), X=X.astype(np.float64))}, {"n": DatasetTables(images, trials)})


def test_evaluator_default_is_the_authors_protocol():
    from clipdyn.metrics import registry

    X, ids, ref, left, right, rv, votes, split, emb, tab = _nights_tables()
    res = registry.evaluate("mid_level_alignment", embeddings=emb, tables=tab, classifier=None,
                            inputs={"dataset": "n"}, options={})
    rows = {r.variant: (r.value, r.n) for r in res.rows.itertuples()}
    pos = {k: i for i, k in enumerate(ids)}
    take = lambda col: X[[pos[k] for k in col]]
    expected = authors_nights_accuracy(take(ref), take(left), take(right), 1 - rv, rv)
    assert rows["unanimous"] == (pytest.approx(expected, abs=1e-12), len(ref))   # all triplets, no filter
    assert set(rows) == {"unanimous", "2afc", "majority"}


def test_evaluator_dreamsim_protocol():
    from clipdyn.metrics import registry

    X, ids, ref, left, right, rv, votes, split, emb, tab = _nights_tables(3)
    res = registry.evaluate("mid_level_alignment", embeddings=emb, tables=tab, classifier=None,
                            inputs={"dataset": "n"}, options={"protocol": "dreamsim"})
    rows = {r.variant: (r.value, r.n) for r in res.rows.itertuples()}
    pos = {k: i for i, k in enumerate(ids)}
    take = lambda col: X[[pos[k] for k in col]]
    expected = dreamsim_nights_2afc(take(ref), take(left), take(right), rv, votes, split)
    assert rows["2afc"] == (pytest.approx(expected, abs=1e-12), int(((votes >= 6) & (split == "test")).sum()))
    assert "unanimous" not in rows


def test_all_equal_votes():
    from clipdyn.metrics.mid_level_alignment import majority_accuracy

    d_left, d_right = [0.1, 0.4, 0.2], [0.3, 0.2, 0.2]
    half = [0.5, 0.5, 0.5]                       # every vote split evenly: no unanimous, no majority
    assert unanimous_accuracy(d_left, d_right, half) == 0.0
    assert np.isnan(majority_accuracy(d_left, d_right, half))
    assert two_afc_score(d_left, d_right, half) == 0.5
    right = [1.0, 1.0, 1.0]                      # every observer chose right
    assert unanimous_accuracy(d_left, d_right, right) == pytest.approx(1 / 3)   # one right pick, one tie (0)
    assert two_afc_score(d_left, d_right, right) == pytest.approx(1.5 / 3)      # the tie earns 0.5
