"""Checkpoint sources (clipdyn.hub.sources): local training runs, Hub revisions, final models."""

import hashlib
import json
import struct
from pathlib import Path

import pytest

from clipdyn.fixtures.localhub import LocalHub
from clipdyn.hub import sources
from clipdyn.hub.sources import HashCache, SourceError


def torch_file(path: Path, epoch: int) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "state_dict": {"module.w": torch.full((4,), float(epoch))}}, path)
    return path


def safetensors_bytes(n: int = 4) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * (4 * n)


@pytest.fixture
def run(tmp_path):
    """open_clip's layout: logs/<run>/checkpoints/epoch_N.pt and epoch_latest.pt, plus its other files."""
    ck = tmp_path / "logs" / "my-run" / "checkpoints"
    for e in (1, 2, 3, 4, 5):
        torch_file(ck / f"epoch_{e}.pt", e)
    torch_file(ck / "epoch_latest.pt", 5)
    (tmp_path / "logs" / "my-run" / "out.log").write_text("training\n")
    (tmp_path / "logs" / "my-run" / "params.txt").write_text("lr: 1e-3\n")
    return tmp_path / "logs" / "my-run"


def test_open_clip_run_folder_is_recognised_and_files_identified_by_content(run, tmp_path):
    res = sources.resolve("r", {"arch": "x", "local": str(run)}, HashCache(tmp_path / "cache.json"))
    assert res.kind == "local_run" and sorted(res.files) == [1, 2, 3, 4, 5]  # epoch_latest.pt ignored
    f = res.files[3]
    assert f.path == str((run / "checkpoints" / "epoch_3.pt").resolve())
    assert f.blob == hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
    assert f.size == Path(f.path).stat().st_size and f.commit == ""
    assert not res.notices


def test_hashes_are_cached_by_path_size_and_mtime(run, tmp_path, monkeypatch):
    cache = tmp_path / "results" / "checkpoints" / "local-sha256.json"
    sources.resolve("r", {"local": str(run)}, HashCache(cache))
    assert len(json.loads(cache.read_text())) == 5
    calls = []
    real = sources.sha256_file
    monkeypatch.setattr(sources, "sha256_file", lambda p: calls.append(p) or real(p))
    again = sources.resolve("r", {"local": str(run)}, HashCache(cache))
    assert calls == []  # nothing rehashed
    torch_file(run / "checkpoints" / "epoch_2.pt", 22)  # rewritten: new content, new size/mtime
    third = sources.resolve("r", {"local": str(run)}, HashCache(cache))
    assert [Path(p).name for p in calls] == ["epoch_2.pt"]
    assert third.files[2].blob != again.files[2].blob and third.files[1].blob == again.files[1].blob


def test_file_replaced_keeping_size_and_mtime_is_rehashed(run, tmp_path):
    """`cp -p` over a checkpoint keeps its size and mtime (and inode); its ctime tells the new content."""
    import os
    import shutil
    import time

    cache = tmp_path / "cache.json"
    first = sources.resolve("r", {"local": str(run)}, HashCache(cache)).files[2]
    target = Path(first.path)
    other = tmp_path / "other" / "epoch_2.pt"
    torch_file(other, 2)  # same layout and epoch: same size
    data = bytearray(other.read_bytes())
    data[-30] ^= 0xFF  # inside the zip's end record's comment-free tail: still a complete archive
    other.write_bytes(bytes(data))
    assert other.stat().st_size == target.stat().st_size and other.read_bytes() != target.read_bytes()
    os.utime(other, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns))
    ino = target.stat().st_ino
    time.sleep(0.05)  # file times have the kernel clock's tick as resolution
    shutil.copy2(other, target)  # what `cp -p` does: rewrite in place, copy the times
    assert target.stat().st_ino == ino and target.stat().st_mtime_ns == other.stat().st_mtime_ns
    again = sources.resolve("r", {"local": str(run)}, HashCache(cache)).files[2]
    assert again.blob == hashlib.sha256(target.read_bytes()).hexdigest() != first.blob


def test_half_written_checkpoint_is_skipped_with_a_notice_and_picked_up_later(run, tmp_path):
    ck = run / "checkpoints"
    full = torch_file(tmp_path / "scratch" / "epoch_6.pt", 6).read_bytes()
    (ck / "epoch_6.pt").write_bytes(full[: len(full) // 2])  # torch.save in progress
    res = sources.resolve("r", {"local": str(run)}, HashCache(None))
    assert sorted(res.files) == [1, 2, 3, 4, 5]
    assert len(res.notices) == 1 and "epoch_6.pt is still being written" in res.notices[0]
    assert "end record" in res.notices[0] and "next run picks it up" in res.notices[0]
    (ck / "epoch_6.pt").write_bytes(full)
    assert sorted(sources.resolve("r", {"local": str(run)}, HashCache(None)).files) == [1, 2, 3, 4, 5, 6]


def test_checkpoint_changing_while_it_is_read_is_skipped(run, monkeypatch):
    real = sources.sha256_file

    def growing(p):  # the trainer appends while we hash
        out = real(p)
        if p.name == "epoch_5.pt":
            with open(p, "ab") as f:
                f.write(b"more")
        return out

    monkeypatch.setattr(sources, "sha256_file", growing)
    res = sources.resolve("r", {"local": str(run)}, HashCache(None))
    assert sorted(res.files) == [1, 2, 3, 4]
    assert "epoch_5.pt is still being written (changed while it was read" in res.notices[0]


def test_epoch_selection_is_the_hubs(run):
    m = {"local": str(run), "epochs": {"auto": True, "step": 2, "include_last": True}}
    res = sources.resolve("r", m, HashCache(None))
    from clipdyn.hub.client import select_epochs

    assert select_epochs(m["epochs"], sorted(res.files)) == [1, 3, 5]


@pytest.mark.parametrize("case, message", [
    ("missing", "models.r.local: .*nope does not exist"),
    ("template", r"models.r.checkpoint: no file in .* matches 'ckpt_\{epoch\}.bin'; files there: .*epoch_1.pt"),
    ("garbage", r"models.r: .*epoch_9.pt is not a checkpoint \(starts with .*neither a torch.save archive"),
    ("two", "give exactly one of `repo`"),
])
def test_bad_local_input_is_named(run, case, message):
    m = {"local": str(run)}
    if case == "missing":
        m["local"] = str(run / "nope")
    elif case == "template":
        m["checkpoint"] = "ckpt_{epoch}.bin"
    elif case == "garbage":
        (run / "checkpoints" / "epoch_9.pt").write_text("<html>not found</html>")
    else:
        m["repo"] = "a/b"
    with pytest.raises(SourceError, match=message):
        sources.resolve("r", m, HashCache(None))


def test_single_local_file_and_safetensors_completeness(tmp_path):
    f = tmp_path / "final.safetensors"
    data = safetensors_bytes()
    f.write_bytes(data)
    res = sources.resolve("z", {"local": str(f), "epoch": 32}, HashCache(None))
    assert res.kind == "local_final" and list(res.files) == [32]
    assert sources.completeness(f, len(data)) is None
    f.write_bytes(data[:-3])
    assert "safetensors file with" in sources.completeness(f, len(data) - 3)
    with pytest.raises(SourceError, match="not complete yet"):
        sources.resolve("z", {"local": str(f)}, HashCache(None))


# ------------------------------------------------------------------------------ Hub revisions
@pytest.fixture
def revision_hub(tmp_path, monkeypatch):
    hub = LocalHub(tmp_path / "hub")
    commits = {}
    for e in (1, 2, 3):
        commits[e] = hub.publish("org/steps", {"model.pt": f"weights of epoch {e}"})
        hub.branch("org/steps", f"epoch-{e}", commits[e])
    hub.tag("org/steps", "v1.0", commits[3])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return hub, commits


def test_revisions_as_epochs_resolve_to_commits(revision_hub):
    hub, commits = revision_hub
    res = sources.resolve("s", {"repo": "org/steps", "revisions": "epoch-{epoch}", "checkpoint": "model.pt"})
    assert res.kind == "hub_revisions" and sorted(res.files) == [1, 2, 3]
    for e in (1, 2, 3):
        f = res.files[e]
        assert f.commit == commits[e] == f.revision and f.path == "model.pt"
        assert f.blob == hashlib.sha256(f"weights of epoch {e}".encode()).hexdigest()
        assert f.size == len(f"weights of epoch {e}")  # what `clipdyn plan` adds up
    explicit = sources.resolve("s", {"repo": "org/steps", "revisions": {7: "v1.0", 1: "epoch-1"},
                                     "checkpoint": "model.pt"})
    assert sorted(explicit.files) == [1, 7] and explicit.files[7].commit == commits[3]


@pytest.mark.parametrize("m, message", [
    ({"revisions": "step-{epoch}"}, r"no branch or tag of model repo org/steps matches 'step-\{epoch\}'; "
                                    r"its branches and tags: epoch-1, epoch-2, epoch-3, main, v1.0"),
    ({"revisions": {1: "epoch-1", 2: "v2.0"}}, "epoch 2: revision 'v2.0' does not exist in model repo org/steps"),
    ({"revisions": "epoch-{epoch}", "checkpoint": "other.pt"},
     "other.pt in model repo org/steps@.* is not in the local cache"),
    ({"revisions": "epoch-{epoch}", "checkpoint": "e_{epoch}.pt"}, "one fixed file name"),
])
def test_bad_revisions_are_named(revision_hub, m, message):
    with pytest.raises(SourceError, match=message):
        sources.resolve("s", {"repo": "org/steps", "checkpoint": "model.pt", **m})


# ------------------------------------------------------------------------------ final models
def test_pretrained_hf_hub_name_picks_open_clip_weights(tmp_path, monkeypatch):
    hub = LocalHub(tmp_path / "hub")
    cfg = {"model_cfg": {"embed_dim": 8}, "preprocess_cfg": {"mean": [0.5] * 3}}
    hub.publish("laion/CLIP-x", {"open_clip_pytorch_model.bin": b"bin", "open_clip_model.safetensors": b"st",
                                 "open_clip_config.json": json.dumps(cfg), "README.md": "hi"})
    hub.publish("laion/only-bin", {"open_clip_pytorch_model.bin": b"bin"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    res = sources.resolve("x", {"pretrained": "hf-hub:laion/CLIP-x"})
    assert res.kind == "hub_final" and list(res.files) == [0]
    assert res.files[0].path == "open_clip_model.safetensors"  # open_clip tries safetensors first
    assert res.files[0].blob == hashlib.sha256(b"st").hexdigest() and res.files[0].size == 2
    assert res.open_clip_config == "open_clip_config.json"
    assert sources.open_clip_config("laion/CLIP-x", "main") == cfg
    assert sources.arch_for(cfg["model_cfg"], {"a": {"embed_dim": 4}, "b": {"embed_dim": 8}}) == "b"
    only = sources.resolve("y", {"pretrained": "hf-hub:laion/only-bin", "epoch": 5})
    assert only.files[5].path == "open_clip_pytorch_model.bin" and only.open_clip_config is None
    with pytest.raises(SourceError, match="has no open_clip weights .*; its files: README.md"):
        hub.publish("laion/empty", {"README.md": "x"})
        sources.resolve("e", {"pretrained": "hf-hub:laion/empty"})
    with pytest.raises(SourceError, match="not an open_clip hf-hub name"):
        sources.resolve("e", {"pretrained": "laion/CLIP-x"})
    with pytest.raises(SourceError, match=r"models.e.checkpoint: missing \(the file name in the repo"):
        sources.resolve("e", {"repo": "laion/CLIP-x"})
    with pytest.raises(SourceError, match="'final.pt' is not in model repo laion/CLIP-x@main"):
        sources.resolve("e", {"repo": "laion/CLIP-x", "checkpoint": "final.pt"})


# ------------------------------------------------------------------------------ the study
REPO = Path(__file__).resolve().parents[2]


def test_a_few_lines_evaluate_a_local_run_on_the_studys_datasets(run, tmp_path, monkeypatch):
    """The README's config: `base: config/config.yaml` + one local model (schema-valid, resolved)."""
    import yaml
    from snakemake.utils import validate

    from clipdyn.config.study import Study, apply_base

    monkeypatch.chdir(tmp_path)
    mine = {"base": "config/config.yaml", "results": "results-my-run",
            "models": {"my-run": {"arch": "ViT-B-32", "local": str(run),
                                  "epochs": {"auto": True, "step": 2, "include_last": True}}}}
    cfg = apply_base(mine, [REPO])
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert set(cfg["datasets"]) == set(shipped["datasets"]) and set(cfg["metrics"]) == set(shipped["metrics"])
    assert "base_model" not in cfg["figures"] and cfg["figures"]["x_axis"] == shipped["figures"]["x_axis"]
    study = Study(cfg)
    m = study.models["my-run"]
    assert list(study.models) == ["my-run"] and m.source == "local_run" and m.epochs == [1, 3, 5]
    assert (tmp_path / "results-my-run" / "checkpoints" / "local-sha256.json").exists()
    from clipdyn.config.study import ConfigError

    with pytest.raises(ConfigError, match="base: 'nope.yaml' not found"):
        apply_base({"base": "nope.yaml"}, [REPO])


def test_local_run_epochs_not_written_yet_are_noticed_not_fatal(run, tmp_path, monkeypatch):
    from clipdyn.config.study import Study

    monkeypatch.chdir(tmp_path)
    cfg = {"models": {"r": {"arch": "ViT-B-32", "local": str(run), "epochs": [2, 4, 6, 8]}},
           "datasets": {}, "metrics": {}}
    study = Study(cfg)
    assert study.models["r"].epochs == [2, 4]
    assert study.notices == [f"model r: epoch(s) 6, 8 not in {run} yet; evaluating 2, 4"]


@pytest.mark.parametrize("name", ["zoo.yaml", "demo-local-run.yaml", "demo-sources.yaml"])
def test_shipped_source_configs_are_valid(name, monkeypatch, tmp_path):
    """The zoo and demo source configs: schema-valid on their base, every model's source recognised."""
    import yaml
    from snakemake.utils import validate

    from clipdyn.config.study import apply_base

    monkeypatch.chdir(tmp_path)
    cfg = apply_base(yaml.safe_load((REPO / "config" / name).read_text()), [REPO])
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    kinds = {m: sources.kind_of(spec) for m, spec in cfg["models"].items()}
    for m, spec in cfg["models"].items():
        assert sources.check_keys(m, spec) == kinds[m]
    expected = {"zoo.yaml": {"B-16": "hub_final", "L-14": "hub_final", "H-14": "hub_final"},
                "demo-local-run.yaml": {"run": "local_run"},
                "demo-sources.yaml": {"steps": "hub_revisions", "final-s": "hub_final", "final-m": "hub_final",
                                      "final-l": "hub_final"}}[name]
    assert kinds == expected
    if name == "zoo.yaml":
        assert cfg["figures"]["robust_fit"] == "theil_sen"
        assert all(m["pretrained"].startswith("hf-hub:laion/CLIP-ViT-") for m in cfg["models"].values())
