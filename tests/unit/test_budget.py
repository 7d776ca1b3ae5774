"""clipdyn.budget: leases, ownership, and when a checkpoint may be removed from the HF cache."""

import hashlib
import json

import pytest

from clipdyn import budget
from clipdyn.localhub import LocalHub


def _offline(monkeypatch, on: bool):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", on)  # read once at import: set both
    if on:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    h = LocalHub(tmp_path / "cache")
    commit = h.publish("org/run", {"ck/epoch_1.pt": b"weights-1"})
    job = {"repo": "org/run", "repo_type": "model", "revision": "main", "commit": commit,
           "filename": "ck/epoch_1.pt", "blob": hashlib.sha256(b"weights-1").hexdigest()}
    return h, job


def test_lease_names_the_cached_checkpoint(tmp_path, hub, monkeypatch):
    _offline(monkeypatch, True)
    _, job = hub
    lease = tmp_path / "r/checkpoints/m/epoch_1/embed-d.lease"
    path = budget.fetch(job, lease)
    assert budget.checkpoint_of(lease) == str(path.absolute())
    assert open(budget.checkpoint_of(lease), "rb").read() == b"weights-1"
    assert budget.checkpoint_bytes(lease) == len(b"weights-1")
    local = tmp_path / "epoch_1.pt"
    local.write_bytes(b"abc")
    assert budget.checkpoint_of(local) == str(local) and budget.checkpoint_bytes(local) == 3  # a local run's file


def test_a_blob_that_was_in_the_cache_before_is_never_removed(tmp_path, hub, monkeypatch):
    _, job = hub
    blob, snap = budget.blob_path(job), tmp_path / "cache/models--org--run/snapshots" / job["commit"] / job["filename"]
    assert blob.exists()  # published into the cache before the "run"
    owner, done = tmp_path / "m/epoch_1.owner.json", tmp_path / "m/epoch_1.done"
    _offline(monkeypatch, True)
    budget.fetch(job, tmp_path / "m/epoch_1/embed-d.lease", owner=owner)
    assert json.loads(owner.read_text())["owned"] is False
    _offline(monkeypatch, False)
    assert budget.release(job, owner, done) is False
    assert blob.exists() and snap.is_symlink()
    assert "was in the HF cache before" in json.loads(done.read_text())["decision"]


def test_owned_blob_is_removed_but_never_offline(tmp_path, hub, monkeypatch):
    _, job = hub
    blob, snap = budget.blob_path(job), tmp_path / "cache/models--org--run/snapshots" / job["commit"] / job["filename"]
    owner, done = tmp_path / "m/epoch_1.owner.json", tmp_path / "m/epoch_1.done"
    owner.parent.mkdir(parents=True)
    # as a lease that downloaded it writes
    owner.write_text(json.dumps({"blob": job["blob"], "owned": True, "links": [str(snap)]}))
    _offline(monkeypatch, True)
    assert budget.release(job, owner, done) is False and blob.exists()
    assert "HF_HUB_OFFLINE" in json.loads(done.read_text())["decision"]
    _offline(monkeypatch, False)
    assert budget.release(job, owner, done) is True
    assert not blob.exists() and not snap.is_symlink()
    assert budget.held(tmp_path) == 0
