"""Safe, atomic, idempotent extraction of downloaded archives (.tar, .tar.gz, .tgz, .zip).

Some dataset repos ship their images as one archive (``chaofengc/IQA-PyTorch-Datasets``
holds ``tid2013.tgz`` and ``kadid10k.tgz``). :func:`safe_extract` unpacks such an
archive once:

* every member is checked *before* anything is written: absolute paths, ``..``
  components, links (symbolic or hard: no dataset read here needs them, and a
  link created by one member could carry a later member's bytes out of ``dest``)
  and device/FIFO members are refused with an :class:`UnsafeArchiveError` naming
  the archive and the member; so is an archive of more than :data:`MAX_MEMBERS`
  members or :data:`MAX_BYTES` unpacked bytes (a decompression bomb);
* members are written one by one as new regular files (``O_NOFOLLOW``), never
  with ``tarfile``'s ``extractall`` (whose ``filter=`` is missing from some
  Python 3.10/3.11 releases, such as Debian 12's 3.11.2);
* the archive is unpacked into a temporary sibling folder that is renamed to
  ``dest`` at the end, so a killed job never leaves a half-extracted folder that
  a later job would trust;
* a marker file (``.clipdyn_extracted.json``) records which archive (name, size,
  sha256) was extracted; a second call with the same archive returns at once, and
  an archive replaced by another of the same size is extracted again.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional

from ..atomic import publish
from .client import sha256_file

MARKER = ".clipdyn_extracted.json"
#: Bounds on one archive (a decompression bomb fills the disk): members, and bytes once unpacked. The largest
#: archive a dataset here needs (an ImageNet-C corruption, ~250,000 JPEG files, a few GB) is far below both.
MAX_MEMBERS = 5_000_000
MAX_BYTES = 200 * 10**9

__all__ = ["safe_extract", "UnsafeArchiveError", "MARKER", "MAX_MEMBERS", "MAX_BYTES"]


class UnsafeArchiveError(ValueError):
    """An archive member would be written (or would point) outside the destination."""

    def __init__(self, archive, member: str, reason: str):
        self.archive = str(archive)
        self.member = member
        self.reason = reason
        super().__init__(f"{archive}: refusing member {member!r}: {reason}")


def _archive_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    # A Hugging Face blob has no suffix; look at the content.
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(f"{path}: not a .tar, .tar.gz, .tgz or .zip archive")


def _check_name(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to dest, or raise if it could leave dest."""
    if not name or name.strip() == "":
        raise UnsafeArchiveError(archive, name, "empty member name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UnsafeArchiveError(archive, name, "absolute path")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "path contains '..'")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")]) if parts else PurePosixPath(".")


def _check_tar(archive: Path, tf: tarfile.TarFile, max_members: int, max_bytes: int) -> list:
    """Every member checked before anything is written; returns them in archive order."""
    members, total = [], 0
    for m in tf:  # streams the index; stops at the first refusal or past the member bound
        _check_name(archive, m.name)
        if m.issym() or m.islnk():
            kind = "symbolic" if m.issym() else "hard"
            raise UnsafeArchiveError(archive, m.name, f"{kind} link (to {m.linkname!r}); archives holding links are "
                                     "not extracted (no dataset read here needs them)")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(archive, m.name, "device, FIFO or other special member")
        members.append(m)
        total += m.size if m.isfile() else 0
        _check_bounds(archive, m.name, len(members), total, max_members, max_bytes)
    return members


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_zip(archive: Path, zf: zipfile.ZipFile, max_members: int, max_bytes: int) -> list:
    infos, total = zf.infolist(), 0
    for n, info in enumerate(infos, 1):
        _check_name(archive, info.filename)
        mode = info.external_attr >> 16
        if _zip_is_symlink(info):
            raise UnsafeArchiveError(archive, info.filename, "symbolic link; archives holding links are not "
                                     "extracted (no dataset read here needs them)")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchiveError(archive, info.filename, "device, FIFO or other special member")
        total += info.file_size  # zipfile reads no more than this per member (and checks the CRC)
        _check_bounds(archive, info.filename, n, total, max_members, max_bytes)
    return infos


def _check_bounds(archive: Path, name: str, n: int, total: int, max_members: int, max_bytes: int) -> None:
    if n > max_members:
        raise UnsafeArchiveError(archive, name, f"more than {max_members} members (a decompression bomb?); "
                                 "nothing was extracted")
    if total > max_bytes:
        raise UnsafeArchiveError(archive, name, f"the members unpack to more than {max_bytes} bytes (a decompression "
                                 "bomb?); nothing was extracted")


def _check_space(archive: Path, out: Path, total: int) -> None:
    free = shutil.disk_usage(out).free
    if total > free:
        raise OSError(28, f"{archive}: unpacks to {total} bytes, {out.parent} has {free} free; nothing was "
                      "extracted. Free some space (or move the results folder) and run again")


def _write_member(archive: Path, name: str, src, target: Path, budget: list) -> None:
    """Copy one member's bytes into a new regular file (never through a link), counting them."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            budget[0] -= len(chunk)
            if budget[0] < 0:  # a header that lied about the size: the bound holds anyway
                raise UnsafeArchiveError(archive, name, "the members unpack to more bytes than their headers announce")
            dst.write(chunk)


def _dir(out: Path, rel: PurePosixPath) -> Path:
    target = out / rel
    target.mkdir(parents=True, exist_ok=True)
    return target


def _extract(archive: Path, members, out: Path, max_bytes: int) -> None:
    """Member by member (``(name, is_dir, open)`` each), every file written as a new file; for tars
    with no ``extractall(filter=...)`` (absent from Python 3.11.2's ``tarfile``)."""
    budget = [max_bytes]
    for name, is_dir, open_member in members:
        rel = _check_name(archive, name)
        _dir(out, rel if is_dir else rel.parent)
        if not is_dir:
            with open_member() as src:
                _write_member(archive, name, src, out / rel, budget)


def _identity(archive: Path, sha256: Optional[str]) -> dict:
    st = archive.stat()  # follows the HF snapshot symlink to the blob
    return {"archive": archive.name, "size": st.st_size, "sha256": (sha256 or sha256_file(archive)).lower()}


def _marker_ok(dest: Path, ident: dict) -> bool:
    marker = dest / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == ident
    except (OSError, ValueError):
        return False


def safe_extract(archive: os.PathLike, dest: os.PathLike, *, sha256: Optional[str] = None,
                 max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES) -> Path:
    """Extract ``archive`` into the folder ``dest`` (created), safely and once.

    Returns ``dest``. The archive's members land directly under ``dest`` (an
    archive holding ``tid2013/distorted_images/...`` gives
    ``dest/tid2013/distorted_images/...``). Raises :class:`UnsafeArchiveError`
    (naming the member) before writing anything if a member has an absolute
    path, a ``..`` component, is a link (symbolic or hard: none is ever created,
    so nothing is written through one) or a device/FIFO, or if the archive holds
    more than ``max_members`` members or unpacks to more than ``max_bytes`` bytes
    (a decompression bomb). If ``dest`` already holds a complete extraction of the same
    archive (same name and size, per the marker file) nothing is done; a
    different or incomplete one is replaced.

    Concurrency: two processes extracting the same archive each unpack into
    their own temporary folder; the first rename wins and the other discards its
    copy.
    """
    archive = Path(archive)
    dest = Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    ident = _identity(archive, sha256)
    if _marker_ok(dest, ident):
        return dest

    kind = _archive_kind(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tf:
                members = _check_tar(archive, tf, max_members, max_bytes)
                _check_space(archive, tmp, sum(m.size for m in members if m.isfile()))
                _extract(archive, [(m.name, m.isdir(), lambda m=m: tf.extractfile(m)) for m in members], tmp,
                         max_bytes)
        else:
            with zipfile.ZipFile(archive) as zf:
                infos = _check_zip(archive, zf, max_members, max_bytes)
                _check_space(archive, tmp, sum(i.file_size for i in infos))
                _extract(archive, [(i.filename, i.is_dir(), lambda i=i: zf.open(i)) for i in infos], tmp,
                         max_bytes)
        (tmp / MARKER).write_text(json.dumps(ident, sort_keys=True))

        if dest.exists():
            if _marker_ok(dest, ident):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return dest
            # A stale or partial folder: move it aside, then swap in the new one.
            trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rename(dest, trash / dest.name)
            publish(tmp, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                publish(tmp, dest)
            except OSError:
                if _marker_ok(dest, ident):  # lost a race to an identical extraction
                    shutil.rmtree(tmp, ignore_errors=True)
                    return dest
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
