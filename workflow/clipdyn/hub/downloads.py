"""Datasets that are not on the Hub: plain HTTP(S) archives with a pinned checksum.

:func:`download` fetches one URL into a file, and is careful in the ways a long
download over a flaky link needs:

* **resume**: bytes arrive in ``<file>.part``; an interrupted transfer (a dropped
  connection, a killed job) continues from there with an HTTP ``Range`` request on
  the next attempt or the next run, sent with ``If-Range`` (the ETag or
  Last-Modified of the response that started the part, kept in
  ``<file>.part.json``), so a file that changed meanwhile is sent whole and never
  spliced; a server that ignores ``Range``, or a part with no validator, is read
  again from the start;
* **one writer**: processes sharing the download folder (two runs of one
  checkout) take turns on a file through ``<file>.lock``; the second finds the
  first's finished file;
* **checksum**: the sha256 or md5 the config pins (as the publisher's own code
  pins it) is checked before the file is renamed into place; where no publisher
  pins one, the sha256 of the first complete download is recorded next to the file
  (``<file>.sha256``, trust on first use) and every later download must match it;
  a download whose size the server did not announce is never recorded (its end
  may be a dropped connection); a file verified before is checked again when the
  config's pins change;
* **clear errors**: a 404, an HTML page where an archive was expected (a login,
  moved or error page), a body shorter than announced, a wrong checksum: each
  raises :class:`DownloadError` naming the URL and what to do; nothing is
  extracted from a file that failed, and a file with the wrong content is deleted;
* **progress**: a line in the job log at least every ``progress_s`` seconds with
  the bytes so far, the rate and the time left.

Snakemake's HTTP storage plugin (``snakemake-storage-plugin-http``) was not used:
its ``retrieve_object`` streams the body into the file with no status check (a 404
or an HTML page is stored as if it were the archive), restarts from zero every time
(no ``Range``), checks no checksum and logs no progress (``config/README.md``).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from ..atomic import atomic_path, file_lock, publish
from ..progress import LogProgress, human_bytes

__all__ = ["DownloadError", "Archive", "download", "file_name"]

_CHUNK = 1 << 20
_HASHES = ("sha256", "md5")


class DownloadError(RuntimeError):
    """A download failed; the message names the URL and what to do."""


@dataclass(frozen=True)
class Archive:
    """One archive of a dataset: where it is and the checksum its publisher pins (if any)."""

    url: str
    sha256: Optional[str] = None
    md5: Optional[str] = None
    file: Optional[str] = None

    @classmethod
    def from_config(cls, entry: dict) -> "Archive":
        return cls(url=entry["url"], sha256=(entry.get("sha256") or None), md5=(entry.get("md5") or None),
                   file=entry.get("file"))

    @property
    def name(self) -> str:
        return self.file or file_name(self.url)


def file_name(url: str) -> str:
    """The last path component of ``url`` (``.../v0.1/cue-conflict.tar.gz`` -> ``cue-conflict.tar.gz``)."""
    name = Path(urlparse(url).path).name
    if not name:
        raise DownloadError(f"{url}: the URL names no file; give the archive a `file:` name in the config")
    return name


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _what_to_do_html(url: str) -> str:
    return (f"{url}: the server answered with an HTML page, not the archive (a login, error or \"moved\" page). "
            "Open the URL in a browser: if the file moved, put its new URL in the config's `archives`; "
            "if it needs a login, download it by hand and use `path:` instead.")


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip()[:64].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in start


def _open(url: str, offset: int, timeout: float, validator: Optional[str] = None):
    req = urllib.request.Request(url, headers={"User-Agent": "clipdyn", "Accept-Encoding": "identity"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
        req.add_header("If-Range", validator)  # a changed file is sent whole (200), never spliced
    return urllib.request.urlopen(req, timeout=timeout)


def _validator(headers) -> Optional[str]:
    """What ``If-Range`` can send back for this response: a strong ETag, else Last-Modified (None: neither)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None


def _same_version(validator: str, headers) -> bool:
    """Whether a 206 answer still comes from the version ``validator`` names (as far as it says)."""
    got = headers.get("ETag") if validator.startswith('"') else headers.get("Last-Modified")
    return got is None or got == validator


def _discard(part: Path) -> None:
    """Delete a partial download and its resume record."""
    part.unlink(missing_ok=True)
    part.with_name(part.name + ".json").unlink(missing_ok=True)


def _read_state(state: Path, url: str) -> Optional[str]:
    """The validator recorded when ``<file>.part`` was started from ``url`` (None: it cannot be resumed)."""
    try:
        rec = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    return rec.get("validator") if rec.get("url") == url else None


def _http_error(url: str, err: urllib.error.HTTPError) -> DownloadError:
    if err.code == 404 or err.code == 410:
        return DownloadError(f"{url}: HTTP {err.code} ({err.reason}): the file is not there. Check the URL in the "
                             "config's `archives` (a typo, or the publisher moved or removed it); if it moved, put "
                             "its new URL there.")
    if err.code in (401, 403):
        return DownloadError(f"{url}: HTTP {err.code} ({err.reason}): the server refuses the download. Open the URL "
                             "in a browser; if it needs a login or terms accepted, download it by hand and use "
                             "`path:` instead.")
    return DownloadError(f"{url}: HTTP {err.code} ({err.reason})")


def _transient(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code == 429
    return isinstance(err, (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                            TimeoutError, _Short))


class _Short(Exception):
    """The body ended before the announced length (a dropped connection)."""


def _fetch_once(url: str, part: Path, progress_s: float, timeout: float,
                log: Callable[[str], None]) -> bool:
    """One HTTP request: continue ``part`` from its size (Range + If-Range) or start it over; raise on a short
    body. Returns whether the size is known to be complete (announced by the server and reached).

    ``<file>.part.json`` records the URL and the validator (ETag or Last-Modified) of the response that
    started ``part``; a part without one is not resumed (its bytes may come from another version)."""
    state = part.with_name(part.name + ".json")
    validator = _read_state(state, url) if part.exists() else None
    offset = part.stat().st_size if part.exists() and validator else 0
    if part.exists() and not offset and part.stat().st_size:
        log(f"{url}: {part} was not started by this URL with a validator (ETag or Last-Modified) that a resume "
            "could check; starting over")
    try:
        resp = _open(url, offset, timeout, validator)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send, or a stale .part: start over
            _discard(part)
            log(f"{url}: the server refused to resume at byte {offset} (HTTP 416); starting over")
            resp = _open(url, 0, timeout)
            offset = 0
        else:
            raise
    with resp:
        status = resp.status
        if offset and status != 206:
            log(f"{url}: the server does not resume, or the file changed since the partial download (HTTP {status} "
                "to a Range request with If-Range); starting over")
            offset = 0
        if offset and not _same_version(validator, resp.headers):  # a server that ignored If-Range
            _discard(part)
            raise _Short(f"the file changed since the partial download (it was {validator}); the partial file "
                         "was deleted")
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if "text/html" in ctype:
            raise DownloadError(_what_to_do_html(url))
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if status == 206:
            crange = resp.headers.get("Content-Range", "")  # bytes start-end/total
            try:
                start = int(crange.split()[1].split("-")[0])
                size = crange.rsplit("/", 1)[1]
                total = int(size) if size != "*" else total
            except (IndexError, ValueError):
                start = -1
            if start != offset:
                raise DownloadError(f"{url}: asked to resume at byte {offset}, the server sent {crange!r}; delete "
                                    f"{part} and run again")
        if offset:
            log(f"{url}: resuming at {human_bytes(offset)}" + (f" of {human_bytes(total)}" if total else ""))
        else:
            new = _validator(resp.headers)
            if new:
                _write_json(state, {"url": url, "validator": new})
            else:
                state.unlink(missing_ok=True)
        done = offset
        first = True
        with LogProgress(total=total, initial=offset, unit="B", label=url, every=progress_s, log=log) as progress, \
                open(part, "ab" if offset else "wb") as out:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except http.client.IncompleteRead as err:
                    out.write(err.partial)
                    done += len(err.partial)
                    raise _Short(f"the connection closed at byte {done}"
                                 + (f" of {total}" if total else "")) from err
                if not chunk:
                    break
                if first and not offset and _looks_like_html(chunk[:512]):
                    raise DownloadError(_what_to_do_html(url))
                first = False
                out.write(chunk)
                done += len(chunk)
                progress.update(len(chunk))
        if total is not None and done < total:
            raise _Short(f"the connection closed at byte {done} of {total}")
        if total is not None and done > total:
            _discard(part)
            raise DownloadError(f"{url}: received {done} bytes, more than the {total} announced; the partial file "
                                "was deleted, run again")
        return total is not None


def _check(url: str, part: Path, archive: Archive, record: Path, log: Callable[[str], None],
           complete: bool = True) -> str:
    """Check the finished download against the pinned checksum (or the recorded one); returns its sha256.

    ``complete``: its size is known to be whole (announced by the server, or the file was checked before); a
    download whose end was only the connection closing is never recorded as the trusted version."""
    sha256 = _hash_file(part, "sha256")
    pins = [("sha256", archive.sha256, sha256)]
    if archive.md5:
        pins.append(("md5", archive.md5, _hash_file(part, "md5")))
    for algo, want, got in pins:
        if want and want.lower() != got:
            _discard(part)
            raise DownloadError(
                f"{url}: {algo} of the download is {got}, the config pins {want.lower()}. The file was deleted "
                "(nothing was extracted). Either the publisher changed the file or the download was corrupted: run "
                "again; if it fails again and you trust the new file, put its checksum in the config's `archives`.")
    if archive.sha256 or archive.md5:
        return sha256
    if record.exists():
        known = json.loads(record.read_text())
        if known.get("sha256") != sha256:
            _discard(part)
            raise DownloadError(
                f"{url}: the file differs from the first download (sha256 {sha256}, recorded {known.get('sha256')} in "
                f"{record} on first use). The new file was deleted and nothing was extracted. If the publisher "
                f"updated it and you trust the new version, delete {record} (or pin `sha256:` in the config) and run "
                "again.")
        return sha256
    if not complete:
        log(f"{url}: WARNING: the server announced no size, so a connection closed early cannot be told from the "
            f"end of the file; its sha256 {sha256} is NOT recorded as the trusted version. Pin it (`sha256:` in the "
            "config's `archives`) once you have checked the file.")
        return sha256
    _write_json(record, {"url": url, "sha256": sha256, "size": part.stat().st_size,
                         "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "note": "trust on first use: no checksum is published for this file"})
    log(f"{url}: no checksum is published; recorded sha256 {sha256} in {record} (trust on first use: a later "
        f"download with other content is refused). To pin it, add `sha256: {sha256}` to the archive in the config.")
    return sha256


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))


def _pins(archive: Archive) -> dict:
    return {"sha256": (archive.sha256 or "").lower() or None, "md5": (archive.md5 or "").lower() or None}


def download(archive: Archive, folder: os.PathLike, *, progress_s: float = 10.0, timeout: float = 60.0,
             attempts: int = 4, base_delay: float = 2.0, log: Callable[[str], None] = print) -> Path:
    """Download ``archive`` into ``folder`` (resumable) and check its checksum; returns the file.

    A file already there that passed the check before (``<file>.ok`` holds its URL, size,
    mtime, sha256 and the checksums pinned then) is returned at once, unless the pins changed
    (it is then checked again). Transient failures (a dropped connection, a timeout, HTTP
    5xx/429) are retried ``attempts`` times with exponential backoff, each retry resuming
    where the last stopped; refusals (404, 401/403, an HTML page, a wrong checksum) fail at
    once. Processes sharing ``folder`` take turns on a file (``<file>.lock``): the second
    waits for the first, then finds its finished file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / archive.name
    with file_lock(dest, lambda: log(f"{archive.url}: another process is downloading {dest}; waiting for it")):
        return _download_locked(archive, dest, progress_s=progress_s, timeout=timeout, attempts=attempts,
                                base_delay=base_delay, log=log)


def _download_locked(archive: Archive, dest: Path, *, progress_s: float, timeout: float, attempts: int,
                     base_delay: float, log: Callable[[str], None]) -> Path:
    url = archive.url
    part = dest.with_name(dest.name + ".part")
    ok = dest.with_name(dest.name + ".ok")
    record = dest.with_name(dest.name + ".sha256")
    pins = _pins(archive)
    if dest.exists() and ok.exists():
        st = dest.stat()
        try:
            seen = json.loads(ok.read_text())
        except ValueError:
            seen = {}
        if (seen.get("size") == st.st_size and seen.get("mtime") == st.st_mtime and seen.get("url") == url
                and seen.get("pins") == pins):
            return dest
    if dest.exists():  # present but unverified (an older run, a hand copy, other pins): check it like a download
        ok.unlink(missing_ok=True)
        os.replace(dest, part)
        part.with_name(part.name + ".json").unlink(missing_ok=True)  # not resumable: it is whole, or it is wrong
        try:
            sha256 = _check(url, part, archive, record, log)
        except DownloadError as err:
            log(f"{url}: the file already in {dest.parent} fails the check ({err}); downloading it again")
        else:
            return _finish(part, dest, ok, url, sha256, pins)
    complete = False
    for attempt in range(1, attempts + 1):
        try:
            complete = _fetch_once(url, part, progress_s, timeout, log)
            break
        except urllib.error.HTTPError as err:
            if not _transient(err):
                raise _http_error(url, err) from None
            why = f"HTTP {err.code} ({err.reason})"
        except DownloadError:
            raise
        except Exception as err:
            if not _transient(err):
                raise DownloadError(f"{url}: {type(err).__name__}: {err}") from err
            why = f"{type(err).__name__}: {err}"
        got = part.stat().st_size if part.exists() else 0
        if attempt == attempts:
            raise DownloadError(
                f"{url}: download failed after {attempts} attempts ({why}); {human_bytes(got)} are kept in {part}. "
                "The server or the network is unavailable: run the same command again later and it resumes from "
                "there.")
        delay = base_delay * 2 ** (attempt - 1)
        log(f"{url}: {why}; {human_bytes(got)} so far, retrying in {delay:.0f} s (attempt {attempt}/{attempts})")
        time.sleep(delay)
    sha256 = _check(url, part, archive, record, log, complete=complete)
    return _finish(part, dest, ok, url, sha256, pins)


def _finish(part: Path, dest: Path, ok: Path, url: str, sha256: str, pins: dict) -> Path:
    part.with_name(part.name + ".json").unlink(missing_ok=True)
    publish(part, dest)
    st = dest.stat()
    _write_json(ok, {"url": url, "size": st.st_size, "mtime": st.st_mtime, "sha256": sha256, "pins": pins})
    return dest


def fetch_archives(archives, download_dir: os.PathLike, extract_dir: os.PathLike, *, dataset: str = "",
                   log: Callable[[str], None] = print, **kwargs) -> tuple[Path, list]:
    """Download every archive of a dataset, extract each (safely, atomically) and join them in one folder.

    Returns ``(folder, records)``: ``extract_dir/files/`` holds the top-level entries of
    every archive (links into ``extract_dir/extracted/<archive>/``; folders present in
    several archives, such as MIT1003's two zips, are merged), so the format reader sees
    the layout one gets by unpacking them all in one place. A file that is not an
    archive (a CSV, say) is linked as it is. Nothing is extracted from a download that
    failed its checks.
    """
    from .archives import safe_extract

    download_dir, extract_dir = Path(download_dir), Path(extract_dir)
    archives = [a if isinstance(a, Archive) else Archive.from_config(a) for a in archives]
    names = [a.name for a in archives]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DownloadError(f"dataset {dataset}: two archives are saved as {dupes}; give them distinct `file:` names")
    sources, records = [], []
    for a in archives:
        path = download(a, download_dir, log=log, **kwargs)
        sha256 = json.loads(path.with_name(path.name + ".ok").read_text())["sha256"]
        records.append({"url": a.url, "file": str(path), "size": path.stat().st_size, "sha256": sha256})
        try:
            sources.append(safe_extract(path, extract_dir / "extracted" / a.name, sha256=sha256))
        except ValueError as err:
            if "not a .tar" not in str(err):
                raise
            sources.append(path)  # a plain file: used as it is
    files = extract_dir / "files"
    tmp = extract_dir / f".files.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for src in sources:
        _merge(src, tmp, dataset)
    if files.exists() or files.is_symlink():
        old = extract_dir / f".files.old{os.getpid()}"
        os.rename(files, old)
        publish(tmp, files)
        shutil.rmtree(old)
    else:
        publish(tmp, files)
    return files, records


def _merge(src: Path, dest: Path, dataset: str) -> None:
    """Link the entries of ``src`` (a folder, or one file) into the folder ``dest``, merging folders."""
    from .archives import MARKER

    entries = [src] if src.is_file() else [p for p in sorted(src.iterdir()) if p.name != MARKER]
    for entry in entries:
        target = dest / entry.name
        if not (target.exists() or target.is_symlink()):
            target.symlink_to(os.path.relpath(entry, dest))
        elif entry.is_dir() and target.is_dir():
            if target.is_symlink():  # first seen as a link: make it a real folder holding both
                first = Path(os.path.realpath(target))
                target.unlink()
                target.mkdir()
                _merge(first, target, dataset)
            _merge(entry, target, dataset)
        else:
            raise DownloadError(f"dataset {dataset}: two archives both hold {entry.name!r} "
                                f"(in {os.path.realpath(target)} and {entry}); they cannot be unpacked in one place")
