"""The demo produces every checkpoint source: a local open_clip run folder written epoch by epoch
(one file half-written for a while), epochs as Hub revisions, and final open_clip weights."""

from __future__ import annotations

import hashlib

import pytest
import torch

from clipdyn.fixtures import runs
from clipdyn.hub import sources

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def micro_hub(tmp_path_factory):
    from clipdyn.demo.build import Scale, build

    hub_dir = tmp_path_factory.mktemp("demo-hub")
    torch.set_num_threads(1)
    scale = Scale(runs=("demo-s",), epochs=2, n_train=64, n_classification=2, n_shifted=1, n_ood=1,
                  cue_conflict_per_pair=1, iqa_refs=1, nights=4, saliency=2)
    return hub_dir, build(hub_dir, scale=scale, jobs=1, log=lambda s: None)


@pytest.fixture
def offline(micro_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(micro_hub[0]))
    return micro_hub


def test_local_run_is_written_as_open_clip_does_with_a_half_written_epoch(micro_hub, tmp_path, monkeypatch):
    hub_dir, _ = micro_hub
    out = tmp_path / "logs" / "demo-s"
    seen = []

    def look_while_paused(seconds):  # what a workflow run sees while epoch 2 is half-written
        seen.append(sources.resolve("run", {"local": str(out)}, sources.HashCache(None)))

    monkeypatch.setattr(runs.time, "sleep", look_while_paused)
    runs.local_run(hub_dir, out, epochs=2, half_written=2, half_pause_s=30, log=lambda s: None)
    assert len(seen) == 1 and sorted(seen[0].files) == [1]
    assert "epoch_2.pt is still being written (a zip archive without its end record" in seen[0].notices[0]
    ck = out / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["epoch_1.pt", "epoch_2.pt", "epoch_latest.pt"]
    assert (ck / "epoch_latest.pt").read_bytes() == (ck / "epoch_2.pt").read_bytes()
    assert (out / "out.log").read_text().splitlines() == ["Train Epoch: 1 done", "Train Epoch: 2 done"]
    assert (out / "done").exists() and not (out / ".staging").exists()
    res = sources.resolve("run", {"local": str(out)}, sources.HashCache(None))
    assert sorted(res.files) == [1, 2] and not res.notices
    ckpt = torch.load(ck / "epoch_2.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and next(iter(ckpt["state_dict"])).startswith("module.")
    with pytest.raises(FileExistsError, match="holds checkpoints already"):
        runs.local_run(hub_dir, out, epochs=1, log=lambda s: None)


def test_epochs_published_as_revisions(offline):
    hub_dir, manifest = offline
    commits = runs.publish_revisions(hub_dir, "demo-s")
    assert sorted(commits) == manifest["models"]["demo-s"]["epochs"] == [1, 2]
    res = sources.resolve("steps", {"repo": "clipdyn-demo/demo-s-steps", "revisions": "epoch-{epoch}",
                                    "checkpoint": "checkpoint.pt"})
    from clipdyn.demo.build import checkpoint_path

    for e in (1, 2):
        assert res.files[e].commit == commits[e]
        published = checkpoint_path(hub_dir, "demo-s", e, manifest["models"]["demo-s"]["revision"])
        assert res.files[e].blob == hashlib.sha256(published.read_bytes()).hexdigest()


def test_final_weights_as_open_clip_pretrained(offline):
    from clipdyn.config.study import Study
    from clipdyn.embed.model import load_model, register_model_configs

    hub_dir, manifest = offline
    runs.publish_final(hub_dir, "demo-s")
    study = Study({"models": {"final": {"pretrained": "hf-hub:clipdyn-demo/demo-s-final"}}, "datasets": {},
                   "metrics": {}, "results": str(hub_dir.parent / "results")})
    m = study.models["final"]
    assert m.arch == "clipdyn-demo-s" and m.source == "hub_final"  # found from open_clip_config.json
    f = m.files[0]
    assert f.path == "open_clip_model.safetensors"
    weights = hub_dir / "models--clipdyn-demo--demo-s-final" / "snapshots" / f.commit / f.path
    link = hub_dir.parent / "epoch_0.pt"  # as results/checkpoints/<m>/epoch_0.pt links to it
    link.symlink_to(weights)
    register_model_configs([])
    model = load_model(m.arch, str(link))
    from clipdyn.demo.build import checkpoint_path

    last = torch.load(checkpoint_path(hub_dir, "demo-s", 2, manifest["models"]["demo-s"]["revision"]),
                      weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, last["module." + k]), k
