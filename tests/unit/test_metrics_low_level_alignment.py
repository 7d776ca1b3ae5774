"""Low-level alignment: distances against explicit loops and scipy.spatial, correlations against scipy.stats."""

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance as spd

from clipdyn.metrics import alignment_correlations, dimension_scale, embedding_distance


def dimnorm_reference(ref, dist):
    n, d = ref.shape
    m = [sum((ref[i, k] - dist[i, k]) ** 2 for i in range(n)) / n for k in range(d)]
    used = [k for k in range(d) if m[k] > 0]
    return np.array([np.sqrt(sum((ref[i, k] - dist[i, k]) ** 2 / m[k] for k in used) / len(used))
                     for i in range(n)])


@pytest.mark.parametrize("seed", range(3))
def test_dimnorm_euclidean_matches_loop(seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(20, 6)) * rng.uniform(0.01, 100, size=6)
    dist = ref + rng.normal(size=(20, 6)) * rng.uniform(0.01, 100, size=6)
    np.testing.assert_allclose(embedding_distance(ref, dist), dimnorm_reference(ref, dist), rtol=1e-10)


def test_dimnorm_gives_every_dimension_equal_weight():
    rng = np.random.default_rng(1)
    ref, dist = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    d = embedding_distance(ref, dist)
    assert np.mean(d ** 2) == pytest.approx(1.0)
    # rescaling one dimension (in both images) changes nothing
    scale = np.array([1.0, 1000.0, 1e-3, 1.0])
    np.testing.assert_allclose(embedding_distance(ref * scale, dist * scale), d, rtol=1e-9)
    # ... while the plain Euclidean distance is dominated by the large dimension
    assert not np.allclose(embedding_distance(ref * scale, dist * scale, "euclidean"),
                           embedding_distance(ref, dist, "euclidean"))


def test_dimnorm_skips_constant_dimensions_and_takes_a_given_scale():
    ref = np.array([[0.0, 5.0], [0.0, 5.0]])
    dist = np.array([[1.0, 5.0], [3.0, 5.0]])      # dimension 1 never differs
    np.testing.assert_allclose(embedding_distance(ref, dist), [1 / np.sqrt(5), 3 / np.sqrt(5)])
    np.testing.assert_allclose(dimension_scale(ref, dist), [5.0, 0.0])
    np.testing.assert_allclose(embedding_distance(ref, dist, dim_mean=np.array([1.0, 1.0])),
                               [np.sqrt(1 / 2), np.sqrt(9 / 2)])
    np.testing.assert_array_equal(embedding_distance(ref, ref), [0.0, 0.0])   # nothing differs
    with pytest.raises(ValueError, match="dim_mean"):
        embedding_distance(ref, dist, dim_mean=np.ones(3))


def test_cosine_and_euclidean_match_scipy():
    rng = np.random.default_rng(2)
    ref, dist = rng.normal(size=(10, 5)), rng.normal(size=(10, 5))
    np.testing.assert_allclose(embedding_distance(ref, dist, "cosine"),
                               [spd.cosine(a, b) for a, b in zip(ref, dist)], rtol=1e-10)
    np.testing.assert_allclose(embedding_distance(ref, dist, "euclidean"),
                               [spd.euclidean(a, b) for a, b in zip(ref, dist)], rtol=1e-10)
    with pytest.raises(ValueError, match="unknown distance"):
        embedding_distance(ref, dist, "manhattan")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mos", [True, False])
def test_correlations_match_scipy_with_sign(seed, mos):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=40)
    s = np.round(rng.normal(size=40) - 0.5 * d, 1)   # rounded: ties in the scores
    r = alignment_correlations(d, s, score_higher_is_better=mos)
    sign = -1 if mos else 1
    for name, fn in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr), ("kendall", stats.kendalltau)):
        ref = fn(d, s)
        assert r[name] == pytest.approx(sign * ref[0], abs=1e-12)
        assert r[f"{name}_p"] == pytest.approx(ref[1], rel=1e-9)


def test_human_like_model_scores_positive_for_mos_and_dmos():
    mos = np.array([4.5, 3.0, 2.0, 1.0])       # higher = better quality
    d = np.array([0.1, 0.3, 0.4, 0.9])           # more distortion, larger distance
    assert alignment_correlations(d, mos, True)["spearman"] == 1.0
    assert alignment_correlations(d, 5 - mos, False)["spearman"] == 1.0   # DMOS


def test_correlations_degenerate_inputs_are_nan():
    for d, s in (([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]), ([1.0], [2.0]), ([], [])):
        r = alignment_correlations(d, s, True)
        assert all(np.isnan(v) for v in r.values())
    with pytest.raises(ValueError):
        alignment_correlations([1.0, 2.0], [1.0], True)
