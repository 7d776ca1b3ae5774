"""Files that appear whole, with the permissions a plain ``open()`` would give them.

Every output is written under a temporary name next to its target and renamed into place, so a
killed job never leaves a file that a later job would trust. A temporary file made safely
(``tempfile.mkstemp``: mode 0600; ``mkdtemp``: 0700) is private, though, and a rename keeps the
mode: results renamed as they are would be unreadable to the rest of a group that shares the
results folder. So everything renamed into place goes through :func:`publish`, which first gives
it the mode that ``open()`` / ``mkdir()`` would have given it: 0666 / 0777 less the umask (as
``huggingface_hub`` does for the blobs of its cache).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it where Linux says it (/proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it, briefly
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open(path, "w")`` (or ``mkdir`` for a directory) gives a new file here."""
    return (0o777 if directory else 0o666) & ~current_umask()


def publish(tmp: os.PathLike, path: os.PathLike) -> None:
    """Rename the finished ``tmp`` onto ``path`` (atomically: same folder) after giving it the
    default permissions. A directory gets them too (its contents keep theirs); a symlink is
    renamed as it is (it has no permissions of its own, and chmod would change its target)."""
    tmp = os.fspath(tmp)
    if not os.path.islink(tmp):
        os.chmod(tmp, default_mode(os.path.isdir(tmp)))
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (its folder is created); when the block finishes,
    it is published onto ``path``; when it raises, it is removed and ``path`` is left as it was.

    ``suffix``: for writers that pick the format from the file name (``savefig``, ``np.save``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def flocked(path: os.PathLike, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold an ``flock`` on ``path`` (created if missing, never removed) for the block; yields whether
    it was taken.

    ``shared``: a shared (reader) lock, else exclusive. ``wait=False``: do not wait; the block runs
    with ``False`` when another holder has it. The lock belongs to this open file, so two threads
    of one process exclude each other as two processes do, and the kernel releases it when its
    holder dies: a killed job never leaves a lock behind. The file is never removed (removing it
    would let a third process lock a new file while a second holds the old one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(f, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock(path: os.PathLike, waiting: Optional[Callable[[], None]] = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (the lock file ``<path>.lock``) for the block.

    Processes sharing a folder (two runs over one ``downloads/``) take turns on one target:
    the second waits (``waiting()`` is called first, to say so) and then finds the first's
    finished file.
    """
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    with flocked(lock, wait=False) as got:
        if got:
            yield lock
            return
    if waiting is not None:
        waiting()
    with flocked(lock):
        yield lock
