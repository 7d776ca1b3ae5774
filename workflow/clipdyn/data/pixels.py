"""Decode once: a dataset's images, resized and centre-cropped, as one uint8 array.

``pixels_<preprocess>.npy`` holds (N, H, W, 3) uint8 in NumPy's ``.npy`` format
(memory-mappable), and ``pixels_<preprocess>.parquet`` its row order
(``image_id``) and the images that were skipped. Every model whose open_clip
eval preprocessing has the same size, interpolation and resize mode shares the
file; mean/std normalisation happens on the device at embedding time, so it need
not match.

The resize and crop are open_clip's own eval transforms
(``open_clip.image_transform``) without the final ToTensor/Normalize, so an
image read from the cache and normalised equals ``preprocess(image)`` exactly.
"""

from __future__ import annotations

import os
from multiprocessing import get_context
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from ..atomic import publish
from ..config.specs import Preprocess
from ..io import read_frame, reading, write_frame


def pil_transform(pp: Preprocess):
    """open_clip's eval transform for ``pp`` minus ToTensor/Normalize: PIL image -> PIL image."""
    import open_clip
    from torchvision.transforms import Compose, Normalize

    full = open_clip.image_transform(pp.size, is_train=False, interpolation=pp.interpolation,
                                     resize_mode=pp.resize_mode)
    steps = list(full.transforms)
    assert isinstance(steps[-1], Normalize), steps
    return Compose(steps[:-2])  # drop (Maybe)ToTensor and Normalize


# ------------------------------------------------------------------ decoding
_WORK = {}


def _init_worker(out_path: str, shape: Tuple[int, ...], pp: Preprocess, corruption: Optional[dict] = None):
    _WORK["arr"] = np.lib.format.open_memmap(out_path, mode="r+")
    _WORK["tf"] = pil_transform(pp)
    _WORK["corruption"] = corruption
    import torch

    torch.set_num_threads(1)


def _decode_chunk(args):
    from .images import BadImageError, open_image

    rows, on_bad = args
    arr, tf, corruption = _WORK["arr"], _WORK["tf"], _WORK.get("corruption")
    bad = []
    for i, path, member, source_id, severity in rows:
        try:
            if corruption is None:
                a = np.asarray(tf(open_image(path, member)), dtype=np.uint8)
            else:
                from . import corruptions

                a = corruptions.corrupt_for_model(
                    open_image(path, member), int(severity), corruptions.noise_seed(source_id, int(severity)), tf,
                    geometry=corruption["geometry"], jpeg_quality=corruption["jpeg_quality"],
                    corruption=corruption.get("corruption", "gaussian_noise"))
            if a.shape != arr.shape[1:]:
                raise BadImageError(path, member, f"preprocessed to shape {a.shape}, expected {arr.shape[1:]}")
            arr[i] = a
        except BadImageError as err:
            if on_bad == "error":
                raise
            bad.append((i, str(err)))
    arr.flush()
    return bad


def build_pixel_cache(images: pd.DataFrame, pp: Preprocess, out_npy: os.PathLike, out_index: os.PathLike,
                      on_bad_image: str = "error", workers: int = 1, chunk: int = 64,
                      meta: Optional[dict] = None, log=print, corruption: Optional[dict] = None) -> dict:
    """Decode every image of the manifest once into ``out_npy``; write the row order to ``out_index``.

    ``on_bad_image``: ``"error"`` stops at the first missing/corrupt image, naming
    it; ``"skip"`` leaves it out, lists it in the index metadata and goes on.
    ``corruption``: for a derived (corrupted) manifest, whose rows carry ``source_id`` and
    ``severity``: ``{"corruption": "gaussian_noise", "geometry": ..., "jpeg_quality": ...}``; each
    row is then :func:`clipdyn.data.corruptions.corrupt_for_model` of its image, with noise seeded by
    ``noise_seed(source_id, severity)``, so an image's pixels depend only on its id and severity.
    Returns a summary dict (n, skipped).
    """
    out_npy, out_index = Path(out_npy), Path(out_index)
    out_npy.parent.mkdir(parents=True, exist_ok=True)
    n = len(images)
    shape = (n, pp.size, pp.size, 3)
    tmp = out_npy.with_name(f".{out_npy.name}.{os.getpid()}.tmp.npy")
    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape).flush()
    members = images["member"] if "member" in images else pd.Series([""] * n)
    if corruption is not None:
        from .corruptions import CORRUPTIONS

        if corruption.get("corruption", "gaussian_noise") not in CORRUPTIONS:
            raise ValueError(f"unsupported corruption {corruption.get('corruption')!r}; "
                             f"implemented: {sorted(CORRUPTIONS)}")
        missing = [c for c in ("source_id", "severity") if c not in images.columns]
        if missing:
            raise ValueError(f"a corrupted pixel cache needs a derived manifest with columns {missing}")
        sources, severities = images["source_id"].astype(str), images["severity"].astype(int)
    else:
        sources, severities = pd.Series([""] * n), pd.Series([0] * n)
    rows = list(zip(range(n), images["path"].astype(str), members.fillna("").astype(str),
                    sources.tolist(), severities.tolist()))
    # group rows by file so a tar shard is read by one worker, in order
    tasks = [(rows[s:s + chunk], on_bad_image) for s in range(0, n, chunk)]
    bad: List[Tuple[int, str]] = []
    try:
        if workers > 1 and len(tasks) > 1:
            with get_context("fork").Pool(workers, initializer=_init_worker,
                                          initargs=(str(tmp), shape, pp, corruption)) as pool:
                for done, b in enumerate(pool.imap(_decode_chunk, tasks), 1):
                    bad.extend(b)
                    if done % max(1, len(tasks) // 10) == 0:
                        log(f"decoded {min(done * chunk, n)}/{n} images")
        else:
            _init_worker(str(tmp), shape, pp, corruption)
            for t in tasks:
                bad.extend(_decode_chunk(t))
        bad_idx = {i for i, _ in bad}
        keep = np.array([i for i in range(n) if i not in bad_idx], dtype=np.int64)
        if bad:
            if len(keep) == 0:
                raise ValueError(f"every image of the dataset failed to decode; first: {bad[0][1]}")
            full = np.load(tmp, mmap_mode="r")
            tmp2 = out_npy.with_name(f".{out_npy.name}.{os.getpid()}.tmp2.npy")
            compact = np.lib.format.open_memmap(tmp2, mode="w+", dtype=np.uint8, shape=(len(keep),) + shape[1:])
            for s in range(0, len(keep), 1024):
                compact[s:s + 1024] = full[keep[s:s + 1024]]
            compact.flush()
            del full, compact
            publish(tmp2, tmp)
        ids = images["image_id"].astype(str).to_numpy()
        skipped = [{"image_id": ids[i], "reason": r} for i, r in bad]
        index_meta = dict(meta or {}, preprocess=pp.id, n_images=int(len(keep)), n_skipped=len(skipped),
                          skipped=skipped[:1000])
        publish(tmp, out_npy)
        write_frame(pd.DataFrame({"image_id": ids[keep]}), out_index, index_meta)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for s in skipped[:20]:
        log(f"skipped {s['image_id']}: {s['reason']}")
    return {"n": int(len(keep)), "skipped": len(skipped)}


def open_pixels(npy: os.PathLike, index: os.PathLike) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Memory-map a pixel cache: (pixels (N,H,W,3) uint8, image ids, index metadata).

    A cache that cannot be read (a truncated ``.npy``, a damaged index) raises
    :class:`clipdyn.io.DamagedFileError` naming the file."""
    with reading(npy):
        arr = np.load(npy, mmap_mode="r")
        if arr.ndim != 4 or arr.dtype != np.uint8:
            raise ValueError(f"holds {arr.dtype} of shape {arr.shape}, not (N, H, W, 3) uint8 images")
    with reading(index):
        index_df, meta = read_frame(index)
        ids = index_df["image_id"].to_numpy()
    if len(ids) != len(arr):
        raise ValueError(f"{npy}: {len(arr)} images but its index {index} lists {len(ids)}; "
                         "delete both and rerun to rebuild the pixel cache")
    return arr, ids, meta
