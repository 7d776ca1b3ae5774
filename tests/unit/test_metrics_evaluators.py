"""Evaluators on small synthetic embeddings, dataset tables and classifiers."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipdyn.data.formats import DatasetTables
from clipdyn.io import Classifier, EmbeddingTable
from clipdyn.metrics import (
    alignment_correlations,
    auc_judd,
    auroc,
    embedding_distance,
    expected_calibration_error,
    fit_temperature,
    fpr_at_95_tpr,
    load_imagenet16_mapping,
    mcm_scores,
    negative_log_likelihood,
    nss,
    pearson_cc,
    registry,
    resize_map,
    softmax,
    split_heldout,
    zero_shot_logits,
)
from clipdyn.metrics.intervals import interval_fields
from clipdyn.metrics.ood import fpr_at_95_tpr_closest
from clipdyn.metrics.result import ROW_COLUMNS
from clipdyn.metrics.saliency_alignment import imresize


def evaluate(kind, **kwargs):
    """The registry's evaluate, checking that the rows name only measures the kind declares, and that
    every row with a value carries the statistic of its interval: equal to the value at unit weights,
    with a finite bootstrap interval around it (every evaluator test below checks its intervals)."""
    result = registry.evaluate(kind, **kwargs)
    declared = {m.name for m in registry.get(kind).measures}
    assert set(result.rows["measure"]) <= declared, (kind, set(result.rows["measure"]) - declared)
    check_intervals(result)
    return result


def check_intervals(result):
    rows = result.rows.reset_index(drop=True)
    assert result.stats is not None and len(result.stats) == len(rows)
    for (_, row), stat in zip(rows.iterrows(), result.stats):
        if stat is None:  # only where the value itself is undefined
            assert np.isnan(row["value"]), row
            continue
        at_ones = stat(*[np.ones((1, n)) for _, n in stat.strata])[0]
        rel = 2e-3 if row["measure"] == "temperature" else 1e-9  # the temperature's grid search
        np.testing.assert_allclose(at_ones, row["value"], rtol=rel, atol=1e-12, err_msg=str(row))
        f = interval_fields(stat, {"enabled": True, "resamples": 200, "method": "percentile", "seed": 0,
                                   "level": 0.95})
        if np.isfinite(row["value"]) and not np.isnan(f["ci_low"]):
            assert f["ci_low"] <= f["ci_high"] and np.isfinite(f["se"]) and len(f["replicates"]) == 200, row
        elif np.isfinite(row["value"]):
            # undefined only where almost every resample is degenerate (e.g. a 2-pair correlation)
            assert np.isfinite(f["replicates"]).sum() < 2, row


def onehot_classifier(classnames, dim=None, scale=100.0):
    c = len(classnames)
    return Classifier(W=np.eye(c, dim or c, dtype=np.float32), classnames=list(classnames), logit_scale=scale)


def rows_dict(result):
    assert list(result.rows.columns) == ROW_COLUMNS
    return {(r.measure, r.dataset, r.variant): (r.value, r.n) for r in result.rows.itertuples()}


def images_frame(ids, **cols):
    return pd.DataFrame({"image_id": ids, "path": [f"/x/{i}.jpg" for i in ids], "member": "", **cols})


# ----------------------------------------------------------------------------- dispatch

def test_evaluate_checks_kind_roles_and_datasets():
    emb = {"d": EmbeddingTable(ids=np.array(["a"]), X=np.ones((1, 2), np.float32))}
    tab = {"d": DatasetTables(images=images_frame(["a"], label=[0]))}
    clf = onehot_classifier(["x", "y"])
    with pytest.raises(ValueError, match="unknown metric kind"):
        evaluate("accuracy", embeddings=emb, tables=tab, classifier=clf, inputs={"dataset": "d"}, options={})
    with pytest.raises(ValueError, match="role 'dataset'"):
        evaluate("zeroshot_accuracy", embeddings=emb, tables=tab, classifier=clf, inputs={}, options={})
    with pytest.raises(ValueError, match="unknown role"):
        evaluate("zeroshot_accuracy", embeddings=emb, tables=tab, classifier=clf,
                 inputs={"dataset": "d", "extra": "d"}, options={})
    with pytest.raises(ValueError, match="no embeddings given for dataset 'e'"):
        evaluate("zeroshot_accuracy", embeddings=emb, tables=tab, classifier=clf, inputs={"dataset": "e"}, options={})
    with pytest.raises(ValueError, match="needs a zero-shot classifier"):
        evaluate("zeroshot_accuracy", embeddings=emb, tables=tab, classifier=None, inputs={"dataset": "d"}, options={})


# ----------------------------------------------------------------------------- zero-shot

def zeroshot_setup(n_classes=6):
    clf = onehot_classifier([f"c{i}" for i in range(n_classes)], dim=8)
    labels = [0, 1, 2, 3, 4, 5][:n_classes] + [0]
    ids = [f"i{k}" for k in range(len(labels))]
    images = images_frame(ids, label=labels)
    # embeddings in another order, image i2 skipped; i4 is predicted as class 0 (wrong), the rest right
    order = [5, 4, 3, 1, 0] if n_classes == 6 else [3, 1, 0]
    pred = {k: labels[k] for k in order}
    if n_classes == 6:
        pred[4] = 0
    X = np.stack([clf.W[pred[k]] * (1 + k) for k in order])    # norms differ: cosine ignores them
    emb = EmbeddingTable(ids=np.array([ids[k] for k in order], dtype=object), X=X.astype(np.float32))
    return emb, DatasetTables(images=images), clf


def test_zeroshot_accuracy_joins_on_image_id():
    emb, tab, clf = zeroshot_setup()
    res = evaluate("zeroshot_accuracy", embeddings={"in": emb}, tables={"in": tab}, classifier=clf,
                   inputs={"dataset": "in"}, options={})
    r = rows_dict(res)
    assert r[("zeroshot_top1", "in", "")] == (pytest.approx(4 / 5), 5)
    assert r[("zeroshot_top5", "in", "")] == (1.0, 5)
    assert res.details.set_index("image_id").loc["i4", "predicted"] == 0


def test_zeroshot_top5_is_nan_with_few_classes_and_bad_labels_fail():
    emb, tab, clf = zeroshot_setup(n_classes=3)
    r = rows_dict(evaluate("zeroshot_accuracy", embeddings={"in": emb}, tables={"in": tab}, classifier=clf,
                           inputs={"dataset": "in"}, options={}))
    assert r[("zeroshot_top1", "in", "")] == (1.0, 3) and np.isnan(r[("zeroshot_top5", "in", "")][0])
    tab.images.loc[0, "label"] = 7
    with pytest.raises(ValueError, match="'in'.*label"):
        evaluate("zeroshot_accuracy", embeddings={"in": emb}, tables={"in": tab}, classifier=clf,
                 inputs={"dataset": "in"}, options={})


def test_missing_column_names_dataset_and_column():
    emb, tab, clf = zeroshot_setup()
    tab.images = tab.images.drop(columns="label")
    with pytest.raises(ValueError, match=r"dataset 'in'.*\['label'\]"):
        evaluate("zeroshot_accuracy", embeddings={"in": emb}, tables={"in": tab}, classifier=clf,
                 inputs={"dataset": "in"}, options={})


def test_no_overlap_and_duplicate_ids_fail_clearly():
    emb, tab, clf = zeroshot_setup()
    bad = EmbeddingTable(ids=np.array(["zz", "yy"]), X=np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="none of the"), pytest.warns(UserWarning, match="ignored"):
        evaluate("zeroshot_accuracy", embeddings={"in": bad}, tables={"in": tab}, classifier=clf,
                 inputs={"dataset": "in"}, options={})
    dup = EmbeddingTable(ids=np.array(["i0", "i0"]), X=np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="duplicate"):
        evaluate("zeroshot_accuracy", embeddings={"in": dup}, tables={"in": tab}, classifier=clf,
                 inputs={"dataset": "in"}, options={})


# ----------------------------------------------------------------------------- shape bias

CUE = pd.DataFrame({
    "shape":     ["cat", "cat", "dog", "car", "car", "bear"],
    "texture":   ["dog", "dog", "cat", "car", "bear", "cat"],
    "predicted": ["cat", "dog", "cat", "car", "knife", "bear"],
})   # row 3 excluded; shape hits 0, 5; texture hits 1, 2; row 4 neither -> bias 2/4, accuracies 2/5, 2/5


def check_shape_rows(res, variant):
    r = rows_dict(res)
    assert r[("shape_bias", "cue", variant)] == (pytest.approx(0.5), 4)
    assert r[("texture_bias", "cue", variant)] == (pytest.approx(0.5), 4)
    assert r[("cue_conflict_shape_accuracy", "cue", variant)] == (pytest.approx(0.4), 5)
    assert r[("cue_conflict_texture_accuracy", "cue", variant)] == (pytest.approx(0.4), 5)
    d = res.details.set_index("image_id")
    assert list(d.columns) == ["shape", "texture", "predicted"]
    assert d.loc["x1", "predicted"] == "dog" and d.loc["x4", "predicted"] == "knife"


def test_shape_bias_with_category_prompts():
    cats = ["bear", "car", "cat", "dog", "knife"]
    clf = onehot_classifier(cats, dim=6)
    ids = [f"x{k}" for k in range(len(CUE))]
    X = np.stack([clf.W[cats.index(p)] for p in CUE["predicted"]])
    emb = EmbeddingTable(ids=np.array(ids[::-1]), X=X[::-1].copy())
    tab = DatasetTables(images=images_frame(ids, shape=CUE["shape"], texture=CUE["texture"]))
    res = evaluate("shape_bias", embeddings={"cue": emb}, tables={"cue": tab}, classifier=clf,
                   inputs={"dataset": "cue"}, options={"decision": "category_prompts"})
    check_shape_rows(res, "category_prompts")


@pytest.mark.parametrize("custom_csv", [False, True])
def test_shape_bias_with_imagenet_mapping(tmp_path, custom_csv):
    mapping = load_imagenet16_mapping()
    first = mapping.groupby("category")["imagenet_index"].first()
    clf = onehot_classifier([f"imagenet{i}" for i in range(1000)])
    ids = [f"x{k}" for k in range(len(CUE))]
    X = np.stack([clf.W[first[p]] for p in CUE["predicted"]])
    emb = EmbeddingTable(ids=np.array(ids), X=X)
    tab = DatasetTables(images=images_frame(ids, shape=CUE["shape"], texture=CUE["texture"]))
    options = {}
    if custom_csv:
        path = tmp_path / "mapping.csv"
        mapping[["category", "imagenet_index"]].to_csv(path, index=False)
        options = {"decision": "imagenet_mapping", "category_mapping": str(path)}
    res = evaluate("shape_bias", embeddings={"cue": emb}, tables={"cue": tab}, classifier=clf,
                   inputs={"dataset": "cue"}, options=options)
    check_shape_rows(res, "imagenet_mapping")


def test_shape_bias_rejects_small_classifier_and_unknown_categories():
    ids = [f"x{k}" for k in range(len(CUE))]
    tab = DatasetTables(images=images_frame(ids, shape=CUE["shape"], texture=CUE["texture"]))
    clf = onehot_classifier(["bear", "car", "cat", "dog"], dim=4)
    emb = EmbeddingTable(ids=np.array(ids), X=np.ones((len(ids), 4), np.float32))
    with pytest.raises(ValueError, match="1000-class"):
        evaluate("shape_bias", embeddings={"cue": emb}, tables={"cue": tab}, classifier=clf,
                 inputs={"dataset": "cue"}, options={})
    no_bear = onehot_classifier(["car", "cat", "dog", "knife"], dim=4)
    with pytest.raises(ValueError, match=r"\['bear'\] are not among"):
        evaluate("shape_bias", embeddings={"cue": emb}, tables={"cue": tab}, classifier=no_bear,
                 inputs={"dataset": "cue"}, options={"decision": "category_prompts"})
    tab.images = tab.images.drop(columns="texture")
    with pytest.raises(ValueError, match=r"'cue'.*texture"):
        evaluate("shape_bias", embeddings={"cue": emb}, tables={"cue": tab}, classifier=clf,
                 inputs={"dataset": "cue"}, options={"decision": "category_prompts"})


# ----------------------------------------------------------------------------- noise

def _noise_inputs():
    """clean: 3 of 4 right; noisy severity 0 (no noise, ImageNet-C's crop and JPEG): 4 of 4 right;
    severity 1: 2 of 4; severity 2: 1 of 4."""
    clf = onehot_classifier(["a", "b", "c"])
    clean_labels, clean_pred = [0, 1, 2, 0], [0, 1, 2, 1]
    noisy_labels = [0, 1, 2, 0] * 3
    noisy_pred = [0, 1, 2, 0] + [0, 1, 0, 1] + [0, 0, 0, 1]
    severity = [0] * 4 + [1] * 4 + [2] * 4
    emb = {"clean": EmbeddingTable(ids=np.array([f"c{i}" for i in range(4)]), X=clf.W[clean_pred]),
           "noisy": EmbeddingTable(ids=np.array([f"n{i}" for i in range(12)]), X=clf.W[noisy_pred])}
    tab = {"clean": DatasetTables(images=images_frame([f"c{i}" for i in range(4)], label=clean_labels)),
           "noisy": DatasetTables(images=images_frame([f"n{i}" for i in range(12)], label=noisy_labels,
                                                       severity=severity))}
    return clf, emb, tab


def test_noise_sensitivity_default_baseline_is_the_noise_free_severity_0():
    clf, emb, tab = _noise_inputs()
    res = evaluate("noise_sensitivity", embeddings=emb, tables=tab, classifier=clf,
                   inputs={"clean": "clean", "noisy": "noisy"}, options={})
    r = rows_dict(res)
    assert r[("noise_accuracy", "noisy", "severity_0")] == (1.0, 4)   # the noisy set's severity 0
    assert r[("noise_accuracy", "noisy", "severity_1")] == (0.5, 4)
    assert r[("noise_accuracy", "noisy", "severity_2")] == (0.25, 4)
    assert r[("noise_sensitivity", "noisy", "severity_1")] == (pytest.approx(0.5), 4)
    assert r[("noise_sensitivity", "noisy", "severity_2")] == (pytest.approx(0.75), 4)
    assert r[("noise_sensitivity", "noisy", "mean")] == (pytest.approx(0.625), 8)
    assert ("noise_sensitivity", "noisy", "severity_0") not in r
    same = evaluate("noise_sensitivity", embeddings=emb, tables=tab, classifier=clf,
                    inputs={"clean": "clean", "noisy": "noisy"}, options={"baseline": "derived"})
    assert rows_dict(same) == r
    # without severity-0 images the default baseline says what to do
    tab["noisy"].images = tab["noisy"].images.iloc[4:].reset_index(drop=True)
    with pytest.raises(ValueError, match=r"'noisy' has no severity-0.*severities.*baseline: clean"), \
            pytest.warns(UserWarning, match="ignored"):
        evaluate("noise_sensitivity", embeddings=emb, tables=tab, classifier=clf,
                 inputs={"clean": "clean", "noisy": "noisy"}, options={})


def _paired_noise_inputs():
    """A derived noisy set (``source_id`` names the clean image) listed in shuffled order: per source
    c0..c4, the severity-0, -1 and -2 versions."""
    clf = onehot_classifier(["a", "b", "c"])
    labels = [0, 1, 2, 0, 1]
    pred = {0: [0, 1, 2, 1, 1], 1: [0, 1, 0, 1, 1], 2: [0, 0, 0, 1, 2]}
    rows = [(f"n{s}{i}", f"c{i}", s, labels[i], pred[s][i]) for s in (0, 1, 2) for i in range(5)]
    rows = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))]
    ids, src, sev, lab, prd = (list(x) for x in zip(*rows))
    clean_pred = [0, 1, 2, 2, 1]
    emb = {"clean": EmbeddingTable(ids=np.array([f"c{i}" for i in range(5)]), X=clf.W[clean_pred]),
           "noisy": EmbeddingTable(ids=np.array(ids), X=clf.W[prd])}
    tab = {"clean": DatasetTables(images=images_frame([f"c{i}" for i in range(5)], label=labels)),
           "noisy": DatasetTables(images=images_frame(ids, label=lab, severity=sev, source_id=src))}
    return clf, emb, tab


@pytest.mark.parametrize("baseline,stream", [("derived", "noisy/sources"), ("clean", "clean")])
def test_noise_sensitivity_intervals_resample_a_source_with_its_baseline_and_noisy_versions(baseline, stream):
    """The unit of the drop's interval is the source image: with ``derived`` its severity-0 version
    (paired by source_id, not by position), with ``clean`` the clean set's image, together with all its
    noisy versions. A resample that draws one source alone gives exactly the rows of that source."""
    clf, emb, tab = _paired_noise_inputs()
    inputs = {"clean": "clean", "noisy": "noisy"}
    res = evaluate("noise_sensitivity", embeddings=emb, tables=tab, classifier=clf, inputs=inputs,
                   options={"baseline": baseline})
    assert all(st.strata == ((stream, 5),) for st in res.stats)
    per_unit = sorted(tuple(np.nan_to_num(np.round([st(np.eye(5)[[u]])[0] for st in res.stats], 12), nan=-9.0))
                      for u in range(5))   # NaN: a source whose baseline is wrong has no drop
    per_source = []
    for i in range(5):
        keep = tab["noisy"].images["source_id"] == f"c{i}"
        sub_emb = {"noisy": EmbeddingTable(ids=emb["noisy"].ids[keep.to_numpy()], X=emb["noisy"].X[keep.to_numpy()]),
                   "clean": EmbeddingTable(ids=emb["clean"].ids[[i]], X=emb["clean"].X[[i]])}
        sub_tab = {"noisy": DatasetTables(images=tab["noisy"].images[keep].reset_index(drop=True)),
                   "clean": DatasetTables(images=tab["clean"].images.iloc[[i]].reset_index(drop=True))}
        sub = registry.evaluate("noise_sensitivity", embeddings=sub_emb, tables=sub_tab, classifier=clf,
                                inputs=inputs, options={"baseline": baseline})
        per_source.append(tuple(np.nan_to_num(np.round(sub.rows["value"].to_numpy(dtype=float), 12), nan=-9.0)))
    np.testing.assert_array_equal(np.array(per_unit), np.array(sorted(per_source)))


def test_noise_sensitivity_clean_baseline_variant():
    clf, emb, tab = _noise_inputs()
    res = evaluate("noise_sensitivity", embeddings=emb, tables=tab, classifier=clf,
                   inputs={"clean": "clean", "noisy": "noisy"}, options={"baseline": "clean"})
    r = rows_dict(res)
    assert r[("noise_accuracy", "noisy", "severity_0")] == (0.75, 4)  # the clean set, model preprocessing
    assert r[("noise_accuracy", "noisy", "severity_1")] == (0.5, 4)
    assert r[("noise_sensitivity", "noisy", "severity_1")] == (pytest.approx(1 / 3), 4)
    assert r[("noise_sensitivity", "noisy", "severity_2")] == (pytest.approx(2 / 3), 4)
    assert r[("noise_sensitivity", "noisy", "mean")] == (pytest.approx(0.5), 8)
    assert set(res.details["severity"]) == {1, 2}   # the noise-free severity 0 is not a noise level
    with pytest.raises(ValueError, match=r"baseline must be one of \['derived', 'clean'\]"):
        evaluate("noise_sensitivity", embeddings=emb, tables=tab, classifier=clf,
                 inputs={"clean": "clean", "noisy": "noisy"}, options={"baseline": "model"})
    tab["noisy"].images = tab["noisy"].images.drop(columns="severity")
    with pytest.raises(ValueError, match=r"'noisy'.*severity"):
        evaluate("noise_sensitivity", embeddings=emb, tables=tab, classifier=clf,
                 inputs={"clean": "clean", "noisy": "noisy"}, options={"baseline": "clean"})


# ----------------------------------------------------------------------------- low-level alignment

def iqa_dataset(seed, score_type, sign):
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(3, 5))
    X, ids, trials = list(refs), [f"r{k}" for k in range(3)], []
    for k in range(3):
        for j in range(4):
            X.append(refs[k] + rng.normal(size=5) * (j + 1))
            ids.append(f"d{k}_{j}")
            trials.append({"ref_id": f"r{k}", "dist_id": f"d{k}_{j}", "score": sign * (j + rng.uniform(0, 0.5)),
                           "score_type": score_type})
    images = images_frame(ids)
    return EmbeddingTable(ids=np.array(ids), X=np.array(X, np.float32)), DatasetTables(images, pd.DataFrame(trials))


def test_low_level_alignment_rows_and_mean():
    ea, ta = iqa_dataset(0, "mos", -1.0)   # quality falls with the noise level
    eb, tb = iqa_dataset(1, "DMOS", 1.0)   # degradation rises with it
    # skip one distorted image of dataset b at embedding time
    keep = eb.ids != "d1_2"
    eb = EmbeddingTable(ids=eb.ids[keep], X=eb.X[keep])
    res = evaluate("low_level_alignment", embeddings={"a": ea, "b": eb}, tables={"a": ta, "b": tb},
                   classifier=None, inputs={"datasets": ["a", "b"]}, options={"distance": "dimnorm_euclidean"})
    r = rows_dict(res)
    assert r[("low_level_alignment", "a", "spearman")][1] == 12
    assert r[("low_level_alignment", "b", "spearman")][1] == 11
    # reference: the same distances and correlations computed directly
    t = tb.trials[tb.trials.dist_id != "d1_2"]
    pos = {k: i for i, k in enumerate(eb.ids)}
    d = embedding_distance(eb.X[[pos[i] for i in t.ref_id]], eb.X[[pos[i] for i in t.dist_id]])
    ref = alignment_correlations(d, t.score.to_numpy(), score_higher_is_better=False)
    for v in ("spearman", "pearson", "kendall"):
        assert r[("low_level_alignment", "b", v)][0] == pytest.approx(ref[v])
        mean = (r[("low_level_alignment", "a", v)][0] + r[("low_level_alignment", "b", v)][0]) / 2
        assert r[("low_level_alignment", "mean", v)] == (pytest.approx(mean), 2)
    assert r[("low_level_alignment", "a", "spearman")][0] > 0.5    # human-like on MOS, positive
    assert r[("low_level_alignment", "b", "spearman")][0] > 0.5    # and on DMOS
    assert set(res.details.columns) >= {"dataset", "ref_id", "dist_id", "score", "distance"}


def test_low_level_alignment_checks_trials():
    ea, ta = iqa_dataset(0, "mos", -1.0)
    ta.trials.loc[0, "score_type"] = "dmos"
    with pytest.raises(ValueError, match="'a'.*score_type"):
        evaluate("low_level_alignment", embeddings={"a": ea}, tables={"a": ta}, classifier=None,
                 inputs={"datasets": "a"}, options={})
    ta.trials = ta.trials.drop(columns="score")
    with pytest.raises(ValueError, match=r"'a'.*trials.*\['score'\]"):
        evaluate("low_level_alignment", embeddings={"a": ea}, tables={"a": ta}, classifier=None,
                 inputs={"datasets": ["a"]}, options={})
    ta.trials = None
    with pytest.raises(ValueError, match="'a' has no trials"):
        evaluate("low_level_alignment", embeddings={"a": ea}, tables={"a": ta}, classifier=None,
                 inputs={"datasets": ["a"]}, options={})


# ----------------------------------------------------------------------------- mid-level alignment

def nights_setup(shares=False):
    # ref r along x; "near" images at 10 degrees, "far" ones at 80 degrees
    def at(deg):
        return [np.cos(np.radians(deg)), np.sin(np.radians(deg)), 0.0]
    ids = ["r", "near1", "far1", "near2", "far2", "eq1", "eq2"]
    X = np.array([at(0), at(10), at(80), at(10), at(80), at(45), at(-45)], np.float32)
    trials = pd.DataFrame({
        "ref_id":     ["r", "r", "r", "r", "r"],
        "left_id":    ["near1", "far1", "near2", "eq1", "near1"],
        "right_id":   ["far1", "near1", "far2", "eq2", "missing"],
        "left_vote":  [5, 1, 3, 2, 4],
        "right_vote": [1, 5, 3, 4, 2],
        "votes":      [6, 6, 6, 6, 6],
        "split":      ["test", "test", "val", "test", "test"],
    })
    if shares:   # as published: right_vote is the share of the `votes` observers (DreamSim)
        trials["left_vote"] /= trials["votes"]
        trials["right_vote"] /= trials["votes"]
    return EmbeddingTable(ids=np.array(ids), X=X), DatasetTables(images_frame(ids), trials)


@pytest.mark.parametrize("shares", [False, True])
def test_mid_level_alignment_rows(shares):
    emb, tab = nights_setup(shares)
    res = evaluate("mid_level_alignment", embeddings={"n": emb}, tables={"n": tab}, classifier=None,
                   inputs={"dataset": "n"}, options={"distance": "cosine"})
    r = rows_dict(res)
    # used: 4 trials (the 5th has no embedding). 2afc: 5/6, 5/6, 1/2 (vote tie), 1/2 (model tie)
    assert r[("mid_level_alignment", "n", "2afc")] == (pytest.approx((5 / 6 + 5 / 6 + 0.5 + 0.5) / 4), 4)
    # majority: the vote tie is excluded; 1, 1, 0.5
    assert r[("mid_level_alignment", "n", "majority")] == (pytest.approx(2.5 / 3), 3)
    # the authors' score: no trial is unanimous, so none counts
    assert r[("mid_level_alignment", "n", "unanimous")] == (0.0, 4)
    r = rows_dict(evaluate("mid_level_alignment", embeddings={"n": emb}, tables={"n": tab}, classifier=None,
                           inputs={"dataset": "n"}, options={"split": "val", "distance": "cosine"}))
    assert r[("mid_level_alignment", "n", "2afc")] == (0.5, 1)
    assert np.isnan(r[("mid_level_alignment", "n", "majority")][0])
    with pytest.raises(ValueError, match="no trial left"):
        evaluate("mid_level_alignment", embeddings={"n": emb}, tables={"n": tab}, classifier=None,
                 inputs={"dataset": "n"}, options={"min_votes": 7, "distance": "cosine"})
    tab.trials = tab.trials.drop(columns="votes")
    with pytest.raises(ValueError, match=r"'n'.*votes"):
        evaluate("mid_level_alignment", embeddings={"n": emb}, tables={"n": tab}, classifier=None,
                 inputs={"dataset": "n"}, options={"distance": "cosine"})


# ----------------------------------------------------------------------------- saliency

def write_png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("crop,preprocess", [("none", None), ("center", None), ("letterbox", None),
                                             ("auto", None), ("auto", "32px-bicubic-squash"),
                                             ("auto", "32px-bicubic-longest")])
def test_saliency_alignment_rows(tmp_path, crop, preprocess):
    rng = np.random.default_rng(0)
    G, H, W = 7, 28, 42
    ids = ["s0", "s1", "s2"]
    spatial = rng.random((3, G, G)).astype(np.float32)
    spatial[2] = 1.0                                    # a constant model map: no CC for s2
    dens, fix, map_paths, fix_paths = [], [], [], []
    for k in range(3):
        d = (rng.random((H, W)) * 255).astype(np.uint8)
        f = ((rng.random((H, W)) < 0.05) * 255).astype(np.uint8)
        dens.append(d.astype(float))
        fix.append(f != 0)
        map_paths.append(write_png(tmp_path / f"map{k}.png", d))
        fix_paths.append(write_png(tmp_path / f"fix{k}.png", f) if k != 1 else None)
    images = images_frame(ids, map_path=map_paths, fixation_path=fix_paths)
    emb = EmbeddingTable(ids=np.array(ids), X=np.ones((3, 4), np.float32), spatial=spatial,
                         meta={"preprocess": preprocess} if preprocess else {})
    res = evaluate("saliency_alignment", embeddings={"sal": emb}, tables={"sal": DatasetTables(images)},
                   classifier=None, inputs={"dataset": "sal"}, options={"crop": crop})
    r = rows_dict(res)
    # what the model saw: auto = open_clip's default (shortest: the centre square) unless the file says
    seen = {None: "center", "32px-bicubic-squash": "none", "32px-bicubic-longest": "letterbox"}[preprocess] \
        if crop == "auto" else crop

    def cut(m):  # the human map's part under the model map (28 x 42: the central square is columns 7-34)
        return m[:, 7:35] if seen == "center" else m

    def up(k):  # the model map on those pixels, as MATLAB imresize(map, size) gives it
        if seen == "letterbox":  # resized to the 42 x 42 padded square, the image's rows 7-34 kept
            return imresize(spatial[k], (42, 42))[7:35, :]
        return imresize(spatial[k], cut(dens[k]).shape)

    cc = [np.corrcoef(up(k).ravel(), cut(dens[k]).ravel())[0, 1] for k in (0, 1)]
    assert r[("saliency_alignment", "sal", "cc")] == (pytest.approx(np.mean(cc)), 2)
    fx = [cut(fix[k]) for k in (0, 2)]
    assert np.isnan(nss(up(2), fx[1]))                  # constant map
    assert r[("saliency_alignment", "sal", "nss")] == (pytest.approx(nss(up(0), fx[0])), 1)
    assert r[("saliency_alignment", "sal", "auc_judd")] == (
        pytest.approx((auc_judd(up(0), fx[0]) + auc_judd(up(2), fx[1])) / 2), 2)
    if crop == "none":  # the coarse variant: CC on the model's grid, the human map shrunk to it
        r = rows_dict(evaluate("saliency_alignment", embeddings={"sal": emb}, tables={"sal": DatasetTables(images)},
                               classifier=None, inputs={"dataset": "sal"},
                               options={"crop": "none", "cc_resolution": "patch_grid"}))
        cc = [pearson_cc(spatial[k], resize_map(dens[k], (G, G))) for k in (0, 1)]
        assert r[("saliency_alignment", "sal", "cc")] == (pytest.approx(np.mean(cc)), 2)


def test_saliency_fixations_are_read_above_half_the_maximum(tmp_path):
    rng = np.random.default_rng(3)
    points = rng.random((20, 20)) < 0.05
    noisy = np.where(points, 250, rng.integers(0, 12, size=(20, 20)))   # like a JPEG point map
    binary01 = points.astype(np.uint8)                                  # a 0/1 PNG
    spatial = rng.random((1, 5, 5)).astype(np.float32)
    emb = EmbeddingTable(ids=np.array(["s"]), X=np.ones((1, 4), np.float32), spatial=spatial)
    up = imresize(spatial[0], (20, 20))
    for k, fix in enumerate((noisy, binary01)):
        images = images_frame(["s"], map_path=[write_png(tmp_path / f"m{k}.png", rng.random((20, 20)) * 255)],
                              fixation_path=[write_png(tmp_path / f"f{k}.png", fix)])
        r = rows_dict(evaluate("saliency_alignment", embeddings={"sal": emb}, tables={"sal": DatasetTables(images)},
                               classifier=None, inputs={"dataset": "sal"}, options={}))
        assert r[("saliency_alignment", "sal", "nss")][0] == pytest.approx(nss(up, points))
        assert r[("saliency_alignment", "sal", "auc_judd")][0] == pytest.approx(auc_judd(up, points))


def test_saliency_alignment_without_fixations_or_spatial(tmp_path):
    ids = ["s0", "s1"]
    rng = np.random.default_rng(1)
    paths = [write_png(tmp_path / f"m{k}.png", rng.random((14, 14)) * 255) for k in range(2)]
    spatial = rng.random((2, 7, 7)).astype(np.float32)
    emb = EmbeddingTable(ids=np.array(ids), X=np.ones((2, 4), np.float32), spatial=spatial)
    tab = DatasetTables(images_frame(ids, map_path=paths))
    r = rows_dict(evaluate("saliency_alignment", embeddings={"sal": emb}, tables={"sal": tab}, classifier=None,
                           inputs={"dataset": "sal"}, options={}))
    assert set(r) == {("saliency_alignment", "sal", "cc")}
    tab.images.loc[1, "map_path"] = None
    with pytest.raises(ValueError, match="'sal'.*map_path"):
        evaluate("saliency_alignment", embeddings={"sal": emb}, tables={"sal": tab}, classifier=None,
                 inputs={"dataset": "sal"}, options={})
    emb.spatial = None
    with pytest.raises(ValueError, match="'sal'.*spatial"):
        evaluate("saliency_alignment", embeddings={"sal": emb}, tables={"sal": tab}, classifier=None,
                 inputs={"dataset": "sal"}, options={})
    emb.spatial = spatial
    tab.images.loc[1, "map_path"] = paths[1]
    for bad, match in [({"crop": "middle"}, "crop must be one of auto, center, none, letterbox; got 'middle'"),
                       ({"interpolation": "nearest"}, "interpolation 'nearest'.*bicubic, bilinear"),
                       ({"cc_resolution": "pixels"}, "cc_resolution 'pixels'.*map, patch_grid")]:
        with pytest.raises(ValueError, match=match):
            evaluate("saliency_alignment", embeddings={"sal": emb}, tables={"sal": tab}, classifier=None,
                     inputs={"dataset": "sal"}, options=bad)


# ----------------------------------------------------------------------------- calibration

def classification_set(seed, n, prefix, n_classes=4, dim=6, noise=0.8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    X = np.eye(n_classes, dim)[labels] + rng.normal(size=(n, dim)) * noise
    ids = np.array([f"{prefix}{k:03d}" for k in range(n)])
    return EmbeddingTable(ids=ids, X=X.astype(np.float32)), DatasetTables(images_frame(ids, label=labels))


def test_calibration_rows_match_direct_computation():
    clf = onehot_classifier(list("abcd"), dim=6, scale=30.0)
    e_in, t_in = classification_set(0, 60, "in")
    e_sh, t_sh = classification_set(1, 25, "sh", noise=1.5)
    options = {"n_bins": 10, "heldout_fraction": 0.25, "seed": 3}
    res = evaluate("calibration", embeddings={"in": e_in, "sh": e_sh}, tables={"in": t_in, "sh": t_sh},
                   classifier=clf, inputs={"in_distribution": "in", "shifted": ["sh"]}, options=options)
    r = rows_dict(res)
    # reference: images are already in id order here
    logits = zero_shot_logits(e_in.X, clf.W, 30.0)
    y = t_in.images.label.to_numpy()
    fit, ev = split_heldout(60, 0.25, 3)
    T = fit_temperature(logits[fit], y[fit])
    assert r[("temperature", "in", "fitted")] == (pytest.approx(T), 15)
    assert r[("ece", "in", "raw")] == (pytest.approx(expected_calibration_error(softmax(logits[ev], 1), y[ev], 10)), 45)
    assert r[("nll", "in", "temperature_scaled")] == (pytest.approx(negative_log_likelihood(logits[ev] / T, y[ev])), 45)
    ls, ys = zero_shot_logits(e_sh.X, clf.W, 30.0), t_sh.images.label.to_numpy()
    assert r[("ece", "sh", "temperature_scaled")] == (
        pytest.approx(expected_calibration_error(softmax(ls / T, 1), ys, 10)), 25)
    assert r[("nll", "sh", "raw")] == (pytest.approx(negative_log_likelihood(ls, ys)), 25)
    assert len(res.rows) == 13   # temperature; ece, nll, rms_calibration_error x 2 sets x 2 variants
    assert np.isnan(r[("rms_calibration_error", "sh", "raw")][0])   # 25 images: fewer than one bin of 100

    # the split follows image ids, not row order: shuffled inputs give the same rows
    perm = np.random.default_rng(5).permutation(60)
    e_shuf = EmbeddingTable(ids=e_in.ids[perm], X=e_in.X[perm])
    t_shuf = DatasetTables(t_in.images.iloc[np.random.default_rng(6).permutation(60)])
    res2 = evaluate("calibration", embeddings={"in": e_shuf}, tables={"in": t_shuf}, classifier=clf,
                    inputs={"in_distribution": "in", "shifted": []}, options=options)
    r2 = rows_dict(res2)
    for key in (("temperature", "in", "fitted"), ("ece", "in", "raw"), ("nll", "in", "temperature_scaled")):
        assert r2[key] == (pytest.approx(r[key][0]), r[key][1])


def test_calibration_rms_rows_carry_their_interval_statistic():
    # enough images for calib_err's bins (>= 200 in each evaluated set): the rms rows are finite, and
    # evaluate()'s check holds their statistics to the values and a finite interval
    clf = onehot_classifier(list("abcd"), dim=6, scale=30.0)
    e_in, t_in = classification_set(0, 400, "in")
    e_sh, t_sh = classification_set(1, 260, "sh", noise=1.5)
    res = evaluate("calibration", embeddings={"in": e_in, "sh": e_sh}, tables={"in": t_in, "sh": t_sh},
                   classifier=clf, inputs={"in_distribution": "in", "shifted": ["sh"]},
                   options={"n_bins": 10, "heldout_fraction": 0.25, "seed": 3})
    rms = res.rows.reset_index(drop=True)
    idx = rms.index[rms["measure"] == "rms_calibration_error"]
    assert len(idx) == 4 and rms.loc[idx, "value"].notna().all() and (rms.loc[idx, "value"] > 0).all()
    for i in idx:
        stat = res.stats[i]
        assert stat.strata == ((("in/eval" if rms.loc[i, "dataset"] == "in" else "sh"), int(rms.loc[i, "n"])),)


# ----------------------------------------------------------------------------- OOD

def test_ood_detection_rows():
    clf = onehot_classifier(list("abcd"), dim=6)
    e_in, t_in = classification_set(0, 40, "in", noise=0.3)
    rng = np.random.default_rng(2)
    oods = {}
    for name in ("far", "near"):
        ids = np.array([f"{name}{k}" for k in range(30)])
        X = rng.normal(size=(30, 6)) * (1.0 if name == "far" else 0.3) + (0 if name == "far" else np.eye(4, 6)[0])
        oods[name] = (EmbeddingTable(ids=ids, X=X.astype(np.float32)), DatasetTables(images_frame(ids)))
    emb = {"in": e_in, **{k: v[0] for k, v in oods.items()}}
    tab = {"in": t_in, **{k: v[1] for k, v in oods.items()}}
    res = evaluate("ood_detection", embeddings=emb, tables=tab, classifier=clf,
                   inputs={"in_distribution": "in", "ood": ["far", "near"]}, options={"temperature": 0.1})
    r = rows_dict(res)
    s_in = mcm_scores(e_in.X, clf.W, 0.1)
    for name, (e, _) in oods.items():
        s_out = mcm_scores(e.X, clf.W, 0.1)
        assert r[("ood_auroc", name, "mcm")] == (pytest.approx(auroc(s_in, s_out)), 70)
        assert r[("ood_fpr95", name, "mcm")] == (pytest.approx(fpr_at_95_tpr_closest(s_in, s_out)), 70)
    assert len(res.rows) == 4
    at_least = rows_dict(evaluate("ood_detection", embeddings=emb, tables=tab, classifier=clf,
                                  inputs={"in_distribution": "in", "ood": ["far", "near"]},
                                  options={"temperature": 0.1, "fpr95": "at_least"}))
    for name, (e, _) in oods.items():
        expected = fpr_at_95_tpr(s_in, mcm_scores(e.X, clf.W, 0.1))
        assert at_least[("ood_fpr95", name, "mcm")][0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="role 'ood'"):
        evaluate("ood_detection", embeddings=emb, tables=tab, classifier=clf,
                 inputs={"in_distribution": "in", "ood": []}, options={})


# ----------------------------------------------------------------------------- the adapters' own tables

def test_evaluators_read_the_adapters_tables(tmp_path):
    """The column contract holds for tables as the format adapters produce them."""
    from clipdyn.data.formats import read_dataset
    from clipdyn.fixtures import writers

    rng = np.random.default_rng(0)

    def img():
        return (rng.random((16, 16, 3)) * 255).astype(np.uint8)

    def fake_embeddings(tab, spatial=None):
        ids = tab.images["image_id"].to_numpy()
        return EmbeddingTable(ids=ids, X=rng.normal(size=(len(ids), 8)).astype(np.float32), spatial=spatial)

    writers.write_cue_conflict(tmp_path / "cue", [("cat", "dog", img()), ("dog", "cat", img()), ("car", "car", img())])
    cue = read_dataset("cue_conflict", tmp_path / "cue")
    clf = onehot_classifier([str(i) for i in range(1000)], dim=8)
    r = rows_dict(evaluate("shape_bias", embeddings={"cue": fake_embeddings(cue)}, tables={"cue": cue}, classifier=clf,
                           inputs={"dataset": "cue"}, options={}))
    assert r[("cue_conflict_shape_accuracy", "cue", "imagenet_mapping")][1] == 2

    trips = [dict(ref=img(), left=img(), right=img(), left_vote=v, right_vote=1 - v, split=s, is_imagenet=True,
                  votes=n) for v, s, n in [(1 / 6, "test", 6), (0.5, "test", 6), (5 / 6, "val", 5), (1.0, "test", 7)]]
    writers.write_nights(tmp_path / "nights", trips)
    nights = read_dataset("nights", tmp_path / "nights")
    r = rows_dict(evaluate("mid_level_alignment", embeddings={"n": fake_embeddings(nights)}, tables={"n": nights},
                           classifier=None, inputs={"dataset": "n"}, options={"min_votes": 6, "split": "test"}))
    assert r[("mid_level_alignment", "n", "2afc")][1] == 3 and r[("mid_level_alignment", "n", "majority")][1] == 2

    names = ["a", "b"]
    writers.write_saliency(tmp_path / "sal", {n: img() for n in names}, {n: rng.random((16, 24)) for n in names},
                           {n: rng.random((16, 24)) < 0.1 for n in names})
    sal = read_dataset("saliency", tmp_path / "sal")
    emb = fake_embeddings(sal, spatial=rng.random((2, 4, 4)).astype(np.float32))
    r = rows_dict(evaluate("saliency_alignment", embeddings={"s": emb}, tables={"s": sal}, classifier=None,
                           inputs={"dataset": "s"}, options={"crop": "center"}))
    assert {v for (_, _, v) in r} == {"cc", "nss", "auc_judd"} and r[("saliency_alignment", "s", "cc")][1] == 2
