"""ImageNet-R/-A scoring on their 200 classes (issue 13.8).

Sources: hendrycks/imagenet-r ``eval.py`` and hendrycks/natural-adv-examples: ``output[:, indices_in_1k]``
(logits of the dataset's classes only); CLIP_benchmark ``datasets/builder.py``: the class names are
the ImageNet-1k names masked by the dataset's WordNet ids, in ImageNet-1k order, and the
classifier is built from those names only. Independent index lists: timm's
``data/_info/imagenet_r_indices.txt`` and ``imagenet_a_indices.txt``.
"""

from pathlib import Path

import numpy as np
import pytest

from clipdyn.metrics.zeroshot import class_subset_columns, score_class_subset, topk_accuracy


def _timm_indices(name):
    import timm

    path = Path(timm.__file__).parent / "data" / "_info" / f"{name}_indices.txt"
    if not path.is_file():
        pytest.skip(f"timm ships no {path.name}")
    return [int(x) for x in path.read_text().split()]


@pytest.mark.parametrize("name", ["imagenet_r", "imagenet_a"])
def test_clip_benchmark_names_map_to_the_published_indices(name):
    import open_clip

    idx = _timm_indices(name)
    names = [open_clip.IMAGENET_CLASSNAMES[i] for i in idx]   # CLIP_benchmark's classnames.txt
    cols = class_subset_columns(names, open_clip.IMAGENET_CLASSNAMES)
    assert cols.tolist() == idx      # including ImageNet-R's "missile" (657; 744 has the same name)


def test_same_classes_or_none_need_no_mapping():
    assert class_subset_columns(None, ["a", "b"]) is None
    assert class_subset_columns(["a", "b"], ["a", "b"]) is None
    assert class_subset_columns(["n01", "n02"], ["a", "b"]) is None      # same count: labels are indices
    with pytest.raises(ValueError, match="not in the class set.*'zebra'"):
        class_subset_columns(["a", "zebra"], ["a", "b", "c"])


def reference_restricted_accuracy(W_full, X, labels_1k, indices):
    """hendrycks-style: logits of all 1000 classes, keep the subset's columns, argmax, compare
    with the label's position in the subset."""
    logits = X @ W_full.T
    sub = logits[:, indices]
    pos = {c: k for k, c in enumerate(indices)}
    return float(np.mean(sub.argmax(axis=1) == np.array([pos[c] for c in labels_1k])))


def test_restricted_scoring_equals_a_classifier_of_the_subset_only():
    rng = np.random.default_rng(0)
    C, D, N = 30, 8, 400
    W = rng.normal(size=(C, D))
    indices = sorted(rng.choice(C, 7, replace=False).tolist())
    labels_sub = rng.integers(0, 7, N)
    X = W[np.asarray(indices)[labels_sub]] + rng.normal(scale=2.0, size=(N, D))
    logits = X @ W.T
    lg, y = score_class_subset(logits, labels_sub, np.asarray(indices))
    acc = topk_accuracy(lg, y, ks=(1,))["top1"]
    # CLIP_benchmark: a classifier built from the subset's names alone gives the same logits
    assert acc == pytest.approx(topk_accuracy(X @ W[indices].T, labels_sub, ks=(1,))["top1"])
    assert acc == pytest.approx(reference_restricted_accuracy(W, X, [indices[k] for k in labels_sub], indices))
    # the unrestricted variant can only be harder
    lg_all, y_all = score_class_subset(logits, labels_sub, np.asarray(indices), "all")
    assert lg_all.shape == (N, C) and topk_accuracy(lg_all, y_all, ks=(1,))["top1"] <= acc
    with pytest.raises(ValueError, match="class_subset"):
        score_class_subset(logits, labels_sub, np.asarray(indices), "some")


def test_tied_logits_go_to_the_first_subset_class():
    lg, y = score_class_subset(np.array([[1.0, 3.0, 3.0, 3.0]]), np.array([0]), np.array([1, 3]))
    assert topk_accuracy(lg, y, ks=(1,))["top1"] == 1.0


# ----------------------------------------------------------------------------- the evaluators

def _subset_fixture(seed=0, C=12, N=300, k=5):
    import pandas as pd

    from clipdyn.data.formats import DatasetTables
    from clipdyn.io import Classifier, EmbeddingTable

    rng = np.random.default_rng(seed)
    names = [f"class{i}" for i in range(C)]
    W = rng.normal(size=(C, 10))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    clf = Classifier(W=W, classnames=names, logit_scale=20.0)
    idx = sorted(rng.choice(C, k, replace=False).tolist())
    emb, tab, raw = {}, {}, {}
    for d, (n, sub) in {"full": (N, None), "shifted": (N, idx)}.items():
        y = rng.integers(0, C if sub is None else k, n)
        cls = y if sub is None else np.asarray(idx)[y]
        X = W[cls] + rng.normal(scale=0.9, size=(n, 10))
        ids = [f"{d}{j}" for j in range(n)]
        emb[d] = EmbeddingTable(ids=np.array(ids), X=X)
        tab[d] = DatasetTables(images=pd.DataFrame({"image_id": ids, "path": "", "member": "", "label": y}),
                               classnames=names if sub is None else [names[i] for i in sub])
        raw[d] = (X, y)
    return emb, tab, clf, idx, raw, W


@pytest.mark.parametrize("mode", ["restrict", "all"])
def test_zeroshot_accuracy_scores_the_datasets_own_classes(mode):
    from clipdyn.metrics import registry

    emb, tab, clf, idx, raw, W = _subset_fixture()
    res = registry.evaluate("zeroshot_accuracy", embeddings=emb, tables=tab, classifier=clf,
                            inputs={"dataset": "shifted"}, options={"class_subset": mode})
    top1 = res.rows.set_index("measure").loc["zeroshot_top1", "value"]
    X, y = raw["shifted"]
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    if mode == "restrict":   # CLIP_benchmark: a classifier of the subset's names only
        expected = np.mean((Xn @ W[idx].T).argmax(axis=1) == y)
    else:
        expected = np.mean((Xn @ W.T).argmax(axis=1) == np.asarray(idx)[y])
    assert top1 == pytest.approx(expected)


def test_calibration_of_a_subset_shifted_set():
    from clipdyn.metrics import registry
    from clipdyn.metrics.calibration import expected_calibration_error, negative_log_likelihood
    from clipdyn.metrics.zeroshot import softmax

    emb, tab, clf, idx, raw, W = _subset_fixture(1)
    res = registry.evaluate("calibration", embeddings=emb, tables=tab, classifier=clf,
                            inputs={"in_distribution": "full", "shifted": ["shifted"]}, options={})
    rows = {(r.measure, r.dataset, r.variant): r.value for r in res.rows.itertuples()}
    X, y = raw["shifted"]
    logits = 20.0 * (X / np.linalg.norm(X, axis=1, keepdims=True)) @ W[idx].T
    assert rows[("ece", "shifted", "raw")] == pytest.approx(expected_calibration_error(softmax(logits, 1), y, 15))
    assert rows[("nll", "shifted", "raw")] == pytest.approx(negative_log_likelihood(logits, y))


def test_dataset_classes_missing_from_the_class_set_fail_clearly():
    from clipdyn.metrics import registry

    emb, tab, clf, idx, raw, W = _subset_fixture(2)
    tab["shifted"].classnames = ["class1", "zebra", "class3", "class4", "class5"]
    with pytest.raises(ValueError, match=r"dataset 'shifted'.*'zebra'"):
        registry.evaluate("zeroshot_accuracy", embeddings=emb, tables=tab, classifier=clf,
                          inputs={"dataset": "shifted"}, options={})
