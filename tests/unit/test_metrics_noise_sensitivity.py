"""Noise sensitivity: the normalised accuracy drop, by hand."""

import numpy as np
import pytest

from clipdyn.metrics import noise_sensitivity


def test_by_hand():
    r = noise_sensitivity(0.8, {3: 0.2, 1: 0.6, 2: 0.4})
    assert list(r["per_severity"]) == [1, 2, 3]
    np.testing.assert_allclose(list(r["per_severity"].values()), [0.25, 0.5, 0.75])
    assert r["mean"] == pytest.approx(0.5)


def test_no_drop_and_gain():
    assert noise_sensitivity(0.5, {1: 0.5})["mean"] == 0.0
    assert noise_sensitivity(0.5, {1: 0.6})["per_severity"][1] == pytest.approx(-0.2)


def test_edge_cases():
    r = noise_sensitivity(0.0, {1: 0.0, 2: 0.0})
    assert all(np.isnan(v) for v in r["per_severity"].values()) and np.isnan(r["mean"])
    r = noise_sensitivity(0.7, {})
    assert r["per_severity"] == {} and np.isnan(r["mean"])
