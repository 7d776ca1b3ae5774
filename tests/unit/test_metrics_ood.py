"""OOD detection: AUROC and FPR@95 against sklearn, MCM against a direct computation."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from clipdyn.metrics import auroc, fpr_at_95_tpr, mcm_scores


def fpr95_sklearn(s_in, s_out):
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    fpr, tpr, _ = roc_curve(y, np.r_[s_in, s_out], drop_intermediate=False)
    return fpr[np.argmax(tpr >= 0.95)]


def score_sets(seed, ties):
    rng = np.random.default_rng(seed)
    s_in = rng.normal(1.0, 1.0, size=rng.integers(20, 200))
    s_out = rng.normal(0.0, 1.0, size=rng.integers(20, 200))
    if ties:   # few distinct values: ties within and across the sets
        s_in, s_out = np.round(s_in), np.round(s_out)
    return s_in, s_out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_matches_sklearn(seed, ties):
    s_in, s_out = score_sets(seed, ties)
    ref = roc_auc_score(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])
    assert auroc(s_in, s_out) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_fpr95_matches_sklearn(seed, ties):
    s_in, s_out = score_sets(seed, ties)
    assert fpr_at_95_tpr(s_in, s_out) == pytest.approx(fpr95_sklearn(s_in, s_out), abs=1e-12)


def test_hand_cases():
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5                      # all tied
    assert fpr_at_95_tpr([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert fpr_at_95_tpr([1.0] * 5, [1.0] * 3) == 1.0
    # 20 ID scores 0..19: t = 1 keeps 19/20 = 95%; OOD 0.5 < 1 <= 10.5, 30
    assert fpr_at_95_tpr(np.arange(20.0), [0.5, 10.5, 30.0]) == pytest.approx(2 / 3)
    assert np.isnan(auroc([], [1.0])) and np.isnan(fpr_at_95_tpr([1.0], []))
    with pytest.raises(ValueError, match="NaN"):
        auroc([np.nan], [1.0])


def test_mcm_scores():
    rng = np.random.default_rng(0)
    X, W = rng.normal(size=(6, 8)), rng.normal(size=(4, 8))
    W = W / np.linalg.norm(W, axis=1, keepdims=True)
    for T in (1.0, 0.01):
        cos = (X / np.linalg.norm(X, axis=1, keepdims=True)) @ W.T
        e = np.exp(cos / T - (cos / T).max(axis=1, keepdims=True))
        np.testing.assert_allclose(mcm_scores(X, W, T), (e / e.sum(axis=1, keepdims=True)).max(axis=1))
    s = mcm_scores(X, W)
    assert np.all(s >= 1 / 4) and np.all(s <= 1)
    np.testing.assert_allclose(mcm_scores(X, W[:1]), 1.0)       # single class
    with pytest.raises(ValueError):
        mcm_scores(X, W, temperature=0)
