"""Safe, atomic, idempotent extraction of downloaded archives (.tar, .tar.gz, .tgz, .zip).

Some dataset repos ship their images as one archive (``chaofengc/IQA-PyTorch-Datasets``
holds ``tid2013.tgz`` and ``kadid10k.tgz``). :func:`safe_extract` unpacks such an
archive once:

* every member is checked *before* anything is written: absolute paths, ``..``
  components, links whose target leaves ``dest``, and device/FIFO members are
  refused with an :class:`UnsafeArchiveError` naming the member;
* the archive is unpacked into a temporary sibling folder that is renamed to
  ``dest`` at the end, so a killed job never leaves a half-extracted folder that
  a later job would trust;
* a marker file (``.clipdyn_extracted.json``) records which archive (name, size)
  was extracted; a second call with the same archive returns at once.
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

from .atomic import publish

MARKER = ".clipdyn_extracted.json"

__all__ = ["safe_extract", "UnsafeArchiveError", "MARKER"]


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


def _check_link_target(archive: Path, name: str, target: str, relative_to_member: bool) -> None:
    """Refuse a link whose target is absolute or resolves outside dest.

    Symlink targets are relative to the link's own folder; tar hard-link targets
    are relative to the archive root.
    """
    posix = target.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UnsafeArchiveError(archive, name, f"link to absolute path {target!r}")
    base = PurePosixPath(name.replace("\\", "/")).parent if relative_to_member else PurePosixPath(".")
    depth = 0
    for part in (base / posix).parts:
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            raise UnsafeArchiveError(archive, name, f"link target {target!r} points outside the destination")


def _check_tar(archive: Path, tf: tarfile.TarFile) -> None:
    for m in tf.getmembers():
        _check_name(archive, m.name)
        if m.issym():
            _check_link_target(archive, m.name, m.linkname, relative_to_member=True)
        elif m.islnk():
            _check_link_target(archive, m.name, m.linkname, relative_to_member=False)
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(archive, m.name, "device, FIFO or other special member")


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        _check_name(archive, info.filename)
        if _zip_is_symlink(info):
            target = zf.read(info).decode("utf-8", "replace")
            _check_link_target(archive, info.filename, target, relative_to_member=True)


def _extract_zip(zf: zipfile.ZipFile, out: Path) -> None:
    for info in zf.infolist():
        rel = _check_name(Path(zf.filename or "?"), info.filename)
        target = out / rel
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if _zip_is_symlink(info):
            os.symlink(zf.read(info).decode("utf-8"), target)
            continue
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _identity(archive: Path) -> dict:
    st = archive.stat()  # follows the HF snapshot symlink to the blob
    return {"archive": archive.name, "size": st.st_size}


def _marker_ok(dest: Path, ident: dict) -> bool:
    marker = dest / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == ident
    except (OSError, ValueError):
        return False


def safe_extract(archive: os.PathLike, dest: os.PathLike) -> Path:
    """Extract ``archive`` into the folder ``dest`` (created), safely and once.

    Returns ``dest``. The archive's members land directly under ``dest`` (an
    archive holding ``tid2013/distorted_images/...`` gives
    ``dest/tid2013/distorted_images/...``). Raises :class:`UnsafeArchiveError`
    (naming the member) before writing anything if a member has an absolute
    path, a ``..`` component, is a link pointing outside ``dest``, or is a
    device/FIFO. If ``dest`` already holds a complete extraction of the same
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
    ident = _identity(archive)
    if _marker_ok(dest, ident):
        return dest

    kind = _archive_kind(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tf:
                _check_tar(archive, tf)
                # The "data" filter is a second line of defence (and drops
                # setuid bits and ownership); our own check names the member.
                tf.extractall(tmp, filter="data")
        else:
            with zipfile.ZipFile(archive) as zf:
                _check_zip(archive, zf)
                _extract_zip(zf, tmp)
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
