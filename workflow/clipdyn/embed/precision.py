"""Precision and out-of-memory policy.

The image and text towers may run under autocast (bf16 where the GPU has it natively, fp16
otherwise; ``precision`` in the config), but the final projections, the spatial maps and everything
after them run in fp32 with autocast disabled: stored embeddings keep fp32's digits of the
projection (small distances and near-tied zero-shot logits are what the study measures). A batch
that runs out of memory (the allocator's, or cuBLAS/cuDNN failing to allocate) is retried halved.
"""

from __future__ import annotations

import contextlib

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_PRECISION_NAMES = {"torch.bfloat16": "bf16", "torch.float16": "fp16"}


def autocast_dtype(precision: str, device, log=print):
    """The dtype the towers run in under autocast for ``precision`` on ``device``; None for plain fp32.

    ``auto``: on CUDA bf16 where the GPU has it natively (compute capability >= 8.0), else fp16; fp32
    on the CPU. An explicit ``bf16`` on an older GPU becomes fp16 (emulated bf16 is slow there).
    """
    import torch

    from .devices import half_dtype

    if precision not in PRECISIONS:
        raise ValueError(f"embedding: precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device = torch.device(device)
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16":
        return torch.float16
    native = half_dtype(device)
    if precision == "bf16" and native != torch.bfloat16:
        log(f"{device} has no native bf16 (compute capability < 8.0): running the towers in fp16")
    return native


def precision_name(dtype) -> str:
    """``bf16``/``fp16``/``fp32`` for an autocast dtype from :func:`autocast_dtype`."""
    return "fp32" if dtype is None else _PRECISION_NAMES[str(dtype)]


@contextlib.contextmanager
def projection_outside(owner, name: str):
    """Take the projection ``owner.<name>`` (a matrix or an ``nn.Linear``) out of its tower for the
    block, so that the tower (run under autocast) returns unprojected features; yields the projection
    as an fp32 function, to be applied with autocast disabled. Yields None, and leaves the tower as it
    is, when there is no separable projection (it then runs inside the tower, in the tower's precision).
    """
    import torch

    proj = getattr(owner, name, None)
    if isinstance(proj, torch.nn.Linear):
        w = proj.weight.detach().float()
        b = proj.bias.detach().float() if proj.bias is not None else None

        def project(x):
            return torch.nn.functional.linear(x, w, b)
    elif isinstance(proj, torch.Tensor) and proj.ndim == 2:
        w = proj.detach().float()

        def project(x):
            return x @ w
    else:
        yield None
        return
    setattr(owner, name, None)
    try:
        yield project
    finally:
        setattr(owner, name, proj)


_OOM_MARKERS = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
                "out of memory")


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA allocation failure: the caching allocator's ``OutOfMemoryError``, or the ``RuntimeError`` that
    cuBLAS/cuDNN raise when their own workspace allocation fails (``CUBLAS_STATUS_ALLOC_FAILED``)."""
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in _OOM_MARKERS)


def empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
