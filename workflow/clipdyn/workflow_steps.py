"""What each GPU/metric rule does, as functions of file paths (the rule scripts only call these)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .io import (metric_frame, read_classifier, read_embeddings, read_meta, write_classifier, write_embeddings,
                 write_frame)
from .io import provenance as prov


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# A persistent worker (clipdyn.worker) keeps the last model it loaded, so that the next job on the
# same checkpoint (another dataset of the same epoch, the text classifier) skips the load. None in a
# plain job process: there is no next job there.
_MODEL_CACHE: Optional[dict] = None


def enable_model_cache() -> None:
    global _MODEL_CACHE
    _MODEL_CACHE = {}


def _model_for(arch: str, checkpoint: str, device, allow_pickle: bool, what: str):
    """``embed.load_model``, or the worker's cached model when it is the same file on the same device."""
    import os

    from .embed import load_model

    if _MODEL_CACHE is None:
        return load_model(arch, checkpoint, device=device, allow_pickle=allow_pickle, what=what)
    try:
        st = os.stat(checkpoint)
        key = (arch, os.path.realpath(checkpoint), st.st_size, st.st_mtime_ns, str(device), bool(allow_pickle))
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
        _empty_cuda_cache()


def _empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _checkpoint_commit(checkpoint: str) -> Optional[str]:
    """The Hub commit a linked checkpoint came from (``.../snapshots/<commit>/...``)."""
    import os

    try:
        target = os.readlink(checkpoint)
    except OSError:
        return None
    parts = Path(target).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def embed_images(*, checkpoint: str, pixels: str, pixel_index: str, out: str, arch: str, allow_pickle: bool,
                 spatial: bool, batch_size: int, precision: str, model_configs: Sequence[str], provenance: dict,
                 threads: int = 2, lock_dir: Optional[str] = None) -> None:
    import torch

    from .devices import claim_device
    from .embed import embed_pixels, register_model_configs
    from .pixels import open_pixels

    torch.set_num_threads(max(1, threads))
    register_model_configs(model_configs)
    arr, ids, pix_meta = open_pixels(pixels, pixel_index)
    what = f"model {provenance.get('model')} epoch {provenance.get('epoch')}"
    with claim_device(lock_dir, log=_log) as device:
        t0 = time.time()
        model = _model_for(arch, checkpoint, device, allow_pickle, what)
        if device.type == "cuda":
            torch.cuda.synchronize()
        _log(f"loaded {checkpoint} in {time.time() - t0:.1f} s")
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        if arr.shape[1] != size:
            raise ValueError(f"pixel cache {pixels} holds {arr.shape[1]} px images but {arch} expects {size} px")
        t0 = time.time()
        X, maps = embed_pixels(model, arr, device, batch_size=batch_size, spatial=spatial, precision=precision,
                               log=_log)
        _log(f"embedded {len(X)} images in {time.time() - t0:.1f} s")
        del model
        _empty_cuda_cache()  # a worker idles between jobs: keep only the weights on the GPU
    meta = dict(provenance, checkpoint_commit=_checkpoint_commit(checkpoint), n_images=int(len(ids)),
                n_skipped=pix_meta.get("n_skipped", 0), precision=precision, device=str(device))
    write_embeddings(out, ids, X, prov(**meta), spatial=maps)


def text_classifier(*, checkpoint: str, manifest: Optional[str], out: str, arch: str, allow_pickle: bool,
                    classset: dict, model_configs: Sequence[str], provenance: dict, threads: int = 2,
                    lock_dir: Optional[str] = None) -> None:
    import open_clip
    import torch

    from .devices import claim_device
    from .embed import class_templates, logit_scale, register_model_configs, zero_shot_classifier

    torch.set_num_threads(max(1, threads))
    register_model_configs(model_configs)
    source = classset.get("source", "openclip_imagenet")
    ds_meta = read_meta(manifest) if manifest else {}
    if source == "openclip_imagenet":
        names = list(open_clip.IMAGENET_CLASSNAMES)
    elif source == "dataset":
        names = ds_meta.get("classnames")
        if not names:
            raise ValueError(f"class set from dataset {classset.get('dataset')!r}, but its manifest {manifest} "
                             "has no class names (the dataset ships no classnames file)")
    elif source == "names":
        names = list(classset["names"])
    else:
        raise ValueError(f"unknown class set source {source!r}")
    templates = class_templates(classset.get("templates", "openai" if source != "dataset" else "dataset"),
                                ds_meta.get("templates"))
    what = f"model {provenance.get('model')} epoch {provenance.get('epoch')}"
    with claim_device(lock_dir, log=_log) as device:
        model = _model_for(arch, checkpoint, device, allow_pickle, what)
        W = zero_shot_classifier(model, arch, names, templates, device)
        scale = logit_scale(model)
    _log(f"classifier {W.shape[0]} classes x {W.shape[1]} dims from {len(templates)} templates; logit scale {scale:.2f}")
    write_classifier(out, W, names, scale, prov(**provenance, checkpoint_commit=_checkpoint_commit(checkpoint),
                                                n_templates=len(templates)))


def load_tables(manifest: str, trials: str):
    from .datasets import DatasetTables

    meta = read_meta(manifest)
    tr = pd.read_parquet(trials)
    return DatasetTables(images=pd.read_parquet(manifest), trials=tr if len(tr.columns) else None,
                         classnames=meta.get("classnames"), templates=meta.get("templates"), info=meta)


def compute_metric(*, inputs: Dict[str, str], kind: str, roles: dict, options: dict, spatial: Sequence[str],
                   model: str, epoch: int, metric: str, out_rows: str, out_details: str) -> None:
    from .metrics.tasks import evaluate

    embeddings, tables = {}, {}
    for key, path in inputs.items():
        if key.startswith("emb__"):
            d = key[len("emb__"):]
            embeddings[d] = read_embeddings(path, spatial=d in spatial)
            tables[d] = load_tables(inputs[f"manifest__{d}"], inputs[f"trials__{d}"])
    classifier = read_classifier(inputs["classifier"]) if "classifier" in inputs else None
    options = dict(options or {})
    if options.get("category_mapping") and not Path(options["category_mapping"]).is_absolute():
        # a file shipped with the cue-conflict dataset (the demo's category mapping)
        src = tables[roles["dataset"]].info.get("source_folder", "")
        options["category_mapping"] = str(Path(src) / options["category_mapping"])
    result = evaluate(kind, embeddings=embeddings, tables=tables, classifier=classifier, inputs=roles,
                      options=options)
    rows = metric_frame(result.rows, model, epoch)
    rows.insert(3, "metric_config", metric)
    meta = prov(model=model, epoch=epoch, metric=metric, kind=kind,
                      inputs={d: e.meta for d, e in embeddings.items()})
    for _, r in rows.iterrows():
        _log(f"{r['metric']} {r['dataset']} {r['variant']}: {r['value']:.4f} (n={r['n']})")
    details = result.details if result.details is not None else pd.DataFrame()
    write_frame(details, out_details, meta)
    write_frame(rows, out_rows, meta)


def collect_metrics(paths: Sequence[str], out_parquet: str, out_csv: str) -> int:
    frames = [pd.read_parquet(p) for p in paths]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        df = df.sort_values(["model", "metric", "dataset", "variant", "epoch"]).reset_index(drop=True)
    write_frame(df, out_parquet, prov(n_files=len(paths)))
    tmp = Path(out_csv).with_name(f".{Path(out_csv).name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out_csv)
    return len(df)
