"""The embedding step a job hands to the worker: one checkpoint over one pixel cache, to Parquet; and
the worker's model cache (the last model loaded, kept for the next job on the same checkpoint)."""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

from ..progress import log as _log
from .encode import embed_pixels
from .model import checkpoint_commit, load_model, register_model_configs
from .precision import empty_cuda_cache
from .saliency_maps import DEFAULT_SALIENCY_MAP

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
        empty_cuda_cache()


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
        empty_cuda_cache()  # a worker idles between jobs: keep only the weights on the GPU
        meta = dict(provenance, checkpoint_commit=checkpoint_commit(checkpoint), n_images=int(len(ids)),
                    n_skipped=pix_meta.get("n_skipped", 0), precision_setting=precision, **ran,
                    **runtime_provenance(device), compiled=bool(compile),
                    **({"saliency_map": saliency_map} if spatial else {}))
        write_embeddings(out, ids, X, prov(**meta), spatial=maps)
