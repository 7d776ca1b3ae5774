"""`python -m clipdyn plan`: checkpoints, bytes, peak disk with and without the budget, images, GPU-hours."""

import re
from pathlib import Path

import pytest

from clipdyn import plan
from clipdyn.fixtures.localhub import LocalHub

REPO = Path(__file__).resolve().parents[2]


def test_shipped_study_without_the_hub(tmp_path, capsys):
    out = tmp_path / "plan.md"
    assert plan.main(["--configfile", str(REPO / "config/config.yaml"), "--no-hub", "--out", str(out)]) == 0
    text = out.read_text()
    assert text in capsys.readouterr().out  # printed as well as written
    # every 8th epoch from 1 plus the last: 23 + 21 + 33 = 77 checkpoints (total_epochs from the published runs)
    assert "| B-16 | ViT-B-16 | 1, 9, ..., 169, 171 | 23 |" in text
    assert "| L-14 | ViT-L-14 | 1, 9, ..., 153, 160 | 21 |" in text
    assert "| H-14 | ViT-H-14 | 1, 9, ..., 249, 256 | 33 |" in text
    assert "all 77 checkpoints" in text and "estimate:" in text
    assert "| imagenet1k_gaussian_noise | 60,000 | 6 severities x imagenet1k |" in text  # 6 x the 10,000 subset
    assert "| nights | 60,057 | published" in text
    assert re.search(r"\| \*\*total\*\* \| \*\*[\d.,]+\*\*", text)


def test_parameter_count_matches_open_clip():
    import torch
    from open_clip.model import CLIP

    from clipdyn.config.study import arch_config

    for arch in ("ViT-B-16", "ViT-L-14", "ViT-H-14"):
        cfg = arch_config(arch)
        with torch.device("meta"):
            model = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"])
        real = sum(p.numel() for p in model.parameters())
        _, _, est = plan.model_costs(arch)
        assert abs(est - real) / real < 0.01, (arch, est, real)


def test_flops_by_hand():
    image, text, _ = plan.model_costs("ViT-B-16")
    n, w = 197, 768  # (224/16)^2 + class token; width
    assert image == 2 * 12 * (n * w * w * 12 + 2 * n * n * w)
    assert text == 2 * 12 * (77 * 512 * 512 * 12 + 2 * 77 * 77 * 512)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    h = LocalHub(tmp_path / "hub")
    h.publish("org/run", {f"ck/epoch_{e}.pt": b"x" * (100 * e) for e in (1, 2, 3, 4)})
    return h


def _config(tmp_path, budget=None):
    cfg = {"results": str(tmp_path / "results"),
           "models": {"m": {"arch": "ViT-B-16", "repo": "org/run", "checkpoint": "ck/epoch_{epoch}.pt",
                            "epochs": [1, 2, 4]}},
           "datasets": {"cc": {"path": str(tmp_path), "format": "cue_conflict"}},
           "classsets": {"in": {"source": "openclip_imagenet"}},
           "metrics": {"sb": {"kind": "shape_bias", "inputs": {"dataset": "cc"}, "classset": "in"}}}
    if budget:
        cfg["checkpoint_budget"] = budget
    return cfg


def test_sizes_from_the_listing_and_peak_with_budget(tmp_path, hub):
    p = plan.build(_config(tmp_path, budget=2), bench_dir=tmp_path / "nobench")
    (mp,) = p["models"]
    assert mp.epochs == [1, 2, 4] and mp.sizes == {1: 100, 2: 200, 4: 400} and mp.size_source == "listing"
    assert p["total"] == 700 and p["peak_budget"] == 600  # epochs 2 and 4 held together
    assert p["per_ckpt_images"] == 1280 and p["prompts"] == 80_000
    text = plan.render(p)
    assert "all 3 checkpoints: **700 B**" in text and "`checkpoint_budget: 2`" in text and "peak **600 B**" in text


def test_measured_rate_replaces_the_estimate(tmp_path, hub):
    import json

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "b.json").write_text(json.dumps(
        {"machine": {"gpu": "H200"}, "part1": {"device": "cuda", "model": "ViT-B-16", "e2e_images_per_s": 1280.0}}))
    p = plan.build(_config(tmp_path), bench_dir=tmp_path / "bench")
    hours, kind = p["gpu_hours"]["m"]["H200"]
    assert kind == "measured" and hours == pytest.approx(3 * 1280 / 1280 / 3600)
    assert p["gpu_hours"]["m"]["A100"][1] == "estimate"


def test_prompts_count_each_class_sets_templates(tmp_path, hub):
    import open_clip

    cfg = _config(tmp_path)
    cfg["classsets"]["mcm"] = {"source": "openclip_imagenet", "templates": "mcm"}
    cfg["classsets"]["simple"] = {"source": "openclip_imagenet", "templates": "simple"}
    cfg["metrics"]["sb_mcm"] = {"kind": "shape_bias", "inputs": {"dataset": "cc"}, "classset": "mcm"}
    cfg["metrics"]["sb_simple"] = {"kind": "shape_bias", "inputs": {"dataset": "cc"}, "classset": "simple"}
    p = plan.build(cfg, bench_dir=tmp_path / "nobench")
    assert p["prompts"] == 1000 * (80 + 1 + len(open_clip.SIMPLE_IMAGENET_TEMPLATES))
