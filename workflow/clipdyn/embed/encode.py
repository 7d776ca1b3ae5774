"""The encoding loop: a pixel cache through a model's image tower, batch by batch, with a prefetch
thread feeding the device, to one fp32 embedding per image (and spatial maps where asked)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Iterator, Optional, Tuple

import numpy as np

from ..config.specs import EmbeddingSettings
from .precision import autocast_dtype, empty_cuda_cache, is_out_of_memory, precision_name, projection_outside
from .saliency_maps import DEFAULT_SALIENCY_MAP, check_saliency_map, forward_with_maps


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
                    empty_cuda_cache()
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
