"""Checkpoints as leases, and a disk budget for them (``checkpoint_budget: N``).

Every job that reads a checkpoint (an embedding, a zero-shot classifier) takes it through a
**lease** of its own, ``results/checkpoints/<model>/epoch_<e>/<consumer>.lease``: a small temp
file written by ``download_checkpoint`` (which fetches the checkpoint into the HF cache by its
identity: repo, revision, file, blob) and holding the checkpoint's path. Snakemake deletes a
lease once its job is done. Because each consumer has its own lease, fetching a checkpoint
again for a new consumer (a dataset added later) never makes an existing consumer look stale:
no file an existing embedding depends on is re-created.

With ``checkpoint_budget: N``:

* ``download_checkpoint`` records whether the blob was in the HF cache before this workflow
  fetched it (``epoch_<e>.owner.json``; a blob that was there before is never removed);
* ``checkpoint_done`` (``epoch_<e>.done``) runs once every consumer of the checkpoint has
  its output, and removes the blob and its snapshot link from the HF cache if this workflow
  put it there (never with ``HF_HUB_OFFLINE`` set);
* the leases of the k-th checkpoint (in the workflow's order) wait for ``checkpoint_done`` of
  the (k - N)-th, and each ``checkpoint_done`` for the one before it, so at most N checkpoints
  are in the cache at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from . import hub


@contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".budget.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def blob_path(job: dict) -> Path:
    """The checkpoint's blob in the HF cache (named by its content hash)."""
    return hub._repo_cache_folder(job["repo"], job["repo_type"]) / "blobs" / job["blob"]


def _write(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(rec, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def fetch(job: dict, lease: os.PathLike, owner: Optional[os.PathLike] = None) -> Path:
    """Fetch the checkpoint (``hub.download_file``, by blob) and write the lease; returns its path.

    ``owner``: under a budget, the record saying whether this workflow put the blob into
    the cache (sticky: a later lease finding the blob there keeps the first answer).
    """
    # the revision, not the listed commit: a new commit on the Hub changes every file's commit, and a
    # changed param would rerun every consumer; the blob pins the content
    if owner is not None:
        owner = Path(owner)
        blob = blob_path(job)
        with _locked(owner.parent):
            before = _read(owner)
            if before.get("blob") != job["blob"] or (not before.get("owned") and not blob.exists()):
                _write(owner, {"blob": job["blob"], "owned": not blob.exists(),
                               "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path = hub.download_file(job["repo"], job["filename"], revision=job["revision"], repo_type=job["repo_type"],
                             expected_blob=job["blob"])
    if owner is not None:
        with _locked(owner.parent):
            rec = _read(owner)
            links = sorted(set(rec.get("links", [])) | {os.path.abspath(path)})
            _write(owner, dict(rec, links=links))
    _write(Path(lease), {"path": os.path.abspath(path), "repo": job["repo"], "filename": job["filename"],
                         "blob": job["blob"]})
    if owner is not None:
        print(f"{job['repo']}/{job['filename']}: {held(owner.parent.parent)} checkpoint(s) of this study "
              "in the HF cache now", flush=True)
    return Path(path)


def checkpoint_of(lease: os.PathLike) -> str:
    """The checkpoint file a lease names (what an embedding or classifier job loads); a local
    run's checkpoint (not a lease) is returned as it is."""
    if not str(lease).endswith(".lease"):
        return str(lease)
    rec = _read(Path(lease))
    if "path" not in rec:
        raise FileNotFoundError(f"{lease}: not a checkpoint lease (written by download_checkpoint); run again")
    return rec["path"]


def release(job: dict, owner: os.PathLike, done: os.PathLike) -> bool:
    """Every consumer of the checkpoint is done: remove it from the HF cache if this workflow put it there.

    Writes ``done`` (what was decided and why) and returns whether the blob was removed.
    """
    owner = Path(owner)
    blob = blob_path(job)
    with _locked(owner.parent):
        rec = _read(owner)
        if hub.is_offline():
            why = "kept: HF_HUB_OFFLINE is set (the cache is not this workflow's to change)"
        elif rec.get("blob") != job["blob"] or not rec.get("owned"):
            why = "kept: it was in the HF cache before this workflow fetched it"
        else:
            for link in rec.get("links", []):  # the snapshot links huggingface_hub made to the blob
                if os.path.islink(link) and Path(os.readlink(link)).name == job["blob"]:
                    os.unlink(link)
            blob.unlink(missing_ok=True)
            why = f"removed {blob} from the HF cache"
        _write(Path(done), {"blob": job["blob"], "decision": why,
                            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"{job['repo']}/{job['filename']}: every job of this study that reads it is done; {why}", flush=True)
    return why.startswith("removed")


def held(checkpoints_dir: os.PathLike) -> int:
    """How many checkpoints with an owner record under ``checkpoints_dir`` are in the HF cache now."""
    n = 0
    for rec_path in Path(checkpoints_dir).glob("*/*.owner.json"):
        rec = _read(rec_path)
        if rec.get("blob"):
            n += any(p.exists() for p in hub.cache_dir().glob(f"*/blobs/{rec['blob']}"))
    return n


def checkpoint_bytes(lease: os.PathLike) -> int:
    """Size of the checkpoint a lease (or a local path) names: for resource expressions in profiles."""
    return os.path.getsize(checkpoint_of(lease))
