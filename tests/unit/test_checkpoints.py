"""clipdyn.hub.checkpoints: a checkpoint fetched by identity, its record, the run's store under a budget.

Served by the local Hub (clipdyn.fixtures.hubserver) on 127.0.0.1; the real huggingface_hub downloads."""

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from clipdyn.fixtures.hubserver import HubServer
from clipdyn.fixtures.localhub import LocalHub
from clipdyn.hub import checkpoints
from clipdyn.hub import client as hub

W1, W2 = b"\0weights-1" * 300, b"\0weights-2" * 300


def _blob(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A served repo with two checkpoints (and a copy of the first under another name), an empty HF
    cache, online."""
    from huggingface_hub import constants

    h = LocalHub(tmp_path / "repos")
    h.publish("org/run", {"ck/epoch_1.pt": W1, "ck/epoch_2.pt": W2, "copy/epoch_1.pt": W1})
    with HubServer(h.cache_dir) as server:
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        yield server


def _job(filename, content):
    return {"repo": "org/run", "repo_type": "model", "revision": "main", "filename": filename,
            "blob": _blob(content)}


def _cache_blobs(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache").glob("models--*/blobs/*"))


def test_without_a_budget_it_lands_in_the_hf_cache_and_readers_find_it_by_record(tmp_path, served):
    rec = checkpoints.fetch(_job("ck/epoch_1.pt", W1), tmp_path / "r/epoch_1.json")
    assert rec["budget"] is None and rec["size"] == len(W1)
    assert _cache_blobs(tmp_path) == [_blob(W1)]
    with checkpoints.open_checkpoint(tmp_path / "r/epoch_1.json") as path:
        assert path.read_bytes() == W1 and str(tmp_path / "cache") in str(path)
    local = tmp_path / "local.pt"
    local.write_bytes(b"abc")
    with checkpoints.open_checkpoint(local) as path:  # a local run's file: read where it is
        assert path == local


def test_budget_downloads_into_the_store_never_the_hf_cache_and_evicts_what_is_done(tmp_path, served):
    store = tmp_path / "r/checkpoint_store"
    r1, r2 = tmp_path / "r/epoch_1.json", tmp_path / "r/epoch_2.json"
    checkpoints.fetch(_job("ck/epoch_1.pt", W1), r1, store=store, budget=1)
    assert checkpoints.held(store) == [_blob(W1)] and _cache_blobs(tmp_path) == []
    with checkpoints.open_checkpoint(r1) as path:
        assert path.read_bytes() == W1 and path.is_relative_to(store)
    # the next checkpoint's fetch evicts the one whose readers are done (budget 1)
    checkpoints.fetch(_job("ck/epoch_2.pt", W2), r2, store=store, budget=1, done=[_blob(W1)])
    assert checkpoints.held(store) == [_blob(W2)]
    # a reader of the evicted one downloads it again, evicting the idle one: never more than 1
    with checkpoints.open_checkpoint(r1) as path:
        assert path.read_bytes() == W1 and checkpoints.held(store) == [_blob(W1)]
    assert _cache_blobs(tmp_path) == []
    checkpoints.release(store, store / "released.json")
    assert checkpoints.held(store) == []
    assert json.loads((store / "released.json").read_text())["evicted"] == [_blob(W1)]


def test_a_checkpoint_being_read_is_never_evicted_and_a_reader_waits_for_room(tmp_path, served):
    store = tmp_path / "r/checkpoint_store"
    r1, r2 = tmp_path / "r/epoch_1.json", tmp_path / "r/epoch_2.json"
    checkpoints.fetch(_job("ck/epoch_1.pt", W1), r1, store=store, budget=1)
    checkpoints.fetch(_job("ck/epoch_2.pt", W2), r2, store=store, budget=1, done=[_blob(W1)])
    order = []
    with checkpoints.open_checkpoint(r2) as p2:
        assert checkpoints.evict(store, [_blob(W2)]) == []  # being read: kept

        def other_reader():
            with checkpoints.open_checkpoint(r1) as p1:
                order.append(("read 1", p1.read_bytes() == W1))

        t = threading.Thread(target=other_reader)
        t.start()
        time.sleep(1.5)
        assert order == [] and p2.read_bytes() == W2  # it waits: the only slot is being read
        order.append("done with 2")
    t.join(timeout=60)
    assert order == ["done with 2", ("read 1", True)]
    assert checkpoints.held(store) == [_blob(W1)]


def test_the_users_own_download_is_read_in_place_and_never_removed(tmp_path, served):
    from huggingface_hub import hf_hub_download

    mine = Path(hf_hub_download("org/run", "ck/epoch_1.pt", cache_dir=tmp_path / "cache"))
    store = tmp_path / "r/checkpoint_store"
    rec = checkpoints.fetch(_job("ck/epoch_1.pt", W1), tmp_path / "r/epoch_1.json", store=store, budget=1)
    assert rec["budget"] == 1 and checkpoints.held(store) == []
    with checkpoints.open_checkpoint(tmp_path / "r/epoch_1.json") as path:
        assert path == mine
    checkpoints.fetch(_job("ck/epoch_2.pt", W2), tmp_path / "r/epoch_2.json", store=store, budget=1,
                      done=[_blob(W1)])
    checkpoints.release(store, store / "released.json")
    assert mine.read_bytes() == W1 and _cache_blobs(tmp_path) == [_blob(W1)]


def test_two_checkpoints_with_the_same_bytes_share_one_blob(tmp_path, served):
    store = tmp_path / "r/checkpoint_store"
    a, b = tmp_path / "r/a.json", tmp_path / "r/b.json"
    checkpoints.fetch(_job("ck/epoch_1.pt", W1), a, store=store, budget=1)
    # the second's fetch is told the first is done, but it is its own blob: kept
    checkpoints.fetch(_job("copy/epoch_1.pt", W1), b, store=store, budget=1, done=[_blob(W1)])
    assert checkpoints.held(store) == [_blob(W1)]
    with checkpoints.open_checkpoint(a) as pa:
        assert pa.read_bytes() == W1


def test_a_changed_file_or_a_killed_download_is_handled(tmp_path, served):
    store = tmp_path / "r/checkpoint_store"
    wrong = dict(_job("ck/epoch_1.pt", W1), blob=_blob(b"something else"))
    with pytest.raises(hub.HubError, match="content hash"):
        checkpoints.fetch(wrong, tmp_path / "r/x.json", store=store, budget=1)
    assert checkpoints.held(store) == [] and not (tmp_path / "r/x.json").exists()
    # a download killed midway leaves <blob>.part without its lock holder: not counted, removed
    (store / f"{_blob(W2)}.part").mkdir(parents=True)
    checkpoints.fetch(_job("ck/epoch_1.pt", W1), tmp_path / "r/e1.json", store=store, budget=1)
    assert checkpoints.held(store) == [_blob(W1)] and not (store / f"{_blob(W2)}.part").exists()


def test_a_record_names_what_is_wrong(tmp_path):
    bad = tmp_path / "epoch_1.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match=str(bad)):
        with checkpoints.open_checkpoint(bad):
            pass
    with pytest.raises(FileNotFoundError, match="fetch_checkpoint"):
        with checkpoints.open_checkpoint(tmp_path / "missing.json"):
            pass
