"""2. The workflow's way vs a straightforward loop, and (2b) the fixed cost of loading a model.

One image folder, E checkpoints of one model (open_clip training checkpoints, random weights).
Ours: manifest + decode once into the pixel cache, then per epoch ``load_model`` +
``embed_pixels`` + ``write_embeddings``. Theirs (CLIP_benchmark style): per epoch
``open_clip.create_model_and_transforms(pretrained=<checkpoint>)`` + torchvision ``ImageFolder``
+ ``DataLoader`` (PIL decode + open_clip preprocess for every image) + forward. Library functions
are called directly, no Snakemake. Target: >= 3x faster at 8 epochs on CPU.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from .common import MODEL_CONFIGS, autocast_ctx, log, make_checkpoints, make_image_folder, med, quiet, sync, table


def run(args, wd: Path, dev, arch: str, n: int, epochs: int) -> dict:
    import open_clip
    import torch
    import torchvision

    from clipdyn.config.study import preprocess_of
    from clipdyn.data.formats import read_dataset
    from clipdyn.data.pixels import build_pixel_cache, open_pixels
    from clipdyn.embed.encode import embed_pixels
    from clipdyn.embed.model import load_model
    from clipdyn.io import provenance, write_embeddings

    bs, workers = args.batch_size, args.workers
    log(f"part 2: {arch}, {n} images, {epochs} epochs, batch {bs}, {workers} decode workers")
    root = make_image_folder(wd / f"images_{n}", n)
    ckpts = make_checkpoints(wd / "ckpt" / arch, arch, epochs)
    pp = preprocess_of(arch, [str(MODEL_CONFIGS)])
    out = wd / "p2" / arch
    shutil.rmtree(out, ignore_errors=True)
    cuda = dev.type == "cuda"

    # ours, stage 1: manifest + decode once (done by prepare_manifest and pixel_cache in the workflow)
    t = time.perf_counter()
    images = read_dataset("image_folder", root).images
    npy, idx = out / f"pixels_{pp.id}.npy", out / f"pixels_{pp.id}.parquet"
    build_pixel_cache(images, pp, npy, idx, workers=workers, log=quiet)
    t_decode = time.perf_counter() - t

    def ours(e, ck):  # what embed_images does, minus Snakemake
        t = time.perf_counter()
        model = load_model(arch, str(ck), device=dev)
        t_load.append(time.perf_counter() - t)
        arr, ids, meta = open_pixels(npy, idx)
        X, _ = embed_pixels(model, arr, dev, batch_size=bs, precision=args.precision, log=quiet)
        write_embeddings(out / f"epoch_{e}.parquet", ids, X, provenance(model=arch, epoch=e, preprocess=pp.id))
        return X, list(ids)

    def theirs(ck):  # CLIP_benchmark: create_model_and_transforms + ImageFolder + DataLoader + forward
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(ck), device=dev)
        model.eval()
        ds = torchvision.datasets.ImageFolder(str(root), transform=preprocess)
        dl = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=False, num_workers=workers, pin_memory=cuda)
        ac, _ = autocast_ctx(dev, args.precision)
        feats = []
        with torch.no_grad(), ac:
            for xb, _y in dl:
                f = model.encode_image(xb.to(dev, non_blocking=True))
                feats.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu())
        return torch.cat(feats).numpy(), [os.path.relpath(p, root) for p, _ in ds.samples]

    t_ours, t_theirs, t_load, check = [], [], [], None
    for e, ck in enumerate(ckpts, 1):  # interleaved, so drift in machine load hits both alike
        t = time.perf_counter()
        X, ids = ours(e, ck)
        sync(dev)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        F, fids = theirs(ck)
        sync(dev)
        t_theirs.append(time.perf_counter() - t)
        if check is None:  # same embeddings? (cosine, after aligning rows by image id)
            pos = {k: i for i, k in enumerate(fids)}
            Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
            cos = (Xn * F[[pos[k] for k in ids]]).sum(1)
            check = float(1 - cos.min())
        log(f"  epoch {e}: ours {t_ours[-1]:.1f} s, CLIP_benchmark loop {t_theirs[-1]:.1f} s")
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= epochs]
    if epochs not in ks:
        ks.append(epochs)
    mo, mt = med(t_ours), med(t_theirs)
    rows = []
    for k in ks:
        cum_o, cum_t = t_decode + sum(t_ours[:k]), sum(t_theirs[:k])
        rows.append({"epochs": k, "ours_s": cum_o, "theirs_s": cum_t, "ratio": cum_t / cum_o,
                     "ratio_from_medians": (k * mt) / (t_decode + k * mo)})
    res = {"model": arch, "images": n, "epochs": epochs, "batch_size": bs, "workers": workers,
           "device": str(dev), "decode_once_s": t_decode, "ours_epoch_s": t_ours, "theirs_epoch_s": t_theirs,
           "ours_epoch_median_s": mo, "theirs_epoch_median_s": mt, "by_epochs": rows,
           "ours_load_model_median_s": med(t_load),
           "asymptotic_ratio": mt / mo, "max_1_minus_cosine_vs_clip_benchmark": check,
           "checkpoint_mb": ckpts[0].stat().st_size / 1e6}
    res["ratio_at_max_epochs"] = rows[-1]["ratio_from_medians"]
    res["target_holds"] = res["ratio_at_max_epochs"] >= 3.0 if epochs >= 8 else None
    return res


def report(r: dict) -> None:
    print(table(
        f"2. decode once + embed from cache vs CLIP_benchmark-style loop ({r['model']}, {r['images']} JPEGs "
        f"500x375, batch {r['batch_size']}, {r['workers']} decode workers, {r['device']}; library calls, "
        "no Snakemake)",
        ["epochs", "ours s", "loop s", "speed-up", "speed-up (medians)"],
        [[x["epochs"], x["ours_s"], x["theirs_s"], f"{x['ratio']:.2f}x", f"{x['ratio_from_medians']:.2f}x"]
         for x in r["by_epochs"]]))
    print(f"ours: decode once {r['decode_once_s']:.1f} s, then {r['ours_epoch_median_s']:.2f} s/epoch (median; "
          f"load + embed + write, of which load_model {r['ours_load_model_median_s']:.2f} s); loop: "
          f"{r['theirs_epoch_median_s']:.2f} s/epoch (median). Ratio tends to "
          f"{r['asymptotic_ratio']:.2f}x as epochs grow. Embeddings agree with the loop's: max 1-cos = "
          f"{r['max_1_minus_cosine_vs_clip_benchmark']:.1e}.")
    if r["target_holds"] is not None:
        print(f"target >= 3x at {r['epochs']} epochs: {'HOLDS' if r['target_holds'] else 'MISSED'} "
              f"({r['ratio_at_max_epochs']:.2f}x)")


def load_cost(args, wd: Path, archs) -> list:
    """The fixed cost of every embed/text job: building the model and loading its checkpoint."""
    import open_clip
    import torch

    from clipdyn.embed.model import _skip_random_init as skip_init  # what load_model does
    from clipdyn.embed.model import load_model

    out = []
    for arch in archs:
        log(f"part 2b: load_model cost, {arch}")
        ck = make_checkpoints(wd / "ckpt" / arch, arch, 1)[0]
        t_lib, t_rand, t_skip, t_load = [], [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            m = load_model(arch, str(ck))
            t_lib.append(time.perf_counter() - t)
            del m
            t = time.perf_counter()
            m = open_clip.create_model(arch)
            t_rand.append(time.perf_counter() - t)
            del m
            t = time.perf_counter()
            with skip_init():
                m = open_clip.create_model(arch)
            t_skip.append(time.perf_counter() - t)
            t = time.perf_counter()
            open_clip.load_checkpoint(m, str(ck), strict=True)
            t_load.append(time.perf_counter() - t)
        ref = load_model(arch, str(ck)).state_dict()
        same = all(torch.equal(a, b) for a, b in zip(ref.values(), m.state_dict().values()))
        out.append({"model": arch, "params_m": sum(v.numel() for v in ref.values()) / 1e6,
                    "checkpoint_mb": ck.stat().st_size / 1e6, "load_model_s": med(t_lib),
                    "create_random_init_s": med(t_rand), "create_init_skipped_s": med(t_skip),
                    "load_checkpoint_s": med(t_load), "skip_init_gives_same_weights": same})
        del m, ref
    return out


def report_load_cost(rows) -> None:
    print(table("2b. fixed cost of each embed/text job on the CPU side: clipdyn.embed.model.load_model (medians; "
                "it builds the model with random init skipped, then loads the checkpoint)",
                ["model", "params M", "ckpt MB", "load_model s", "create with random init s",
                 "create, init skipped s", "load_checkpoint s"],
                [[r["model"], r["params_m"], r["checkpoint_mb"], r["load_model_s"], r["create_random_init_s"],
                  r["create_init_skipped_s"], r["load_checkpoint_s"]] for r in rows]))
    print("identical weights with init skipped: " + ", ".join(
        f"{r['model']} {r['skip_init_gives_same_weights']}" for r in rows))
