"""Saliency alignment: CC, NSS and AUC-Judd against the MIT benchmark definitions, scipy and sklearn."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from clipdyn.metrics import auc_judd, center_crop, nss, patch_similarity_map, pearson_cc, resize_map


def auc_judd_mit_loop(sal, fix):
    """A line-by-line port of the MIT benchmark's AUC_Judd.m (without the random jitter)."""
    S, F = sal.ravel(), fix.ravel()
    Sth = S[F > 0]
    n_fix, n_pix = len(Sth), len(S)
    allthreshes = np.sort(Sth)[::-1]
    tp = np.zeros(n_fix + 2)
    fp = np.zeros(n_fix + 2)
    tp[-1] = fp[-1] = 1
    for i in range(1, n_fix + 1):
        thresh = allthreshes[i - 1]
        aboveth = np.sum(S >= thresh)
        tp[i] = i / n_fix
        fp[i] = (aboveth - i) / (n_pix - n_fix)
    return float(np.trapezoid(tp, fp))


@pytest.mark.parametrize("seed", range(5))
def test_auc_judd_matches_mit_loop_on_distinct_values(seed):
    rng = np.random.default_rng(seed)
    sal = rng.random((12, 15))
    fix = rng.random((12, 15)) < 0.1
    fix[0, 0] = True
    assert auc_judd(sal, fix) == pytest.approx(auc_judd_mit_loop(sal, fix), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auc_judd_equals_roc_auc_when_every_value_occurs_at_a_fixation(seed):
    rng = np.random.default_rng(seed)
    levels = rng.random(6)
    sal = levels[rng.integers(0, 6, size=(10, 10))]   # heavy ties, also among fixations
    fix = rng.random((10, 10)) < 0.3
    for v in levels:                                  # make every level occur at some fixation
        where = np.argwhere(sal == v)
        if len(where):
            fix[tuple(where[0])] = True
    assert auc_judd(sal, fix) == pytest.approx(roc_auc_score(fix.ravel(), sal.ravel()), abs=1e-12)


def test_auc_judd_hand_cases():
    sal = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert auc_judd(sal, np.array([[1, 0], [0, 0]])) == 1.0
    # one fixation at the minimum: the curve jumps straight to (1, 1), area 1/2 (as in AUC_Judd.m)
    assert auc_judd(sal, np.array([[0, 1], [0, 0]])) == pytest.approx(0.5)
    # fixation on 0.8: thresholds {0.8}: tp 1, fp 1/3 -> area = 1/3 * 1/2 + 2/3 = 5/6
    assert auc_judd(sal, np.array([[0, 0], [1, 0]])) == pytest.approx(5 / 6)
    # a constant map cannot tell fixations apart
    assert auc_judd(np.ones((3, 3)), np.eye(3)) == pytest.approx(0.5)
    assert np.isnan(auc_judd(sal, np.zeros((2, 2))))
    assert np.isnan(auc_judd(sal, np.ones((2, 2))))
    with pytest.raises(ValueError, match="same shape"):
        auc_judd(sal, np.zeros((3, 3)))


@pytest.mark.parametrize("seed", range(3))
def test_cc_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random((9, 9)), rng.random((9, 9))
    assert pearson_cc(a, b) == pytest.approx(stats.pearsonr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert pearson_cc(a, 3 * a + 1) == pytest.approx(1.0)


def test_cc_edge_cases():
    assert np.isnan(pearson_cc(np.ones((3, 3)), np.random.default_rng(0).random((3, 3))))
    with pytest.raises(ValueError, match="resize"):
        pearson_cc(np.ones((3, 3)), np.ones((4, 4)))


def test_nss_matches_definition():
    rng = np.random.default_rng(0)
    sal = rng.random((8, 8))
    fix = rng.random((8, 8)) < 0.2
    z = (sal - sal.mean()) / sal.std()
    assert nss(sal, fix) == pytest.approx(z[fix].mean())
    # coordinates give the same as the map, and count repeated fixations each time
    coords = np.argwhere(fix)
    assert nss(sal, coords) == pytest.approx(z[fix].mean())
    twice = np.concatenate([coords, coords[:1]])
    assert nss(sal, twice) == pytest.approx(np.concatenate([z[fix], z[tuple(coords[0])][None]]).mean())


def test_nss_edge_cases():
    assert np.isnan(nss(np.ones((3, 3)), np.eye(3)))
    assert np.isnan(nss(np.eye(3), np.zeros((3, 3))))
    assert np.isnan(nss(np.eye(3), np.zeros((0, 2), dtype=int)))
    with pytest.raises(ValueError, match="outside"):
        nss(np.eye(3), np.array([[3, 0]]))


@pytest.mark.parametrize("shape,out", [((4, 4), (2, 2)), ((60, 80), (7, 7)), ((7, 7), (30, 40)), ((5, 9), (3, 3))])
def test_resize_map_matches_torch_antialiased_bilinear(shape, out):
    torch = pytest.importorskip("torch")
    m = np.random.default_rng(0).random(shape)
    ref = torch.nn.functional.interpolate(torch.tensor(m)[None, None], size=out, mode="bilinear",
                                          align_corners=False, antialias=True)[0, 0].numpy()
    np.testing.assert_allclose(resize_map(m, out), ref, atol=1e-6)


def test_resize_map_keeps_constants_and_identity():
    np.testing.assert_allclose(resize_map(np.full((50, 70), 3.0), (7, 7)), 3.0, rtol=1e-6)
    m = np.random.default_rng(1).random((5, 6))
    np.testing.assert_allclose(resize_map(m, (5, 6)), m, rtol=1e-6)
    with pytest.raises(ValueError):
        resize_map(np.ones(5), (2, 2))


def test_center_crop():
    np.testing.assert_array_equal(center_crop(np.arange(12).reshape(3, 4)), [[0, 1, 2], [4, 5, 6], [8, 9, 10]])
    np.testing.assert_array_equal(center_crop(np.arange(12).reshape(4, 3)), np.arange(12).reshape(4, 3)[0:3])
    assert center_crop(np.zeros((10, 20))).shape == (10, 10)


def test_patch_similarity_map():
    rng = np.random.default_rng(0)
    tokens, emb = rng.normal(size=(9, 4)), rng.normal(size=4)
    ref = np.array([t @ emb / np.linalg.norm(t) / np.linalg.norm(emb) for t in tokens]).reshape(3, 3)
    np.testing.assert_allclose(patch_similarity_map(tokens, emb), ref)
    with pytest.raises(ValueError, match="square"):
        patch_similarity_map(tokens[:8], emb)
