"""Shape bias against decisions worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from clipdyn.metrics import category_decisions, load_imagenet16_mapping, shape_bias


def test_packaged_mapping():
    m = load_imagenet16_mapping()
    assert list(m.columns[:2]) == ["category", "imagenet_index"]
    assert len(m) == 207 and m["category"].nunique() == 16
    assert m["imagenet_index"].is_unique and m["imagenet_index"].between(0, 999).all()


def test_decision_uses_the_mean_not_the_sum():
    m = load_imagenet16_mapping()
    probs = np.zeros((1, 1000))
    birds = m.loc[m.category == "bird", "imagenet_index"].to_numpy()   # 49 classes
    oven = m.loc[m.category == "oven", "imagenet_index"].to_numpy()    # 1 class
    probs[0, birds] = 0.01    # bird: sum 0.49, mean 0.01
    probs[0, oven] = 0.3      # oven: sum = mean = 0.3
    probs[0, 0] = 1 - probs.sum()   # class 0 (tench) belongs to no category
    assert category_decisions(probs, m).tolist() == ["oven"]


def test_decisions_by_hand_and_tie_goes_alphabetically_first():
    m = pd.DataFrame({"category": ["dog", "dog", "cat", "car"], "imagenet_index": [0, 1, 2, 3]})
    probs = np.array([
        [0.4, 0.0, 0.3, 0.3],    # dog mean 0.2, cat 0.3, car 0.3 -> tie cat/car -> car
        [0.35, 0.35, 0.3, 0.0],  # dog 0.35 > cat 0.3
        [0.0, 0.0, 0.0, 1.0],    # car
    ])
    assert category_decisions(probs, m).tolist() == ["car", "dog", "car"]


def test_decision_rejects_bad_mapping():
    with pytest.raises(ValueError, match="indices"):
        category_decisions(np.ones((1, 3)) / 3, pd.DataFrame({"category": ["a"], "imagenet_index": [5]}))
    with pytest.raises(ValueError, match="columns"):
        category_decisions(np.ones((1, 3)) / 3, pd.DataFrame({"category": ["a"]}))


def test_shape_bias_by_hand():
    shape = ["cat", "cat", "dog", "car", "car", "bear", "bear"]
    texture = ["dog", "dog", "cat", "car", "bear", "cat", "dog"]
    predicted = ["cat", "dog", "cat", "car", "knife", "bear", "bear"]
    # row 3 is excluded (shape == texture); shape hits: rows 0, 5, 6; texture hits: rows 1, 2; row 4 neither
    r = shape_bias(shape, texture, predicted)
    assert r["n_images"] == 6 and r["n_shape_hits"] == 3 and r["n_texture_hits"] == 2
    assert r["shape_bias"] == pytest.approx(3 / 5)
    assert r["texture_bias"] == pytest.approx(2 / 5)
    assert r["shape_accuracy"] == pytest.approx(3 / 6)
    assert r["texture_accuracy"] == pytest.approx(2 / 6)


def test_shape_bias_extremes():
    assert shape_bias(["a", "b"], ["b", "a"], ["a", "b"])["shape_bias"] == 1.0
    r = shape_bias(["a", "b"], ["b", "a"], ["b", "a"])
    assert r["shape_bias"] == 0.0 and r["texture_bias"] == 1.0


def test_shape_bias_is_nan_without_hits_or_images():
    r = shape_bias(["a", "b"], ["b", "a"], ["c", "c"])
    assert np.isnan(r["shape_bias"]) and np.isnan(r["texture_bias"])
    assert r["shape_accuracy"] == 0.0 and r["n_images"] == 2
    r = shape_bias(["a", "b"], ["a", "b"], ["a", "b"])   # all excluded
    assert r["n_images"] == 0 and np.isnan(r["shape_accuracy"]) and np.isnan(r["shape_bias"])
    r = shape_bias([], [], [])
    assert r["n_images"] == 0 and np.isnan(r["shape_bias"])


def test_shape_bias_rejects_ragged_input():
    with pytest.raises(ValueError, match="equal length"):
        shape_bias(["a"], ["b", "c"], ["a"])
