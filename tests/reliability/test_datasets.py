"""Bad dataset files through the data rule's own entry point (clipdyn.data.manifests.prepare_manifest, what
`rule prepare_manifest` runs): a CSV without a needed column, and archives with members that
would land outside the extraction folder. The adapters' and safe_extract's own unit tests are in
tests/unit; these check that the workflow path stops with the same message and writes nothing.
(Missing and corrupt images are run through the real workflow in test_workflow_faults.py.)"""

import io
import tarfile

import numpy as np
import pytest

from clipdyn.data.formats import DatasetFormatError
from clipdyn.data.manifests import prepare_manifest
from clipdyn.fixtures import writers
from clipdyn.hub.archives import UnsafeArchiveError


def _prepare(tmp_path, folder, fmt, extract=(), options=None):
    out = tmp_path / "results" / "data" / "ds"
    kwargs = dict(snapshot={"path": str(folder), "repo": "org/ds", "revision": "main", "commit": "c" * 40},
                  fmt=fmt, root="", extract=list(extract), extract_dir=str(out / "extracted"),
                  options=options or {}, subset=None, subset_seed=0, out_manifest=str(out / "manifest.parquet"),
                  out_trials=str(out / "trials.parquet"), dataset="ds")
    return out, kwargs


def _nights(root):
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)  # noqa: E731
    writers.write_nights(root, [{"ref": img(), "left": img(), "right": img(), "left_vote": 0.7,
                                 "right_vote": 0.3, "split": "test", "is_imagenet": True, "prompt": "x"}
                                for _ in range(3)])


def test_csv_missing_a_column_names_file_and_column(tmp_path):
    snap = tmp_path / "snapshot"
    _nights(snap)
    csv = snap / "data.csv"
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != 2) for line in csv.read_text().splitlines()]
    assert "right_vote" not in lines[0]
    csv.write_text("\n".join(lines) + "\n")
    out, kwargs = _prepare(tmp_path, snap, "nights")
    with pytest.raises(DatasetFormatError) as err:
        prepare_manifest(**kwargs)
    msg = str(err.value)
    assert str(csv) in msg and "missing column(s) ['right_vote']" in msg
    assert not (out / "manifest.parquet").exists() and not (out / "trials.parquet").exists()


def _tgz(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("member, reason", [
    (("tid2013/../../../escaped.txt", b"x"), "'..'"),
    (("/tmp/clipdyn-absolute-escape.txt", b"x"), "absolute path"),
    (_symlink("tid2013/reference_images/I01.BMP", "../../../../../etc/passwd"), "symbolic link"),
    (_symlink("tid2013/link", "/etc/passwd"), "symbolic link"),
], ids=["dotdot", "absolute", "link-outside", "link-absolute"])
def test_unsafe_archive_refused_on_the_workflow_path(tmp_path, member, reason):
    """The config's `extract:` list goes through safe_extract; nothing is written anywhere."""
    snap = tmp_path / "snapshot"
    snap.mkdir()
    _tgz(snap / "tid2013.tgz", [("tid2013/reference_images/I02.BMP", b"ok"), member])
    out, kwargs = _prepare(tmp_path, snap, "iqa_tid2013", extract=["tid2013.tgz"])
    before = {p for p in tmp_path.rglob("*") if not p.is_dir()}
    with pytest.raises(UnsafeArchiveError) as err:
        prepare_manifest(**kwargs)
    msg = str(err.value)
    name = member[0] if isinstance(member, tuple) else member.name
    assert "tid2013.tgz" in msg and repr(name) in msg and reason in msg
    assert {p for p in tmp_path.rglob("*") if not p.is_dir()} == before  # no file extracted, no manifest
    assert not [p for p in (out / "extracted").iterdir()]  # no temp or destination folder left
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_unsafe_archive_refused_when_the_adapter_extracts(tmp_path):
    """iqa adapters unpack their archive themselves (no `extract:` key): same refusal."""
    snap = tmp_path / "snapshot"
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    writers.write_iqa(snap, "tid2013", {"I01.BMP": ref}, [("I01.BMP", "i01_01_1.bmp", ref, 5.0)])
    _tgz(snap / "tid2013.tgz", [("tid2013/reference_images/I01.BMP", b"x"), ("../evil.sh", b"rm -rf ~")])
    out, kwargs = _prepare(tmp_path, snap, "iqa_tid2013")
    with pytest.raises(UnsafeArchiveError, match=r"refusing member '\.\./evil\.sh': path contains '\.\.'"):
        prepare_manifest(**kwargs)
    assert not (out / "manifest.parquet").exists()
    assert not list(tmp_path.rglob("evil.sh"))
