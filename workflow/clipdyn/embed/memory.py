"""How much memory an embedding or classifier job asks its scheduler for."""

from __future__ import annotations

from typing import Optional

JOB_BASE_MB = 3000
#: what a job declares when the checkpoint's size is not known (an older listing) and none is configured
FALLBACK_MEM_MB = 8000


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
