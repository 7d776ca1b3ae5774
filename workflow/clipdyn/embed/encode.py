"""Checkpoints in, embeddings out: model loading, image embedding, zero-shot classifiers.

Models are built by open_clip's own factory from an architecture name and a
checkpoint file (``open_clip.create_model``, then the steps of ``open_clip.load_checkpoint``):
training checkpoints (``{'epoch', 'state_dict' with 'module.' prefix, 'optimizer', ...}``),
bare state dicts and ``.safetensors`` all load. ``torch.load`` runs with
``weights_only=True`` unless a model's config opts in to pickles (``allow_pickle``),
because unpickling a file from the internet runs its code, and with ``mmap=True``: the
file is mapped, not read, and the weights are assigned to the model as they are
(``load_state_dict(assign=True)``), so only the weights' pages are ever read and the
optimizer state of a training checkpoint (2/3 of a ViT-H-14 checkpoint with AdamW) is
never read into memory nor moved to the GPU.

Precision: the image and text towers may run under autocast (bf16 where the GPU has it
natively, fp16 otherwise; ``precision`` in the config), but the final projections, the
spatial maps and everything after them run in fp32 with autocast disabled: stored
embeddings keep fp32's digits of the projection (small distances and near-tied
zero-shot logits are what the study measures).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from ..config.specs import EmbeddingSettings
from ..progress import log as _log
from . import MODEL_CONFIG_DIR
from .saliency_maps import DEFAULT_SALIENCY_MAP, check_saliency_map, forward_with_maps


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and what to do."""


def register_model_configs(paths: Sequence[str]) -> None:
    """Make extra open_clip JSON model configs (files or folders) known to open_clip."""
    import open_clip

    for p in [MODEL_CONFIG_DIR, *map(Path, paths)]:
        if str(p) not in map(str, open_clip.factory._MODEL_CONFIG_PATHS):
            open_clip.add_model_config(p)


def _first_mismatch(model, state_dict) -> Optional[str]:
    """The first key or shape by which ``state_dict`` differs from ``model``'s, or None."""
    own = model.state_dict()
    for k, v in own.items():
        if k not in state_dict:
            return f"key {k!r} expected (shape {tuple(v.shape)}) but not in the checkpoint"
        if tuple(state_dict[k].shape) != tuple(v.shape):
            return f"key {k!r}: expected shape {tuple(v.shape)}, found {tuple(state_dict[k].shape)}"
    for k in state_dict:
        if k not in own:
            return f"unexpected key {k!r} in the checkpoint"
    return None


@contextlib.contextmanager
def _skip_random_init():
    """Make ``torch.nn.init``'s in-place initialisers no-ops while a model is built.

    The weights are overwritten by a ``strict=True`` checkpoint load right after, so drawing them at
    random first is wasted work: 3.1 s of ViT-B-16's 3.5 s ``create_model`` on this CPU, 0.4 s
    without (the same trick as transformers' ``no_init_weights``).
    """
    import torch

    saved = {}
    for name in dir(torch.nn.init):
        fn = getattr(torch.nn.init, name)
        if name.endswith("_") and not name.startswith("_") and callable(fn):
            saved[name] = fn
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _is_safetensors(path) -> bool:
    """Whether the file is in the safetensors format (an 8-byte header length, then a JSON header), whatever
    its name: ``results/checkpoints/<m>/epoch_<e>.pt`` may link to a final model's ``open_clip_model.safetensors``."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and head[:2] != b"PK"


def read_state_dict(path: str, weights_only: bool = True) -> dict:
    """The model weights of a checkpoint file, memory-mapped (open_clip's ``load_state_dict``
    with ``mmap=True``): the tensors are views of the mapped file, nothing is read until used.

    A training checkpoint's other entries (optimizer state, ...) are dropped unread; a
    ``module.`` prefix (DistributedDataParallel) is stripped. Files in torch's legacy (pre-1.6,
    non-zip) format cannot be mapped and are read whole.
    """
    import torch

    if str(path).endswith(".safetensors") or _is_safetensors(path):
        from safetensors.torch import load_file  # weights only by construction

        checkpoint = load_file(path, device="cpu")
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError as err:
            if "mmap can only be used with files saved with" not in str(err):
                raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        state_dict = checkpoint["state_dict"]
    elif isinstance(checkpoint, torch.jit.ScriptModule):
        state_dict = checkpoint.state_dict()
        for key in ["input_resolution", "context_length", "vocab_size"]:
            state_dict.pop(key, None)
    else:
        state_dict = checkpoint
    del checkpoint  # the optimizer state's tensors: mapped, never read
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"no state dict in the checkpoint (found {type(state_dict).__name__})")
    if next(iter(state_dict)).startswith("module"):
        state_dict = {k[7:]: v for k, v in state_dict.items()}
    return state_dict


def load_checkpoint(model, path: str, weights_only: bool = True):
    """``open_clip.load_checkpoint(model, path, strict=True)`` (the same conversions of
    older and third-party layouts), but memory-mapped and assigning the checkpoint's tensors
    to the model instead of copying them: peak host memory is about the weights' size, not
    the file's plus the model's. Tensors whose dtype differs from the model's are converted."""
    from open_clip.factory import (
        convert_state_dict,
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    state_dict = read_state_dict(path, weights_only=weights_only)
    state_dict = convert_state_dict(model, state_dict)
    if "positional_embedding" in state_dict and not hasattr(model, "positional_embedding"):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    for name in ("logit_scale", "logit_bias"):
        own = getattr(model, name, None)
        if name in state_dict and own is not None and own.ndim != state_dict[name].ndim:
            state_dict[name] = state_dict[name].reshape(own.shape)
    if "logit_bias" not in state_dict and getattr(model, "logit_bias", None) is not None:
        import torch

        state_dict["logit_bias"] = torch.zeros_like(state_dict["logit_scale"])
    position_id_key = "text.transformer.embeddings.position_ids"
    if position_id_key in state_dict and not hasattr(model, position_id_key):
        del state_dict[position_id_key]
    resize_pos_embed(state_dict, model)
    resize_text_pos_embed(state_dict, model)
    own = model.state_dict()
    for k, v in state_dict.items():
        if k in own and v.dtype != own[k].dtype and v.is_floating_point():
            state_dict[k] = v.to(own[k].dtype)
    del own
    return model.load_state_dict(state_dict, strict=True, assign=True)


#: host memory of an embedding job besides the weights: torch, CUDA's context, open_clip, a few pinned
#: batches (measured: 1.26 GB for the worker of a small model on the CPU; ``benchmarks/gpu_check.py``)
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


def load_model(arch: str, checkpoint: str, device="cpu", allow_pickle: bool = False,
               what: str = "", precision: str = "fp32"):
    """Build ``arch`` and load ``checkpoint`` into it; returns the model in eval mode.

    ``what`` names the model and epoch in error messages.
    """
    import open_clip

    ckpt = Path(checkpoint)
    where = f"{what + ': ' if what else ''}checkpoint {checkpoint}"
    if ckpt.is_dir():
        raise CheckpointError(f"{where} is a directory. Sharded (e.g. FSDP) checkpoints are not supported: "
                              "consolidate it into one file (torch.distributed.checkpoint.format_utils."
                              "dcp_to_torch_save) and point the config's checkpoint template at that file.")
    if not ckpt.exists():
        raise CheckpointError(f"{where} does not exist (a dangling link into the HF cache?); "
                              "rerun to download it again")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "no pretrained weights" noise
    with _skip_random_init():  # every parameter and buffer is loaded below (strict=True)
        model = open_clip.create_model(arch, device="cpu", precision=precision)
    try:
        load_checkpoint(model, str(ckpt), weights_only=not allow_pickle)
    except Exception as err:
        msg = str(err)
        if "Weights only load failed" in msg:
            refused = re.search(r"GLOBAL ([\w.]+)", msg)
            if refused:  # a pickled object torch's safe unpickler does not allow
                raise CheckpointError(
                    f"{where} contains pickled Python objects ({refused.group(1)}), which are refused by default "
                    "because loading them runs code from the file. If you trust the repo, set `allow_pickle: true` "
                    "for this model in the config.") from err
            operand = re.search(r"Unsupported operand[^\n]*", msg)  # not a pickle at all: garbage, an HTML page
            msg = f"not a PyTorch checkpoint: {operand.group(0) if operand else 'unreadable pickle stream'}"
        else:
            try:  # a readable state dict that does not fit: name the first differing key
                sd = read_state_dict(str(ckpt), weights_only=not allow_pickle)
                mismatch = _first_mismatch(model, sd)
            except Exception:
                mismatch = None
            if mismatch:
                raise CheckpointError(f"{where} does not fit architecture {arch!r}: {mismatch}. "
                                      "Check `arch` for this model in the config.") from None
        raise CheckpointError(f"{where} cannot be read ({type(err).__name__}: {msg.splitlines()[0] if msg else ''}); "
                              "it is truncated or corrupt. Delete it from the HF cache "
                              "(`hf cache rm hf://models/<repo>/<file>`) and rerun to download it again.") from err
    model = model.to(device).eval()
    return model


def logit_scale(model) -> float:
    """The checkpoint's learned logit scale as a multiplier (``exp(logit_scale)``)."""
    return float(model.logit_scale.detach().float().exp().item())


class _Prefetch:
    """Run ``it`` in a background thread, ``depth`` items ahead (overlaps reading with compute).

    Use it as a context manager: leaving the block, normally or by an exception in the consumer
    (out of memory at batch size 1, a bad model), stops the thread, drops what it had read ahead
    (page-locked batches) and joins it, so a persistent worker does not keep one blocked thread
    and its pinned buffers per failed job.
    """

    def __init__(self, it: Iterator, depth: int = 2):
        self._it, self._q = it, queue.Queue(depth)
        self._stop, self._done, self._err = threading.Event(), object(), []
        self._thread = threading.Thread(target=self._run, name="clipdyn-prefetch", daemon=True)
        self._thread.start()

    def _put(self, x) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(x, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def _run(self) -> None:
        try:
            for x in self._it:
                if not self._put(x):
                    break
        except BaseException as e:  # noqa: BLE001 (re-raised in the consumer)
            self._err.append(e)
        finally:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
            self._put(self._done)

    def __iter__(self) -> Iterator:
        while True:
            x = self._q.get()
            if x is self._done:
                break
            yield x
        self._thread.join()
        if self._err:
            raise self._err[0]

    def _drain(self) -> None:
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        self._stop.set()
        self._drain()  # unblocks a put in progress
        self._thread.join()
        self._drain()

    def __enter__(self) -> "_Prefetch":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def _batches(pixels: np.ndarray, batch_size: int, pin: bool):
    import torch

    for s in range(0, len(pixels), batch_size):
        block = pixels[s:s + batch_size]
        if pin:  # copy straight from the memory map into page-locked memory
            b = torch.empty(block.shape, dtype=torch.uint8, pin_memory=True)
            b.numpy()[...] = block
        else:
            b = torch.from_numpy(np.array(block))
        yield s, b


def _compiled(visual):
    """``torch.compile`` of the image tower, once per model object (a worker reuses it across jobs).

    The compiled wrapper is kept on the tower object itself (outside ``nn.Module``'s registry, so it
    is no submodule), not in a module-level cache: a ``WeakKeyDictionary`` whose value (the wrapper)
    references its key (the tower) never drops an entry, and a worker kept every checkpoint's tower
    on the GPU. Tower and wrapper now reference each other only, and go with the model (gc).
    """
    import torch

    compiled = visual.__dict__.get("_clipdyn_compiled")
    if compiled is None:
        compiled = torch.compile(visual)
        object.__setattr__(visual, "_clipdyn_compiled", compiled)
    return compiled


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


def _embed_batch(tower, project, chunk, device, fmt, mean, std, dtype, saliency_map):
    """One batch: (projected fp32 embeddings, fp32 saliency maps or None), on ``device``. Its own
    function so that after an out-of-memory error nothing of the batch outlives the traceback."""
    import torch

    with torch.inference_mode():
        # uint8 NHWC -> float NCHW in one copy, then ToTensor's /255 and Normalize's (x - mean) / std in
        # place, in fp32: the same arithmetic as open_clip's preprocess, with no temporaries, and a dense
        # NCHW input on the CPU (a permuted view made the CPU normalisation ~2x slower, the patch
        # embedding slower too).
        x = torch.empty((len(chunk), 3) + tuple(chunk.shape[1:3]), dtype=torch.float32, device=device,
                        memory_format=fmt)
        x.copy_(chunk.to(device, non_blocking=True).permute(0, 3, 1, 2))
        x.div_(255).sub_(mean).div_(std)
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            if saliency_map is not None:  # projects (in fp32) itself
                return forward_with_maps(getattr(tower, "_orig_mod", tower), x, saliency_map, project=project)
            y = tower(x)  # model.encode_image(x) without its projection (when it is separable)
        del x
        # the projection in fp32: under autocast a .float() before a matmul is cast back
        with torch.autocast(device_type=device.type, enabled=False):
            pooled = y.float()
            return (project(pooled) if project is not None else pooled), None


def embed_pixels(model, pixels: np.ndarray, device, batch_size: int = EmbeddingSettings.batch_size,
                 spatial: bool = False, precision: str = EmbeddingSettings.precision, log=print,
                 channels_last: bool = True, compile: bool = False,
                 info: Optional[dict] = None, saliency_map: str = DEFAULT_SALIENCY_MAP
                 ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Embed (N,H,W,3) uint8 pixels with ``model.encode_image``.

    Normalisation (open_clip's mean/std of the model) happens on the device, in fp32.
    ``precision`` (see :func:`autocast_dtype`): ``"auto"`` = the image tower under bf16 autocast on
    CUDA (fp16 on GPUs without native bf16), fp32 on the CPU; or ``"fp32"``/``"bf16"``/``"fp16"``. The
    final projection and the spatial maps always run in fp32 with autocast disabled (for towers whose
    projection cannot be taken out, ``auto`` runs the whole tower in fp32).
    On out-of-memory (CUDA's allocator, or cuBLAS/cuDNN failing to allocate) the batch size is halved
    and the batch retried. Results stay on the device and are copied to the host once, at the end.
    With ``spatial=True`` also returns per-patch saliency maps (N, G, G) of the variant
    ``saliency_map`` (:mod:`clipdyn.embed.saliency_maps`; the uncompiled tower runs those batches).
    ``compile=True`` runs the image tower through ``torch.compile`` (worth it for large datasets on
    a GPU; the first batches pay the compilation, and a last, smaller batch may recompile once).
    ``info``, when given, receives what ran: ``precision`` (effective), ``batch_size`` (requested),
    ``effective_batch_size`` (after halvings), ``projection`` (``fp32`` or ``in tower``).
    """
    import torch

    device = torch.device(device)
    visual = model.visual
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    mean = torch.tensor(visual.image_mean or OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(visual.image_std or OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
    cuda = device.type == "cuda"
    dtype = autocast_dtype(precision, device, log)
    if channels_last and cuda:
        model = model.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last and cuda else torch.contiguous_format
    n = len(pixels)
    if spatial:
        check_saliency_map(visual, saliency_map)
    out = maps = None  # on the device until the end: no host sync per batch
    bs = batch_size
    t0, done, last_log = time.time(), 0, time.time()
    with contextlib.ExitStack() as stack:
        project = stack.enter_context(projection_outside(visual, "proj"))
        if project is None and dtype is not None:
            if precision == "auto":
                dtype = None
                log(f"{type(visual).__name__} projects inside the tower: running it in fp32")
            else:
                log(f"{type(visual).__name__} projects inside the tower: the projection runs in "
                    f"{precision_name(dtype)} too")
        tower = _compiled(visual) if compile else visual
        pending = stack.enter_context(_Prefetch(_batches(pixels, bs, pin=cuda)))
        for start, cpu_batch in pending:
            s = start
            while s < start + len(cpu_batch):
                chunk = cpu_batch[s - start:s - start + bs]
                failed = None
                try:
                    emb, m = _embed_batch(tower, project, chunk, device, fmt, mean, std, dtype,
                                          saliency_map if spatial else None)
                except Exception as err:  # noqa: BLE001 (only out-of-memory is retried)
                    if bs == 1 or not is_out_of_memory(err):
                        raise
                    failed = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:160]}"
                if failed is not None:
                    # outside the except block: the traceback, and the activations its frames held, are gone
                    bs = max(1, bs // 2)
                    _empty_cuda_cache()
                    log(f"out of memory ({failed}); batch size halved to {bs}, retrying")
                    continue
                if out is None:
                    out = torch.empty((n, emb.shape[1]), dtype=torch.float32, device=device)
                out[s:s + len(emb)] = emb
                if spatial:
                    if maps is None:
                        maps = torch.empty((n,) + tuple(m.shape[1:]), dtype=torch.float32, device=device)
                    maps[s:s + len(emb)] = m
                s += len(emb)
                done += len(emb)
                del emb, m
            now = time.time()
            if now - last_log > 10:  # queued, not necessarily finished, on a GPU
                log(f"embedding: {done}/{n} images queued ({done / max(now - t0, 1e-9):.1f} images/s, batch {bs})")
                last_log = now
    if out is None:
        X = np.empty((0, visual.output_dim if hasattr(visual, "output_dim") else 0), np.float32)
    else:
        X = out.cpu().numpy()  # the one copy (and the one sync) of the whole job
    M = maps.cpu().numpy() if maps is not None else None
    log(f"embedded {n} images ({n / max(time.time() - t0, 1e-9):.1f} images/s, batch {bs}, "
        f"{precision_name(dtype)})")
    if info is not None:
        info.update(precision=precision_name(dtype), batch_size=int(batch_size), effective_batch_size=int(bs),
                    projection="fp32" if project is not None or dtype is None else "in tower")
    return X, M


# ----------------------------------------------------------------------------- the embedding step


# A persistent worker (clipdyn.embed.worker) keeps the last model it loaded, so that the next job on the
# same checkpoint (another dataset of the same epoch, the text classifier) skips the load. None in a
# plain job process: there is no next job there.
_MODEL_CACHE: Optional[dict] = None


def enable_model_cache() -> None:
    global _MODEL_CACHE
    _MODEL_CACHE = {}


def model_for(arch: str, checkpoint: str, device, allow_pickle: bool, what: str, content_id: str = ""):
    """``embed.load_model``, or the worker's cached model when it is the same checkpoint on the same device.

    Same checkpoint: the same content identity (``content_id``: the sha256 or blob id the listing gave the
    file, which changes when the file is replaced) and the same file version (device, inode, size, mtime,
    ctime: a file replaced after the listing, even keeping size and mtime as ``cp -p`` does). Not the
    path: a path is reused by a new file."""
    if _MODEL_CACHE is None:
        return load_model(arch, checkpoint, device=device, allow_pickle=allow_pickle, what=what)
    try:
        from ..hub.sources import file_version

        version = tuple(sorted(file_version(os.stat(checkpoint)).items()))
        key = (arch, content_id or "", version, str(device), bool(allow_pickle))
    except OSError:
        key = None  # load_model names the missing file
    if key is not None and key in _MODEL_CACHE:
        _log(f"reusing {checkpoint}, loaded by an earlier job in this worker")
        return _MODEL_CACHE[key]
    release_cached_model()
    model = load_model(arch, checkpoint, device=device, allow_pickle=allow_pickle, what=what)
    if key is not None:
        _MODEL_CACHE[key] = model
    return model


def release_cached_model() -> None:
    """Drop the worker's cached model (and give its GPU memory back)."""
    if _MODEL_CACHE:
        _MODEL_CACHE.clear()
        import gc

        gc.collect()  # a compiled tower and its wrapper reference each other (see _compiled)
        _empty_cuda_cache()


def cached_gpu() -> Optional[int]:
    """The index of the GPU the worker's cached model is on (the GPU its next job prefers), or None."""
    for model in (_MODEL_CACHE or {}).values():
        dev = next(model.parameters()).device
        if dev.type == "cuda":
            return dev.index
    return None


def runtime_provenance(device) -> dict:
    """What computed a result: device and GPU model, torch, CUDA and open_clip versions."""
    import open_clip
    import torch

    from .devices import device_info

    return dict(device_info(device), torch_version=torch.__version__, cuda_version=torch.version.cuda,
                open_clip_version=open_clip.__version__)


def _empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def checkpoint_commit(checkpoint: str) -> Optional[str]:
    """The Hub commit a checkpoint in the HF cache (or a link to one) came from (``.../snapshots/<commit>/...``)."""
    parts = Path(checkpoint).parts
    if "snapshots" not in parts:
        try:
            parts = Path(os.readlink(checkpoint)).parts
        except OSError:
            return None
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def embed_images(*, checkpoint: str, pixels: str, pixel_index: str, out: str, arch: str, allow_pickle: bool,
                 spatial: bool, batch_size: int, precision: str, model_configs: Sequence[str], provenance: dict,
                 threads: int = 2, lock_dir: Optional[str] = None, compile: bool = False,
                 saliency_map: str = DEFAULT_SALIENCY_MAP) -> None:
    import torch

    from ..data.pixels import open_pixels
    from ..io import provenance as prov
    from ..io import write_embeddings
    from .devices import claim_device

    torch.set_num_threads(max(1, threads))
    register_model_configs(model_configs)
    arr, ids, pix_meta = open_pixels(pixels, pixel_index)
    what = f"model {provenance.get('model')} epoch {provenance.get('epoch')}"
    # the GPU that holds this worker's model, when it is free (no reload); the claim is held until the
    # Parquet file is written
    with claim_device(lock_dir, log=_log, prefer=cached_gpu()) as device:
        t0 = time.time()
        model = model_for(arch, checkpoint, device, allow_pickle, what, provenance.get("checkpoint_blob") or "")
        if device.type == "cuda":
            torch.cuda.synchronize()
        _log(f"loaded {checkpoint} in {time.time() - t0:.1f} s")
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        if arr.shape[1] != size:
            raise ValueError(f"pixel cache {pixels} holds {arr.shape[1]} px images but {arch} expects {size} px")
        t0 = time.time()
        ran: dict = {}
        X, maps = embed_pixels(model, arr, device, batch_size=batch_size, spatial=spatial, precision=precision,
                               log=_log, compile=compile, info=ran, saliency_map=saliency_map)
        _log(f"embedded {len(X)} images in {time.time() - t0:.1f} s")
        del model
        _empty_cuda_cache()  # a worker idles between jobs: keep only the weights on the GPU
        meta = dict(provenance, checkpoint_commit=checkpoint_commit(checkpoint), n_images=int(len(ids)),
                    n_skipped=pix_meta.get("n_skipped", 0), precision_setting=precision, **ran,
                    **runtime_provenance(device), compiled=bool(compile),
                    **({"saliency_map": saliency_map} if spatial else {}))
        write_embeddings(out, ids, X, prov(**meta), spatial=maps)
