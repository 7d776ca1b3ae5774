"""MCM prompts (issue 13.7): deeplearning-wisc/MCM ``utils/detection_util.py`` (get_ood_scores_clip)
embeds ``f"a photo of a {c}"`` for each in-distribution label (one prompt, no ensemble), normalises
text and image features, and scores ``max softmax(image @ text.T / T)``."""

import numpy as np
import pytest

from clipdyn.embed.classifier import MCM_TEMPLATES, class_templates, zero_shot_classifier
from clipdyn.metrics.ood import mcm_scores


def test_mcm_templates_are_the_single_mcm_prompt():
    assert class_templates("mcm") == ["a photo of a {}"] == list(MCM_TEMPLATES)
    assert class_templates("mcm")[0].format("goldfish") == "a photo of a goldfish"
    with pytest.raises(ValueError, match="mcm"):
        class_templates("mcm-ensemble")


def test_mcm_classifier_and_score_match_a_port_of_mcm():
    import open_clip
    import torch

    from clipdyn.embed.model import register_model_configs

    register_model_configs([])
    torch.manual_seed(0)
    model = open_clip.create_model("clipdyn-tiny").eval()
    names = ["goldfish", "great white shark", "tench", "missile"]
    W = zero_shot_classifier(model, "clipdyn-tiny", names, class_templates("mcm"), "cpu")
    tok = open_clip.get_tokenizer("clipdyn-tiny")
    with torch.no_grad():
        t = model.encode_text(tok([f"a photo of a {c}" for c in names])).float()
    t = (t / t.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(W, t, atol=1e-5)
    rng = np.random.default_rng(0)
    img = rng.normal(size=(7, W.shape[1]))
    for T in (1.0, 0.5):
        f = img / np.linalg.norm(img, axis=1, keepdims=True)
        logits = f @ t.T / T
        smax = np.exp(logits - logits.max(axis=1, keepdims=True))
        smax /= smax.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(mcm_scores(img, W, T), smax.max(axis=1), atol=1e-6)


def test_mcm_score_edge_cases():
    # an image equally close to every class scores the minimum 1/C; identical classes tie
    W = np.eye(4)
    assert mcm_scores(np.zeros((1, 4)), W)[0] == pytest.approx(0.25)
    assert mcm_scores(np.ones((1, 4)), W)[0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="temperature"):
        mcm_scores(np.ones((1, 4)), W, 0.0)


def test_ood_metric_checks_the_prompts():
    import pandas as pd

    from clipdyn.data.formats import DatasetTables
    from clipdyn.io import Classifier, EmbeddingTable
    from clipdyn.metrics import registry

    rng = np.random.default_rng(1)
    emb = {d: EmbeddingTable(ids=np.array([f"{d}{k}" for k in range(20)]), X=rng.normal(size=(20, 4)))
           for d in ("ind", "ood")}
    tab = {d: DatasetTables(images=pd.DataFrame({"image_id": emb[d].ids, "path": "", "member": ""})) for d in emb}
    run = lambda meta, opt: registry.evaluate(
        "ood_detection", embeddings=emb, tables=tab, classifier=Classifier(np.eye(4), list("abcd"), 50.0, meta),
        inputs={"in_distribution": "ind", "ood": ["ood"]}, options=opt)
    assert len(run({"templates": "mcm"}, {}).rows) == 2
    with pytest.raises(ValueError, match="MCM's prompt"):
        run({"templates": "openai"}, {})
    assert len(run({"templates": "openai"}, {"prompts": "classset"}).rows) == 2
    with pytest.raises(ValueError, match="prompts must be"):
        run({}, {"prompts": "80"})


def mcm_fpr_port(in_scores, out_scores, level=0.95):
    """MCM's fpr_and_fdr_at_recall(labels, scores) with ID = positive, written as loops: walk the
    scores from high to low; at the last position of each run of equal scores record (tp, fp);
    stop at the first record with all positives; reverse; append (recall 1, fp 0); argmin."""
    scores = np.concatenate([in_scores, out_scores])
    pos = np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))]
    order = np.argsort(scores, kind="mergesort")[::-1]
    s, y = scores[order], pos[order]
    recs, fps = [], []
    tp = fp = 0
    for i in range(len(s)):
        tp += y[i]
        fp += 1 - y[i]
        if i == len(s) - 1 or s[i + 1] != s[i]:
            recs.append(tp / len(in_scores))
            fps.append(fp)
            if tp == len(in_scores):
                break
    recs, fps = recs[::-1] + [1.0], fps[::-1] + [0]
    best = min(range(len(recs)), key=lambda k: (abs(recs[k] - level), k))
    return fps[best] / len(out_scores)


@pytest.mark.parametrize("seed", range(6))
def test_fpr95_matches_mcm(seed):
    from clipdyn.metrics.ood import fpr_at_95_tpr_closest

    rng = np.random.default_rng(seed)
    n_in, n_out = rng.integers(5, 60, 2)
    a = np.round(rng.normal(1.0, 1.0, n_in), 1)      # rounding makes ties within and across sets
    b = np.round(rng.normal(0.0, 1.0, n_out), 1)
    assert fpr_at_95_tpr_closest(a, b) == pytest.approx(mcm_fpr_port(a, b))


def test_fpr95_edge_cases():
    from clipdyn.metrics.ood import fpr_at_95_tpr, fpr_at_95_tpr_closest

    same = np.full(10, 0.3)
    assert fpr_at_95_tpr_closest(same, same) == mcm_fpr_port(same, same) == 1.0    # all scores equal
    a, b = np.arange(10.0), np.arange(10.0) - 0.5    # TPR jumps 0.9 -> 1.0: MCM takes 1.0 (tie, higher TPR)
    assert fpr_at_95_tpr_closest(a, b) == pytest.approx(mcm_fpr_port(a, b))
    a = np.arange(20.0)   # TPR 0.95 at two thresholds (1.0 and the OOD score 0.5): MCM takes the lower one
    assert fpr_at_95_tpr_closest(a, a - 0.5) == mcm_fpr_port(a, a - 0.5) == 0.95
    assert fpr_at_95_tpr(a, a - 0.5) == 0.9
    assert np.isnan(fpr_at_95_tpr_closest([], [1.0]))
