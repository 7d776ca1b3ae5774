"""One Hub listing per invocation, none per job: the listing record.

Snakemake parses the Snakefile in every process: the top-level run, and again in each job
process (every SLURM job, ``--mode remote``; local ``run:`` jobs, ``--mode subprocess``). The
study's epochs come from listing each model's checkpoints on the Hub, so without a record a
6,500-job SLURM run would list the Hub thousands of times (rate limits), and a compute node
without internet could not start even a metric job.

So only the top-level process lists. It writes what it listed while the Snakefile is parsed
(not in an ``onstart`` hook, which ``--no-hooks`` skips) to its own record,
``<results>/checkpoints/listings/<content id>.json`` (never rewritten: the id is the sha256 of
what it holds), and names that file in the environment variable :data:`ENV`, which its job
processes inherit (local jobs, SLURM's ``sbatch``) or are given (Snakemake's ``envvars:``, for
other executors). A job process reads the record its own invocation named, never a later
one: a second invocation over the same results folder (another working directory, or
``--nolock``) that lists a new epoch cannot change what the first one's jobs see. Job
processes never list: a model missing from the record is an error that says to rerun the
top-level command. The latest record is also copied to ``<results>/checkpoints/listing.json``,
which ``--report``, ``--unlock``, ``--lint`` and the summaries read (and a job process started
by hand, without :data:`ENV`); those list only a model the record lacks (a study never run).

An entry is what :func:`clipdyn.hub.sources.resolve` found for a model (its checkpoints by epoch,
with commit, content hash and size), keyed by the config keys the resolution depends on
(:data:`SOURCE_KEYS`: repo, revision, file template, ...), not by the model's name: a config that
changes a model's source lists it afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from ..atomic import atomic_path
from .client import CheckpointFile

RECORD = "checkpoints/listing.json"
RECORDS = "checkpoints/listings"
VERSION = 2
#: the environment variable naming the record of the invocation that started a job process
ENV = "CLIPDYN_LISTING"

#: command-line flags of invocations that read results and run no job: they read the record
READER_FLAGS = ("--report", "--unlock", "--lint", "--summary", "--detailed-summary", "--list-changes", "--lc",
                "--cleanup-metadata", "--cm", "--list-untracked", "--lu", "--containerize", "--archive")
READER_SHORT = ("-S", "-D")


#: the model config keys a source's resolution depends on (see clipdyn.hub.sources.kind_of)
SOURCE_KEYS = ("repo", "repo_type", "revision", "checkpoint", "revisions", "pretrained", "local", "epoch")


def source_key(m: dict) -> dict:
    """The part of a model's config its checkpoint listing depends on."""
    return {k: m[k] for k in SOURCE_KEYS if k in m}


def _encode(resolved) -> dict:
    return asdict(resolved)


def _decode(d: dict):
    from .sources import Resolved

    return Resolved(**{**d, "files": {int(e): CheckpointFile(**c) for e, c in d["files"].items()}})


class ListingMissing(RuntimeError):
    """A job process found no recorded listing for a model."""


def invocation(is_main_process: bool, argv: Sequence[str]) -> str:
    """``"job"`` for a job process, ``"reader"`` for --report/--unlock/--lint/..., else ``"top"``."""
    if not is_main_process:
        return "job"
    for a in argv[1:]:
        if a in READER_SHORT or any(a == f or a.startswith(f + "=") for f in READER_FLAGS):
            return "reader"
    return "top"


def _key(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


class Listings:
    """The listings of one invocation; see the module docstring. ``mode`` is from :func:`invocation`."""

    def __init__(self, path: os.PathLike, mode: str = "top", log: Callable[[str], None] = None):
        if mode not in ("top", "job", "reader"):
            raise ValueError(f"mode must be top, job or reader, got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.listed: Dict[str, dict] = {}  # listed by this process
        self.calls = 0  # listing calls this process made
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._record: Optional[Dict[str, dict]] = None

    def source(self) -> Path:
        """The record this process reads: its invocation's (:data:`ENV`, in a job process), else the latest."""
        named = os.environ.get(ENV) if self.mode == "job" else None
        return Path(named) if named else self.path

    def record(self) -> Dict[str, dict]:
        """The entries of the record on disk ({} if there is none)."""
        if self._record is None:
            self._record = {}
            path = self.source()
            if path != self.path and not path.exists():
                raise ListingMissing(f"{path}: the listing record of the invocation that started this job ({ENV}) "
                                     "is missing; run the top-level command again.")
            if path.exists():
                try:
                    data = json.loads(path.read_text())
                except ValueError as err:
                    raise ListingMissing(f"{path}: the listing record is damaged ({err}); delete it and "
                                         "run the workflow again (the top-level run writes it).") from err
                if data.get("version") == VERSION:
                    self._record = data.get("entries", {})
        return self._record

    def get(self, name: str, key: dict, list_fn: Callable):
        """What the source of model ``name`` holds (a :class:`clipdyn.hub.sources.Resolved`): listed now
        (top-level) or read from the record (jobs, readers)."""
        k = _key(key)
        if k in self.listed:  # two models of one run: listed once
            return _decode(self.listed[k]["resolved"])
        if self.mode != "top":
            entry = self.record().get(k)
            if entry is not None:
                return _decode(entry["resolved"])
            if self.mode == "job":
                raise ListingMissing(
                    f"models.{name}: this job process found no listing of {key} in {self.source()}. Job processes "
                    "do not list the Hub; the top-level `snakemake` writes the record. Run the top-level command "
                    "again.")
            self._log(f"models.{name}: not in the listing record {self.path}: listing it on the Hub")
        found = list_fn()
        self.calls += 1
        self.listed[k] = {"key": key, "model": name, "listed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "resolved": _encode(found)}
        return found

    def save(self) -> Optional[Path]:
        """Write this invocation's listings (top-level runs, once the study is resolved): its own record, named
        by content, and the latest copy; name the record in :data:`ENV` for the job processes. Returns the
        record (None outside a top-level run)."""
        if self.mode != "top":
            return None
        text = json.dumps({"version": VERSION, "entries": self.listed}, indent=1, sort_keys=True) + "\n"
        own = self.path.parent / Path(RECORDS).name / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.json"
        if not own.exists():
            with atomic_path(own) as tmp:
                tmp.write_text(text)
        with atomic_path(self.path) as tmp:
            tmp.write_text(text)
        self._record = dict(self.listed)
        os.environ[ENV] = str(own.resolve())
        return own
