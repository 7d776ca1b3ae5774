"""Zero-shot logits, softmax and top-k accuracy against direct computations and sklearn."""

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from clipdyn.metrics import softmax, topk_accuracy, zero_shot_logits


def test_zero_shot_logits_is_scaled_cosine():
    rng = np.random.default_rng(0)
    X, W = rng.normal(size=(7, 5)), rng.normal(size=(3, 5))
    ref = np.array([[50.0 * x @ w / np.linalg.norm(x) / np.linalg.norm(w) for w in W] for x in X])
    np.testing.assert_allclose(zero_shot_logits(X, W, 50.0), ref, rtol=1e-12)
    # invariant to the norm of either side
    np.testing.assert_allclose(zero_shot_logits(3 * X, 0.1 * W, 50.0), ref, rtol=1e-12)


def test_zero_shot_logits_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="same D"):
        zero_shot_logits(np.zeros((2, 3)), np.zeros((4, 5)), 1.0)


def test_softmax_matches_naive_and_is_stable():
    x = np.array([[0.0, 1.0, 2.0], [-1.0, 0.5, 0.5]])
    naive = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(x, axis=1), naive, rtol=1e-12)
    big = softmax(np.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(big, [0.5, 0.5, 0.0])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_matches_sklearn_without_ties(seed, k):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(200, 8))
    labels = rng.integers(0, 8, size=200)
    ref = top_k_accuracy_score(labels, logits, k=k, labels=np.arange(8))
    assert topk_accuracy(logits, labels, ks=(k,))[f"top{k}"] == pytest.approx(ref, abs=1e-12)


def test_topk_ties_go_to_the_lower_class_index():
    logits = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    # row 0: class 0 wins the tie; row 1: class 1 loses it at k=1; row 2: all tied, class 2 is last
    r = topk_accuracy(logits, np.array([0, 1, 2]), ks=(1, 2, 3))
    assert r == {"top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3), "top3": 1.0}


def test_topk_edge_cases():
    logits = np.array([[0.2, 0.8]])
    assert np.isnan(topk_accuracy(logits, np.array([1]), ks=(5,))["top5"])  # k > C
    assert topk_accuracy(np.array([[3.0]]), np.array([0]), ks=(1,))["top1"] == 1.0  # single class
    empty = topk_accuracy(np.zeros((0, 4)), np.zeros(0, dtype=int))
    assert np.isnan(empty["top1"]) and np.isnan(empty["top5"])
    with pytest.raises(ValueError, match="labels"):
        topk_accuracy(logits, np.array([2]))
