"""Hub failures: offline with nothing cached, missing repo or file, gated repo, transient
errors, partial and damaged downloads. Each ends in a HubError that names the repo (and
file) and says what to do; nothing half-downloaded is ever handed on as a checkpoint.

Offline cases run in-process against a LocalHub cache (the real offline code path of
huggingface_hub). Online cases run clipdyn.hub.client in a subprocess against the local Hub
(clipdyn.fixtures.hubserver, with its fault modes: gated, refused, outages), which answers like the
Hub, so huggingface_hub raises its own GatedRepoError, RepositoryNotFoundError and
RemoteEntryNotFoundError from real responses.
"""

import hashlib
import os

import pytest
from hubclient import call_hub

from clipdyn.fixtures.hubserver import HubServer
from clipdyn.fixtures.localhub import LocalHub, repo_folder
from clipdyn.hub import client as hub


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return LocalHub(tmp_path / "hub")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The local Hub serving two repos, with a gated one and two that refuse a token."""
    repos = LocalHub(tmp_path_factory.mktemp("repos"))
    files = {"org/run": {"ckpt/epoch_1.pt": os.urandom(50_000)}}
    repos.publish("org/run", files["org/run"])
    repos.publish("org/data", {"classnames.txt": b"cat\ndog\n"})
    for repo in ("org/gated", "org/badtoken", "org/forbidden"):
        repos.publish(repo, {"ckpt/epoch_1.pt": b"weights"})
    with HubServer(repos.cache_dir, gated=["org/gated"]) as server:
        server.files = files  # what the tests compare downloads with
        server.refuse["org/badtoken"] = (401, "Invalid credentials in Authorization header")
        server.refuse["org/forbidden"] = (403, "Forbidden: this token has no access to org/forbidden")
        yield server


# ------------------------------------------------------------------ offline


def test_offline_download_with_nothing_cached_names_repo_and_remedy(offline):
    with pytest.raises(hub.HubError) as err:
        hub.download_file("org/absent", "ckpt/epoch_1.pt")
    msg = str(err.value)
    assert "org/absent" in msg and "ckpt/epoch_1.pt" in msg
    assert "HF_HUB_OFFLINE" in msg and "HF_HUB_CACHE" in msg and "Hub access" in msg
    with pytest.raises(hub.HubError) as err:
        hub.download_snapshot("org/absent-data")
    assert "org/absent-data" in str(err.value) and "HF_HUB_CACHE" in str(err.value)


def test_offline_missing_file_in_a_cached_repo(offline):
    offline.publish("org/run", {"ckpt/epoch_1.pt": b"w1"})
    with pytest.raises(hub.HubError) as err:
        hub.download_file("org/run", "ckpt/epoch_9.pt")
    assert "ckpt/epoch_9.pt" in str(err.value) and "org/run" in str(err.value)


# ------------------------------------------------------------------ online, against the local Hub


@pytest.mark.parametrize("fn, kwargs", [
    ("download_file", {"repo_id": "org/gated", "filename": "ckpt/epoch_1.pt"}),
    ("list_repo", {"repo_id": "org/gated"}),
    ("download_snapshot", {"repo_id": "org/gated", "repo_type": "model"}),
])
def test_gated_repo_without_token_says_accept_terms_and_set_hf_token(served, tmp_path, fn, kwargs):
    out = call_hub(served, tmp_path / "cache", fn, **kwargs)
    assert not out["ok"] and out["type"] == "HubError"
    assert out["cause"] == "GatedRepoError"  # built by huggingface_hub from the Hub's answer
    assert "'org/gated' is gated" in out["message"]
    assert "Accept its terms" in out["message"] and "HF_TOKEN" in out["message"]
    assert out["delays"] == []  # not retried


@pytest.mark.parametrize("fn, repo, status", [
    ("download_file", "org/badtoken", 401),
    ("list_repo", "org/badtoken", 401),
    ("download_file", "org/forbidden", 403),
    ("download_snapshot", "org/forbidden", 403),
])
def test_refused_token_is_explained_not_retried_and_not_printed(served, tmp_path, fn, repo, status):
    """An invalid/expired token (401) or one without access (403) is not a network outage: no
    retries, a message that says to fix HF_TOKEN, and the token itself is never shown."""
    from runs import TOKEN

    kwargs = {"filename": "ckpt/epoch_1.pt"} if fn == "download_file" else {}
    if fn == "download_snapshot":
        kwargs["repo_type"] = "model"
    out = call_hub(served, tmp_path / "cache", fn, token=TOKEN, repo_id=repo, **kwargs)
    assert not out["ok"]
    msg = out["message"]
    assert f"the Hub refused access to model repo {repo!r} (HTTP {status})" in msg
    assert "HF_TOKEN" in msg and "settings/tokens" in msg
    assert out["delays"] == []
    assert TOKEN not in out["stdout"]


def test_missing_repo_online(served, tmp_path):
    out = call_hub(served, tmp_path / "cache", "download_file", repo_id="org/nope", filename="x.pt")
    assert out["cause"] == "RepositoryNotFoundError"
    assert "'org/nope' does not exist or is private" in out["message"] and "repo_type" in out["message"]
    assert out["delays"] == []


def test_missing_file_online(served, tmp_path):
    out = call_hub(served, tmp_path / "cache", "download_file", repo_id="org/run", filename="ckpt/epoch_7.pt")
    assert out["cause"] == "RemoteEntryNotFoundError"
    assert "ckpt/epoch_7.pt" in out["message"] and "file not found" in out["message"]
    assert out["delays"] == []


def test_transient_server_errors_are_retried_then_succeed(served, tmp_path):
    """503s on the first 7 requests: huggingface_hub retries 6 times itself, then wraps the 503
    in LocalEntryNotFoundError ("cannot find the requested files in the local cache"); clipdyn
    still sees a transient error, backs off and tries again, and the download succeeds."""
    served.fail["org/run"] = 7
    out = call_hub(served, tmp_path / "cache", "download_file", repo_id="org/run", filename="ckpt/epoch_1.pt",
                   expected_blob=hashlib.sha256(served.files["org/run"]["ckpt/epoch_1.pt"]).hexdigest())
    assert out["ok"], out
    assert out["hf_delays"] == [1, 2, 4, 8, 8]  # huggingface_hub's own backoff
    assert out["delays"] == [2.0], "clipdyn did not back off"
    assert "503 Service Unavailable" in out["stdout"] and "retrying in 2 s (attempt 1/4)" in out["stdout"]


def test_hub_down_fails_clearly_after_backoff(served, tmp_path):
    served.fail["org/run"] = 10_000
    try:
        out = call_hub(served, tmp_path / "cache", "download_file", repo_id="org/run",
                       filename="ckpt/epoch_1.pt")
    finally:
        served.fail["org/run"] = 0
    assert not out["ok"]
    assert out["delays"] == [2.0, 4.0, 8.0]  # exponential backoff between 4 attempts
    msg = out["message"]
    assert "failed after 4 attempts" in msg and "503" in msg and "run the same command again later" in msg
    assert "org/run" in msg and "ckpt/epoch_1.pt" in msg
    assert "HF_HUB_OFFLINE is set" not in msg  # it is not: the Hub is down


def test_with_retries_backs_off_then_succeeds(capsys):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError("connection reset by peer")
        return "ok"

    assert hub.with_retries(flaky, "listing org/run", attempts=4, base_delay=0.001) == "ok"
    assert len(calls) == 3
    out = capsys.readouterr().out
    assert out.count("retrying in") == 2 and "attempt 1/4" in out and "attempt 2/4" in out


def test_with_retries_gives_up_with_a_clear_message(monkeypatch):
    slept = []
    monkeypatch.setattr(hub.time, "sleep", slept.append)
    calls = []

    def down():
        calls.append(1)
        raise TimeoutError("read timed out")

    with pytest.raises(hub.HubError, match=r"listing org/run: failed after 3 attempts: TimeoutError: read timed "
                                           r"out\. The Hub or the network is unavailable; run the same command"):
        hub.with_retries(down, "listing org/run", attempts=3, base_delay=0.5)
    assert len(calls) == 3 and slept == [0.5, 1.0]


def test_with_retries_does_not_retry_what_retrying_cannot_fix(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(hub.time, "sleep", lambda s: pytest.fail("slept"))
    for exc in (LocalEntryNotFoundError("not cached"), FileNotFoundError("x"), hub.HubError("x")):
        calls = []

        def fn():
            calls.append(1)
            raise exc

        with pytest.raises(type(exc)):
            hub.with_retries(fn, "x", base_delay=0.001)
        assert len(calls) == 1
    # offline mode, even when chained the way huggingface_hub chains it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def offline_fn():
        calls.append(1)
        try:
            raise ConnectionError("down")
        except ConnectionError as e:
            raise LocalEntryNotFoundError("not cached") from e

    with pytest.raises(LocalEntryNotFoundError):
        hub.with_retries(offline_fn, "x", base_delay=0.001)
    assert len(calls) == 1


# ------------------------------------------------------------------ partial and damaged downloads


def _interrupt(hub_dir, repo, path):
    """Turn a published file into what an interrupted download leaves: blobs/<etag>.incomplete
    holding a prefix, and no snapshot link (huggingface_hub links only complete blobs)."""
    root = repo_folder(hub_dir, repo)
    snap = root / "snapshots" / (root / "refs" / "main").read_text().strip()
    link = snap / path
    blob = root / "blobs" / os.readlink(link).split("/")[-1]
    data = blob.read_bytes()
    link.unlink()
    blob.unlink()
    (blob.parent / f"{blob.name}.incomplete").write_bytes(data[: len(data) // 2])
    return blob


def test_partial_download_is_never_listed_or_used(offline, tmp_path):
    offline.publish("org/run", {f"ckpt/epoch_{e}.pt": os.urandom(4096) for e in (1, 2, 3)})
    blob = _interrupt(offline.cache_dir, "org/run", "ckpt/epoch_3.pt")
    assert [f.epoch for f in hub.discover_epochs("org/run", "ckpt/epoch_{epoch}.pt")] == [1, 2]
    with pytest.raises(hub.HubError, match="not in the local cache"):
        hub.download_file("org/run", "ckpt/epoch_3.pt", expected_blob=blob.name)
    assert (blob.parent / f"{blob.name}.incomplete").exists()  # left for huggingface_hub to resume


def test_link_to_a_missing_blob_is_not_used(offline, tmp_path):
    """A snapshot link whose blob is gone (only the .incomplete remains): listed, but the
    download step fails, and the model loader refuses the dangling link."""
    from clipdyn.embed.model import CheckpointError, load_model

    offline.publish("org/run", {"ckpt/epoch_1.pt": os.urandom(4096)})
    root = repo_folder(offline.cache_dir, "org/run")
    (blob,) = (root / "blobs").iterdir()
    blob.rename(blob.with_name(blob.name + ".incomplete"))
    (f,) = hub.discover_epochs("org/run", "ckpt/epoch_{epoch}.pt")
    with pytest.raises(hub.HubError, match="not in the local cache"):
        hub.download_file("org/run", f.path, expected_blob=f.blob)
    dangling = tmp_path / "epoch_1.pt"
    dangling.symlink_to(blob)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("clipdyn-tiny", str(dangling))


def test_stale_incomplete_file_is_not_used_online(served, tmp_path):
    """What an interrupted download left (blobs/<etag>.incomplete, here with wrong bytes) is not
    resumed into the checkpoint: huggingface_hub downloads into a fresh temporary file, and the
    linked blob has exactly the Hub's content (checked against its sha256 by clipdyn)."""
    content = served.files["org/run"]["ckpt/epoch_1.pt"]
    sha = hashlib.sha256(content).hexdigest()
    blobs = tmp_path / "cache" / "models--org--run" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{sha}.incomplete").write_bytes(b"\0" * 20_000)
    out = call_hub(served, tmp_path / "cache", "download_file", repo_id="org/run", filename="ckpt/epoch_1.pt",
                   expected_blob=sha)
    assert out["ok"], out
    assert open(out["result"], "rb").read() == content
    assert os.path.realpath(out["result"]) == str(blobs / sha)


def test_damaged_blob_in_the_cache_is_refused(offline):
    """Bytes changed inside a cached checkpoint (same name, same size): torch would load it
    without complaint, so the download step checks the blob against its sha256."""
    data = bytearray(os.urandom(8192))
    offline.publish("org/run", {"ckpt/epoch_1.pt": bytes(data)})
    (f,) = hub.discover_epochs("org/run", "ckpt/epoch_{epoch}.pt")
    assert hub.download_file("org/run", f.path, expected_blob=f.blob).read_bytes() == data
    blob = repo_folder(offline.cache_dir, "org/run") / "blobs" / f.blob
    data[4000:4010] = b"\xff" * 10
    blob.write_bytes(bytes(data))
    with pytest.raises(hub.HubError) as err:
        hub.download_file("org/run", f.path, expected_blob=f.blob)
    msg = str(err.value)
    assert "is corrupt" in msg and f.blob[:12] in msg and "hf cache rm hf://models/" in msg
