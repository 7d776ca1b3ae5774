"""MCM prompts (issue 13.7): deeplearning-wisc/MCM ``utils/detection_util.py`` (get_ood_scores_clip)
embeds ``f"a photo of a {c}"`` for each in-distribution label (one prompt, no ensemble), normalises
text and image features, and scores ``max softmax(image @ text.T / T)``."""

import numpy as np
import pytest

from clipdyn.classifier import MCM_TEMPLATES, class_templates, zero_shot_classifier
from clipdyn.metrics.ood import mcm_scores


def test_mcm_templates_are_the_single_mcm_prompt():
    assert class_templates("mcm") == ["a photo of a {}"] == list(MCM_TEMPLATES)
    assert class_templates("mcm")[0].format("goldfish") == "a photo of a goldfish"
    with pytest.raises(ValueError, match="mcm"):
        class_templates("mcm-ensemble")


def test_mcm_classifier_and_score_match_a_port_of_mcm():
    import open_clip
    import torch

    from clipdyn.embed import register_model_configs

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

    from clipdyn.datasets import DatasetTables
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
