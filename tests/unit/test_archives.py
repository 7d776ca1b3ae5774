"""clipdyn.hub.archives.safe_extract: normal archives, malicious members, atomicity, idempotence."""

import io
import json
import os
import tarfile
import zipfile

import pytest

from clipdyn.hub import archives
from clipdyn.hub.archives import MARKER, UnsafeArchiveError, safe_extract


def _tar(path, members, mode="w:gz"):
    """members: list of (name, bytes) files, or TarInfo objects (links, dirs)."""
    with tarfile.open(path, mode) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _link(name, target, hard=False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("suffix,mode", [(".tgz", "w:gz"), (".tar.gz", "w:gz"), (".tar", "w")])
def test_extracts_tar_variants(tmp_path, suffix, mode):
    arc = _tar(tmp_path / f"data{suffix}", [("tid2013/reference_images/I01.BMP", b"ref"),
                                            ("tid2013/distorted_images/i01_01_1.bmp", b"dist")], mode)
    dest = safe_extract(arc, tmp_path / "out")
    assert (dest / "tid2013/reference_images/I01.BMP").read_bytes() == b"ref"
    assert (dest / "tid2013/distorted_images/i01_01_1.bmp").read_bytes() == b"dist"
    assert (dest / MARKER).is_file()
    assert _leftovers(tmp_path) == []


def test_extracts_zip(tmp_path):
    arc = tmp_path / "d.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("nights/data.csv", "id\n0\n")
        zf.writestr("nights/ref/", "")
    dest = safe_extract(arc, tmp_path / "out")
    assert (dest / "nights/data.csv").read_text() == "id\n0\n"
    assert (dest / "nights/ref").is_dir()


def _zip_link(zf, name, target):
    link = zipfile.ZipInfo(name)
    link.external_attr = (0o120777 << 16)
    zf.writestr(link, target)


def _outside_files(tmp_path):
    """Every file the archive's members would have written, wherever they landed."""
    return {p for p in tmp_path.rglob("*") if p.is_file() and "pwned" in p.name}


@pytest.mark.parametrize("links", [
    [("a", "."), ("a/a/b", "../..")],  # chained: each lexically inside, together two levels up
    [("inside", "data.csv")],  # even a link that stays inside: none is created
    [("l1", "l2"), ("l2", "..")],  # a link to a link
], ids=["chained", "inside", "link-to-link"])
def test_refuses_zip_links_and_writes_nothing_through_them(tmp_path, links):
    arc = tmp_path / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("data.csv", "x")
        for name, target in links:
            _zip_link(zf, name, target)
        zf.writestr("b/pwned.txt", "owned")
        zf.writestr("l1/pwned.txt", "owned")
    with pytest.raises(UnsafeArchiveError, match="link") as err:
        safe_extract(arc, tmp_path / "work" / "out")
    assert err.value.member == links[0][0] and "bad.zip" in str(err.value)
    assert not _outside_files(tmp_path) and not (tmp_path / "work" / "out").exists()
    assert _leftovers(tmp_path / "work") == []


@pytest.mark.parametrize("links", [
    [_link("a", "."), _link("a/a/b", "../..")],
    [_link("l1", "l2"), _link("l2", "..")],
    [_link("hard", "data.csv", hard=True)],
    [_link("inside", "data.csv")],
], ids=["chained", "link-to-link", "hard-inside", "inside"])
def test_refuses_tar_links_and_writes_nothing_through_them(tmp_path, links):
    arc = _tar(tmp_path / "bad.tgz", [("data.csv", b"x"), *links, ("b/pwned.txt", b"owned"),
                                     ("l1/pwned.txt", b"owned")])
    with pytest.raises(UnsafeArchiveError, match="link") as err:
        safe_extract(arc, tmp_path / "work" / "out")
    assert err.value.member == links[0].name and "bad.tgz" in str(err.value)
    assert not _outside_files(tmp_path) and not (tmp_path / "work" / "out").exists()
    assert _leftovers(tmp_path / "work") == []


def test_zip_bomb_is_refused_before_writing(tmp_path):
    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("small.txt", "x")
        zf.writestr("zeros.bin", b"\0" * 20_000_000)  # 20 MB in ~20 KB
    assert arc.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="bomb") as err:
        safe_extract(arc, tmp_path / "out", max_bytes=10_000_000)
    assert err.value.member == "zeros.bin"
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    with pytest.raises(UnsafeArchiveError, match="more than 1 members"):
        safe_extract(arc, tmp_path / "out", max_members=1)
    assert archives.MAX_BYTES >= 10**11 and archives.MAX_MEMBERS >= 10**6  # the defaults fit real datasets


def test_tar_bomb_is_refused_before_writing(tmp_path):
    arc = _tar(tmp_path / "bomb.tgz", [("small.txt", b"x"), ("zeros.bin", b"\0" * 20_000_000)])
    assert arc.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="bomb") as err:
        safe_extract(arc, tmp_path / "out", max_bytes=10_000_000)
    assert err.value.member == "zeros.bin"
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_tar_without_extraction_filters(tmp_path, monkeypatch):
    """Python 3.11.2's tarfile has no ``extractall(filter=...)``; extraction must not need it."""
    def no_filter(self, *a, filter=None, **k):  # noqa: A002 (tarfile's own name)
        if filter is not None:
            raise TypeError("extractall() got an unexpected keyword argument 'filter'")
        raise AssertionError("extractall (with no filter) follows links and keeps modes: never used")

    monkeypatch.setattr(tarfile.TarFile, "extractall", no_filter)
    monkeypatch.setattr(tarfile.TarFile, "extract", no_filter)
    for name in ("data_filter", "tar_filter", "fully_trusted_filter"):
        monkeypatch.delattr(tarfile, name, raising=False)
    arc = _tar(tmp_path / "d.tgz", [("tid2013/a.bmp", b"a"), ("tid2013/b.bmp", b"bb")])
    dest = safe_extract(arc, tmp_path / "out")
    assert (dest / "tid2013/a.bmp").read_bytes() == b"a" and (dest / "tid2013/b.bmp").read_bytes() == b"bb"


def test_suffixless_blob_is_sniffed(tmp_path):
    arc = _tar(tmp_path / "blob", [("a.txt", b"x")])  # HF blobs have no suffix
    assert (safe_extract(arc, tmp_path / "out") / "a.txt").read_bytes() == b"x"


@pytest.mark.parametrize("member,reason", [
    (("/etc/evil", b"x"), "absolute"),
    (("../evil", b"x"), "'..'"),
    (("ok/../../evil", b"x"), "'..'"),
    (_link("ok/link", "../../outside"), "symbolic link"),
    (_link("ok/link", "/etc/passwd"), "symbolic link"),
    (_link("hard", "../x", hard=True), "hard link"),
])
def test_refuses_malicious_tar_members(tmp_path, member, reason):
    arc = _tar(tmp_path / "bad.tgz", [("fine.txt", b"x"), member])
    with pytest.raises(UnsafeArchiveError, match=reason) as err:
        safe_extract(arc, tmp_path / "out")
    name = member.name if isinstance(member, tarfile.TarInfo) else member[0]
    assert err.value.member == name and name in str(err.value)
    assert not (tmp_path / "out").exists(), "nothing is written when a member is refused"
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    assert _leftovers(tmp_path) == []


def test_refuses_device_members(tmp_path):
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    arc = _tar(tmp_path / "bad.tar", [fifo], "w")
    with pytest.raises(UnsafeArchiveError, match="special"):
        safe_extract(arc, tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "a/../../evil", "C:/evil"])
def test_refuses_malicious_zip_names(tmp_path, name):
    arc = tmp_path / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("fine.txt", "x")
        zf.writestr(zipfile.ZipInfo(name), "boom")  # ZipInfo keeps the name as given
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path) == []
    assert err.value.member


def test_refuses_zip_symlink_outside(tmp_path):
    arc = tmp_path / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        _zip_link(zf, "link", "../../etc")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(arc, tmp_path / "out")


def test_idempotent_second_call_does_nothing(tmp_path, monkeypatch):
    arc = _tar(tmp_path / "d.tgz", [("a.txt", b"x")])
    dest = safe_extract(arc, tmp_path / "out")
    (dest / "a.txt").write_bytes(b"edited")  # proves the second call does not re-extract

    def boom(*a, **k):
        raise AssertionError("re-extracted")

    monkeypatch.setattr(archives.tarfile, "open", boom)
    assert safe_extract(arc, tmp_path / "out") == dest
    assert (dest / "a.txt").read_bytes() == b"edited"


def test_partial_or_other_extraction_is_replaced(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "half.txt").write_bytes(b"from a killed job")  # no marker: incomplete
    arc = _tar(tmp_path / "d.tgz", [("a.txt", b"x")])
    safe_extract(arc, dest)
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "a.txt"]
    # a different archive (other size) at the same destination replaces it too
    arc2 = _tar(tmp_path / "d.tgz", [("b.txt", b"yy" * 100)])
    safe_extract(arc2, dest)
    assert (dest / "b.txt").is_file() and not (dest / "a.txt").exists()
    assert _leftovers(tmp_path) == []


def test_same_size_other_archive_is_extracted_again(tmp_path):
    """The marker records the archive's sha256: a replaced archive of the same size is not taken for the old one."""
    arc = _tar(tmp_path / "d.tar", [("a.txt", b"old")], "w")
    dest = safe_extract(arc, tmp_path / "out")
    size = arc.stat().st_size
    _tar(arc, [("a.txt", b"new")], "w")
    assert arc.stat().st_size == size
    safe_extract(arc, dest)
    assert (dest / "a.txt").read_bytes() == b"new"
    # a sha256 given by the caller (a download just checked) is the one recorded
    import hashlib
    sha = hashlib.sha256(arc.read_bytes()).hexdigest()
    assert json.loads((dest / MARKER).read_text())["sha256"] == sha
    assert safe_extract(arc, dest, sha256=sha.upper()) == dest


def test_failure_mid_extraction_leaves_no_destination(tmp_path, monkeypatch):
    arc = _tar(tmp_path / "d.tgz", [("a.txt", b"x")])

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(archives, "_write_member", fail)
    with pytest.raises(OSError, match="disk full"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path) == []


def test_missing_and_unknown_archives(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_extract(tmp_path / "nope.tgz", tmp_path / "out")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a .tar"):
        safe_extract(junk, tmp_path / "out")


def _python_without_tar_filters():
    """A Python >= 3.10 on this machine whose tarfile lacks extractall(filter=...) (Debian 12's 3.11.2), or None."""
    import shutil
    import subprocess

    probe = ("import sys, tarfile; ok = sys.version_info >= (3, 10) and "
             "'filter' not in tarfile.TarFile.extractall.__code__.co_varnames; sys.exit(0 if ok else 1)")
    for exe in ("/usr/bin/python3", shutil.which("python3.10"), shutil.which("python3.11")):
        if exe and os.path.exists(exe) and subprocess.run([exe, "-c", probe]).returncode == 0:
            return exe
    return None


def test_tar_extraction_on_a_real_python_without_filters(tmp_path):
    """The same extraction, run by a real interpreter whose tarfile predates the filters."""
    import subprocess
    from pathlib import Path

    exe = _python_without_tar_filters()
    if exe is None:
        pytest.skip("no Python >= 3.10 without tarfile's extraction filters on this machine (Debian 12's "
                    "/usr/bin/python3 is one)")
    arc = _tar(tmp_path / "d.tgz", [("tid2013/a.bmp", b"a")])
    code = ("import sys; from clipdyn.hub.archives import safe_extract; "
            "print((safe_extract(sys.argv[1], sys.argv[2]) / 'tid2013/a.bmp').read_text())")
    workflow = Path(archives.__file__).resolve().parents[2]  # workflow/: where clipdyn is importable from
    proc = subprocess.run([exe, "-c", code, str(arc), str(tmp_path / "out")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(workflow)))
    assert proc.returncode == 0 and proc.stdout.strip() == "a", proc.stderr
