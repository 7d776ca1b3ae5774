"""Build a Hugging Face cache folder by hand, in the layout ``huggingface_hub`` reads.

Used by the tests and the offline demo: with ``HF_HUB_OFFLINE=1`` and
``HF_HUB_CACHE`` pointing at such a folder, ``hf_hub_download`` and
``snapshot_download`` resolve files exactly as they do after a real download.

Layout (one repo)::

    models--org--name/
        blobs/<sha256 of the content>
        refs/main                       (the commit sha, 40 hex digits)
        snapshots/<commit>/<path>  ->  ../../blobs/<sha256>   (relative link)

Every :meth:`LocalHub.publish` makes a new commit holding the files of the
previous one plus the new ones, as a push to the real Hub would, and moves the
branch ref to it (atomically: :mod:`clipdyn.hubserver` may be serving the folder).
What the cache layout cannot hold (each commit's parent and title, which refs are
tags) is kept under ``<cache>/.localhub/<repo folder>/`` for the server's refs and
commits listings.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Mapping, Union

from .atomic import atomic_path, publish
from .hub import sha256_file

Content = Union[bytes, str, os.PathLike]

_PREFIX = {"model": "models", "dataset": "datasets", "space": "spaces"}
META_DIR = ".localhub"  # commit log and tag names, next to the repos (not part of the HF cache layout)


def repo_folder(cache_dir: os.PathLike, repo_id: str, repo_type: str = "model") -> Path:
    """The cache folder of a repo: ``<cache>/models--org--name``."""
    if repo_type not in _PREFIX:
        raise ValueError(f"repo_type must be one of {sorted(_PREFIX)}, got {repo_type!r}")
    return Path(cache_dir) / "--".join([_PREFIX[repo_type], *repo_id.split("/")])


def _write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class LocalHub:
    """A Hugging Face cache folder that tests and the demo publish files into."""

    def __init__(self, cache_dir: os.PathLike):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def head(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> str | None:
        """The commit sha the branch points at, or None if the repo has none."""
        ref = repo_folder(self.cache_dir, repo_id, repo_type) / "refs" / branch
        return ref.read_text().strip() if ref.exists() else None

    def files(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[str]:
        """Paths in the repo at the branch head."""
        commit = self.head(repo_id, repo_type, branch)
        if commit is None:
            return []
        snap = repo_folder(self.cache_dir, repo_id, repo_type) / "snapshots" / commit
        return sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_symlink() or p.is_file())

    def publish(
        self,
        repo_id: str,
        files: Mapping[str, Content],
        repo_type: str = "model",
        branch: str = "main",
        message: str = "",
    ) -> str:
        """Add or replace ``files`` (repo path -> bytes, text or a local file) in a new commit.

        Returns the new commit sha. Files of the previous commit are kept.
        """
        root = repo_folder(self.cache_dir, repo_id, repo_type)
        blobs = root / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        tree: dict[str, str] = {}
        parent = self.head(repo_id, repo_type, branch)
        if parent:
            psnap = root / "snapshots" / parent
            for p in psnap.rglob("*"):
                if p.is_symlink():
                    tree[str(p.relative_to(psnap))] = Path(os.readlink(p)).name
        for path, content in files.items():
            path = path.strip("/")
            if ".." in Path(path).parts:
                raise ValueError(f"repo path {path!r} leaves the repo")
            if isinstance(content, str):
                content = content.encode()
            if isinstance(content, bytes):
                etag = hashlib.sha256(content).hexdigest()
                if not (blobs / etag).exists():
                    tmp = blobs / f"{etag}.incomplete"
                    tmp.write_bytes(content)
                    publish(tmp, blobs / etag)
            else:
                src = Path(content)
                etag = sha256_file(src)
                if not (blobs / etag).exists():
                    tmp = blobs / f"{etag}.incomplete"
                    shutil.copyfile(src, tmp)
                    publish(tmp, blobs / etag)
            tree[path] = etag
        listing = "\n".join(f"{p}\t{e}" for p, e in sorted(tree.items()))
        commit = hashlib.sha1(f"{parent}\n{listing}".encode()).hexdigest()
        snap = root / "snapshots" / commit
        for path, etag in tree.items():
            link = snap / path
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(blobs / etag, link.parent))
        meta = self.cache_dir / META_DIR / root.name
        meta.mkdir(parents=True, exist_ok=True)
        record = {"commit": commit, "parent": parent, "branch": branch,
                  "title": message or f"Upload {len(files)} file{'s' if len(files) != 1 else ''}",
                  "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
        with open(meta / "commits.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        _write_atomic(root / "refs" / branch, commit)  # last: the commit is complete when the ref moves
        return commit

    def tag(self, repo_id: str, name: str, revision: str = "main", repo_type: str = "model") -> str:
        """Point tag ``name`` at the commit ``revision`` (a branch or a commit sha) resolves to."""
        root = repo_folder(self.cache_dir, repo_id, repo_type)
        commit = revision if (root / "snapshots" / revision).is_dir() else self.head(repo_id, repo_type, revision)
        if commit is None:
            raise ValueError(f"{repo_id}: no revision {revision!r} to tag")
        _write_atomic(root / "refs" / name, commit)
        tags_file = self.cache_dir / META_DIR / root.name / "tags.json"
        tags = set(json.loads(tags_file.read_text())) if tags_file.exists() else set()
        _write_atomic(tags_file, json.dumps(sorted(tags | {name})))
        return commit

    def branch(self, repo_id: str, name: str, revision: str = "main", repo_type: str = "model") -> str:
        """Point branch ``name`` at the commit ``revision`` (a branch or a commit sha) resolves to, as
        ``create_branch`` does on the Hub (epochs published as revisions); returns the commit."""
        root = repo_folder(self.cache_dir, repo_id, repo_type)
        commit = revision if (root / "snapshots" / revision).is_dir() else self.head(repo_id, repo_type, revision)
        if commit is None:
            raise ValueError(f"{repo_id}: no revision {revision!r} to branch from")
        (root / "refs" / name).parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(root / "refs" / name, commit)
        return commit

    def publish_folder(self, repo_id: str, folder: os.PathLike, repo_type: str = "model",
                       prefix: str = "", branch: str = "main") -> str:
        """Publish every file under ``folder`` (paths relative to it, under ``prefix``)."""
        folder = Path(folder)
        files = {str(Path(prefix) / p.relative_to(folder)): p
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        if not files:
            raise ValueError(f"{folder} holds no files to publish")
        return self.publish(repo_id, files, repo_type=repo_type, branch=branch)
