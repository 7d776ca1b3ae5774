"""The local Hub server against the real huggingface_hub client: listings, downloads into an
empty cache, LFS redirects, resume with Range, refs/commits, errors, publish while serving."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipdyn.fixtures.hubserver import LFS_THRESHOLD, HubServer
from clipdyn.fixtures.localhub import LocalHub

REPO = Path(__file__).resolve().parents[2]


def _weights(n: int, seed: int) -> bytes:
    """Binary content (holds NUL bytes, so the Hub would store it in LFS)."""
    return __import__("random").Random(seed).randbytes(n) + b"\0"


@pytest.fixture
def hub(tmp_path):
    h = LocalHub(tmp_path / "repos")
    h.publish("org/run", {f"ckpt/run/epoch_{e}.pt": _weights(3000, e) for e in (1, 2, 3)}
              | {"README.md": "# run\n", "ckpt/run/notes.txt": "lr 1e-3\n"})
    h.publish("org/data", {"test/0.tar": _weights(5000, 9), "classnames.txt": "cat\ndog\n",
                           "test/nshards.txt": "1\n"}, repo_type="dataset")
    return h


@pytest.fixture
def server(hub):
    with HubServer(hub.cache_dir) as s:
        yield s


@pytest.fixture
def cache(tmp_path):
    c = tmp_path / "cache"
    assert not c.exists()
    return c


def test_listing_through_hfapi(server, hub):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    api = HfApi(endpoint=server.url, token=False)
    info = api.repo_info("org/run", revision="main")
    assert info.sha == hub.head("org/run")
    assert sorted(s.rfilename for s in info.siblings) == sorted(hub.files("org/run"))
    tree = list(api.list_repo_tree("org/run", path_in_repo="ckpt/run", revision=info.sha, recursive=True))
    files = {e.path: e for e in tree if isinstance(e, RepoFile)}
    assert sorted(files) == ["ckpt/run/epoch_1.pt", "ckpt/run/epoch_2.pt", "ckpt/run/epoch_3.pt", "ckpt/run/notes.txt"]
    w1 = _weights(3000, 1)
    e1 = files["ckpt/run/epoch_1.pt"]
    assert e1.size == len(w1) and e1.lfs.sha256 == hashlib.sha256(w1).hexdigest() and e1.lfs.size == len(w1)
    notes = files["ckpt/run/notes.txt"]
    assert notes.lfs is None  # a small text file is a plain git file: identity = git blob id
    assert notes.blob_id == hashlib.sha1(b"blob 8\0lr 1e-3\n").hexdigest()
    top = list(api.list_repo_tree("org/run", revision="main"))  # not recursive: one level
    assert {e.path for e in top if isinstance(e, RepoFolder)} == {"ckpt"}
    assert {e.path for e in top if isinstance(e, RepoFile)} == {"README.md"}
    ds = api.dataset_info("org/data")
    assert ds.sha == hub.head("org/data", repo_type="dataset")
    assert api.file_exists("org/run", "README.md") and not api.file_exists("org/run", "nope.txt")
    (p,) = api.get_paths_info("org/run", ["ckpt/run/epoch_2.pt"], revision="main")
    assert p.lfs.sha256 == hashlib.sha256(_weights(3000, 2)).hexdigest()
    assert server.count("info", "org/run") == 1 and server.count("tree", "org/run") == 2


def test_tree_listing_is_paginated_like_the_hub(hub):
    from huggingface_hub import HfApi

    hub.publish("org/many", {f"f/{i:03d}.txt": f"{i}\n" for i in range(25)})
    with HubServer(hub.cache_dir, page_size=10) as s:
        tree = list(HfApi(endpoint=s.url, token=False).list_repo_tree("org/many", path_in_repo="f", recursive=True))
        assert [e.path for e in tree] == [f"f/{i:03d}.txt" for i in range(25)]
        assert s.count("tree") == 3  # three pages, followed through the Link header


def test_hf_hub_download_into_an_empty_cache(server, hub, cache):
    from huggingface_hub import hf_hub_download

    w2 = _weights(3000, 2)
    p = Path(hf_hub_download("org/run", "ckpt/run/epoch_2.pt", cache_dir=cache, endpoint=server.url, token=False))
    assert p.read_bytes() == w2
    sha = hashlib.sha256(w2).hexdigest()
    commit = hub.head("org/run")
    # the cache layout huggingface_hub writes: blob named by the LFS sha256, snapshot link, ref
    assert Path(os.path.realpath(p)).name == sha and p.parent.parent.parent.name == commit
    assert (cache / "models--org--run" / "refs" / "main").read_text() == commit
    # the LFS file came through the redirect to the CDN listener, the text file straight
    assert server.count("cdn") == 1
    t = Path(hf_hub_download("org/run", "ckpt/run/notes.txt", cache_dir=cache, endpoint=server.url, token=False))
    assert t.read_text() == "lr 1e-3\n"
    assert Path(os.path.realpath(t)).name == hashlib.sha1(b"blob 8\0lr 1e-3\n").hexdigest()
    assert server.count("cdn") == 1
    # cached: a second call makes only the HEAD and no download
    gets = [r for r in server.requests if r["method"] == "GET"]
    hf_hub_download("org/run", "ckpt/run/epoch_2.pt", cache_dir=cache, endpoint=server.url, token=False)
    assert [r for r in server.requests if r["method"] == "GET"] == gets


def test_snapshot_download_with_patterns(server, hub, cache):
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download("org/data", repo_type="dataset", allow_patterns=["test/*", "classnames.txt"],
                                    cache_dir=cache, endpoint=server.url, token=False))
    assert folder.name == hub.head("org/data", repo_type="dataset")
    assert (folder / "test" / "0.tar").read_bytes() == _weights(5000, 9)
    assert (folder / "classnames.txt").read_text() == "cat\ndog\n"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == \
        ["classnames.txt", "test/0.tar", "test/nshards.txt"]


def test_a_broken_transfer_is_resumed_with_a_range_request(hub, cache, monkeypatch):
    from huggingface_hub import constants, hf_hub_download

    # http_get writes 10 MB chunks; smaller ones let a 200 kB file break after some were written
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16384)
    big = _weights(200_000, 7)
    hub.publish("org/big", {"w.bin": big})
    with HubServer(hub.cache_dir, truncate_once={"w.bin"}) as s:
        p = hf_hub_download("org/big", "w.bin", cache_dir=cache, endpoint=s.url, token=False)
        assert Path(p).read_bytes() == big
        ranges = [r["range"] for r in s.requests if r["kind"] == "cdn" and r["method"] == "GET"]
        assert ranges[0] is None and ranges[1].startswith("bytes=")  # resumed where it broke
        resumed_at = int(ranges[1][len("bytes="):-1])
        assert 0 < resumed_at <= (len(big) + 1) // 2 and resumed_at % 16384 == 0


def test_large_text_file_is_lfs(hub, server):
    from huggingface_hub import HfApi

    hub.publish("org/txt", {"big.csv": "a,b\n" * (LFS_THRESHOLD // 4 + 1)})
    (e,) = [f for f in HfApi(endpoint=server.url, token=False).list_repo_tree("org/txt")]
    assert e.lfs is not None and e.lfs.size == e.size > LFS_THRESHOLD


def test_refs_tags_and_commits(server, hub):
    from huggingface_hub import HfApi

    first = hub.head("org/run")
    hub.tag("org/run", "v1")
    second = hub.publish("org/run", {"ckpt/run/epoch_4.pt": _weights(3000, 4)}, message="epoch 4")
    hub.publish("org/run", {"ckpt/run/epoch_1.pt": _weights(10, 0)}, branch="epoch-1")
    api = HfApi(endpoint=server.url, token=False)
    refs = api.list_repo_refs("org/run")
    assert {b.name: b.target_commit for b in refs.branches} == {"main": second,
                                                                 "epoch-1": hub.head("org/run", branch="epoch-1")}
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1", "refs/tags/v1", first)]
    commits = api.list_repo_commits("org/run")
    assert [c.commit_id for c in commits] == [second, first] and commits[0].title == "epoch 4"
    # a tag resolves like a branch, in listings and downloads
    assert api.repo_info("org/run", revision="v1").sha == first
    assert not api.file_exists("org/run", "ckpt/run/epoch_4.pt", revision="v1")


def test_publishing_while_serving_is_seen_at_once(server, hub, cache):
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=server.url, token=False)
    before = api.repo_info("org/run").sha
    new = hub.publish("org/run", {"ckpt/run/epoch_4.pt": _weights(3000, 4), "ckpt/run/epoch_5.pt": _weights(3000, 5)})
    assert new != before and api.repo_info("org/run").sha == new
    files = {f.path for f in api.list_repo_tree("org/run", path_in_repo="ckpt/run", revision=new, recursive=True)}
    assert {"ckpt/run/epoch_4.pt", "ckpt/run/epoch_5.pt", "ckpt/run/epoch_1.pt"} <= files
    p = hf_hub_download("org/run", "ckpt/run/epoch_5.pt", cache_dir=cache, endpoint=server.url, token=False)
    assert Path(p).read_bytes() == _weights(3000, 5) and Path(p).parent.parent.parent.name == new
    # the old commit is still served by its sha (a pinned revision keeps working)
    assert api.repo_info("org/run", revision=before).sha == before


def test_errors_are_the_hubs(server, cache):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=server.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("org/missing")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info("org/run", revision="nope")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/run", "nope.pt", cache_dir=cache, endpoint=server.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "x.pt", cache_dir=cache, endpoint=server.url, token=False)


def test_private_and_gated_repos(hub, cache):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    with HubServer(hub.cache_dir, gated={"org/run"}) as s:
        with pytest.raises(GatedRepoError):
            hf_hub_download("org/run", "README.md", cache_dir=cache, endpoint=s.url, token=False)
        assert hf_hub_download("org/run", "README.md", cache_dir=cache, endpoint=s.url, token="hf_x")
    with HubServer(hub.cache_dir, tokens={"hf_good"}) as s:
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=s.url, token=False).repo_info("org/run")
        assert HfApi(endpoint=s.url, token="hf_good").repo_info("org/run").sha == hub.head("org/run")


def test_cli_prints_the_url_and_clipdyn_hub_works_online_through_hf_endpoint(hub, tmp_path):
    url_file, log = tmp_path / "url", tmp_path / "requests.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env["PYTHONPATH"] = str(REPO / "workflow")
    proc = subprocess.Popen([sys.executable, "-m", "clipdyn.fixtures.hubserver", "--root", str(hub.cache_dir),
                             "--port", "0", "--url-file", str(url_file), "--log", str(log)],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url_file.read_text().strip() == url
        client = ("import json; from clipdyn.hub import client as hub;"
                  "fs = hub.discover_epochs('org/run', 'ckpt/run/epoch_{epoch}.pt');"
                  "p = hub.download_file('org/run', fs[1].path, expected_blob=fs[1].blob);"
                  "d, c = hub.download_snapshot('org/data', allow_patterns=['classnames.txt']);"
                  "print(json.dumps([[f.epoch for f in fs], open(p, 'rb').read().hex(), c,"
                  " sorted(x.name for x in d.iterdir())]))")
        out = subprocess.run([sys.executable, "-c", client], capture_output=True, text=True, timeout=120,
                             env=dict(env, HF_ENDPOINT=url, HF_HUB_CACHE=str(tmp_path / "cache"),
                                      HF_HOME=str(tmp_path / "home")))
        assert out.returncode == 0, out.stderr
        epochs, content, commit, names = json.loads(out.stdout.strip().splitlines()[-1])
        assert epochs == [1, 2, 3] and bytes.fromhex(content) == _weights(3000, 2)
        assert commit == hub.head("org/data", repo_type="dataset") and names == ["classnames.txt"]
        kinds = [json.loads(line)["kind"] for line in log.read_text().splitlines()]
        assert kinds.count("tree") == 2 and "cdn" in kinds  # listing of the run + of the dataset snapshot
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_download_progress_reaches_the_log_while_it_runs(hub, cache, tmp_path, monkeypatch):
    """Off a terminal huggingface_hub shows no bars; clipdyn.hub.client logs bytes, rate and time left."""
    from huggingface_hub import constants

    from clipdyn.hub import client as clipdyn_hub

    data = _weights(600_000, 3)
    hub.publish("org/slow", {"w.pt": data})
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 65536)
    lines = []
    with HubServer(hub.cache_dir, rate_bps=1_000_000) as s:
        monkeypatch.setattr(constants, "ENDPOINT", s.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            s.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        path = clipdyn_hub.download_file("org/slow", "w.pt", progress_s=0.1, log=lines.append)
    assert path.read_bytes() == data
    during = [line for line in lines if " of " in line]
    assert len(during) >= 3, lines  # ~0.6 s at 1 MB/s, a line every 0.1 s
    assert all(d.startswith("org/slow/w.pt: ") and "/s" in d and "left" in d and "600.0 KB" in d for d in during)
    assert "downloaded in" in lines[-1] and "600.0 KB" in lines[-1]


def test_progress_lines_without_updates_and_quiet_counters():
    from clipdyn.hub.client import LogProgress

    lines = []
    bar = LogProgress(total=5_000_000, desc="x", unit="B", label="org/r/f.pt", every=0.05, log=lines.append)
    import time

    time.sleep(0.2)  # no bytes yet (a slow first chunk): still a line per interval
    bar.update(2_500_000)
    time.sleep(0.12)
    bar.close()
    assert lines[0].startswith("org/r/f.pt: 0 B of 5.0 MB (0%)")
    assert any("2.5 MB of 5.0 MB (50%)" in line for line in lines)
    assert lines[-1].startswith("org/r/f.pt: 2.5 MB downloaded in")
    quiet = []
    for kw in ({"unit": "it", "desc": "Fetching 3 files"}, {"unit": "B", "desc": "Downloading bytes"}):
        b = LogProgress(total=3, every=0.01, log=quiet.append, **kw)
        b.update(3)
        time.sleep(0.05)
        b.close()
    assert quiet == []


def test_sources_resolve_revisions_as_epochs_online(hub, monkeypatch, tmp_path):
    """clipdyn.hub.sources' Hub revisions (one branch per epoch): refs listing + paths-info, online."""
    from huggingface_hub import constants

    from clipdyn.hub import sources

    commits = {e: hub.publish("org/revs", {"model.pt": _weights(2000, e)}, branch=f"epoch-{e}") for e in (1, 2, 3)}
    with HubServer(hub.cache_dir) as s:
        monkeypatch.setattr(constants, "ENDPOINT", s.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        found = sources.resolve("m", {"repo": "org/revs", "checkpoint": "model.pt", "revisions": "epoch-{epoch}"})
        assert s.count("refs") == 1 and s.count("paths-info") == 3, s.requests
    assert {e: (f.commit, f.blob, f.size) for e, f in found.files.items()} == {
        e: (commits[e], hashlib.sha256(_weights(2000, e)).hexdigest(), 2001) for e in (1, 2, 3)}
