"""A local Hugging Face Hub: serves the repos of a :class:`clipdyn.localhub.LocalHub` folder over HTTP.

With ``HF_ENDPOINT=<url>`` the unmodified ``huggingface_hub`` client lists, downloads and
resumes from it exactly as from huggingface.co, so tests and ``make demo-online`` run the
online code path (``HfApi`` listings, ``hf_hub_download`` and ``snapshot_download`` into an
empty cache) without the internet. It answers the requests ``huggingface_hub`` 2.x makes
(read from its ``hf_api.py``, ``file_download.py``, ``_snapshot_download.py``, ``utils/_http.py``
and ``utils/_pagination.py``):

- repo info ``GET /api/{models,datasets,spaces}/<repo>[/revision/<rev>]`` -> ``{"id", "sha",
  "siblings", ...}`` (``?blobs=True`` adds sizes and LFS metadata);
- tree ``GET /api/<type>s/<repo>/tree/<rev>[/<path>]?recursive=&expand=`` -> file entries with
  ``size``, ``oid`` (git blob id) and ``lfs: {oid: <sha256>, size, pointerSize}``, folder entries,
  paginated with a ``Link: <...>; rel="next"`` header as the Hub does (1000 entries a page);
- paths info ``POST /api/<type>s/<repo>/paths-info/<rev>`` (form field ``paths``);
- refs ``GET /api/<type>s/<repo>/refs`` -> ``branches``, ``tags``, ``converts``, ``pullRequests``;
- commits ``GET /api/<type>s/<repo>/commits/<rev>`` (from the commit log LocalHub keeps);
- resolve ``HEAD|GET /[datasets/|spaces/]<repo>/resolve/<rev>/<path>``: a small (git) file is
  answered directly with ``X-Repo-Commit``, ``ETag: "<git blob id>"`` and ``Content-Length``; an
  LFS file (binary, or over 10 MiB) with a 302 to a second, content-addressed "CDN" listener on
  another port carrying ``X-Repo-Commit``, ``X-Linked-Etag: "<sha256>"`` and ``X-Linked-Size``,
  like the Hub's redirect to its CDN (a different origin, so the client stops at the redirect,
  reads the metadata there and drops its token, as it does against huggingface.co). Both
  answer ``Range: bytes=N-`` with 206 (what ``http_get`` sends to resume a broken transfer).
- errors carry the Hub's ``X-Error-Code`` (``RepoNotFound`` as a 401, ``RevisionNotFound``,
  ``EntryNotFound`` as 404), so the client raises its own exception classes.

Every request reads the folder afresh: a commit published while the server runs (more
epochs) is served at once. Each request is recorded in :attr:`HubServer.requests` (and in
``--log`` as JSON lines), so tests can count listings and downloads.

The standard library's ``ThreadingHTTPServer`` is enough for this: a handful of endpoints,
no dependency to install, threads for concurrent downloads. A served repo may be private
(``tokens``) or gated, answered with the Hub's 401s.

CLI: ``python -m clipdyn.hubserver --root DIR [--port 0] [--url-file F] [--log F]`` prints the
URL and serves until interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs, quote, unquote, urlencode

from .atomic import atomic_path
from .localhub import META_DIR, repo_folder

#: URL prefix of each repo type in resolve URLs, and its folder prefix in the cache
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_KIND = {"models": "model", "datasets": "dataset", "spaces": "space"}
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: files above this size are LFS on the Hub whatever their content (its rule for uploads)
LFS_THRESHOLD = 10 * 1024 * 1024
PAGE_SIZE = 1000  # the Hub's page size for tree listings


@dataclass(frozen=True)
class Entry:
    """One file of a commit as the Hub describes it."""

    path: str
    size: int
    oid: str  # git blob id (of the LFS pointer for an LFS file)
    sha256: Optional[str]  # set for LFS files
    blob: Path

    @property
    def etag(self) -> str:
        return self.sha256 or self.oid

    def tree_json(self) -> dict:
        out = {"type": "file", "oid": self.oid, "size": self.size, "path": self.path}
        if self.sha256:
            out["lfs"] = {"oid": self.sha256, "size": self.size,
                          "pointerSize": len(_lfs_pointer(self.sha256, self.size))}
        return out


def _git_blob_id(data_len: int, chunks: Iterable[bytes]) -> str:
    h = hashlib.sha1(b"blob %d\0" % data_len)
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _read_chunks(path: Path, size: int = 1 << 20):
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(size), b""):
            yield chunk


class Repos:
    """Read-only view of a LocalHub folder: repos, refs, commits and the files of each commit."""

    def __init__(self, root: os.PathLike):
        self.root = Path(root)
        self._ids: Dict[Tuple[str, int, float], Tuple[str, Optional[str]]] = {}
        self._lock = threading.Lock()

    def folder(self, repo_type: str, repo_id: str) -> Optional[Path]:
        try:
            f = repo_folder(self.root, repo_id, repo_type)
        except ValueError:
            return None
        return f if (f / "refs").is_dir() or (f / "snapshots").is_dir() else None

    def find_repo(self, repo_type: str, parts: List[str]) -> Tuple[Optional[str], List[str]]:
        """Split URL segments into (repo id, rest): ``org/name`` if served, else a bare ``name``."""
        for n in (2, 1):
            if len(parts) >= n and self.folder(repo_type, "/".join(parts[:n])) is not None:
                return "/".join(parts[:n]), parts[n:]
        return None, parts

    def refs(self, folder: Path) -> Dict[str, str]:
        base = folder / "refs"
        out = {}
        for p in sorted(base.rglob("*")) if base.is_dir() else []:
            if p.is_file():
                sha = p.read_text().strip()
                if sha:
                    out[str(p.relative_to(base))] = sha
        return out

    def tags(self, folder: Path) -> List[str]:
        f = self.root / META_DIR / folder.name / "tags.json"
        return json.loads(f.read_text()) if f.exists() else []

    def commit_log(self, folder: Path) -> Dict[str, dict]:
        f = self.root / META_DIR / folder.name / "commits.jsonl"
        out = {}
        if f.exists():
            for line in f.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    out[rec["commit"]] = rec
        return out

    def resolve(self, folder: Path, revision: str) -> Optional[str]:
        if _HEX40.match(revision) and (folder / "snapshots" / revision).is_dir():
            return revision
        if ".." in revision.split("/"):
            return None
        return self.refs(folder).get(revision)

    def _ids_of(self, blob: Path) -> Tuple[str, Optional[str]]:
        """(git blob id, sha256 or None) of a blob: LFS if binary or large, as the Hub stores uploads."""
        st = blob.stat()
        key = (str(blob), st.st_size, st.st_mtime)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        name = blob.name
        if _HEX40.match(name):  # a blob of a real HF cache named by its git id: a regular git file
            ids = (name, None)
        else:
            with open(blob, "rb") as f:
                head = f.read(8000)
            lfs = st.st_size > LFS_THRESHOLD or b"\0" in head
            sha = name if _HEX64.match(name) else hashlib.sha256(b"".join(_read_chunks(blob))).hexdigest()
            if lfs:
                ids = (_git_blob_id(len(_lfs_pointer(sha, st.st_size)), [_lfs_pointer(sha, st.st_size)]), sha)
            else:
                ids = (_git_blob_id(st.st_size, _read_chunks(blob)), None)
        with self._lock:
            self._ids[key] = ids
        return ids

    def files(self, folder: Path, commit: str) -> Dict[str, Entry]:
        snap = folder / "snapshots" / commit
        out = {}
        for p in sorted(snap.rglob("*")):
            if p.is_symlink() or p.is_file():
                blob = Path(os.path.realpath(p))
                if not blob.is_file():
                    continue
                oid, sha = self._ids_of(blob)
                rel = p.relative_to(snap).as_posix()
                out[rel] = Entry(rel, blob.stat().st_size, oid, sha, blob)
        return out

    def blob_by_sha256(self, sha: str) -> Optional[Path]:
        if not _HEX64.match(sha):
            return None
        for f in self.root.glob(f"*--*/blobs/{sha}"):
            return f
        return None


def _tree_entries(files: Dict[str, Entry], path: str, recursive: bool) -> Optional[List[dict]]:
    """The Hub's tree listing under ``path`` (None if no such folder): folders first, then files."""
    prefix = path.strip("/") + "/" if path.strip("/") else ""
    if prefix and prefix.rstrip("/") in files:
        return [files[prefix.rstrip("/")].tree_json()]
    under = {p: e for p, e in files.items() if p.startswith(prefix)}
    if prefix and not under:
        return None
    dirs, out = set(), []
    for p in sorted(under):
        rest = p[len(prefix):].split("/")
        for i in range(1, len(rest)):
            d = prefix + "/".join(rest[:i])
            if recursive or i == 1:
                dirs.add(d)
        if recursive or len(rest) == 1:
            out.append(under[p].tree_json())
    folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "path": d} for d in sorted(dirs)]
    return folders + out


class HubServer:
    """Serve ``root`` (a LocalHub folder) on 127.0.0.1; use as a context manager or start()/stop().

    ``tokens``: if given, every repo needs ``Authorization: Bearer <one of them>`` (else 401
    as for a private repo); ``gated``: repo ids answered with the Hub's GatedRepo 401 unless
    a token is sent; ``page_size``: tree entries per page; ``truncate_once``: repo paths
    whose first GET body is cut off half-way (to exercise resuming with ``Range``);
    ``rate_bps``: send file bodies at about this many bytes a second (a slow link).
    """

    def __init__(self, root: os.PathLike, host: str = "127.0.0.1", port: int = 0, page_size: int = PAGE_SIZE,
                 tokens: Iterable[str] = (), gated: Iterable[str] = (), truncate_once: Iterable[str] = (),
                 log_file: Optional[os.PathLike] = None, rate_bps: Optional[float] = None):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"host {host!r}: the local Hub serves on the loopback interface only")
        self.repos = Repos(root)
        self.page_size = int(page_size)
        self.tokens = set(tokens)
        self.gated = set(gated)
        self.truncate_once = set(truncate_once)
        self.rate_bps = rate_bps
        self.requests: List[dict] = []
        self._req_lock = threading.Lock()
        self._log = open(log_file, "a") if log_file else None
        self.api = ThreadingHTTPServer((host, port), self._handler(cdn=False))
        self.cdn = ThreadingHTTPServer((host, 0), self._handler(cdn=True))
        for s in (self.api, self.cdn):
            s.daemon_threads = True
        self.url = f"http://{host}:{self.api.server_address[1]}"
        self.cdn_url = f"http://{host}:{self.cdn.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True, name=f"hubserver-{i}")
                         for i, s in enumerate((self.api, self.cdn))]

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "HubServer":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        for s in (self.api, self.cdn):
            s.shutdown()
            s.server_close()
        if self._log:
            self._log.close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ request log
    def _record(self, rec: dict) -> None:
        """Count a request before answering it (a client may act on the answer at once); its kind
        and repo are filled in before the answer is sent."""
        with self._req_lock:
            self.requests.append(rec)

    def _log_line(self, rec: dict) -> None:
        if self._log:
            with self._req_lock:
                self._log.write(json.dumps(rec) + "\n")
                self._log.flush()

    def count(self, kind: str, repo: Optional[str] = None) -> int:
        """How many requests of ``kind`` (info, tree, refs, commits, paths-info, resolve, cdn) were made."""
        with self._req_lock:
            return sum(1 for r in self.requests if r["kind"] == kind and (repo is None or r.get("repo") == repo))

    def clear(self) -> None:
        with self._req_lock:
            self.requests.clear()

    # ------------------------------------------------------------ handler
    def _handler(self, cdn: bool):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "clipdyn-localhub"

            def log_message(self, *args):  # the request log is server.requests
                pass

            # -------------------------------------------------- answers
            def _send(self, status: int, headers: Optional[dict] = None, body: bytes = b"") -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, obj, headers: Optional[dict] = None) -> None:
                self._send(200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode())

            def _error(self, status: int, code: Optional[str], message: str, headers: Optional[dict] = None):
                h = {"Content-Type": "application/json", "X-Error-Message": message, **(headers or {})}
                if code:
                    h["X-Error-Code"] = code
                self._send(status, h, json.dumps({"error": message}).encode())

            def _file(self, blob: Path, size: int, headers: dict, truncate: bool = False) -> None:
                start, status = 0, 200
                rng = self.headers.get("Range", "")
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                end = size - 1
                if m and self.command == "GET":
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else size - 1
                    if start >= size:
                        return self._error(416, None, f"range {rng} starts after the end ({size} bytes)",
                                           {"Content-Range": f"bytes */{size}"})
                    end = min(end, size - 1)
                    status = 206
                    headers = dict(headers, **{"Content-Range": f"bytes {start}-{end}/{size}"})
                length = end - start + 1
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command == "HEAD":
                    return
                sent = 0
                limit = length // 2 if truncate else length
                with open(blob, "rb") as f:
                    f.seek(start)
                    step = 1 << 16 if server.rate_bps else 1 << 20
                    while sent < limit:
                        chunk = f.read(min(step, limit - sent))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        if server.rate_bps:
                            time.sleep(len(chunk) / server.rate_bps)
                if truncate:  # a broken transfer: the client sees fewer bytes than announced
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        import socket

                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

            # -------------------------------------------------- access
            def _token(self) -> Optional[str]:
                auth = self.headers.get("Authorization", "")
                return auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else None

            def _refused(self, repo_id: str) -> bool:
                token = self._token()
                if server.tokens and token not in server.tokens:
                    if token is not None:
                        self._error(401, None, "Invalid credentials in Authorization header")
                    else:
                        self._error(401, "RepoNotFound", "Repository not found")
                    return True
                if repo_id in server.gated and token is None:
                    self._error(401, "GatedRepo", f"Access to repo {repo_id} is restricted. You must have access "
                                "to it and be authenticated to access it. Please log in.")
                    return True
                return False

            # -------------------------------------------------- routing
            def do_HEAD(self):
                self._route()

            def do_GET(self):
                self._route()

            def do_POST(self):
                self._route()

            def _route(self):
                raw, _, query = self.path.partition("?")
                params = parse_qs(query)
                parts = [unquote(p) for p in raw.strip("/").split("/")] if raw.strip("/") else []
                rec = {"t": time.time(), "method": self.command, "path": raw, "query": query, "kind": "other",
                       "range": self.headers.get("Range")}
                server._record(rec)
                try:
                    if cdn:
                        rec["kind"] = "cdn"
                        return self._cdn(parts)
                    if parts and parts[0] == "api":
                        return self._api(parts[1:], params, rec)
                    return self._resolve(parts, rec)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    server._log_line(rec)

            def _cdn(self, parts):
                # /lfs/<sha256>/<file name>: content-addressed, no auth, like a signed CDN URL
                blob = server.repos.blob_by_sha256(parts[1]) if len(parts) >= 2 and parts[0] == "lfs" else None
                if blob is None:
                    return self._send(404, {"Content-Type": "text/plain"}, b"NoSuchKey")
                name = parts[-1] if len(parts) > 2 else parts[1]
                headers = {"Content-Type": "application/octet-stream", "ETag": f'"{parts[1]}"',
                           "Content-Disposition": f'attachment; filename="{name}";'}
                truncate = False
                if self.command == "GET" and not self.headers.get("Range"):
                    with server._req_lock:
                        hits = [p for p in server.truncate_once if p.rsplit("/", 1)[-1] == name]
                        for p in hits:
                            server.truncate_once.discard(p)
                    truncate = bool(hits)
                self._file(blob, blob.stat().st_size, headers, truncate=truncate)

            def _resolve(self, parts, rec):
                # /[datasets/|spaces/]<repo>/resolve/<rev>/<path>
                repo_type = "model"
                if parts and parts[0] in ("datasets", "spaces"):
                    repo_type, parts = parts[0][:-1], parts[1:]
                if "resolve" not in parts:
                    return self._error(404, None, "not found")
                i = parts.index("resolve")
                repo_id, rest = "/".join(parts[:i]), parts[i + 1:]
                rec.update(kind="resolve", repo=repo_id, repo_type=repo_type)
                folder = server.repos.folder(repo_type, repo_id)
                if self._refused(repo_id):
                    return
                if folder is None or not rest:
                    return self._error(401, "RepoNotFound", "Repository not found")
                revision, path = rest[0], "/".join(rest[1:])
                rec.update(revision=revision, file=path)
                commit = server.repos.resolve(folder, revision)
                if commit is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                entry = server.repos.files(folder, commit).get(path)
                if entry is None:
                    return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}",
                                       {"X-Repo-Commit": commit})
                if entry.sha256:  # LFS: redirect to the CDN with the file's metadata on the redirect
                    location = f"{server.cdn_url}/lfs/{entry.sha256}/{quote(path.rsplit('/', 1)[-1])}"
                    return self._send(302, {"Location": location, "X-Repo-Commit": commit,
                                            "ETag": f'"{entry.oid}"', "X-Linked-Etag": f'"{entry.sha256}"',
                                            "X-Linked-Size": str(entry.size), "Content-Type": "text/plain"})
                headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.oid}"',
                           "Content-Type": "application/octet-stream"}
                truncate = False
                if self.command == "GET" and not self.headers.get("Range") and path in server.truncate_once:
                    with server._req_lock:
                        truncate = path in server.truncate_once
                        server.truncate_once.discard(path)
                self._file(entry.blob, entry.size, headers, truncate=truncate)

            def _api(self, parts, params, rec):
                if not parts or parts[0] not in _API_KIND:
                    return self._error(404, None, "not found")
                repo_type = _API_KIND[parts[0]]
                repo_id, rest = server.repos.find_repo(repo_type, parts[1:])
                if repo_id is None:  # not served: name the repo as the URL gave it
                    known = {"revision", "tree", "refs", "commits", "paths-info"}
                    cut = next((i for i, p in enumerate(parts[1:]) if p in known), len(parts) - 1)
                    repo_id, rest = "/".join(parts[1:1 + cut]), parts[1 + cut:]
                op = rest[0] if rest else "info"
                kind = {"revision": "info", "tree": "tree", "refs": "refs", "commits": "commits",
                        "paths-info": "paths-info"}.get(op, op)
                rec.update(kind=kind, repo=repo_id, repo_type=repo_type)
                if self._refused(repo_id):
                    return
                folder = server.repos.folder(repo_type, repo_id)
                if folder is None:
                    return self._error(401, "RepoNotFound", "Repository not found")
                if kind == "refs":
                    return self._refs(folder)
                revision = rest[1] if len(rest) > 1 else "main"
                rec["revision"] = revision
                commit = server.repos.resolve(folder, revision)
                if commit is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                if kind == "info":
                    return self._info(repo_id, folder, commit, params)
                if kind == "tree":
                    return self._tree(folder, commit, "/".join(rest[2:]), params)
                if kind == "commits":
                    return self._commits(folder, commit, params)
                if kind == "paths-info" and self.command == "POST":
                    n = int(self.headers.get("Content-Length") or 0)
                    form = parse_qs(self.rfile.read(n).decode()) if n else {}
                    files = server.repos.files(folder, commit)
                    out = []
                    for p in form.get("paths", []):
                        listed = _tree_entries(files, p, recursive=False)
                        if p.strip("/") in files:
                            out.append(files[p.strip("/")].tree_json())
                        elif listed is not None:
                            out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(),
                                        "path": p.strip("/")})
                    return self._json(out)
                return self._error(404, None, f"unknown endpoint {op!r}")

            def _info(self, repo_id, folder, commit, params):
                files = server.repos.files(folder, commit)
                blobs = params.get("blobs", ["false"])[0].lower() == "true"
                siblings = []
                for p, e in files.items():
                    s = {"rfilename": p}
                    if blobs:
                        s.update(size=e.size, blobId=e.oid)
                        if e.sha256:
                            s["lfs"] = {"sha256": e.sha256, "size": e.size,
                                        "pointerSize": len(_lfs_pointer(e.sha256, e.size))}
                    siblings.append(s)
                snap = folder / "snapshots" / commit
                modified = datetime.fromtimestamp(snap.stat().st_mtime, timezone.utc)
                self._json({"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
                            "sha": commit, "private": bool(server.tokens), "disabled": False,
                            "gated": "manual" if repo_id in server.gated else False,
                            "lastModified": modified.isoformat().replace("+00:00", "Z"),
                            "tags": [], "downloads": 0, "likes": 0, "siblings": siblings})

            def _tree(self, folder, commit, path, params):
                recursive = params.get("recursive", ["false"])[0].lower() == "true"
                entries = _tree_entries(server.repos.files(folder, commit), path, recursive)
                if entries is None:
                    return self._error(404, "EntryNotFound", f"{path} does not exist on {commit}",
                                       {"X-Repo-Commit": commit})
                start = int(params.get("cursor", ["0"])[0] or 0)
                page = entries[start:start + server.page_size]
                headers = {}
                if start + server.page_size < len(entries):
                    q = {k: v[0] for k, v in params.items() if k != "cursor"}
                    q["cursor"] = str(start + server.page_size)
                    base = self.path.partition("?")[0]
                    headers["Link"] = f'<{server.url}{base}?{urlencode(q)}>; rel="next"'
                self._json(page, headers)

            def _refs(self, folder):
                tags = set(server.repos.tags(folder))
                out = {"branches": [], "tags": [], "converts": [], "pullRequests": []}
                for name, sha in server.repos.refs(folder).items():
                    if name.startswith("pr/"):
                        out["pullRequests"].append({"name": name, "ref": f"refs/{name}", "targetCommit": sha})
                    elif name in tags:
                        out["tags"].append({"name": name, "ref": f"refs/tags/{name}", "targetCommit": sha})
                    else:
                        out["branches"].append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha})
                self._json(out)

            def _commits(self, folder, commit, params):
                log = server.repos.commit_log(folder)
                items, seen = [], set()
                while commit and commit not in seen:
                    seen.add(commit)
                    rec = log.get(commit, {})
                    items.append({"id": commit, "title": rec.get("title", ""), "message": rec.get("message", ""),
                                  "authors": [{"user": "clipdyn-localhub"}],
                                  "date": rec.get("date", "1970-01-01T00:00:00.000Z")})
                    commit = rec.get("parent")
                self._json(items)

        return Handler


def serve(root: os.PathLike, port: int = 0, url_file: Optional[os.PathLike] = None,
          log_file: Optional[os.PathLike] = None, out=sys.stdout) -> None:
    """Serve until SIGINT/SIGTERM; print (and write to ``url_file``) the URL to use as HF_ENDPOINT."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (build it with `python -m clipdyn.demo build --hub {root}` "
                                "or clipdyn.localhub.LocalHub)")
    server = HubServer(root, port=port, log_file=log_file).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *a: stop.set())
    if url_file:  # before the URL is printed: whoever reads the URL may read the file next
        with atomic_path(url_file) as tmp:
            tmp.write_text(server.url + "\n")
    print(server.url, file=out, flush=True)
    try:
        stop.wait()
    finally:
        server.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m clipdyn.hubserver",
                                description="Serve a LocalHub folder as a Hugging Face Hub on 127.0.0.1 "
                                            "(use the printed URL as HF_ENDPOINT).")
    p.add_argument("--root", required=True, help="the LocalHub folder (e.g. demo-hub/)")
    p.add_argument("--port", type=int, default=0, help="port (0: any free port; the URL is printed)")
    p.add_argument("--url-file", help="also write the URL to this file once serving")
    p.add_argument("--log", help="append one JSON line per request to this file")
    args = p.parse_args(argv)
    try:
        serve(args.root, port=args.port, url_file=args.url_file, log_file=args.log)
    except (FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
