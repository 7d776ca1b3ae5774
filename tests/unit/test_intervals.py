"""Bootstrap intervals: closed forms, coverage, joint resampling of paired measures, and every
vectorised statistic equal to its metric's definition evaluated on the resampled units."""
import numpy as np
import pytest
from scipy import stats as sps

from clipdyn.metrics.calibration import (
    ece_statistic,
    expected_calibration_error,
    fit_temperature,
    temperature_statistic,
)
from clipdyn.metrics.intervals import (
    Statistic,
    bootstrap,
    mean_of,
    per_resample,
    ratio_of_sums,
    resample_counts,
    summarise,
    weighted_kendall,
    weighted_pearson,
    weighted_ranks,
    weighted_spearman,
)
from clipdyn.metrics.noise_sensitivity import noise_statistics
from clipdyn.metrics.ood import auroc, auroc_statistic, fpr95_statistic, fpr_at_95_tpr, fpr_at_95_tpr_closest


def _take(counts_row):
    return np.repeat(np.arange(len(counts_row)), counts_row.astype(int))


def test_resamples_are_the_same_for_the_same_seed_units_and_stream_and_differ_otherwise():
    a = resample_counts(50, 20, seed=3, stream="imagenet")
    assert a.shape == (20, 50) and (a.sum(axis=1) == 50).all()
    assert (a == resample_counts(50, 20, seed=3, stream="imagenet")).all()
    assert not (a == resample_counts(50, 20, seed=4, stream="imagenet")).all()
    assert not (a == resample_counts(50, 20, seed=3, stream="ood")).all()


def test_binomial_accuracy_interval_matches_the_normal_closed_form_at_n_1000():
    rng = np.random.default_rng(0)
    hits = rng.random(1000) < 0.7
    p = hits.mean()
    r = bootstrap(mean_of(hits, "images"), resamples=2000, seed=1)
    closed = 2 * 1.96 * np.sqrt(p * (1 - p) / 1000)
    assert abs((r["ci_high"] - r["ci_low"]) - closed) < 0.10 * closed
    assert abs(r["se"] - np.sqrt(p * (1 - p) / 1000)) < 0.10 * np.sqrt(p * (1 - p) / 1000)
    assert r["estimate"] == p and r["ci_low"] < p < r["ci_high"]


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_coverage_of_a_known_mean_lies_in_93_to_97_percent_of_400_replications(method):
    # 400 independent studies: an accuracy of n = 300 images with true rate 0.3 (skewed enough
    # that BCa has a correction to make); B = 1000 resamples each, the default (the 2.5% and
    # 97.5% quantiles of fewer resamples are too noisy to judge coverage by). Vectorised: ~1 s.
    rng = np.random.default_rng(2026)
    covered = 0
    for rep in range(400):
        x = (rng.random(300) < 0.3).astype(float)
        r = bootstrap(mean_of(x, f"study{rep}"), resamples=1000, seed=rep, method=method)
        covered += r["ci_low"] <= 0.3 <= r["ci_high"]
    assert 0.93 <= covered / 400 <= 0.97, covered / 400


def test_joint_resampling_of_a_paired_drop_is_narrower_than_independent_resampling():
    # clean and noisy hits of the same images are correlated: an image the model gets right clean
    # it mostly gets right noisy
    rng = np.random.default_rng(1)
    n = 1000
    clean = rng.random(n) < 0.7
    noisy = clean & (rng.random(n) < 0.8)
    ids = np.array([f"img{i}" for i in range(n)])
    sev = np.ones(n, dtype=int)
    paired = noise_statistics(clean, ids, noisy, sev, ids, "clean", "noisy")
    unpaired = noise_statistics(clean, ids, noisy, sev, None, "clean", "noisy")
    assert len(paired[0].strata) == 1 and len(unpaired[0].strata) == 2
    drop_p, drop_u = bootstrap(paired[-1], 1000), bootstrap(unpaired[-1], 1000)
    assert drop_p["estimate"] == pytest.approx(drop_u["estimate"])
    assert drop_p["estimate"] == pytest.approx((clean.mean() - noisy.mean()) / clean.mean())
    assert (drop_p["ci_high"] - drop_p["ci_low"]) < 0.7 * (drop_u["ci_high"] - drop_u["ci_low"])


def test_summarise_is_nan_where_undefined_and_refuses_unknown_methods():
    r = summarise(float("nan"), np.arange(10.0))
    assert np.isnan(r["se"]) and np.isnan(r["ci_low"])
    assert np.isnan(summarise(0.5, np.full(10, np.nan))["ci_high"])
    with pytest.raises(ValueError, match="percentile"):
        summarise(0.5, np.arange(10.0), method="basic")


def test_bca_differs_from_percentile_on_a_skewed_statistic_and_shifts_the_right_way():
    rng = np.random.default_rng(5)
    x = rng.lognormal(0.0, 1.0, 60)
    var = Statistic(lambda w: (w @ x ** 2) / w.sum(1) - ((w @ x) / w.sum(1)) ** 2, (("u", 60),))
    p, b = bootstrap(var, 2000, method="percentile"), bootstrap(var, 2000, method="bca")
    assert b["ci_high"] > p["ci_high"]  # the variance of a skewed sample: BCa moves the interval up


# --------------------------------------------------------------- statistics = definitions on a resample

def test_weighted_ranks_spearman_pearson_equal_scipy_on_the_resampled_units():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=80), 1)  # ties
    y = x + rng.normal(size=80)
    w = resample_counts(80, 5, seed=0, stream="pairs")
    for k in range(5):
        take = _take(w[k])
        got = weighted_ranks(w[k:k + 1], x)[0]
        np.testing.assert_allclose(np.sort(np.repeat(got, w[k].astype(int))), np.sort(sps.rankdata(x[take])))
        assert weighted_spearman(w[k:k + 1], x, y)[0] == pytest.approx(sps.spearmanr(x[take], y[take])[0])
        assert weighted_pearson(w[k:k + 1], x, y)[0] == pytest.approx(sps.pearsonr(x[take], y[take])[0])
        tau = sps.kendalltau(x[take], np.round(y[take], 0))[0]
        assert weighted_kendall(w[k:k + 1], x, np.round(y, 0), chunk=500)[0] == pytest.approx(tau)


def test_auroc_statistic_equals_auroc_of_the_resampled_id_and_ood_images():
    rng = np.random.default_rng(4)
    s_in, s_out = np.round(rng.normal(1, 1, 60), 1), np.round(rng.normal(0, 1, 40), 1)
    st = auroc_statistic(s_in, s_out, "id", "ood")
    wi, wo = resample_counts(60, 4, 0, "id"), resample_counts(40, 4, 0, "ood")
    got = st(wi, wo)
    for k in range(4):
        assert got[k] == pytest.approx(auroc(s_in[_take(wi[k])], s_out[_take(wo[k])]))
    assert st(np.ones((1, 60)), np.ones((1, 40)))[0] == pytest.approx(auroc(s_in, s_out))


@pytest.mark.parametrize("mode,fn", [("mcm", fpr_at_95_tpr_closest), ("at_least", fpr_at_95_tpr)])
def test_fpr95_statistic_equals_its_definition_on_resampled_images(mode, fn):
    rng = np.random.default_rng(8)
    s_in, s_out = np.round(rng.normal(1, 1, 70), 1), np.round(rng.normal(0, 1, 50), 1)  # ties
    st = fpr95_statistic(s_in, s_out, mode, "id", "ood")
    wi, wo = resample_counts(70, 30, 0, "id"), resample_counts(50, 30, 0, "ood")
    got = st(wi, wo)
    for k in range(30):
        assert got[k] == pytest.approx(fn(s_in[_take(wi[k])], s_out[_take(wo[k])])), k
    assert st(np.ones((1, 70)), np.ones((1, 50)))[0] == pytest.approx(fn(s_in, s_out))


def test_ece_and_temperature_statistics_equal_their_definitions_on_a_resample():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(300, 5)) * 3
    labels = rng.integers(0, 5, 300)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    w = resample_counts(300, 3, 0, "cal")
    got = ece_statistic(probs, labels, 15, "cal")(w)
    for k in range(3):
        take = _take(w[k])
        assert got[k] == pytest.approx(expected_calibration_error(probs[take], labels[take], 15))
    T = fit_temperature(logits, labels)
    temps = temperature_statistic(logits, labels, T, "cal")(w)
    for k in range(3):
        take = _take(w[k])
        assert temps[k] == pytest.approx(fit_temperature(logits[take], labels[take]), rel=2e-3)


def test_ratio_and_per_resample_statistics_equal_their_definitions():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 2, 50).astype(float), np.ones(50)
    w = resample_counts(50, 3, 0, "u")
    r = ratio_of_sums(a, b, "u")(w)
    loop = per_resample(lambda x: x.mean(), [[a]], [("u", 50)])(w)
    for k in range(3):
        assert r[k] == pytest.approx(a[_take(w[k])].mean()) == pytest.approx(loop[k])
