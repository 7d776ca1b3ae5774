"""Datasets over HTTP (clipdyn.hub.downloads): resume, checksums, trust on first use, clear errors.

A 127.0.0.1 server (archive_server.py) serves fixture archives in the published layouts
(model-vs-human's cue-conflict.tar.gz, dreamsim's nights.zip, MIT1003's ALLSTIMULI.zip +
ALLFIXATIONMAPS.zip) and misbehaves on purpose: wrong content, a truncated body, an HTML
page, a 404, a dropped connection.
"""

import hashlib
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from archive_server import ArchiveServer  # noqa: E402

from clipdyn.data.manifests import fetch_dataset, prepare_manifest  # noqa: E402
from clipdyn.fixtures.writers import write_cue_conflict, write_nights  # noqa: E402
from clipdyn.hub.downloads import Archive, DownloadError, download, fetch_archives  # noqa: E402

FAST = dict(base_delay=0.0, progress_s=0.0)


def _zip(folder: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted((folder / top).rglob("*")):
            zf.write(p, str(p.relative_to(folder)))
    return buf.getvalue()


def _targz(folder: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder / top, arcname=top)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """The three published archives, in their real layouts (small, seeded)."""
    tmp = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # noqa: E731
    write_cue_conflict(tmp / "cc" / "cue-conflict", [("cat", "dog", img()), ("cat", "cat", img()),
                                                     ("knife", "dog", img())])
    write_nights(tmp / "n" / "nights", [dict(ref=img(), left=img(), right=img(), left_vote=1 / 3, right_vote=2 / 3,
                                             split="test", is_imagenet=k % 2 == 0, prompt="An image of a cat")
                                        for k in range(3)])
    mit = tmp / "mit"
    (mit / "ALLSTIMULI").mkdir(parents=True)
    (mit / "ALLFIXATIONMAPS").mkdir()
    for name in ("i05june05_static_street_boston_p1010764", "istatic_submitted_chris_by_Alex_Goldberg_0048"):
        Image.fromarray(img()).save(mit / "ALLSTIMULI" / f"{name}.jpeg", format="JPEG")
        Image.new("L", (8, 8), 40).save(mit / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg", format="JPEG")
        Image.new("L", (8, 8), 0).save(mit / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", format="JPEG")
    return {
        "/bethgelab/model-vs-human/releases/download/v0.1/cue-conflict.tar.gz": _targz(tmp / "cc", "cue-conflict"),
        "/nights/nights.zip": _zip(tmp / "n", "nights"),
        "/tjudd/WherePeopleLook/ALLSTIMULI.zip": _zip(mit, "ALLSTIMULI"),
        "/tjudd/WherePeopleLook/ALLFIXATIONMAPS.zip": _zip(mit, "ALLFIXATIONMAPS"),
    }


def _md5(b):
    return hashlib.md5(b).hexdigest()


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def _etag(b):
    return '"' + _sha(b)[:32] + '"'  # as archive_server.py makes it


def _prepare(tmp, snapshot, fmt, root, name):
    return prepare_manifest(snapshot=snapshot, fmt=fmt, root=root, extract=[], extract_dir=str(tmp / "x"),
                            options={}, subset=None, subset_seed=0, out_manifest=str(tmp / f"{name}.parquet"),
                            out_trials=str(tmp / f"{name}.trials.parquet"), dataset=name)


def test_published_layouts_download_extract_and_read(tmp_path, fixtures, capsys):
    """Each shipped dataset's archives: downloaded, checked (pinned md5 / sha256 / first use), read by its adapter."""
    dl = tmp_path / "downloads"
    with ArchiveServer(fixtures) as srv:
        cases = {
            "cue_conflict": ("cue_conflict", "cue-conflict",
                             [{"url": srv.url("/bethgelab/model-vs-human/releases/download/v0.1/cue-conflict.tar.gz"),
                               "sha256": _sha(fixtures["/bethgelab/model-vs-human/releases/download/v0.1/"
                                                       "cue-conflict.tar.gz"])}]),
            "nights": ("nights", "nights", [{"url": srv.url("/nights/nights.zip")}]),  # no checksum: first use
            "mit1003": ("saliency", "", [
                {"url": srv.url("/tjudd/WherePeopleLook/ALLSTIMULI.zip"),
                 "md5": _md5(fixtures["/tjudd/WherePeopleLook/ALLSTIMULI.zip"])},
                {"url": srv.url("/tjudd/WherePeopleLook/ALLFIXATIONMAPS.zip")}]),
        }
        counts = {}
        for name, (fmt, root, archives) in cases.items():
            out = tmp_path / "results" / "datasets" / name / "snapshot.json"
            out.parent.mkdir(parents=True)
            rec = fetch_dataset(path=None, repo=None, repo_type="dataset", revision="main", files=[], extra_files={},
                                out=str(out), archives=archives, download_dir=str(dl / name), dataset=name)
            assert json.loads(out.read_text()) == rec
            assert [a["url"] for a in rec["archives"]] == [a["url"] for a in archives]
            counts[name] = _prepare(tmp_path, rec, fmt, root, name)
    assert counts["cue_conflict"] == {"images": 3, "available": 3, "trials": 0}
    assert counts["nights"] == {"images": 9, "available": 9, "trials": 3}
    assert counts["mit1003"] == {"images": 2, "available": 2, "trials": 0}
    # MIT1003's two zips are unpacked into one folder, as its README has it
    assert sorted(p.name for p in (tmp_path / "results/datasets/mit1003/files").iterdir()) == [
        "ALLFIXATIONMAPS", "ALLSTIMULI"]
    # trust on first use: the sha256 of each unpinned file is recorded and logged
    rec = json.loads((dl / "nights" / "nights.zip.sha256").read_text())
    assert rec["sha256"] == _sha(fixtures["/nights/nights.zip"])
    assert not (dl / "cue_conflict" / "cue-conflict.tar.gz.sha256").exists()  # pinned: nothing to record
    out = capsys.readouterr().out
    assert f"add `sha256: {rec['sha256']}`" in out
    assert "downloaded in" in out


def test_second_run_downloads_nothing(tmp_path, fixtures):
    path = "/nights/nights.zip"
    with ArchiveServer(fixtures) as srv:
        a = Archive(srv.url(path))
        first = download(a, tmp_path, **FAST)
        mtime = first.stat().st_mtime
        assert download(a, tmp_path, **FAST) == first
        assert len(srv.requests) == 1 and first.stat().st_mtime == mtime


def test_interrupted_download_resumes_with_range(tmp_path, fixtures):
    path = "/nights/nights.zip"
    data = fixtures[path]
    lines = []
    with ArchiveServer(fixtures, modes={path: "interrupt_once"}) as srv:
        got = download(Archive(srv.url(path), sha256=_sha(data)), tmp_path, log=lines.append, **FAST)
        assert got.read_bytes() == data
        assert srv.requests == [(path, None), (path, f"bytes={len(data) // 2}-")]
    assert any("retrying" in line for line in lines)
    assert any("resuming at" in line for line in lines)
    assert not (tmp_path / "nights.zip.part").exists()


def test_truncated_body_is_kept_and_resumed_by_the_next_run(tmp_path, fixtures):
    path = "/tjudd/WherePeopleLook/ALLSTIMULI.zip"
    data = fixtures[path]
    with ArchiveServer(fixtures, modes={path: "truncate"}) as srv:
        url = srv.url(path)
        with pytest.raises(DownloadError) as err:
            fetch_archives([{"url": url, "md5": _md5(data)}], tmp_path / "dl", tmp_path / "out", attempts=2, **FAST)
        msg = str(err.value)
        assert url in msg and "failed after 2 attempts" in msg and "run the same command again" in msg
        part = tmp_path / "dl" / "ALLSTIMULI.zip.part"
        assert 0 < part.stat().st_size < len(data)
        assert not (tmp_path / "dl" / "ALLSTIMULI.zip").exists()
        assert not (tmp_path / "out").exists()  # nothing extracted
        kept = part.stat().st_size
        srv.modes[path] = "ok"
        srv.requests.clear()
        folder, _ = fetch_archives([{"url": url, "md5": _md5(data)}], tmp_path / "dl", tmp_path / "out", **FAST)
        assert srv.requests == [(path, f"bytes={kept}-")]
        assert (tmp_path / "dl" / "ALLSTIMULI.zip").read_bytes() == data
        assert len(list((folder / "ALLSTIMULI").iterdir())) == 2


def test_server_without_range_support_starts_over(tmp_path, fixtures):
    path = "/nights/nights.zip"
    data = fixtures[path]
    (tmp_path / "nights.zip.part").write_bytes(b"stale bytes from elsewhere")
    lines = []
    with ArchiveServer(fixtures, modes={path: "norange"}) as srv:
        (tmp_path / "nights.zip.part.json").write_text(json.dumps({"url": srv.url(path), "validator": _etag(data)}))
        got = download(Archive(srv.url(path), sha256=_sha(data)), tmp_path, log=lines.append, **FAST)
    assert got.read_bytes() == data
    assert any("does not resume" in line for line in lines)


def test_wrong_checksum_deletes_the_file_and_extracts_nothing(tmp_path, fixtures):
    path = "/bethgelab/model-vs-human/releases/download/v0.1/cue-conflict.tar.gz"
    with ArchiveServer(fixtures) as srv:
        url = srv.url(path)
        for pin in ({"sha256": "0" * 64}, {"md5": "0" * 32}):
            with pytest.raises(DownloadError) as err:
                fetch_archives([dict(url=url, **pin)], tmp_path / "dl", tmp_path / "out", **FAST)
            msg = str(err.value)
            algo = next(iter(pin))
            assert url in msg and f"the config pins {'0' * (64 if algo == 'sha256' else 32)}" in msg
            assert f"{algo} of the download is" in msg and "nothing was extracted" in msg
            assert [p.name for p in (tmp_path / "dl").iterdir()] == ["cue-conflict.tar.gz.lock"]
            assert not (tmp_path / "out").exists()


def test_changed_file_after_first_use_is_refused(tmp_path, fixtures):
    path = "/nights/nights.zip"
    with ArchiveServer(fixtures) as srv:
        url = srv.url(path)
        fetch_archives([{"url": url}], tmp_path / "dl", tmp_path / "out", **FAST)
        first = (tmp_path / "out" / "files").resolve()
        (tmp_path / "dl" / "nights.zip").unlink()  # e.g. cleaned up to save disk
        srv.files[path] = fixtures[path] + b"\0"  # the publisher changes the file
        with pytest.raises(DownloadError) as err:
            fetch_archives([{"url": url}], tmp_path / "dl", tmp_path / "out", **FAST)
    msg = str(err.value)
    assert url in msg and "differs from the first download" in msg and "nights.zip.sha256" in msg
    assert "delete" in msg and "pin `sha256:`" in msg
    assert not (tmp_path / "dl" / "nights.zip").exists() and not (tmp_path / "dl" / "nights.zip.part").exists()
    assert (tmp_path / "out" / "files").resolve() == first  # the earlier extraction is untouched


@pytest.mark.parametrize("mode", ["html", "html_binary"])
def test_html_page_instead_of_an_archive(tmp_path, fixtures, mode):
    path = "/nights/nights.zip"
    with ArchiveServer(fixtures, modes={path: mode}) as srv:
        url = srv.url(path)
        with pytest.raises(DownloadError) as err:
            fetch_archives([{"url": url}], tmp_path / "dl", tmp_path / "out", **FAST)
        assert len(srv.requests) == 1  # not retried: retrying cannot fix it
    msg = str(err.value)
    assert url in msg and "HTML page, not the archive" in msg and "Open the URL in a browser" in msg
    assert not (tmp_path / "dl" / "nights.zip").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "dl" / "nights.zip.sha256").exists()  # an HTML page is never trusted on first use


def test_404(tmp_path, fixtures):
    with ArchiveServer(fixtures) as srv:
        url = srv.url("/nights/nigths.zip")
        with pytest.raises(DownloadError) as err:
            fetch_archives([{"url": url}], tmp_path / "dl", tmp_path / "out", **FAST)
        assert len(srv.requests) == 1
    msg = str(err.value)
    assert url in msg and "HTTP 404" in msg and "Check the URL in the config's `archives`" in msg
    assert not (tmp_path / "out").exists()


def test_progress_lines_say_bytes_rate_and_time_left(tmp_path, fixtures):
    """The same progress lines as a Hub download (clipdyn.progress.LogProgress: while it runs, bytes
    of the total, rate and time left, tested in test_hubserver.py), and a last line with the size."""
    path = "/nights/nights.zip"
    lines = []
    with ArchiveServer(fixtures) as srv:
        download(Archive(srv.url(path)), tmp_path, log=lines.append, progress_s=0.0)
    done = [line for line in lines if "downloaded in" in line]
    assert len(done) == 1 and done[0].startswith(srv.url(path)), lines
    assert f"{len(fixtures[path]) / 1e3:.1f} KB downloaded in" in done[0], done


def test_unreachable_server_names_the_url(tmp_path):
    url = "http://127.0.0.1:9/nothing-listens-here.zip"  # port 9 (discard): connection refused
    with pytest.raises(DownloadError) as err:
        download(Archive(url), tmp_path, attempts=2, **FAST)
    assert url in str(err.value) and "run the same command again later" in str(err.value)


_CONCURRENT = """
import sys
from clipdyn.hub.downloads import Archive, download
download(Archive(sys.argv[1]), sys.argv[2], base_delay=0.0, progress_s=0.0, log=lambda s: print(s, flush=True))
"""


def test_two_processes_sharing_the_download_folder_take_turns(tmp_path):
    """Two runs over one download_dir: one downloads, the other waits and finds its file (no shared .part)."""
    import os
    import subprocess

    data = np.random.default_rng(0).bytes(4 << 20)
    with ArchiveServer({"/big.zip": data}, modes={"/big.zip": "slow"}) as srv:  # ~1.3 s per download
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, srv.url("/big.zip"), str(tmp_path / "dl")],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert len(srv.requests) == 1, (srv.requests, outs)  # the second found the first's finished file
    assert (tmp_path / "dl" / "big.zip").read_bytes() == data
    assert json.loads((tmp_path / "dl" / "big.zip.sha256").read_text())["sha256"] == _sha(data)
    assert sum("another process is downloading" in out for out in outs) == 1, outs
    assert not (tmp_path / "dl" / "big.zip.part").exists()


def test_changed_pin_checks_the_kept_file_again(tmp_path, fixtures):
    path = "/nights/nights.zip"
    data = fixtures[path]
    with ArchiveServer(fixtures) as srv:
        url = srv.url(path)
        download(Archive(url), tmp_path, **FAST)  # first use: nothing pinned
        download(Archive(url, sha256=_sha(data)), tmp_path, **FAST)  # the right pin added: checked, kept
        assert len(srv.requests) == 1
        with pytest.raises(DownloadError, match="the config pins " + "1" * 64):
            download(Archive(url, sha256="1" * 64), tmp_path, **FAST)  # a changed pin is not skipped
        with pytest.raises(DownloadError, match="the config pins " + "2" * 32):
            download(Archive(url, md5="2" * 32), tmp_path, **FAST)


def test_close_delimited_body_is_never_trusted_on_first_use(tmp_path, fixtures):
    """A body with no Content-Length that stops early cannot be told from a whole one: its sha256 is not recorded."""
    path = "/nights/nights.zip"
    data = fixtures[path]
    lines = []
    with ArchiveServer(fixtures, modes={path: "close_truncate"}) as srv:
        got = download(Archive(srv.url(path)), tmp_path, log=lines.append, **FAST)
        assert got.stat().st_size == len(data) // 2
        assert not (tmp_path / "nights.zip.sha256").exists()
        assert any("NOT recorded" in line for line in lines)
        got.unlink()
        srv.modes[path] = "ok"  # the whole file, with its length: recorded now
        assert download(Archive(srv.url(path)), tmp_path, **FAST).read_bytes() == data
    assert json.loads((tmp_path / "nights.zip.sha256").read_text())["sha256"] == _sha(data)


def test_resume_sends_if_range_and_a_changed_file_starts_over(tmp_path, fixtures):
    """A file that changed between two attempts is downloaded whole, never spliced from both versions."""
    path = "/nights/nights.zip"
    old = fixtures[path]
    new = bytes(b ^ 0xFF for b in old)  # same size, other bytes
    lines = []
    with ArchiveServer(fixtures, modes={path: "truncate"}) as srv:
        with pytest.raises(DownloadError, match="failed after 1 attempts"):
            download(Archive(srv.url(path)), tmp_path, attempts=1, **FAST)
        kept = (tmp_path / "nights.zip.part").stat().st_size
        srv.files[path], srv.modes[path] = new, "ok"
        got = download(Archive(srv.url(path)), tmp_path, log=lines.append, **FAST)
        assert srv.requests[-1] == (path, f"bytes={kept}-") and srv.if_ranges[-1] == _etag(old)
    assert got.read_bytes() == new
    assert json.loads((tmp_path / "nights.zip.sha256").read_text())["sha256"] == _sha(new)
    assert any("file changed since the partial download" in line for line in lines)


def test_a_server_ignoring_if_range_still_cannot_splice(tmp_path, fixtures):
    """A 206 whose ETag is not the one the part started with: the part is dropped and the file fetched whole."""
    path = "/nights/nights.zip"
    old = fixtures[path]
    new = bytes(b ^ 0xFF for b in old)
    lines = []
    with ArchiveServer(fixtures, modes={path: "truncate"}) as srv:
        with pytest.raises(DownloadError):
            download(Archive(srv.url(path)), tmp_path, attempts=1, **FAST)
        srv.files[path], srv.modes[path] = new, "ignore_if_range"
        got = download(Archive(srv.url(path)), tmp_path, log=lines.append, **FAST)
        assert [r for _, r in srv.requests[1:]] == [f"bytes={len(old) // 2}-", None]  # the tail, then all of it
    assert got.read_bytes() == new
    assert any("file changed since the partial download" in line for line in lines)
