"""clipdyn.archives.safe_extract: normal archives, malicious members, atomicity, idempotence."""

import io
import os
import tarfile
import zipfile

import pytest

from clipdyn import archives
from clipdyn.archives import MARKER, UnsafeArchiveError, safe_extract


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


def test_extracts_zip_and_inside_symlink(tmp_path):
    arc = tmp_path / "d.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("nights/data.csv", "id\n0\n")
        zf.writestr("nights/ref/", "")
        link = zipfile.ZipInfo("nights/alias.csv")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "data.csv")
    dest = safe_extract(arc, tmp_path / "out")
    assert (dest / "nights/data.csv").read_text() == "id\n0\n"
    assert (dest / "nights/ref").is_dir()
    assert os.readlink(dest / "nights/alias.csv") == "data.csv"


def test_suffixless_blob_is_sniffed(tmp_path):
    arc = _tar(tmp_path / "blob", [("a.txt", b"x")])  # HF blobs have no suffix
    assert (safe_extract(arc, tmp_path / "out") / "a.txt").read_bytes() == b"x"


@pytest.mark.parametrize("member,reason", [
    (("/etc/evil", b"x"), "absolute"),
    (("../evil", b"x"), "'..'"),
    (("ok/../../evil", b"x"), "'..'"),
    (_link("ok/link", "../../outside"), "outside"),
    (_link("ok/link", "/etc/passwd"), "absolute"),
    (_link("hard", "../x", hard=True), "outside"),
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
        link = zipfile.ZipInfo("link")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "../../etc")
    with pytest.raises(UnsafeArchiveError, match="outside"):
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


def test_failure_mid_extraction_leaves_no_destination(tmp_path, monkeypatch):
    arc = _tar(tmp_path / "d.tgz", [("a.txt", b"x")])

    def fail(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tarfile.TarFile, "extractall", fail)
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
