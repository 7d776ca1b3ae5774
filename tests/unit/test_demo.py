"""The offline demo: shape world, tiny training, and the local hub it publishes.

The full ``build --scale ci`` (two models, four epochs) is exercised by the
end-to-end workflow test; here :func:`clipdyn.demo.build.build` runs on a micro
scale (one model, one epoch, a few images each), which checks the same code path
and layout in a few seconds.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from clipdyn.demo import world

open_clip = pytest.importorskip("open_clip")


# --- world ------------------------------------------------------------------------------------

def test_world_renders_deterministically():
    a_img, a_cap, a_lab = world.training_pairs(24, seed=3)
    b_img, b_cap, b_lab = world.training_pairs(24, seed=3)
    c_img, _, _ = world.training_pairs(24, seed=4)
    assert a_img.dtype == np.uint8 and a_img.shape == (24, 32, 32, 3)
    np.testing.assert_array_equal(a_img, b_img)
    assert a_cap == b_cap and (a_lab == b_lab).all()
    assert not np.array_equal(a_img, c_img)
    # every caption names its image's class
    assert all(world.SHAPES[k] in cap for cap, k in zip(a_cap, a_lab))


def test_world_class_texture_cooccurs_with_class():
    rng = np.random.default_rng(0)
    draws = [world._draw_texture(rng, "circle", 0.75) for _ in range(4000)]
    share = np.mean([t == world.CLASS_TEXTURE["circle"] for t in draws])
    assert 0.72 < share < 0.78
    assert sorted(world.CLASS_TEXTURE.values()) == sorted(world.TEXTURES)  # one texture per class


def test_world_evaluation_sets():
    items = world.cue_conflict_set(1, seed=0)
    assert len(items) == len(world.SHAPES) ** 2
    assert sum(a == b for a, b, _ in items) == len(world.SHAPES)  # A == B kept, as in Geirhos

    images, labels, names = world.ood_set(2, seed=0)
    assert images.shape == (2 * len(names), 32, 32, 3) and not set(names) & set(world.SHAPES)

    refs, dists = world.iqa_set(2, seed=0)
    assert len(dists) == 2 * len(world.IQA_DISTORTIONS) * world.IQA_LEVELS
    scores = np.array([q for *_, q in dists])
    assert scores.min() >= 1 and scores.max() <= 5
    levels = np.array([lv for _, _, lv, _, _ in dists])
    assert scores[levels == 1].mean() > scores[levels == 5].mean() + 1  # the synthetic rule: worse with level

    triplets = world.nights_set(10, seed=0)
    for t in triplets:
        assert t["left_vote"] + t["right_vote"] == pytest.approx(1)
        assert {t["ref"].shape, t["left"].shape, t["right"].shape} == {(32, 32, 3)}

    sal_images, maps, fixations = world.saliency_set(3, seed=0)
    for name, img in sal_images.items():
        assert img.shape == (64, 64, 3) and maps[name].shape == (64, 64)
        assert maps[name].max() == pytest.approx(1) and 1 <= fixations[name].sum() <= world.SALIENCY_FIXATIONS
    assert set(world.SYNTHETIC_RULES) == {"iqa", "nights", "saliency"}
    assert all("SYNTHETIC" in rule for rule in world.SYNTHETIC_RULES.values())


# --- training ---------------------------------------------------------------------------------

def _micro_train(out_dir, epochs, resume=None):
    from clipdyn.demo.train import Schedule, train_run

    images, captions, _ = world.training_pairs(64, seed=0)
    return train_run("clipdyn-demo-s", "micro", out_dir, images, captions, epochs,
                     Schedule(batch_size=32, warmup_steps=1, decay_steps=8), seed=0, resume=resume, log=lambda s: None)


def test_micro_training_writes_an_open_clip_training_checkpoint(tmp_path):
    torch.set_num_threads(1)
    history = _micro_train(tmp_path, epochs=1)
    assert [row["epoch"] for row in history] == [1]
    path = tmp_path / "epoch_1.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert sorted(ckpt) == ["epoch", "name", "optimizer", "state_dict"]
    assert ckpt["epoch"] == 1 and ckpt["name"] == "micro"
    assert all(k.startswith("module.") for k in ckpt["state_dict"])
    assert ckpt["optimizer"]["state"]  # AdamW moments are there, so training can resume

    from clipdyn.demo.train import register_model_configs

    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms("clipdyn-demo-s", pretrained=str(path))
    loaded = model.state_dict()
    for k, v in ckpt["state_dict"].items():
        torch.testing.assert_close(loaded[k[len("module."):]], v, rtol=0, atol=0)


def test_resumed_training_equals_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    _micro_train(tmp_path / "straight", epochs=2)
    _micro_train(tmp_path / "resumed", epochs=1)
    _micro_train(tmp_path / "resumed", epochs=2, resume=tmp_path / "resumed" / "epoch_1.pt")
    a = torch.load(tmp_path / "straight" / "epoch_2.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "epoch_2.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


# --- the hub ----------------------------------------------------------------------------------

def _micro_scale():
    from clipdyn.demo.build import Scale

    return Scale(runs=("demo-s",), epochs=1, n_train=64, n_classification=2, n_shifted=1, n_ood=1,
                 cue_conflict_per_pair=1, iqa_refs=1, nights=4, saliency=2)


@pytest.fixture(scope="module")
def micro_hub(tmp_path_factory):
    from clipdyn.demo.build import build

    hub_dir = tmp_path_factory.mktemp("demo-hub")
    torch.set_num_threads(1)
    manifest = build(hub_dir, scale=_micro_scale(), jobs=1, log=lambda s: None)
    return hub_dir, manifest


def test_build_writes_the_hf_cache_layout(micro_hub):
    from clipdyn.fixtures.localhub import repo_folder

    hub_dir, manifest = micro_hub
    assert json.loads((hub_dir / "demo-manifest.json").read_text()) == manifest
    model = manifest["models"]["demo-s"]
    repo = repo_folder(hub_dir, "clipdyn-demo/demo-s")
    commit = (repo / "refs" / "main").read_text().strip()
    assert commit == model["revision"] and len(commit) == 40
    link = repo / "snapshots" / commit / "full_checkpoints" / "demo-s" / "epoch_1.pt"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)) and link.resolve().parent.name == "blobs"
    assert model["checkpoint"] == "full_checkpoints/demo-s/epoch_{epoch}.pt" and model["epochs"] == [1]
    assert set(manifest["datasets"]) == {"shapes", "shapes_shifted", "shapes_ood", "cue_conflict", "tid2013",
                                         "kadid10k", "nights", "saliency"}
    for entry in manifest["datasets"].values():
        assert (repo_folder(hub_dir, entry["repo_id"], "dataset") / "refs" / "main").read_text() == entry["revision"]
    assert (hub_dir / "cue_conflict_category_mapping.csv").exists()
    assert not list(hub_dir.glob(".staging-*"))


def test_built_datasets_read_back_through_the_hub(micro_hub, monkeypatch):
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    from clipdyn.data.formats import read_dataset

    hub_dir, manifest = micro_hub
    # huggingface_hub reads the variable at import; set both so nothing tries the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name, entry in manifest["datasets"].items():
        root = snapshot_download(entry["repo_id"], repo_type="dataset", revision=entry["revision"],
                                 allow_patterns=entry["files"], cache_dir=hub_dir)
        options = dict(entry["options"])
        for option, extra in entry.get("extra_files", {}).items():
            options[option] = hf_hub_download(extra["repo"], extra["file"], repo_type="dataset",
                                              revision=extra["revision"], cache_dir=hub_dir)
        if name == "tid2013" or name == "kadid10k":
            options["extract_dir"] = str(hub_dir.parent / f"extract-{name}")
        tables = read_dataset(entry["format"], root, **options)
        assert len(tables.images) == entry["n_images"], name
    shapes = manifest["datasets"]["shapes"]
    assert manifest["classnames"] == list(world.SHAPES)
    mapping = (hub_dir / "cue_conflict_category_mapping.csv").read_text().splitlines()
    assert mapping[0] == "category,imagenet_index" and len(mapping) == 1 + len(world.SHAPES)
    assert shapes["repo_id"] == "clipdyn-demo/wds_shapes"


def test_more_epochs_publishes_a_new_commit(micro_hub):
    from clipdyn.demo.build import load_manifest, more_epochs
    from clipdyn.fixtures.localhub import LocalHub

    hub_dir, manifest = micro_hub
    before = manifest["models"]["demo-s"]["revision"]
    after = more_epochs(hub_dir, n=1, jobs=1, log=lambda s: None)
    model = after["models"]["demo-s"]
    assert model["epochs"] == [1, 2] and model["revision"] != before
    assert LocalHub(hub_dir).files("clipdyn-demo/demo-s") == [
        "full_checkpoints/demo-s/epoch_1.pt", "full_checkpoints/demo-s/epoch_2.pt"]
    assert load_manifest(hub_dir) == after
    ckpt = torch.load(hub_dir / "models--clipdyn-demo--demo-s" / "snapshots" / model["revision"]
                      / "full_checkpoints" / "demo-s" / "epoch_2.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    with pytest.raises(FileExistsError):
        from clipdyn.demo.build import build

        build(hub_dir, scale=_micro_scale(), jobs=1, log=lambda s: None)
