"""Epoch discovery and selection against a local Hugging Face cache (the real offline code path)."""
import pytest

from clipdyn.fixtures.localhub import LocalHub
from clipdyn.hub import client as hub


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return LocalHub(tmp_path / "hub")


def test_discover_epochs_reads_the_cache_and_identifies_files_by_content(offline_hub):
    tpl = "full_checkpoints/run/epoch_{epoch}.pt"
    c1 = offline_hub.publish("org/run", {f"full_checkpoints/run/epoch_{e}.pt": f"w{e}" for e in (1, 2, 10)}
                             | {"full_checkpoints/run/epoch_latest.pt": "x", "README.md": "hi"})
    found = hub.discover_epochs("org/run", tpl)
    assert [f.epoch for f in found] == [1, 2, 10]
    assert all(f.commit == c1 for f in found)
    blobs = {f.epoch: f.blob for f in found}
    c2 = offline_hub.publish("org/run", {"full_checkpoints/run/epoch_11.pt": "w11"})
    again = {f.epoch: f for f in hub.discover_epochs("org/run", tpl)}
    assert sorted(again) == [1, 2, 10, 11] and again[11].commit == c2 != c1
    assert {e: again[e].blob for e in blobs} == blobs  # earlier files keep their identity


def test_download_goes_through_hf_hub_download_and_checks_the_blob(offline_hub, tmp_path):
    offline_hub.publish("org/run", {"ckpt/epoch_1.pt": b"weights"})
    (f,) = hub.discover_epochs("org/run", "ckpt/epoch_{epoch}.pt")
    path = hub.download_file("org/run", f.path, expected_blob=f.blob)
    assert path.read_bytes() == b"weights"
    hub.link(path, tmp_path / "out" / "epoch_1.pt")
    assert (tmp_path / "out" / "epoch_1.pt").read_bytes() == b"weights"
    with pytest.raises(hub.HubError, match="content changed"):
        hub.download_file("org/run", f.path, expected_blob="0" * 64)


def test_snapshot_entry_that_is_a_copy_is_checked_too(offline_hub):
    """A cache whose snapshot holds copies (no links to named blobs) gets the same content check."""
    content = b"weights!"
    offline_hub.publish("org/run", {"ckpt/epoch_1.pt": content})
    (f,) = hub.discover_epochs("org/run", "ckpt/epoch_{epoch}.pt")
    entry = hub.download_file("org/run", f.path, expected_blob=f.blob)
    assert entry.is_symlink()
    entry.unlink()
    entry.write_bytes(content)  # a faithful copy passes
    assert hub.download_file("org/run", f.path, expected_blob=f.blob).read_bytes() == content
    entry.write_bytes(b"X" * len(content))  # a damaged copy, same size
    with pytest.raises(hub.HubError, match="is corrupt") as err:
        hub.download_file("org/run", f.path, expected_blob=f.blob)
    assert "a copy in the snapshot" in str(err.value) and str(entry) in str(err.value)


def test_offline_without_the_repo_says_what_to_do(offline_hub):
    with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE.*not in the local cache"):
        hub.discover_epochs("org/missing", "e_{epoch}.pt")


@pytest.mark.parametrize("spec, avail, want", [
    ("auto", [3, 1, 2], [1, 2, 3]),
    ([4, 2, 2], [1, 2, 3, 4], [2, 4]),
    ({"first": 1, "last": 9, "step": 4}, [], [1, 5, 9]),
    ({"first": 2, "last": "auto", "step": 3}, list(range(1, 11)), [2, 5, 8]),
    ({"first": 2, "last": "auto", "step": 3, "include_last": True}, list(range(1, 11)), [2, 5, 8, 10]),
    ({"auto": True, "step": 8}, list(range(1, 21)), [1, 9, 17, 20]),
    ({"auto": True, "step": 8, "include_last": False}, list(range(1, 21)), [1, 9, 17]),
])
def test_select_epochs(spec, avail, want):
    assert hub.select_epochs(spec, avail) == want


def test_epoch_template():
    rx = hub.epoch_regex("full_checkpoints/a.b/epoch_{epoch}.pt")
    assert rx.match("full_checkpoints/a.b/epoch_12.pt").group("epoch") == "12"
    assert not rx.match("full_checkpoints/aXb/epoch_12.pt")
    assert hub.template_prefix("full_checkpoints/run/epoch_{epoch}.pt") == "full_checkpoints/run/"
    with pytest.raises(ValueError, match="exactly once"):
        hub.epoch_regex("epoch.pt")
