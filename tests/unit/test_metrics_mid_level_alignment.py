"""Mid-level alignment: the 2AFC score against the NIGHTS/BAPPS formula, triplet by triplet."""

import numpy as np
import pytest

from clipdyn.metrics import distances_for_triplets, majority_accuracy, two_afc_score


def nights_2afc_reference(d_left, d_right, p_right):
    """Zhang et al. 2018 / Fu et al. 2023: d0 = left, d1 = right, judge = fraction preferring right."""
    scores = []
    for d0, d1, judge in zip(d_left, d_right, p_right):
        scores.append((d0 < d1) * (1 - judge) + (d1 < d0) * judge + (d1 == d0) * 0.5)
    return float(np.mean(scores))


@pytest.mark.parametrize("seed", range(5))
def test_2afc_matches_formula(seed):
    rng = np.random.default_rng(seed)
    n = 100
    d_left = np.round(rng.uniform(size=n), 1)    # rounding makes distance ties
    d_right = np.round(rng.uniform(size=n), 1)
    p = rng.integers(0, 6, size=n) / 5
    assert two_afc_score(d_left, d_right, p) == pytest.approx(nights_2afc_reference(d_left, d_right, p))


def test_2afc_hand_cases():
    assert two_afc_score([0.1], [0.2], [0.0]) == 1.0      # all humans chose left, model too
    assert two_afc_score([0.1], [0.2], [1.0]) == 0.0      # all humans chose right
    assert two_afc_score([0.1], [0.2], [0.2]) == pytest.approx(0.8)
    assert two_afc_score([0.3], [0.3], [0.9]) == 0.5      # model tie: half credit
    assert two_afc_score([0.5], [0.1], [0.5]) == 0.5      # human tie: half credit
    assert np.isnan(two_afc_score([], [], []))


def test_2afc_of_the_majority_is_the_human_ceiling():
    p = np.array([0.2, 0.7, 0.9, 0.4])
    d_left, d_right = np.where(p < 0.5, 0.0, 1.0), np.where(p < 0.5, 1.0, 0.0)
    assert two_afc_score(d_left, d_right, p) == pytest.approx(np.mean(np.maximum(p, 1 - p)))


def test_majority_accuracy_excludes_vote_ties():
    d_left = [0.1, 0.1, 0.5, 0.2, 0.3]
    d_right = [0.2, 0.2, 0.4, 0.2, 0.9]
    p = [0.3, 0.5, 0.6, 1.0, 0.5]
    # used: 0 (maj left, model left: 1), 2 (maj right, model right: 1), 3 (model tie: 0.5)
    assert majority_accuracy(d_left, d_right, p) == pytest.approx(2.5 / 3)
    assert np.isnan(majority_accuracy([0.1], [0.2], [0.5]))


def test_p_right_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="p_right"):
        two_afc_score([0.1], [0.2], [1.5])


def test_distances_for_triplets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4))
    ids = ["a", "b", "c", "d", "e"]
    d_left, d_right = distances_for_triplets(X, ids, ["a", "b"], ["c", "d"], ["e", "a"])

    def cos_d(u, v):
        return 1 - u @ v / np.linalg.norm(u) / np.linalg.norm(v)

    np.testing.assert_allclose(d_left, [cos_d(X[0], X[2]), cos_d(X[1], X[3])])
    np.testing.assert_allclose(d_right, [cos_d(X[0], X[4]), cos_d(X[1], X[0])])
    # dimnorm: one scale for both sides, so swapping left and right swaps the distances
    l1, r1 = distances_for_triplets(X, ids, ["a", "b"], ["c", "d"], ["e", "a"], kind="dimnorm_euclidean")
    l2, r2 = distances_for_triplets(X, ids, ["a", "b"], ["e", "a"], ["c", "d"], kind="dimnorm_euclidean")
    np.testing.assert_allclose(l1, r2)
    np.testing.assert_allclose(r1, l2)
    with pytest.raises(ValueError, match="no embedding"):
        distances_for_triplets(X, ids, ["a"], ["zz"], ["b"])
