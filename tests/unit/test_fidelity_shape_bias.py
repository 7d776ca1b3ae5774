"""Shape bias against model-vs-human (issue 13.5, 13.9).

- decision: ``modelvshuman/models/wrappers/pytorch.py`` (ClipPytorchModel: ``logits = 100. *
  image_features @ zeroshot_weights``, softmax), ``modelvshuman/helper/...`` 16-class mapping
  (mean probability of each category's ImageNet classes, categories ranked by
  ``np.flip(np.argsort(...))``);
- ``modelvshuman/plotting/analyses.py`` ShapeBias: fraction-correct-shape/-texture divide by all
  images, shape bias by the hits of the conflict images.
"""

import numpy as np
import pandas as pd
import pytest

from clipdyn.data.formats import DatasetTables
from clipdyn.io import Classifier, EmbeddingTable
from clipdyn.metrics import registry
from clipdyn.metrics.shape_bias import MODEL_VS_HUMAN_LOGIT_SCALE, decision_logit_scale, shape_bias


def mvh_decisions(X, W, mapping, scale=100.0):
    """model-vs-human: softmax of scale * cos, mean per category (sorted category list), top of the
    flipped argsort."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    logits = scale * Xn @ W.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cats = sorted(mapping["category"].unique())
    agg = np.stack([p[:, mapping.loc[mapping.category == c, "imagenet_index"].to_numpy()].mean(axis=1)
                    for c in cats], axis=1)
    return [cats[i] for i in np.flip(np.argsort(agg, axis=-1, kind="stable"), axis=-1)[:, 0]]


def mvh_shape_bias(shape, texture, decision):
    df = pd.DataFrame({"shape": shape, "texture": texture, "response": decision})
    df2 = df[df["shape"] != df["texture"]]
    fcs = (df2.response == df2["shape"]).sum() / len(df)
    fct = (df2.response == df2["texture"]).sum() / len(df)
    return {"fraction_correct_shape": fcs, "fraction_correct_texture": fct, "shape_bias": fcs / (fcs + fct)}


def _setup(tmp_path, n=60, seed=0, learned_scale=1.0):
    rng = np.random.default_rng(seed)
    cats = ["bear", "cat", "dog", "knife"]
    mapping = pd.DataFrame({"category": ["bear", "bear", "cat", "cat", "cat", "dog", "knife", "knife"],
                            "imagenet_index": [0, 1, 2, 3, 4, 6, 7, 9]})   # classes 5 and 8 in no category
    path = tmp_path / "mapping.csv"
    mapping.to_csv(path, index=False)
    W = rng.normal(size=(10, 16))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    X = rng.normal(size=(n, 16)) + 2.0 * W[rng.integers(0, 10, n)]
    shape = rng.choice(cats, n)
    texture = np.where(np.arange(n) % 10 == 0, shape, rng.choice(cats, n))    # some non-conflict images
    ids = [f"im{k}" for k in range(n)]
    emb = {"cue": EmbeddingTable(ids=np.array(ids), X=X.astype(np.float32))}
    tab = {"cue": DatasetTables(images=pd.DataFrame({"image_id": ids, "path": "", "member": "",
                                                     "shape": shape, "texture": texture}))}
    clf = Classifier(W=W.astype(np.float32), classnames=[f"c{i}" for i in range(10)], logit_scale=learned_scale)
    return emb, tab, clf, mapping, str(path), X.astype(np.float32).astype(np.float64), W, shape, texture


@pytest.mark.parametrize("seed", range(3))
def test_default_decision_is_model_vs_human_at_scale_100(tmp_path, seed):
    emb, tab, clf, mapping, path, X, W, shape, texture = _setup(tmp_path, seed=seed, learned_scale=3.0)
    res = registry.evaluate("shape_bias", embeddings=emb, tables=tab, classifier=clf, inputs={"dataset": "cue"},
                            options={"category_mapping": path})
    dec = mvh_decisions(X, W.astype(np.float32).astype(np.float64), mapping)
    assert res.details["predicted"].tolist() == dec
    ref = mvh_shape_bias(shape, texture, dec)
    rows = {r.measure: (r.value, r.n) for r in res.rows.itertuples()}
    for k, v in ref.items():
        assert rows[k][0] == pytest.approx(v)
    assert rows["fraction_correct_shape"][1] == len(shape)                     # all images
    assert rows["cue_conflict_shape_accuracy"][1] == int((shape != texture).sum())   # conflict images only


def test_checkpoint_scale_variant_moves_the_decision(tmp_path):
    # cat's classes 2, 3; dog's class 6: cos 0.5, 0.1 for cat, 0.35 for dog
    emb, tab, clf, mapping, path, *_ = _setup(tmp_path, n=1)
    W = np.eye(10, 11)
    x = np.zeros(11)
    x[[2, 3, 6]] = [0.5, 0.1, 0.35]
    x[10] = np.sqrt(1 - np.sum(x ** 2))
    emb["cue"] = EmbeddingTable(ids=np.array(["im0"]), X=x[None].astype(np.float64))
    tab["cue"].images.loc[0, ["shape", "texture"]] = ["cat", "dog"]
    clf = Classifier(W=W, classnames=[f"c{i}" for i in range(10)], logit_scale=1.0)
    run = lambda opt: registry.evaluate("shape_bias", embeddings=emb, tables=tab, classifier=clf,
                                        inputs={"dataset": "cue"}, options={"category_mapping": path, **opt})
    assert run({}).details["predicted"].tolist() == ["cat"] == mvh_decisions(x[None], W, mapping)
    assert run({"logit_scale": "checkpoint"}).details["predicted"].tolist() == ["dog"]
    assert mvh_decisions(x[None], W, mapping, scale=1.0) == ["dog"]
    assert run({"logit_scale": 1.0}).details["predicted"].tolist() == ["dog"]


def test_logit_scale_option_values():
    assert MODEL_VS_HUMAN_LOGIT_SCALE == 100.0
    assert decision_logit_scale(None, 7.0) == 100.0
    assert decision_logit_scale("checkpoint", 7.0) == 7.0
    for bad in ("learned", 0, -1, True):
        with pytest.raises(ValueError, match="logit_scale"):
            decision_logit_scale(bad, 7.0)


def test_fractions_divide_by_all_images_edge_cases():
    r = shape_bias(["cat", "dog", "car", "car"], ["dog", "cat", "car", "car"], ["cat", "cat", "car", "bus"])
    assert (r["shape_accuracy"], r["fraction_correct_shape"]) == (0.5, 0.25)
    assert (r["texture_accuracy"], r["fraction_correct_texture"]) == (0.5, 0.25)
    r = shape_bias(["cat"], ["cat"], ["cat"])        # no conflict image at all
    assert np.isnan(r["shape_bias"]) and np.isnan(r["shape_accuracy"]) and r["fraction_correct_shape"] == 0.0
    r = shape_bias([], [], [])
    assert np.isnan(r["fraction_correct_shape"]) and r["n_all"] == 0


#: sha256 of "\n".join(...) of model-vs-human's ``modelvshuman/models/pytorch/clip/imagenet_classes.py``
#: (``imagenet_classes``, 1000 names) and ``imagenet_templates.py`` (``imagenet_templates``, 80), at
#: bethgelab/model-vs-human commit 79ed7cd1d9ac3a114e71b6638f0a98bdd627316c; ClipPytorchModel builds
#: its zero-shot weights from them with ``template.format(class_name)``
MVH_CLASSES_SHA256 = "571ae1c583b4be7da87519494c52bf405a46af05d5815627c7a0dee997068b60"
MVH_TEMPLATES_SHA256 = "4f976686fb651bb5803d4689dcd849f75efe0ef19a3c801355bc9a6f03c8a5af"


def test_classifier_text_is_model_vs_humans():
    """The class set `openclip_imagenet` with `templates: openai` (the study's shape-bias classifier) has
    exactly model-vs-human's 1000 class names and 80 templates, in the same order."""
    import hashlib

    import open_clip

    from clipdyn.embed.classifier import class_templates

    names = list(open_clip.IMAGENET_CLASSNAMES)
    templates = [t("{}") if callable(t) else t for t in class_templates("openai")]
    assert len(names) == 1000 and len(templates) == 80
    assert hashlib.sha256("\n".join(names).encode()).hexdigest() == MVH_CLASSES_SHA256
    assert hashlib.sha256("\n".join(templates).encode()).hexdigest() == MVH_TEMPLATES_SHA256
