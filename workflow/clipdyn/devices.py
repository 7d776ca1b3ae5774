"""Which device an embedding job runs on.

``snakemake --resources gpu=2`` lets two ``gpu=1`` jobs run at once but does not
say which GPU each gets. Each job therefore claims one GPU for itself with an
exclusive, non-blocking ``flock`` on a lock file named after the GPU's UUID (so
jobs that see the GPUs under different ``CUDA_VISIBLE_DEVICES`` still agree),
and the lock is released when the job ends, even when it is killed (the kernel
drops flocks of dead processes).

Under a scheduler that assigns GPUs itself (SLURM sets ``CUDA_VISIBLE_DEVICES``
for a job with a GPU gres), the job uses what it was given and claims nothing.
Without CUDA, jobs run on the CPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple


def default_lock_dir() -> Path:
    return Path(os.environ.get("CLIPDYN_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"clipdyn-gpu-locks-{os.getuid()}")


def try_claim(keys: Sequence[str], lock_dir: os.PathLike) -> Optional[Tuple[int, object]]:
    """Claim the first free slot among ``keys``; returns (index, open lock file) or None if all are held."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        f = open(lock_dir / f"{key}.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        return i, f
    return None


@contextlib.contextmanager
def claim_slot(keys: Sequence[str], lock_dir: os.PathLike, poll: float = 2.0, log=print) -> Iterator[int]:
    """Hold one of ``keys`` exclusively for the duration of the block; wait while all are held."""
    waited = False
    while True:
        got = try_claim(keys, lock_dir)
        if got is not None:
            break
        if not waited:
            log(f"all {len(keys)} GPUs are held by other jobs; waiting (lock dir {lock_dir})")
            waited = True
        time.sleep(poll)
    index, handle = got
    try:
        yield index
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def scheduler_assigned() -> bool:
    """True when a batch scheduler chose this job's GPUs (SLURM with a GPU allocation)."""
    return bool(os.environ.get("SLURM_JOB_ID")) and os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, "")


def _gpu_keys() -> List[str]:
    import torch

    keys = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        keys.append(f"gpu-{uuid}" if uuid else f"gpu-index-{i}")
    return keys


@contextlib.contextmanager
def claim_device(lock_dir: Optional[os.PathLike] = None, log=print) -> Iterator["torch.device"]:
    """The device this job computes on, held exclusively while the block runs."""
    import torch

    if not torch.cuda.is_available():
        log("CUDA is not available: running on the CPU")
        yield torch.device("cpu")
        return
    if scheduler_assigned() or torch.cuda.device_count() == 1:
        log(f"using cuda:0 ({torch.cuda.get_device_name(0)}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
        torch.cuda.set_device(0)
        yield torch.device("cuda", 0)
        return
    lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
    with claim_slot(_gpu_keys(), lock_dir, log=log) as i:
        log(f"claimed cuda:{i} ({torch.cuda.get_device_name(i)}) via {lock_dir}")
        torch.cuda.set_device(i)
        yield torch.device("cuda", i)
