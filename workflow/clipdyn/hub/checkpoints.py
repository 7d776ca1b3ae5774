"""A training checkpoint's lifetime in a run: fetched by its identity, held within a disk budget.

A Hub checkpoint is named by its **identity**: repo, repo type, revision, file and blob (the
content hash the listing recorded). One ``fetch_checkpoint`` job per checkpoint makes it readable
and writes a small permanent **record**, ``results/checkpoints/<model>/epoch_<e>.json`` (the
identity, where it is read from, its size). Every job that reads the checkpoint (an embedding,
a zero-shot classifier) takes the record as an *ancient* input and opens the checkpoint through
:func:`open_checkpoint`, which finds it again by identity, fetching it again if its bytes are
gone. So a consumer added later (a new dataset) reruns nothing that exists, and no job exists per
(checkpoint, consumer).

Where the bytes are:

* in the **Hugging Face cache** when they are there already (the user's download, a lab's shared
  cache): read in place, never copied and never removed by this workflow;
* without a budget, they are downloaded into the HF cache (``huggingface_hub``, content-checked
  once by the fetch job) and stay there, like any ``hf download``;
* with ``checkpoint_budget: N``, they are downloaded into the run's own **store**
  (``results/checkpoint_store/<blob>/checkpoint.<ext>``, content-checked), which holds at most N
  checkpoints: a download first evicts the checkpoint whose readers are all done (the fetch job
  of the k-th checkpoint waits for every reader of the (k-N)-th), else the least recently used one
  nobody is reading. A reader holds a shared ``flock`` on ``<blob>.lock`` while it loads the
  checkpoint; eviction takes it exclusively without waiting, so a checkpoint being read is never
  removed. Nothing outside the store is ever deleted: another program's download, the user's
  files, a second run's checkpoints (its own store) are out of reach by construction. Blobs are
  the store's keys, so two checkpoints with the same bytes share one file and one lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ..atomic import atomic_path, flocked, publish
from ..progress import log as _log
from . import client as hub

STORE_LOCK = ".lock"
_BLOB = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
IDENTITY = ("repo", "repo_type", "revision", "filename", "blob")


def identity(job: dict) -> dict:
    """The fields that name a Hub checkpoint (what the record and the store are keyed by)."""
    missing = [k for k in IDENTITY if not job.get(k)]
    if missing:
        raise ValueError(f"checkpoint identity lacks {', '.join(missing)}: {job}")
    return {k: job[k] for k in IDENTITY}


def in_hf_cache(ident: dict) -> Optional[Path]:
    """The checkpoint's file in the HF cache when its blob is there (no network, no hashing), else None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(ident["repo"], ident["filename"], cache_dir=hub.cache_dir(),
                                   revision=ident["revision"], repo_type=ident["repo_type"])
    if not isinstance(found, str) or not os.path.exists(found):
        return None
    return Path(found) if Path(os.path.realpath(found)).name == ident["blob"] else None


# ----------------------------------------------------------------------------- the store


def _entries(store: Path) -> dict:
    """{blob: complete?} of what the store holds or is downloading now (stale downloads removed)."""
    out = {}
    if not store.is_dir():
        return out
    for p in store.iterdir():
        name = p.name.removesuffix(".part")
        if not p.is_dir() or not _BLOB.fullmatch(name):
            continue
        if p.name.endswith(".part"):
            with flocked(store / f"{name}.lock", wait=False) as free:
                if free:  # its downloader is gone (killed): not a reservation any more
                    shutil.rmtree(p, ignore_errors=True)
                    continue
        out[name] = out.get(name, False) or not p.name.endswith(".part")
    return out


def _evict(store: Path, blob: str, log=_log) -> bool:
    """Remove ``blob`` from the store unless someone is reading or fetching it; True if removed."""
    if not (store / blob).is_dir():
        return False
    with flocked(store / f"{blob}.lock", wait=False) as free:
        if not free:
            return False
        shutil.rmtree(store / blob)
        log(f"evicted {blob[:12]} from {store} (checkpoint_budget)")
        return True


def evict(store: os.PathLike, blobs: Iterable[str], keep: Iterable[str] = (), log=_log) -> list:
    """Evict these checkpoints (their readers are done) unless in ``keep`` or being read."""
    store, keep = Path(store), set(keep)
    with flocked(store / STORE_LOCK):
        return [b for b in dict.fromkeys(blobs) if b not in keep and _evict(store, b, log)]


def held(store: os.PathLike) -> list:
    """The blobs the store holds now (complete downloads)."""
    return sorted(b for b, done in _entries(Path(store)).items() if done)


def _reserve(store: Path, blob: str, budget: int, keep: set, log=_log) -> None:
    """Make room for one more checkpoint and reserve it (``<blob>.part``), keeping at most ``budget``.

    Evicts the least recently used checkpoint nobody reads; waits while every held one is being read.
    """
    said = False
    while True:
        with flocked(store / STORE_LOCK):
            entries = _entries(store)
            entries.pop(blob, None)
            while len(entries) >= budget:
                idle = sorted((b for b, done in entries.items() if done and b not in keep),
                              key=lambda b: (store / b).stat().st_mtime)
                gone = next((b for b in idle if _evict(store, b, log)), None)
                if gone is None:
                    break
                entries.pop(gone)
            if len(entries) < budget:
                (store / f"{blob}.part").mkdir(parents=True, exist_ok=True)
                return
        if not said:
            log(f"checkpoint_budget: {budget} checkpoint(s) held and being read; waiting for one to be free")
            said = True
        time.sleep(0.5)


def _download_to_store(ident: dict, store: Path, log=_log) -> Path:
    """Download the checkpoint into ``<store>/<blob>/`` (under its reservation) and check its content."""
    from huggingface_hub import hf_hub_download

    blob, part = ident["blob"], store / f"{ident['blob']}.part"
    what = f"downloading {ident['filename']} from {ident['repo_type']} repo {ident['repo']}@{ident['revision']}"
    path = Path(hub._fetch(lambda: hf_hub_download(
        ident["repo"], ident["filename"], revision=ident["revision"], repo_type=ident["repo_type"],
        local_dir=part, tqdm_class=hub._progress(f"{ident['repo']}/{ident['filename']}", hub.PROGRESS_S, log)),
        what, ident["repo"], ident["repo_type"]))
    actual = hub._content_id(path, blob)
    if actual is not None and actual != blob:
        shutil.rmtree(part, ignore_errors=True)
        raise hub.HubError(f"{what}: the downloaded file's content hash is {actual[:12]}, not the listed "
                           f"{blob[:12]}: the file changed on the Hub since it was listed, or the download "
                           "was damaged. Run the workflow again to list the current version.")
    # one file per blob, named for its format (open_clip reads the suffix); the same bytes listed
    # under two names are one checkpoint
    kept = part / f"checkpoint{Path(ident['filename']).suffix}"
    os.replace(path, kept)
    for p in part.iterdir():  # huggingface_hub's local_dir metadata, the file's folders
        if p != kept:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    publish(part, store / blob)
    return store / blob / kept.name


def _stored(store: Path, blob: str) -> Optional[Path]:
    """The checkpoint file the store holds for ``blob``, if any."""
    try:
        return next(p for p in (store / blob).iterdir() if p.is_file())
    except (FileNotFoundError, NotADirectoryError, StopIteration):
        return None


# ----------------------------------------------------------------------------- the jobs


def read_record(record: os.PathLike) -> dict:
    try:
        rec = json.loads(Path(record).read_text())
        identity(rec)
        return rec
    except FileNotFoundError:
        raise FileNotFoundError(f"{record}: no checkpoint record (written by fetch_checkpoint); run the "
                                "workflow again") from None
    except ValueError as err:
        raise ValueError(f"{record}: not a checkpoint record ({err}); delete it and run the workflow again") from None


@contextmanager
def open_checkpoint(checkpoint: os.PathLike) -> Iterator[Path]:
    """The checkpoint a job reads, readable for the duration of the block.

    ``checkpoint``: a record written by :func:`fetch` (``.json``), or a local run's file, which is
    read where it is. A Hub checkpoint is found by identity: in the HF cache, else (no budget)
    downloaded there, else (budget) in the run's store, downloaded again into it if evicted. Under
    a budget the block holds the checkpoint's read lock: it cannot be evicted while it is read.
    """
    if not str(checkpoint).endswith(".json"):
        yield Path(checkpoint)
        return
    rec = read_record(checkpoint)
    ident = identity(rec)
    cached = in_hf_cache(ident)
    if cached is not None:
        yield cached
        return
    if not rec.get("budget"):
        yield Path(hub.download_file(ident["repo"], ident["filename"], revision=ident["revision"],
                                     repo_type=ident["repo_type"], expected_blob=ident["blob"]))
        return
    with held_in_store(ident, rec["store"], int(rec["budget"])) as path:
        yield path


@contextmanager
def held_in_store(ident: dict, store: os.PathLike, budget: int, log=_log) -> Iterator[Path]:
    """The checkpoint in the run's store, downloaded into it if missing, under its read lock."""
    store, blob = Path(store), ident["blob"]
    lock = store / f"{blob}.lock"
    while True:
        with flocked(lock, shared=True):
            path = _stored(store, blob)
            if path is not None:
                os.utime(store / blob)  # last use: the least recently used is evicted first
                yield path
                return
        with flocked(lock):  # one download at a time; nobody evicts it meanwhile
            if _stored(store, blob) is None:
                _reserve(store, blob, budget, keep={blob}, log=log)
                _download_to_store(ident, store, log)


def fetch(job: dict, record: os.PathLike, store: Optional[os.PathLike] = None, budget: Optional[int] = None,
          done: Iterable[str] = (), log=_log) -> dict:
    """The ``fetch_checkpoint`` job: make the checkpoint readable, then write its record.

    Under a budget, first evicts ``done`` (the blobs whose readers have all finished), then
    downloads the checkpoint into the run's store ahead of its readers, unless the record exists
    already (the budget was switched on, or a reader was added, on a study whose checkpoints were
    read before): then its readers fetch it themselves, only if they run.
    """
    ident = identity(job)
    rec = dict(ident, store=os.fspath(store) if budget else None, budget=int(budget) if budget else None)
    before = None
    if Path(record).exists():
        try:
            before = read_record(record)
        except ValueError:
            pass
    if budget:
        evict(store, done, keep={ident["blob"]}, log=log)
    cached = in_hf_cache(ident)
    if cached is not None or not budget:
        # the HF cache: content-checked here once (readers only look it up)
        path = Path(hub.download_file(ident["repo"], ident["filename"], revision=ident["revision"],
                                      repo_type=ident["repo_type"], expected_blob=ident["blob"], log=log))
        where = f"the Hugging Face cache (kept): {path}"
        rec["size"] = os.path.getsize(path)
    elif before is not None and identity(before) == ident:
        where = "no download now: its readers fetch it into the run's store if they run"
        rec["size"] = before.get("size")
    else:
        with held_in_store(ident, store, int(budget), log) as path:
            rec["size"] = os.path.getsize(path)
        where = f"the run's store (evicted when its readers are done): {path}"
    with atomic_path(record, suffix=".json") as tmp:
        tmp.write_text(json.dumps(rec, indent=2, sort_keys=True))
    n = f"; the store holds {len(held(store))} of at most {budget}" if budget else ""
    log(f"{ident['repo']}/{ident['filename']} ({ident['blob'][:12]}): {where}{n}")
    return rec


def release(store: os.PathLike, out: os.PathLike, log=_log) -> list:
    """Every reader of the run's checkpoints is done: evict all the store holds; write ``out``."""
    store = Path(store)
    with flocked(store / STORE_LOCK):
        gone = [b for b in held(store) if _evict(store, b, log)]
    left = held(store)
    with atomic_path(out, suffix=".json") as tmp:
        tmp.write_text(json.dumps({"evicted": gone, "still_read": left,
                                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    log(f"checkpoint_budget: evicted {len(gone)} checkpoint(s) from {store}"
         + (f"; {len(left)} still being read by another run's jobs" if left else ""))
    return gone


@contextmanager
def job_log(path: os.PathLike) -> Iterator[Callable[[str], None]]:
    """A ``run:`` job's log (it runs in a thread of snakemake: no stdout of its own): a function that
    writes one timestamped line to it."""
    with open(path, "w") as f:
        def say(msg: str) -> None:
            f.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
            f.flush()

        yield say


def fetch_job(*, fetch_params: dict, record: str, log: str) -> None:
    """``fetch_checkpoint``'s ``run:`` block: :func:`fetch` with what the rule's params say, logging
    to the job's log."""
    with job_log(log) as say:
        fetch(fetch_params["job"], record, store=fetch_params["store"], budget=fetch_params["budget"],
              done=fetch_params.get("done", ()), log=say)


def release_job(*, store: str, out: str, log: str) -> None:
    """``release_checkpoints``'s ``run:`` block."""
    with job_log(log) as say:
        release(store, out, log=say)
