"""Calibration: ECE against an explicit loop and torchmetrics (in the ``test`` extra), NLL against sklearn,
temperature fitting."""

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.metrics import log_loss

from clipdyn.metrics import expected_calibration_error, fit_temperature, negative_log_likelihood, softmax, split_heldout


def ece_loop_reference(probs, labels, n_bins, norm):
    """Equal-width bins [b/M, (b+1)/M); a confidence of exactly 1 in a bin of its own (torchmetrics)."""
    bins = {}
    for p, y in zip(probs, labels):
        conf = max(p)
        pred = int(np.argmax(p))
        b = n_bins if conf >= 1.0 else int(np.floor(conf * n_bins))
        # guard against floor(conf * M) landing one bin off at an edge
        edges = np.linspace(0, 1, n_bins + 1)
        while b > 0 and conf < edges[b]:
            b -= 1
        while b < n_bins and conf >= edges[b + 1]:
            b += 1
        bins.setdefault(b, []).append((conf, float(pred == y)))
    n = len(probs)
    gaps, weights = [], []
    for members in bins.values():
        confs, accs = zip(*members)
        gaps.append(abs(np.mean(accs) - np.mean(confs)))
        weights.append(len(members) / n)
    gaps, weights = np.array(gaps), np.array(weights)
    if norm == "l1":
        return float(np.sum(weights * gaps))
    if norm == "l2":
        return float(np.sqrt(np.sum(weights * gaps ** 2)))
    return float(np.max(gaps))


def torchmetrics_ece(probs, labels, n_bins, norm="l1"):
    """torchmetrics' multiclass calibration error (float32, as torchmetrics computes it)."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = np.asarray(probs)
    return float(multiclass_calibration_error(torch.tensor(probs, dtype=torch.float32), torch.tensor(labels),
                                              num_classes=probs.shape[1], n_bins=n_bins, norm=norm))


def random_probs(seed, n=300, c=10):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 5)
    labels = rng.integers(0, c, size=n)
    return softmax(logits, axis=1), labels


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15, 30])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_ece_matches_loop_reference(seed, n_bins, norm):
    probs, labels = random_probs(seed)
    assert expected_calibration_error(probs, labels, n_bins, norm) == pytest.approx(
        ece_loop_reference(probs, labels, n_bins, norm), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_bins", [5, 15])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_ece_matches_torchmetrics(seed, n_bins, norm):
    probs, labels = random_probs(seed)
    probs = probs.astype(np.float32).astype(np.float64)   # torchmetrics works in float32
    ref = torchmetrics_ece(probs, labels, n_bins, norm)
    assert expected_calibration_error(probs, labels, n_bins, norm) == pytest.approx(ref, abs=1e-6)


HAND_CASES = [
    # (probs, labels, n_bins, expected l1 ECE)
    ([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]], [0, 1, 1], 10, (0.1 + 0.6 + 0.3) / 3),
    ([[0.75, 0.25], [0.75, 0.25], [0.75, 0.25], [0.75, 0.25]], [0, 0, 0, 1], 4, 0.0),   # calibrated
    # argmax tie -> class 0 (wrong); 0.5 and 0.75 share bin [0.5, 1): acc 1/2, conf 0.625
    ([[0.5, 0.5], [0.75, 0.25]], [1, 0], 2, 0.125),
    ([[0.5, 0.5], [0.75, 0.25]], [1, 0], 4, 0.5 * 0.5 + 0.5 * 0.25),   # 0.5 on an edge: bin [0.5, 0.75)
    # confidence exactly 1 is a bin of its own: (1.0 wrong) and (0.94 right) are not averaged together
    ([[1.0, 0.0], [0.94, 0.06]], [1, 0], 15, 0.5 * 1.0 + 0.5 * 0.06),
]


@pytest.mark.parametrize("probs,labels,n_bins,expected", HAND_CASES)
def test_ece_hand_cases(probs, labels, n_bins, expected):
    probs, labels = np.array(probs), np.array(labels)
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(expected, abs=1e-12)
    assert torchmetrics_ece(probs, labels, n_bins) == pytest.approx(expected, abs=1e-6)


def test_ece_edge_cases():
    assert np.isnan(expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int)))
    assert expected_calibration_error(np.ones((4, 1)), np.zeros(4, dtype=int)) == 0.0   # single class
    with pytest.raises(ValueError, match="norm"):
        expected_calibration_error(np.ones((1, 1)), np.zeros(1, dtype=int), norm="l3")


@pytest.mark.parametrize("seed", range(3))
def test_nll_matches_sklearn_and_is_stable(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(50, 6)) * 3
    labels = rng.integers(0, 6, size=50)
    ref = log_loss(labels, softmax(logits, axis=1), labels=np.arange(6))
    assert negative_log_likelihood(logits, labels) == pytest.approx(ref, rel=1e-9)
    # huge logits (a CLIP at logit scale 100 on un-normalised inputs) do not overflow
    assert negative_log_likelihood(np.array([[1000.0, 0.0]]), np.array([1])) == pytest.approx(1000.0)
    assert negative_log_likelihood(np.zeros((3, 5)), np.array([0, 1, 2])) == pytest.approx(np.log(5))


def test_fit_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20000, 5)) * 4
    t_true = 2.5
    p = softmax(z / t_true, axis=1)
    labels = (p.cumsum(axis=1) > rng.random((len(z), 1))).argmax(axis=1)
    assert fit_temperature(z, labels) == pytest.approx(t_true, rel=0.05)


@pytest.mark.parametrize("seed", range(3))
def test_fit_temperature_is_the_nll_minimum(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(200, 4)) * 10
    labels = rng.integers(0, 4, size=200)
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 4001))
    scaled = logits[None] / grid[:, None, None]
    nll_grid = (logsumexp(scaled, axis=2) - scaled[:, np.arange(len(labels)), labels]).mean(axis=1)
    assert negative_log_likelihood(logits / t, labels) <= min(nll_grid) + 1e-9
    assert negative_log_likelihood(logits / t, labels) <= negative_log_likelihood(logits, labels)


def test_fit_temperature_separable_hits_lower_bound():
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    # NLL falls towards 0 as T -> 0 (flat to float precision below T ~ 0.05)
    t = fit_temperature(logits, np.array([0, 1]), bounds=(0.01, 100))
    assert t < 0.05 and negative_log_likelihood(logits / t, np.array([0, 1])) < 1e-15
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_split_heldout():
    fit, ev = split_heldout(100, 0.2, seed=0)
    assert len(fit) == 20 and len(ev) == 80
    assert sorted(np.concatenate([fit, ev]).tolist()) == list(range(100))
    f2, e2 = split_heldout(100, 0.2, seed=0)
    np.testing.assert_array_equal(fit, f2)
    np.testing.assert_array_equal(ev, e2)
    assert not np.array_equal(split_heldout(100, 0.2, seed=1)[0], fit)
    assert [len(x) for x in split_heldout(2, 0.2, seed=0)] == [1, 1]   # at least one on each side
    assert [len(x) for x in split_heldout(3, 0.9, seed=0)] == [2, 1]
    with pytest.raises(ValueError):
        split_heldout(10, 1.0, seed=0)


# ----------------------------------------------------------------------------- RMS calibration error

def port_calib_err(confidence, correct, p="2", beta=100):
    """hendrycks/imagenet-r utils.py ``calib_err``, line by line (its ``eval.py`` reports p='2')."""
    idxs = np.argsort(confidence)
    confidence = confidence[idxs]
    correct = correct[idxs]
    bins = [[i * beta, (i + 1) * beta] for i in range(len(confidence) // beta)]
    bins[-1] = [bins[-1][0], len(confidence)]
    cerr = 0
    total_examples = len(confidence)
    for i in range(len(bins) - 1):
        bin_confidence = confidence[bins[i][0]:bins[i][1]]
        bin_correct = correct[bins[i][0]:bins[i][1]]
        num_examples_in_bin = len(bin_confidence)
        if num_examples_in_bin > 0:
            difference = np.abs(np.nanmean(bin_confidence) - np.nanmean(bin_correct))
            cerr += num_examples_in_bin / total_examples * np.square(difference)
    return np.sqrt(cerr)


@pytest.mark.parametrize("n", [200, 257, 1000, 3456])
def test_rms_calibration_error_matches_the_imagenet_r_code(n):
    from clipdyn.metrics.calibration import rms_calibration_error

    rng = np.random.default_rng(n)
    logits = rng.normal(size=(n, 7)) * rng.uniform(0.5, 4)
    labels = np.where(rng.random(n) < 0.6, logits.argmax(1), rng.integers(0, 7, n))
    probs = softmax(logits, axis=1)
    ours = rms_calibration_error(probs, labels)
    ref = port_calib_err(probs.max(1), (probs.argmax(1) == labels).astype(float))
    assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15) and ours > 0
    # it is not the 15-bin ECE (nor its L2 form): adaptive bins, the top bin left out
    assert ours != pytest.approx(expected_calibration_error(probs, labels, 15, norm="l2"), rel=1e-3)


def test_rms_calibration_error_edges():
    from clipdyn.metrics.calibration import rms_calibration_error

    probs = softmax(np.random.default_rng(0).normal(size=(150, 3)), axis=1)
    labels = np.zeros(150, int)
    assert rms_calibration_error(probs, labels) == 0.0        # one bin, and the last bin never counts
    assert np.isnan(rms_calibration_error(probs[:99], labels[:99]))   # no bin at all (the source fails)
    with pytest.raises(ValueError, match="bin_size"):
        rms_calibration_error(probs, labels, bin_size=0)


@pytest.mark.parametrize("n", [99, 100, 250, 1234])
def test_rms_statistic_is_calib_err_of_every_resample(n):
    """The interval statistic of the rms_calibration_error rows, at bootstrap and jackknife weights,
    equals the source's calib_err (ported) on the images repeated by their weights: the adaptive
    bins are re-cut per resample (more resamples than one chunk, so chunks join in order)."""
    from clipdyn.metrics.calibration import rms_calibration_error, rms_statistic
    from clipdyn.metrics.intervals import _jackknife_weights, resample_counts

    rng = np.random.default_rng(n)
    logits = rng.normal(size=(n, 5)) * rng.uniform(0.5, 4)
    labels = np.where(rng.random(n) < 0.6, logits.argmax(1), rng.integers(0, 5, n))
    probs = softmax(logits, axis=1)
    stat = rms_statistic(probs, labels, "images")
    assert stat.strata == (("images", n),)
    w = np.vstack([np.ones((1, n)), resample_counts(n, 150, 0, "images"), _jackknife_weights(n, 0, "images")])
    got = stat(w)
    conf, hit = probs.max(1), (probs.argmax(1) == labels).astype(float)
    for row, value in zip(w, got):
        take = np.repeat(np.arange(n), row.astype(int))
        if len(take) < 100:
            assert np.isnan(value)   # no bin: NaN, as rms_calibration_error
        else:
            assert value == pytest.approx(port_calib_err(conf[take], hit[take]), rel=1e-9, abs=1e-12)
    assert got[0] == pytest.approx(rms_calibration_error(probs, labels), nan_ok=True)
    if n >= 200:
        assert np.nanstd(got[1:151]) > 0   # the resamples differ
