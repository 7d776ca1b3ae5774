"""How much memory and time an embedding or classifier job asks its scheduler for."""

from __future__ import annotations

from typing import Optional

JOB_BASE_MB = 3000
#: what a job declares when the checkpoint's size is not known (an older listing) and none is configured
FALLBACK_MEM_MB = 8000
#: an embedding job's runtime (minutes): this much, plus RUNTIME_MIN_PER_GIB2 x checkpoint GiB x pixel-cache GiB
RUNTIME_BASE_MIN = 30
RUNTIME_MIN_PER_GIB2 = 20


def job_mem_mb(checkpoint_bytes: Optional[int], configured: Optional[int] = None, attempt: int = 1) -> int:
    """The memory (MB) an embedding or text-classifier job asks a scheduler for.

    ``configured`` (``embedding: mem_mb``) wins when set. Otherwise it follows the checkpoint's size:
    the file is memory-mapped and only the weights' pages are read (:func:`read_state_dict`), so a job
    needs at most :data:`JOB_BASE_MB` plus the file's size (the weights alone for a bare state dict;
    about a third of it for a training checkpoint with AdamW state). ``attempt``: Snakemake's retry
    count; each retry asks for that many times as much.
    """
    if configured:
        return int(configured) * attempt
    if not checkpoint_bytes:
        return FALLBACK_MEM_MB * attempt
    return (JOB_BASE_MB + -(-int(checkpoint_bytes) // 2**20)) * attempt


def job_runtime_min(checkpoint_bytes: Optional[int], pixel_bytes: Optional[int], attempt: int = 1) -> int:
    """The time limit (minutes) an embedding job asks a scheduler for.

    Model cost times number of images: :data:`RUNTIME_BASE_MIN` plus :data:`RUNTIME_MIN_PER_GIB2`
    minutes per (checkpoint GiB x pixel-cache GiB); the pixel cache is uint8 N x 3 x S x S, so its size
    counts the images. An unknown size counts as zero. Each retry (``attempt``) asks for that many
    times as much.
    """
    ckpt_gib = (checkpoint_bytes or 0) / 2**30
    pixels_gib = (pixel_bytes or 0) / 2**30
    return int((RUNTIME_BASE_MIN + RUNTIME_MIN_PER_GIB2 * ckpt_gib * pixels_gib) * attempt)
