"""Where a model's checkpoints come from: one small resolver per kind of source.

Every source produces the same records (:class:`clipdyn.hub.client.CheckpointFile`: epoch, path,
commit, blob = content hash, size, revision), so the rest of the workflow does not care
where a checkpoint lives. The kinds, chosen by the model's config keys:

``hub_files``
    ``repo`` + ``checkpoint`` with ``{epoch}``: one file per epoch in a Hub repo
    (``laion/scaling-laws-openclip``: ``full_checkpoints/<run>/epoch_{epoch}.pt``).
``hub_revisions``
    ``repo`` + ``revisions`` (a branch/tag name template with ``{epoch}``, or a mapping
    epoch -> revision) + ``checkpoint`` (one fixed file name): one revision per epoch, listed
    with the Hub's refs listing and pinned to the commit each points at.
``hub_final``
    ``pretrained: hf-hub:<org>/<name>`` (open_clip's pretrained weights:
    ``open_clip_model.safetensors``, else ``open_clip_pytorch_model.bin``, as open_clip's
    ``download_pretrained_from_hf`` picks them), or ``repo`` + a ``checkpoint`` without
    ``{epoch}``: a single checkpoint, evaluated as one point (``epoch``, default 0).
``local_run``
    ``local: <folder>`` (+ ``checkpoint`` template, default ``epoch_{epoch}.pt``): a training
    run on this machine. open_clip's ``logs/<run>/`` is recognised (its checkpoints are in
    ``checkpoints/``). Files are identified by their sha256, cached by (path, size, mtime) so a
    12 GB file is hashed once; they are read where they are, never moved or deleted. A file
    still being written (size or mtime changed while it was read, or a torch zip archive without
    its end record yet) is skipped with a notice and picked up by the next run.
``local_final``
    ``local: <file>``: a single local checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..atomic import atomic_path
from . import client as hub
from .client import CheckpointFile, sha256_file  # noqa: F401  (sha256_file: clipdyn.hub.sources' public name too)

#: open_clip's names for pretrained weights and config in a Hub repo (open_clip.constants), in the
#: order ``download_pretrained_from_hf`` tries them
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_HUB_PREFIX = "hf-hub:"
DEFAULT_LOCAL_TEMPLATE = "epoch_{epoch}.pt"

KINDS = ("hub_files", "hub_revisions", "hub_final", "local_run", "local_final")
#: the kinds whose checkpoints are files on this machine: read where they are, never fetched or removed
LOCAL_KINDS = ("local_run", "local_final")


class SourceError(ValueError):
    """A model's checkpoint source is wrong or unusable; the message names the key or file."""


@dataclass
class Resolved:
    """What a source found: the checkpoints by epoch, and notices (skipped files) for the log."""

    kind: str
    files: Dict[int, CheckpointFile]
    #: epochs that the config asked for but that are not there yet (local runs still training)
    pending: List[int] = field(default_factory=list)
    notices: List[str] = field(default_factory=list)
    #: for hub sources: repo, revision and (hub_final) the open_clip config file, if any
    repo: Optional[str] = None
    revision: str = "main"
    open_clip_config: Optional[str] = None


def kind_of(m: dict) -> str:
    """The source kind a model's config keys describe (see the module docstring)."""
    if "local" in m:
        return "local_final" if Path(m["local"]).is_file() else "local_run"
    if "pretrained" in m:
        return "hub_final"
    if "revisions" in m:
        return "hub_revisions"
    return "hub_files" if "{epoch}" in str(m.get("checkpoint", "")) else "hub_final"


def check_keys(name: str, m: dict) -> str:
    """Which keys go together; returns the kind. Errors name the key."""
    where = f"models.{name}"
    given = [k for k in ("repo", "local", "pretrained") if k in m]
    if len(given) != 1:
        raise SourceError(f"{where}: give exactly one of `repo` (a Hub repo), `local` (a folder or file on this "
                          f"machine) or `pretrained` (hf-hub:<org>/<name>); found {given or 'none'}")
    kind = kind_of(m)
    if "repo" in m and "checkpoint" not in m:
        raise SourceError(f"{where}.checkpoint: missing (the file name in the repo: with {{epoch}} for one file per "
                          "epoch, or one fixed name with `revisions` or for a final model)")
    if kind == "hub_files" and m["checkpoint"].count("{epoch}") != 1:
        raise SourceError(f"{where}.checkpoint: {m['checkpoint']!r} must contain '{{epoch}}' exactly once, "
                          "e.g. full_checkpoints/<run>/epoch_{epoch}.pt")
    if kind == "hub_revisions":
        if "{epoch}" in m["checkpoint"]:
            raise SourceError(f"{where}.checkpoint: with `revisions`, the checkpoint is one fixed file name in every "
                              f"revision; {m['checkpoint']!r} contains {{epoch}}")
        rev = m["revisions"]
        if isinstance(rev, str) and rev.count("{epoch}") != 1:
            raise SourceError(f"{where}.revisions: {rev!r} must contain '{{epoch}}' exactly once "
                              "(e.g. 'epoch-{epoch}'), or be a mapping epoch -> branch/tag")
    if kind == "hub_final" and "pretrained" in m:
        if not str(m["pretrained"]).startswith(HF_HUB_PREFIX) or str(m["pretrained"]).count("/") != 1:
            raise SourceError(f"{where}.pretrained: {m['pretrained']!r} is not an open_clip hf-hub name; "
                              "write hf-hub:<org>/<name>, e.g. hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K")
        if "checkpoint" in m:
            raise SourceError(f"{where}: `pretrained` names the repo and its weights file; drop `checkpoint` "
                              "(or use `repo` + `checkpoint`)")
    if kind in ("hub_final", "local_final") and "epochs" in m:
        raise SourceError(f"{where}.epochs: a single-checkpoint model has no epochs to select; use `epoch` to "
                          "place it (default 0)")
    if kind == "local_final" and "checkpoint" in m:
        raise SourceError(f"{where}: `local` names a file ({m['local']}); `checkpoint` is for a folder")
    if "epoch" in m and kind not in ("hub_final", "local_final"):
        raise SourceError(f"{where}.epoch: only for a single-checkpoint model; this one has epochs "
                          "(use `epochs` to select them)")
    return kind


def resolve(name: str, m: dict, hash_cache: Optional["HashCache"] = None,
            list_epochs: Callable = hub.discover_epochs) -> Resolved:
    """Find every checkpoint of model ``name`` (config mapping ``m``). ``list_epochs`` lists a
    Hub repo's ``{epoch}`` files (injectable for tests)."""
    kind = check_keys(name, m)
    try:
        if kind == "hub_files":
            rev = str(m.get("revision", "main"))
            found = list_epochs(m["repo"], m["checkpoint"], rev, m.get("repo_type", "model"))
            return Resolved(kind, {f.epoch: f for f in found}, repo=m["repo"], revision=rev)
        if kind == "hub_revisions":
            return _hub_revisions(name, m)
        if kind == "hub_final":
            return _hub_final(name, m)
        return _local(name, m, hash_cache or HashCache(None))
    except hub.HubError as err:
        raise SourceError(f"models.{name}: {err}") from err


# ------------------------------------------------------------------------------ Hub revisions
def revision_epochs(revisions, refs: Dict[str, str]) -> Dict[int, str]:
    """epoch -> revision name: the refs matching a ``{epoch}`` template, or an explicit mapping."""
    if isinstance(revisions, str):
        rx = hub.epoch_regex(revisions)
        out = {}
        for ref in refs:
            mt = rx.match(ref)
            if mt:
                out[int(mt.group("epoch"))] = ref
        return dict(sorted(out.items()))
    return {int(e): str(r) for e, r in sorted(dict(revisions).items(), key=lambda kv: int(kv[0]))}


def _hub_revisions(name: str, m: dict) -> Resolved:
    repo, rt, fname = m["repo"], m.get("repo_type", "model"), m["checkpoint"]
    refs = hub.list_refs(repo, rt)
    by_epoch = revision_epochs(m["revisions"], refs)
    where = f"models.{name}.revisions"
    if not by_epoch:
        raise SourceError(f"{where}: no branch or tag of {rt} repo {repo} matches {m['revisions']!r}; "
                          f"its branches and tags: {_some(sorted(refs))}")
    files = {}
    for epoch, rev in by_epoch.items():
        commit = refs.get(rev) or (rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None)
        if commit is None:
            raise SourceError(f"{where}: epoch {epoch}: revision {rev!r} does not exist in {rt} repo {repo}; its "
                              f"branches and tags: {_some(sorted(refs))}")
        blob, size = hub.file_info(repo, fname, commit, rt)
        files[epoch] = CheckpointFile(epoch, fname, commit, blob, size, revision=commit)
    return Resolved("hub_revisions", files, repo=repo)


# ------------------------------------------------------------------------------ final models
def _hub_final(name: str, m: dict) -> Resolved:
    if "pretrained" in m:
        repo, rt, rev = m["pretrained"][len(HF_HUB_PREFIX):], "model", str(m.get("revision", "main"))
    else:
        repo, rt, rev = m["repo"], m.get("repo_type", "model"), str(m.get("revision", "main"))
    commit, listing = hub.list_repo(repo, rev, rt)
    blobs = {f.path: f.blob for f in listing}
    sizes = {f.path: f.size for f in listing}
    if "pretrained" in m:
        fname = next((w for w in OPEN_CLIP_WEIGHTS if w in blobs), None)
        if fname is None:
            raise SourceError(f"models.{name}.pretrained: {rt} repo {repo}@{rev} has no open_clip weights "
                              f"({' or '.join(OPEN_CLIP_WEIGHTS)}); its files: {_some(sorted(blobs))}")
    else:
        fname = m["checkpoint"]
        if fname not in blobs:
            raise SourceError(f"models.{name}.checkpoint: {fname!r} is not in {rt} repo {repo}@{rev}; its files: "
                              f"{_some(sorted(blobs))}")
    epoch = int(m.get("epoch", 0))
    return Resolved("hub_final", {epoch: CheckpointFile(epoch, fname, commit, blobs[fname], sizes[fname])}, repo=repo,
                    revision=rev, open_clip_config=OPEN_CLIP_CONFIG if OPEN_CLIP_CONFIG in blobs else None)


def open_clip_config(repo: str, revision: str, repo_type: str = "model") -> dict:
    """The ``open_clip_config.json`` of a Hub repo (``model_cfg``, ``preprocess_cfg``), as open_clip reads it."""
    path = hub.download_file(repo, OPEN_CLIP_CONFIG, revision=revision, repo_type=repo_type)
    try:
        return json.loads(Path(path).read_text())
    except ValueError as err:
        raise SourceError(f"{OPEN_CLIP_CONFIG} of {repo_type} repo {repo}@{revision} is not valid JSON: {err}") from err


def arch_for(model_cfg: dict, known: Dict[str, dict]) -> Optional[str]:
    """The architecture name whose open_clip JSON config equals ``model_cfg`` (how a hf-hub model's
    ``open_clip_config.json`` maps to a named architecture), or None."""
    for arch, cfg in known.items():
        if cfg == model_cfg:
            return arch
    return None


# ------------------------------------------------------------------------------ local runs
def local_folder(path: Path, template: str) -> Path:
    """The folder a local run's checkpoints are in: open_clip writes ``logs/<run>/checkpoints/``."""
    if "/" not in template and (path / "checkpoints").is_dir() and not any(
            hub.epoch_regex(template).match(p.name) for p in path.iterdir()):
        return path / "checkpoints"
    return path


def file_version(st: os.stat_result) -> dict:
    """What says a file is still the one seen before: device, inode, size, mtime and ctime.

    Size and mtime alone miss a file replaced in place with both kept (``cp -p``, ``rsync -t``,
    a restore); its ctime (which no program can set back) and, for a file renamed over the old
    one, its inode differ."""
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


class HashCache:
    """sha256 of local files, keyed by absolute path with the :func:`file_version` it was computed at.

    A JSON file (``<results>/checkpoints/local-sha256.json``), rewritten atomically when it
    changes; ``None`` keeps it in memory only.
    """

    def __init__(self, path: Optional[os.PathLike]):
        self.path = Path(path) if path else None
        self.entries: Dict[str, dict] = {}
        self.dirty = False
        if self.path and self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except ValueError:
                self.entries = {}  # a damaged cache is only a cache: rehash

    def get(self, path: Path, st: os.stat_result) -> Optional[str]:
        e = self.entries.get(str(path))
        if e and {k: e.get(k) for k in ("dev", "ino", "size", "mtime_ns", "ctime_ns")} == file_version(st):
            return e["sha256"]
        return None  # unknown, changed in any way, or recorded by an older version without ino/ctime: rehash

    def put(self, path: Path, st: os.stat_result, sha: str) -> None:
        self.entries[str(path)] = {**file_version(st), "sha256": sha}
        self.dirty = True

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.entries, indent=0, sort_keys=True))
        self.dirty = False


class NotACheckpoint(ValueError):
    pass


def completeness(path: Path, size: int) -> Optional[str]:
    """None if ``path`` is a complete checkpoint file; else why it looks half-written.

    A torch zip archive (``torch.save``) is complete once its end-of-central-directory record
    is written (last); a safetensors file once it holds every byte its header declares. Raises
    :class:`NotACheckpoint` for a file of neither kind (nor a legacy torch pickle).
    """
    if size < 8:
        return f"{size} bytes so far"
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:4] == b"PK\x03\x04":
            f.seek(max(0, size - (65535 + 22)))
            tail = f.read()
            return None if b"PK\x05\x06" in tail else "a zip archive without its end record (truncated)"
        if head[:1] == b"\x80":  # legacy (pre-zip) torch.save: a pickle stream, no end marker to check
            return None
        n = struct.unpack("<Q", head)[0]
        if 2 <= n <= min(size, 100 << 20):
            f.seek(8)
            try:
                header = json.loads(f.read(n))
            except ValueError:
                header = None
            if isinstance(header, dict):
                end = max((int(v["data_offsets"][1]) for k, v in header.items()
                           if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
                return None if size >= 8 + n + end else f"a safetensors file with {size} of {8 + n + end} bytes"
    raise NotACheckpoint(f"starts with {head!r}: neither a torch.save archive nor safetensors")


def inspect_local(path: Path, cache: "HashCache") -> Tuple[Optional[str], Optional[str], int]:
    """(sha256, None, size) for a complete, stable checkpoint, or (None, why it was skipped, size).

    The file is looked at twice (stat before and after reading it): a file whose size, mtime,
    ctime or inode changed in between is still being written (or was replaced).
    """
    st1 = path.stat()
    why = completeness(path, st1.st_size)
    if why is not None:
        return None, why, st1.st_size
    sha = cache.get(path, st1) or sha256_file(path)
    st2 = path.stat()
    if file_version(st1) != file_version(st2):
        return None, f"changed while it was read ({st1.st_size} -> {st2.st_size} bytes)", st2.st_size
    if cache.get(path, st2) is None:
        cache.put(path, st2, sha)
    return sha, None, st2.st_size


def _local(name: str, m: dict, cache: HashCache) -> Resolved:
    where = f"models.{name}.local"
    path = Path(m["local"]).expanduser()
    if not path.exists():
        raise SourceError(f"{where}: {path} does not exist (relative paths are relative to the folder the "
                          f"workflow runs in, {Path.cwd()})")
    if path.is_file():
        epoch = int(m.get("epoch", 0))
        files, notices = _local_files(name, {epoch: path.resolve()}, cache)
        if not files:
            raise SourceError(f"{where}: {path} is not complete yet ({notices[0]}); run again when it is written")
        return Resolved("local_final", files)
    template = m.get("checkpoint", DEFAULT_LOCAL_TEMPLATE)
    if template.count("{epoch}") != 1:
        raise SourceError(f"models.{name}.checkpoint: {template!r} must contain '{{epoch}}' exactly once, e.g. "
                          f"{DEFAULT_LOCAL_TEMPLATE}")
    folder = local_folder(path, template).resolve()
    rx = hub.epoch_regex(template)
    sub = hub.template_prefix(template)
    base = folder / sub if sub else folder
    found = {}
    for p in sorted(base.rglob("*") if sub else base.iterdir()) if base.is_dir() else []:
        mt = rx.match(str(p.relative_to(folder)))
        if mt and p.is_file():
            found[int(mt.group("epoch"))] = p
    if not found:
        there = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        raise SourceError(f"models.{name}.checkpoint: no file in {folder} matches {template!r}; files there: "
                          f"{_some(there)}")
    files, notices = _local_files(name, found, cache)
    return Resolved("local_run", files, notices=notices)


def _local_files(name: str, found: Dict[int, Path], cache: HashCache) -> Tuple[Dict[int, CheckpointFile], List[str]]:
    files, notices = {}, []
    for epoch, p in sorted(found.items()):
        try:
            sha, why, size = inspect_local(p, cache)
        except NotACheckpoint as err:
            raise SourceError(f"models.{name}: {p} is not a checkpoint ({err}). Remove it, or change the "
                              "checkpoint template so that it matches only checkpoints.") from None
        except FileNotFoundError:
            notices.append(f"model {name}: skipping epoch {epoch}: {p} disappeared while it was listed")
            continue
        if sha is None:
            notices.append(f"model {name}: skipping epoch {epoch}: {p} is still being written ({why}); "
                           "the next run picks it up")
            continue
        files[epoch] = CheckpointFile(epoch, str(p), "", sha, size=size)
    cache.save()
    return files, notices


def _some(xs: Sequence[str], n: int = 12) -> str:
    xs = list(xs)
    if not xs:
        return "none"
    return ", ".join(xs[:n]) + (f", ... ({len(xs)} in all)" if len(xs) > n else "")
