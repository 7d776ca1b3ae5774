"""1. End-to-end embedding vs the bare model forward.

Pixel cache (``clipdyn.data.pixels.build_pixel_cache`` of generated 500x375 JPEGs) ->
``clipdyn.embed.encode.embed_pixels`` -> Parquet (``clipdyn.io.write_embeddings``), divided by bare
``model.encode_image`` on the same images already normalised in memory (on the device), same
model, batch size, precision and ``inference_mode``. Targets: >= 0.9 on CPU with a small model,
>= 0.7 on GPU for ViT-B-16 bf16.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .common import MODEL_CONFIGS, autocast_ctx, log, make_image_folder, med, quiet, sync, table


def run(args, wd: Path, dev) -> dict:
    import open_clip
    import torch

    from clipdyn.config.study import preprocess_of
    from clipdyn.data.formats import read_dataset
    from clipdyn.data.pixels import build_pixel_cache, open_pixels
    from clipdyn.embed.encode import embed_pixels
    from clipdyn.io import provenance, write_embeddings

    arch, n, bs = args.p1_model, args.p1_images, args.batch_size
    log(f"part 1: {n} images -> pixel cache -> {arch} (batch {bs}, {args.device}, precision {args.precision})")
    pp = preprocess_of(arch, [str(MODEL_CONFIGS)])
    root = make_image_folder(wd / f"images_{n}", n)
    images = read_dataset("image_folder", root).images
    npy, idx = wd / "p1" / f"pixels_{pp.id}.npy", wd / "p1" / f"pixels_{pp.id}.parquet"
    t = time.perf_counter()
    build_pixel_cache(images, pp, npy, idx, workers=args.workers, log=quiet)
    t_cache = time.perf_counter() - t
    torch.manual_seed(0)
    model = open_clip.create_model(arch).eval().to(dev)
    arr, ids, _ = open_pixels(npy, idx)
    # the bare forward's inputs: the same images, normalised as embed_pixels does, in device memory
    v = model.visual
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    mean = torch.tensor(v.image_mean or OPENAI_DATASET_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(v.image_std or OPENAI_DATASET_STD, device=dev).view(1, 3, 1, 1)
    x = torch.from_numpy(np.array(arr)).to(dev).permute(0, 3, 1, 2).float().div_(255)
    x = ((x - mean) / std).contiguous()
    out = wd / "p1" / "embeddings.parquet"

    def bare(inp):
        ac, _ = autocast_ctx(dev, args.precision)
        ys = []
        with torch.inference_mode(), ac:
            for s in range(0, len(inp), bs):
                ys.append(model.encode_image(inp[s:s + bs]))
        sync(dev)
        return ys

    def e2e():
        a, i, meta = open_pixels(npy, idx)
        X, _ = embed_pixels(model, a, dev, batch_size=bs, precision=args.precision, log=quiet)
        write_embeddings(out, i, X, provenance(model=arch, epoch=0, preprocess=pp.id, n_images=len(i)))
        return X

    # warm-up (also puts the model in the memory format embed_pixels uses, for both)
    embed_pixels(model, arr[:bs], dev, batch_size=bs, precision=args.precision, log=quiet)
    bare(x[:bs])
    ref = torch.cat(bare(x)).float().cpu().numpy()
    X = e2e()
    diff = float(np.abs(X - ref).max() / (np.abs(ref).max() + 1e-12))
    t_bare, t_e2e = [], []
    for r in range(args.repeats):
        for which in (("bare", "e2e") if r % 2 == 0 else ("e2e", "bare")):  # alternate the order
            t = time.perf_counter()
            bare(x) if which == "bare" else e2e()
            (t_bare if which == "bare" else t_e2e).append(time.perf_counter() - t)
    ratios = [b / e for b, e in zip(t_bare, t_e2e)]
    _, prec = autocast_ctx(dev, args.precision)
    res = {
        "model": arch, "device": str(dev), "precision": prec, "batch_size": bs, "images": n,
        "image_size": pp.size, "threads": args.threads, "pixel_cache_build_s": t_cache,
        "bare_s": t_bare, "e2e_s": t_e2e,
        "bare_images_per_s": n / med(t_bare), "e2e_images_per_s": n / med(t_e2e),
        "ratio_median_of_pairs": med(ratios), "ratio_of_medians": med(t_bare) / med(t_e2e),
        "max_rel_diff_e2e_vs_bare": diff,
        "target": 0.7 if dev.type == "cuda" else 0.9,
    }
    res["target_holds"] = res["ratio_median_of_pairs"] >= res["target"]

    return res


def report(r: dict) -> None:
    print(table(
        f"1. end-to-end embedding vs bare model forward ({r['model']}, {r['device']}, {r['precision']}, "
        f"batch {r['batch_size']}, {r['images']} images of {r['image_size']} px, {r['threads']} threads, "
        f"medians of {len(r['bare_s'])})",
        ["path", "images/s", "seconds"],
        [["bare model.encode_image (normalised tensors in memory)", r["bare_images_per_s"], med(r["bare_s"])],
         ["pixel cache -> embed_pixels -> Parquet", r["e2e_images_per_s"], med(r["e2e_s"])]]))
    print(f"e2e/bare throughput ratio: {r['ratio_median_of_pairs']:.3f} (median of paired runs; "
          f"ratio of medians {r['ratio_of_medians']:.3f}); target >= {r['target']}: "
          f"{'HOLDS' if r['target_holds'] else 'MISSED'}")
    print(f"max |e2e - bare| / max|bare| = {r['max_rel_diff_e2e_vs_bare']:.2e}; "
          f"pixel cache built in {r['pixel_cache_build_s']:.1f} s")
