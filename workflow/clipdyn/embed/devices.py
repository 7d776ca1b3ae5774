"""Which device an embedding job runs on.

``snakemake --resources gpu=2`` lets two ``gpu=1`` jobs run at once but does not
say which GPU each gets. Each job therefore claims one GPU for itself with an
exclusive, non-blocking ``flock`` on a lock file named after the GPU's UUID (so
jobs that see the GPUs under different ``CUDA_VISIBLE_DEVICES`` still agree),
and the lock is released when the job ends, even when it is killed (the kernel
drops flocks of dead processes).

A job that sees exactly one GPU (a SLURM job with one GPU gres, ``CUDA_VISIBLE_DEVICES``
set to one device) uses it and claims nothing. Whenever more than one GPU is visible the
job claims one, scheduler or not: an ``sbatch``/``salloc`` allocation with several GPUs
running Snakemake's local executor sees ``CUDA_VISIBLE_DEVICES=0,1`` in every job, and
without a claim every job would compute on ``cuda:0``. A job may name the GPU it prefers
(a persistent worker prefers the GPU its cached model is on); it gets that one when free,
else the first free one. Without CUDA, jobs run on the CPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # for annotations only: torch is imported where a device is used
    import torch


def default_lock_dir() -> Path:
    return Path(os.environ.get("CLIPDYN_GPU_LOCK_DIR")
                or Path(tempfile.gettempdir()) / f"clipdyn-gpu-locks-{os.getuid()}")


def try_claim(keys: Sequence[str], lock_dir: os.PathLike,
              prefer: Optional[int] = None) -> Optional[Tuple[int, object]]:
    """Claim the first free slot among ``keys`` (``keys[prefer]`` first when given); returns
    (index, open lock file) or None if all are held."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    order = list(range(len(keys)))
    if prefer is not None and 0 <= prefer < len(keys):
        order.remove(prefer)
        order.insert(0, prefer)
    for i in order:
        key = keys[i]
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
def claim_slot(keys: Sequence[str], lock_dir: os.PathLike, poll: float = 2.0, log=print,
               prefer: Optional[int] = None) -> Iterator[int]:
    """Hold one of ``keys`` exclusively for the duration of the block (``keys[prefer]`` if it is
    free); wait while all are held."""
    waited = False
    while True:
        got = try_claim(keys, lock_dir, prefer)
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


def visible_gpus() -> Optional[List[str]]:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (None when unset); read without importing torch."""
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    if v is None:
        return None
    return [d.strip() for d in v.split(",") if d.strip() and d.strip() != "-1"]


def _gpu_keys() -> List[str]:
    import torch

    keys = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        keys.append(f"gpu-{uuid}" if uuid else f"gpu-index-{i}")
    return keys


def half_dtype(device) -> "torch.dtype":
    """The 16-bit float type for autocast on ``device``: bf16 where the hardware has it natively
    (CUDA compute capability 8.0 and up: A100, H100/H200, RTX 30xx and later; and the CPU), fp16
    otherwise (V100, T4, RTX 20xx emulate bf16 slowly)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return torch.bfloat16
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def device_info(device) -> dict:
    """What ran a job, for the provenance: the device, its name and compute capability."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        import platform

        return {"device": str(device), "device_name": platform.processor() or platform.machine()}
    major, minor = torch.cuda.get_device_capability(device)
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device),
            "compute_capability": f"{major}.{minor}"}


@contextlib.contextmanager
def claim_device(lock_dir: Optional[os.PathLike] = None, log=print,
                 prefer: Optional[int] = None) -> Iterator["torch.device"]:
    """The device this job computes on, held exclusively while the block runs.

    ``prefer``: the index of the GPU to take when it is free (a worker's cached model is there).
    """
    import torch

    if not torch.cuda.is_available():
        log("CUDA is not available: running on the CPU")
        yield torch.device("cpu")
        return
    n = torch.cuda.device_count()
    if n == 1:
        log(f"using cuda:0 ({torch.cuda.get_device_name(0)}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
        torch.cuda.set_device(0)
        yield torch.device("cuda", 0)
        return
    lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
    with claim_slot(_gpu_keys(), lock_dir, log=log, prefer=prefer) as i:
        log(f"claimed cuda:{i} of {n} visible ({torch.cuda.get_device_name(i)}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}) via {lock_dir}")
        torch.cuda.set_device(i)
        yield torch.device("cuda", i)
