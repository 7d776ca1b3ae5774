"""Everything remote comes through ``huggingface_hub``: listing, checkpoints, datasets.

Identity of a file is its content hash (the LFS sha256, or the git blob id of a
small file), which is also the name of its blob in the local cache. A new
commit on the Hub that only adds epochs leaves every earlier file's identity
unchanged, so earlier epochs' jobs are not rerun; a file whose content changed
gets a new identity and is rerun.

With ``HF_HUB_OFFLINE=1`` the listing reads the local cache (``refs/<branch>``
and ``snapshots/<commit>/``), the layout ``huggingface_hub`` itself writes, and
downloads resolve from it through the same ``hf_hub_download`` call.

The token for gated repos comes from the environment (``HF_TOKEN``), read by
``huggingface_hub`` itself; clipdyn never passes it around, logs or stores it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, TypeVar

from ..atomic import publish
from ..progress import PROGRESS_S, LogProgress  # noqa: F401  (LogProgress: the tqdm_class of its downloads)

T = TypeVar("T")

_HEX40 = re.compile(r"^[0-9a-f]{40}$")



def sha256_file(path: Path) -> str:
    """The sha256 of a file's content (what the Hub names an LFS file by), read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class HubError(RuntimeError):
    """A Hub listing or download failed; the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    blob: str
    size: Optional[int] = None  # bytes, as the listing says (None: not known)


@dataclass(frozen=True)
class CheckpointFile:
    """One checkpoint of a model: where it is and what it is (see ``clipdyn.hub.sources``).

    ``path`` is the file's path in the repo (Hub sources) or its absolute path (local
    sources); ``commit`` the commit it was listed at (empty for local files); ``blob`` its
    content hash (LFS sha256, git blob id, or the sha256 of a local file); ``revision`` the
    revision to download it from when it is not the model's (Hub revisions: the commit).
    """

    epoch: int
    path: str
    commit: str
    blob: str
    size: Optional[int] = None  # bytes, from the listing (what `python -m clipdyn plan` adds up)
    revision: str = ""


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (as huggingface_hub reads it)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return env or bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> Path:
    """The Hugging Face hub cache folder in use (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_cache_folder(repo_id: str, repo_type: str, cache: Optional[os.PathLike] = None) -> Path:
    """A repo's folder in the HF cache (``cache``, else :func:`cache_dir`): ``models--org--name``."""
    from huggingface_hub.file_download import repo_folder_name

    return Path(cache or cache_dir()) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)


def _unreachable(err: BaseException) -> bool:
    """True when ``err`` is huggingface_hub's way of saying the Hub could not be reached.

    ``hf_hub_download`` and ``snapshot_download`` turn a connection error, a
    timeout or a 5xx/429 answer into ``LocalEntryNotFoundError`` ("... cannot
    find the requested files in the local cache") chained to the real error.
    That is transient (unlike offline mode or a file that is not cached).
    """
    from huggingface_hub.errors import FileMetadataError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    cause = err.__cause__
    if not isinstance(err, LocalEntryNotFoundError) or cause is None or is_offline():
        return False
    if isinstance(cause, (OfflineModeIsEnabled, FileMetadataError)):
        return False
    if isinstance(cause, HfHubHTTPError):
        status = getattr(getattr(cause, "response", None), "status_code", None)
        return status is None or status >= 500 or status == 429
    return True  # connection errors and timeouts


def _describe(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    if _unreachable(err):
        text = f"{type(err.__cause__).__name__}: {err.__cause__}"
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


#: HTTP answers that mean "refused", not "unavailable"
_REFUSED = {400, 401, 403, 404}


def _http_status(err: Optional[BaseException]) -> Optional[int]:
    return getattr(getattr(err, "response", None), "status_code", None)


def with_retries(fn: Callable[[], T], what: str, attempts: int = 4, base_delay: float = 2.0) -> T:
    """Call ``fn``; retry transient network/server errors with exponential backoff.

    Errors that retrying cannot fix (missing repo or file, gated repo, offline
    mode) are raised at once.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    final = (EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError,
             LocalEntryNotFoundError, OfflineModeIsEnabled, HubError, FileNotFoundError)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as err:  # network errors, 5xx, timeouts
            if isinstance(err, final) and not _unreachable(err):
                raise
            if _http_status(err) in _REFUSED or _http_status(err.__cause__) in _REFUSED:
                raise  # the Hub refused (bad token, no access): retrying cannot fix it
            if attempt == attempts:
                raise HubError(f"{what}: failed after {attempts} attempts: {_describe(err)}. "
                               "The Hub or the network is unavailable; run the same command again later.") from err
            delay = base_delay * 2 ** (attempt - 1)
            print(f"{what}: {_describe(err)}; retrying in {delay:.0f} s "
                  f"(attempt {attempt}/{attempts})", flush=True)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _explain(err: Exception, repo_id: str, repo_type: str, what: str) -> HubError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, GatedRepoError):
        return HubError(f"{what}: {repo_type} repo {repo_id!r} is gated. Accept its terms on the Hub "
                        "and log in (`hf auth login`, or export HF_TOKEN=<a read token>) before running the workflow.")
    if isinstance(err, RepositoryNotFoundError):
        return HubError(f"{what}: {repo_type} repo {repo_id!r} does not exist or is private "
                        "(check the repo and repo_type in the config; private repos need HF_TOKEN).")
    if isinstance(err, RevisionNotFoundError):
        return HubError(f"{what}: revision not found in {repo_type} repo {repo_id!r}; check `revision` in the config.")
    status = _http_status(err) or _http_status(err.__cause__)
    if status in (401, 403):
        return HubError(f"{what}: the Hub refused access to {repo_type} repo {repo_id!r} (HTTP {status}): the token "
                        "in HF_TOKEN is invalid or expired, or has no access to this repo. Create a read token at "
                        "https://huggingface.co/settings/tokens, accept the repo's terms if it is gated, and log in "
                        "with it (`hf auth login`, or export HF_TOKEN=<the token>).")
    if isinstance(err, EntryNotFoundError):
        return HubError(f"{what}: file not found in {repo_type} repo {repo_id!r}; check the file names in the config.")
    return HubError(f"{what}: {type(err).__name__}: {err}")


def list_repo(repo_id: str, revision: str = "main", repo_type: str = "model",
              prefix: str = "") -> tuple[str, List[RemoteFile]]:
    """The commit ``revision`` resolves to, and the files under ``prefix`` in it."""
    if is_offline():
        return _list_cached(repo_id, revision, repo_type, prefix)
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi()
    what = f"listing {repo_type} repo {repo_id}@{revision}"
    try:
        commit = with_retries(lambda: api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha, what)
        entries = with_retries(lambda: list(api.list_repo_tree(repo_id, path_in_repo=prefix.rstrip("/") or None,
                                                                revision=commit, repo_type=repo_type,
                                                                recursive=True)), what)
    except HubError:
        raise
    except Exception as err:
        raise _explain(err, repo_id, repo_type, what) from err
    files = [RemoteFile(e.path, e.lfs.sha256 if e.lfs else e.blob_id, e.size)
             for e in entries if isinstance(e, RepoFile)]
    return commit, sorted(files, key=lambda f: f.path)


def _list_cached(repo_id: str, revision: str, repo_type: str, prefix: str) -> tuple[str, List[RemoteFile]]:
    root = repo_cache_folder(repo_id, repo_type)
    if _HEX40.match(revision):
        commit = revision
    else:
        ref = root / "refs" / revision
        if not ref.exists():
            raise HubError(
                f"HF_HUB_OFFLINE is set and {repo_type} repo {repo_id!r} (revision {revision!r}) is not in the "
                f"local cache {cache_dir()} (no {ref}). Run once with Hub access, point HF_HUB_CACHE at a cache "
                "that has it, or unset HF_HUB_OFFLINE.")
        commit = ref.read_text().strip()
    snap = root / "snapshots" / commit
    if not snap.is_dir():
        raise HubError(f"HF_HUB_OFFLINE is set and commit {commit} of {repo_id!r} is not in the local cache ({snap}).")
    base = snap / prefix if prefix else snap
    files = []
    for p in sorted(base.rglob("*")) if base.exists() else []:
        if p.is_symlink() or p.is_file():
            blob = Path(os.readlink(p)).name if p.is_symlink() else ""
            size = p.stat().st_size if p.exists() else None
            files.append(RemoteFile(str(p.relative_to(snap)), blob, size))
    return commit, files


def list_refs(repo_id: str, repo_type: str = "model") -> dict:
    """Branch and tag names of a repo -> the commit sha each points at (the Hub's refs listing).

    Offline, the cache's ``refs/<name>`` files: every revision that was downloaded by name.
    """
    if is_offline():
        refs = repo_cache_folder(repo_id, repo_type) / "refs"
        if not refs.is_dir():
            raise HubError(f"HF_HUB_OFFLINE is set and {repo_type} repo {repo_id!r} is not in the local cache "
                           f"{cache_dir()} (no {refs}). Run once with Hub access, point HF_HUB_CACHE at a cache "
                           "that has it, or unset HF_HUB_OFFLINE.")
        return {str(p.relative_to(refs)): p.read_text().strip() for p in sorted(refs.rglob("*"))
                if p.is_file() and p.relative_to(refs).parts[0] != "pr" and not p.name.startswith(".")}
    from huggingface_hub import HfApi

    what = f"listing the branches and tags of {repo_type} repo {repo_id}"
    try:
        refs = with_retries(lambda: HfApi().list_repo_refs(repo_id, repo_type=repo_type), what)
    except HubError:
        raise
    except Exception as err:
        raise _explain(err, repo_id, repo_type, what) from err
    return {r.name: r.target_commit for r in [*refs.branches, *refs.tags]}


def file_info(repo_id: str, filename: str, commit: str, repo_type: str = "model") -> tuple:
    """(content hash, size in bytes or None) of ``filename`` at ``commit`` (the hash: LFS sha256 or git blob id)."""
    what = f"{filename} in {repo_type} repo {repo_id}@{commit[:12]}"
    if is_offline():
        link = repo_cache_folder(repo_id, repo_type) / "snapshots" / commit / filename
        if not (link.is_symlink() or link.is_file()):
            raise HubError(f"HF_HUB_OFFLINE is set and {what} is not in the local cache ({link}); check the "
                           "checkpoint file name in the config, or run once with Hub access.")
        return (Path(os.readlink(link)).name if link.is_symlink() else "",
                link.stat().st_size if link.exists() else None)
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        info = with_retries(lambda: HfApi().get_paths_info(repo_id, [filename], revision=commit,
                                                           repo_type=repo_type), f"listing {what}")
    except HubError:
        raise
    except Exception as err:
        raise _explain(err, repo_id, repo_type, f"listing {what}") from err
    files = [e for e in info if isinstance(e, RepoFile)]
    if not files:
        raise HubError(f"{what}: no such file; check the checkpoint file name in the config.")
    return (files[0].lfs.sha256 if files[0].lfs else files[0].blob_id), files[0].size


def epoch_regex(template: str) -> re.Pattern:
    """Regex matching the checkpoint file names of ``template`` (which contains ``{epoch}``)."""
    if template.count("{epoch}") != 1:
        raise ValueError(f"checkpoint template {template!r} must contain '{{epoch}}' exactly once")
    head, tail = template.split("{epoch}")
    return re.compile("^" + re.escape(head) + r"(?P<epoch>\d+)" + re.escape(tail) + "$")


def template_prefix(template: str) -> str:
    """The folder part of the template before ``{epoch}`` (what to list)."""
    head = template.split("{epoch}")[0]
    return head.rsplit("/", 1)[0] + "/" if "/" in head else ""


def discover_epochs(repo_id: str, template: str, revision: str = "main",
                    repo_type: str = "model") -> List[CheckpointFile]:
    """Every checkpoint of ``template`` in the repo at ``revision``, sorted by epoch."""
    rx = epoch_regex(template)
    commit, files = list_repo(repo_id, revision, repo_type, template_prefix(template))
    found = {}
    for f in files:
        m = rx.match(f.path)
        if m:
            found[int(m.group("epoch"))] = CheckpointFile(int(m.group("epoch")), f.path, commit, f.blob, f.size)
    return [found[e] for e in sorted(found)]


def select_epochs(spec, available: Optional[Sequence[int]]) -> List[int]:
    """Which epochs to evaluate.

    ``spec`` is ``"auto"`` (every available epoch), a list of epochs, or a mapping
    ``{first, last, step}`` (last may be ``"auto"``: the last available epoch), or
    ``{auto: true, step: k, include_last: true}`` (every k-th available epoch
    from the first, plus the last available one).
    """
    avail = sorted(set(available or []))
    if spec == "auto":
        return avail
    if isinstance(spec, (list, tuple)):
        return sorted({int(e) for e in spec})
    if isinstance(spec, dict):
        step = int(spec.get("step", 1))
        if spec.get("auto"):
            if not avail:
                return []
            first = avail[0]
            chosen = [e for e in avail if (e - first) % step == 0]
            if spec.get("include_last", True) and avail[-1] not in chosen:
                chosen.append(avail[-1])
            return chosen
        first = int(spec.get("first", 1))
        last = spec.get("last")
        if last in (None, "auto"):
            if not avail:
                return []
            last = avail[-1]
        chosen = list(range(first, int(last) + 1, step))
        if spec.get("include_last", False) and chosen and chosen[-1] != int(last):
            chosen.append(int(last))
        return chosen
    raise ValueError(f"epochs must be 'auto', a list or a mapping, got {spec!r}")


#: seconds between progress lines of a download in the job log


def _progress(label: str, every: float, log: Optional[Callable[[str], None]] = None):
    return functools.partial(LogProgress, label=label, every=every, log=log)


def _fetch(call: Callable[[], T], what: str, repo_id: str, repo_type: str) -> T:
    """Run a huggingface_hub download with retries; turn its errors into a HubError that says what to do."""
    try:
        return with_retries(call, what)
    except HubError:
        raise
    except Exception as err:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        if isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and _http_status(err.__cause__) is None:
            raise HubError(f"{what}: not in the local cache {cache_dir()} and HF_HUB_OFFLINE is set (or the Hub "
                           "is unreachable). Run with Hub access, or point HF_HUB_CACHE at a cache that has it."
                           ) from err
        raise _explain(err, repo_id, repo_type, what) from err


def download_file(repo_id: str, filename: str, revision: str = "main", repo_type: str = "model",
                  expected_blob: Optional[str] = None, progress_s: float = PROGRESS_S,
                  log: Optional[Callable[[str], None]] = None) -> Path:
    """Fetch one file through ``hf_hub_download`` (resumable, atomic) and return its cached path.
    ``log``: where its progress lines go (default stderr).

    If ``expected_blob`` is given, the cached blob must have that content hash:
    a file changed on the Hub since it was listed fails here rather than being
    evaluated under the old identity.
    """
    from huggingface_hub import hf_hub_download

    what = f"downloading {filename} from {repo_type} repo {repo_id}@{revision}"
    path = Path(_fetch(lambda: hf_hub_download(repo_id, filename, revision=revision, repo_type=repo_type,
                                               cache_dir=cache_dir(), local_files_only=is_offline(),
                                               tqdm_class=_progress(f"{repo_id}/{filename}", progress_s, log)),
                       what, repo_id, repo_type))
    if expected_blob:
        linked = Path(path).is_symlink()
        # A snapshot entry is a link to its blob, named by its content hash; where the cache holds copies
        # instead (a copied cache, a file system without links), the copy is checked against the listed hash.
        blob = Path(os.path.realpath(path)).name if linked else expected_blob
        if blob != expected_blob:
            raise HubError(f"{what}: content changed on the Hub since it was listed (blob {blob[:12]}, listed "
                           f"{expected_blob[:12]}). Run the workflow again to list the new version.")
        actual = _content_id(Path(os.path.realpath(path)), blob)
        if actual is not None and actual != blob:
            kind = "cached file" if linked else "cached file (a copy in the snapshot, not a link to a blob)"
            raise HubError(f"{what}: the {kind} {os.path.realpath(path)} is corrupt: its content hash is "
                           f"{actual[:12]}, not {blob[:12]} (a damaged or tampered download). Delete it "
                           f"(`hf cache rm hf://{repo_type}s/{repo_id}/{filename}`, or remove that file) and run the "
                           "workflow again to download it again.")
    return path


def _content_id(path: Path, blob: str) -> Optional[str]:
    """The content hash a cache blob is named after, computed from its bytes: the sha256 of
    an LFS file (64 hex digits) or the git blob id of a small one (40); None for other names."""
    import hashlib

    if re.fullmatch(r"[0-9a-f]{64}", blob):
        h = hashlib.sha256()
    elif _HEX40.match(blob):
        h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    else:
        return None
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def link(target: Path, dest: Path) -> None:
    """Point ``dest`` at ``target`` (a symlink into the HF cache; no copy), atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.abspath(target))  # the snapshots/<commit>/ path: keeps the commit visible
    publish(tmp, dest)


def download_snapshot(repo_id: str, revision: str = "main", repo_type: str = "dataset",
                      allow_patterns: Optional[Iterable[str]] = None,
                      progress_s: float = PROGRESS_S) -> tuple[Path, str]:
    """``snapshot_download`` of only ``allow_patterns``; returns (local folder, commit sha)."""
    from huggingface_hub import snapshot_download

    patterns = list(allow_patterns) if allow_patterns else None
    what = f"downloading {repo_type} repo {repo_id}@{revision} ({', '.join(patterns or ['all files'])})"
    folder = Path(_fetch(lambda: snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                                   allow_patterns=patterns, cache_dir=cache_dir(),
                                                   local_files_only=is_offline(),
                                                   tqdm_class=_progress(f"{repo_type} repo {repo_id}", progress_s)),
                         what, repo_id, repo_type))
    commit = folder.name if _HEX40.match(folder.name) else revision
    return folder, commit
