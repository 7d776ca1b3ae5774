#!/usr/bin/env python
"""Extraction benchmarks (issue 6): decode once, embed from the pixel cache, measured.

Four measurements, each printed as a table (``--json`` also writes them to a JSON file):

1. **end-to-end vs bare forward**: pixel cache (``clipdyn.pixels.build_pixel_cache`` of generated
   500x375 JPEGs) -> ``clipdyn.embed.embed_pixels`` -> Parquet (``clipdyn.io.write_embeddings``),
   divided by bare ``model.encode_image`` on the same images already normalised in memory (on the
   device), same model, batch size, precision and ``inference_mode``. Targets: >= 0.9 on CPU with a
   small model, >= 0.7 on GPU for ViT-B-16 bf16.
2. **workflow vs straightforward loop**: one image folder, E checkpoints of one model (open_clip
   training checkpoints, random weights). Ours: manifest + decode once into the pixel cache, then per
   epoch ``load_model`` + ``embed_pixels`` + ``write_embeddings``. Theirs (CLIP_benchmark style): per
   epoch ``open_clip.create_model_and_transforms(pretrained=<checkpoint>)`` + torchvision
   ``ImageFolder`` + ``DataLoader`` (PIL decode + open_clip preprocess for every image) + forward.
   Library functions are called directly, no Snakemake. Target: >= 3x faster at 8 epochs on CPU.
3. **DAG scale**: a local hub with the study's three runs (ViT-B-16 171, ViT-L-14 160, ViT-H-14 256
   epochs; dummy checkpoint files, which a dry run never opens) and every dataset and metric of the
   study (``tests/workflow/study_fixture.build_tiny_study(full=True)``); times ``snakemake -n``
   (target <= 30 s for ~10,000 jobs) and profiles it; then a no-op ``snakemake -n`` on a finished
   small study (target <= 5 s).
4. **peak memory of one embedding job**: ``/usr/bin/time -v`` on a ``snakemake`` run of exactly one
   ``embed_images`` job (part 1's model and images), plus the job process's own peak RSS (VmHWM,
   anonymous vs file-backed pages) sampled from /proc.

Snakemake runs (parts 3 and 4) use a snapshot copy of the workflow (Snakefile + workflow/), so
edits to the working tree while the benchmark runs cannot make a finished study look stale.

Usage::

    python benchmarks/bench_extraction.py                 # everything, CPU, ~10 min on 2 idle cores
    python benchmarks/bench_extraction.py --quick         # ~1 min smoke version
    python benchmarks/bench_extraction.py --device cuda   # on a GPU machine (ViT-B-16, bf16)
    python benchmarks/bench_extraction.py --parts 1,2 --json   # some parts; JSON next to this file
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "tests" / "workflow"))

MODEL_CONFIGS = HERE / "model_configs"
NANO = "bench-vit-nano-32"  # a 224 px ViT, 2 layers x 64 wide: decode dominates, as next to a GPU
STUDY_RUNS = (("vit_b_16", "ViT-B-16", 171), ("vit_l_14", "ViT-L-14", 160), ("vit_h_14", "ViT-H-14", 256))

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def quiet(*_a, **_k) -> None:
    pass


def med(xs):
    return float(statistics.median(xs)) if xs else float("nan")


def table(title: str, header, rows) -> str:
    rows = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    line = "  ".join("-" * w for w in widths)
    out = [f"\n## {title}", "  ".join(str(h).ljust(w) for h, w in zip(header, widths)), line]
    out += ["  ".join(c.rjust(w) if _num(c) else c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def _fmt(c):
    if isinstance(c, float):
        if c != c:
            return "n/a"
        return f"{c:.3g}" if abs(c) < 10 else f"{c:,.1f}" if abs(c) < 1000 else f"{c:,.0f}"
    return str(c)


def _num(s: str) -> bool:
    return bool(re.fullmatch(r"[-+0-9.,e x%]+", s))


# ----------------------------------------------------------------------------------- inputs
def make_image_folder(root: Path, n: int, classes: int = 10, size=(500, 375), seed: int = 0) -> Path:
    """``n`` JPEGs (quality 90) of ``size`` in ``<root>/<class>/``: smooth colour fields plus noise,
    ~70 KB each (ImageNet validation JPEGs average ~110 KB at ~400x350). Reused if already there."""
    from PIL import Image

    marker = root / f".done-{n}-{classes}-{size[0]}x{size[1]}-{seed}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / f"class_{i % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
        a = np.asarray(low, dtype=np.int16) + rng.normal(0, 12, (size[1], size[0], 3)).astype(np.int16)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
    marker.touch()
    return root


def make_checkpoints(folder: Path, arch: str, epochs: int) -> list:
    """Open_clip training checkpoints (``{'epoch', 'name', 'state_dict': {'module.'+k}}``), one
    random init per epoch, as ``open_clip_train`` writes them. Reused if already there."""
    import open_clip
    import torch

    out = []
    for e in range(1, epochs + 1):
        p = folder / f"epoch_{e}.pt"
        out.append(p)
        if p.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(1000 + e)
        model = open_clip.create_model(arch)
        sd = {f"module.{k}": v for k, v in model.state_dict().items()}
        torch.save({"epoch": e, "name": arch, "state_dict": sd, "optimizer": {}}, str(p) + ".tmp")
        os.replace(str(p) + ".tmp", p)
    return out


def setup_torch(args):
    import logging

    import torch

    from clipdyn.embed import register_model_configs

    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "no pretrained weights" warnings
    torch.set_num_threads(args.threads)
    register_model_configs([str(MODEL_CONFIGS)])
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dev


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def autocast_ctx(dev, precision):
    import torch

    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" else "fp32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type=dev.type, dtype=dtype or torch.float32, enabled=dtype is not None), precision


# ----------------------------------------------------------------------------------- part 1
def part1(args, wd: Path, dev) -> dict:
    import open_clip
    import torch

    from clipdyn.datasets import read_dataset
    from clipdyn.embed import embed_pixels
    from clipdyn.io import provenance, write_embeddings
    from clipdyn.pixels import build_pixel_cache, open_pixels
    from clipdyn.study import preprocess_of

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
    mean = torch.tensor(v.image_mean or (0.48145466, 0.4578275, 0.40821073), device=dev).view(1, 3, 1, 1)
    std = torch.tensor(v.image_std or (0.26862954, 0.26130258, 0.27577711), device=dev).view(1, 3, 1, 1)
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


def print_part1(r: dict) -> None:
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


# ----------------------------------------------------------------------------------- part 2
def part2(args, wd: Path, dev, arch: str, n: int, epochs: int) -> dict:
    import open_clip
    import torch
    import torchvision

    from clipdyn.datasets import read_dataset
    from clipdyn.embed import embed_pixels, load_model
    from clipdyn.io import provenance, write_embeddings
    from clipdyn.pixels import build_pixel_cache, open_pixels
    from clipdyn.study import preprocess_of

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


def print_part2(r: dict) -> None:
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

    from clipdyn.embed import _skip_random_init as skip_init  # what load_model does
    from clipdyn.embed import load_model

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


def print_load_cost(rows) -> None:
    print(table("2b. fixed cost of each embed/text job on the CPU side: clipdyn.embed.load_model (medians; "
                "it builds the model with random init skipped, then loads the checkpoint)",
                ["model", "params M", "ckpt MB", "load_model s", "create with random init s",
                 "create, init skipped s", "load_checkpoint s"],
                [[r["model"], r["params_m"], r["checkpoint_mb"], r["load_model_s"], r["create_random_init_s"],
                  r["create_init_skipped_s"], r["load_checkpoint_s"]] for r in rows]))
    print("identical weights with init skipped: " + ", ".join(
        f"{r['model']} {r['skip_init_gives_same_weights']}" for r in rows))


# ----------------------------------------------------------------------------------- snakemake helpers
def snapshot_repo(wd: Path) -> Path:
    """A copy of the workflow as it is now (edits by others during the benchmark cannot reach it)."""
    dst = wd / "repo"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copy2(REPO / "Snakefile", dst / "Snakefile")
    shutil.copytree(REPO / "workflow", dst / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake"))
    for extra in ("config", "envs"):  # rules name envs/*.yaml (conda:) and their metadata records them
        if (REPO / extra).is_dir():
            shutil.copytree(REPO / extra, dst / extra)
    return dst


def smk_env(study, repo: Path) -> dict:
    env = dict(study.env)
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "workflow"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def smk_cmd(study, repo: Path, *args) -> list:
    # targets and flags first: --configfile and --resources take several values
    return [sys.executable, "-m", "snakemake", *args, "--snakefile", str(repo / "Snakefile"), "--directory",
            str(study.workdir), "--cores", "2", "--resources", "gpu=1", "--configfile", str(study.config)]


def run_smk(study, repo: Path, *args, prefix=(), timeout=3600) -> tuple:
    """Run snakemake; returns (process, wall seconds, CPU seconds of it and its children)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([*prefix, *smk_cmd(study, repo, *args)], env=smk_env(study, repo), capture_output=True,
                       text=True, timeout=timeout)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n"
                           f"{p.stderr[-4000:]}")
    return p, dt, cpu


# ----------------------------------------------------------------------------------- part 3
def build_dag_study(root: Path, runs) -> object:
    """build_tiny_study(full=True)'s datasets, class sets and metrics, with the study's three runs."""
    from clipdyn.localhub import LocalHub
    from study_fixture import build_tiny_study

    study = build_tiny_study(root, n_models=1, n_epochs=1, full=True)
    hub = LocalHub(study.hub)
    cfg = study.read_config()
    models = {}
    for name, arch, n_ep in runs:
        run = f"{arch}-laion2b-s34b-b88k"
        files = {f"full_checkpoints/{run}/epoch_{e}.pt": f"dummy checkpoint {name} epoch {e}\n".encode()
                 for e in range(1, n_ep + 1)}
        hub.publish(f"clipdyn-bench/{run}", files)
        models[name] = {"arch": arch, "repo": f"clipdyn-bench/{run}", "revision": "main",
                        "checkpoint": f"full_checkpoints/{run}/epoch_{{epoch}}.pt", "epochs": "auto",
                        "label": arch, "total_epochs": n_ep}
    cfg["models"] = models
    cfg["figures"] = {"base_model": runs[0][0], "scale_models": [r[0] for r in runs]}
    study.write_config(cfg)
    return study


def shipped_config(study, path: Path):
    """config/config.yaml as shipped, its models pointed at the local hub's runs (``epochs: auto``)."""
    import types

    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    models = study.read_config()["models"]
    cfg["models"] = models
    figs = dict(cfg.get("figures", {}))
    figs.pop("reference_curves", None)
    figs.update(base_model=next(iter(models)), scale_models=list(models))
    cfg["figures"] = figs
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return types.SimpleNamespace(config=path, workdir=study.workdir, env=study.env)


def part3(args, wd: Path, repo: Path) -> dict:
    import pstats

    from study_fixture import build_tiny_study, parse_job_counts

    runs = STUDY_RUNS if not args.quick else tuple((n, a, 10) for n, a, _ in STUDY_RUNS)
    res = {"runs": [list(r) for r in runs], "dry_runs": []}
    studies = {}
    scales = [(0.1, 1), (1.0, args.dag_repeats)] if not args.quick else [(1.0, args.dag_repeats)]
    for scale, reps in scales:
        sruns = tuple((n, a, max(1, round(e * scale))) for n, a, e in runs)
        log(f"part 3: local hub with {sum(r[2] for r in sruns)} checkpoints of {len(sruns)} runs; dry runs")
        root = wd / f"dag_{scale:g}"
        shutil.rmtree(root, ignore_errors=True)
        study = build_dag_study(root, sruns)
        studies[scale] = study
        variants = [("snakemake -n", ())] + ([("snakemake -n --quiet rules", ("--quiet", "rules"))]
                                             if scale == 1.0 else [])
        for label, extra in variants:
            times, cpus = [], []
            for _ in range(reps if not extra else 1):
                p, dt, cpu = run_smk(study, repo, "-n", *extra)
                times.append(dt)
                cpus.append(cpu)
            counts = parse_job_counts(p.stdout + p.stderr)
            row = {"command": label, "epochs": sum(r[2] for r in sruns), "s": times, "median_s": med(times),
                   "cpu_s": cpus, "median_cpu_s": med(cpus), "jobs": sum(counts.values()), "by_rule": counts}
            res["dry_runs"].append(row)
            log(f"  {label}: {med(times):.1f} s wall, {med(cpus):.1f} s CPU (median of {len(times)}), "
                f"{row['jobs']} jobs")
    # the shipped config/config.yaml (its 11 datasets, 8 metrics, class set), every epoch of the three runs
    shipped = shipped_config(studies[1.0], wd / "shipped.yaml")
    times, cpus = [], []
    for _ in range(args.dag_repeats):
        p, dt, cpu = run_smk(shipped, repo, "-n")
        times.append(dt)
        cpus.append(cpu)
    counts = parse_job_counts(p.stdout + p.stderr)
    res["shipped"] = {"command": "snakemake -n (config/config.yaml, every epoch)", "epochs": sum(r[2] for r in runs),
                      "s": times, "median_s": med(times), "cpu_s": cpus, "median_cpu_s": med(cpus),
                      "jobs": sum(counts.values()), "by_rule": counts}
    log(f"  shipped config, every epoch: {med(times):.1f} s wall, {med(cpus):.1f} s CPU, {sum(counts.values())} jobs")
    full = [d for d in res["dry_runs"] if d["command"] == "snakemake -n"]
    res["jobs"] = full[-1]["jobs"]
    res["by_rule"] = full[-1]["by_rule"]
    res["dry_run_s"] = full[-1]["median_s"]
    res["dry_run_target_holds"] = max(res["dry_run_s"], res["shipped"]["median_s"]) <= 30
    if len(full) > 1:  # linear model: seconds = fixed + per_job * jobs (from CPU time, less load-sensitive)
        a, b = full[0], full[-1]
        per_job = (b["median_cpu_s"] - a["median_cpu_s"]) / (b["jobs"] - a["jobs"])
        res["cpu_ms_per_job"] = 1000 * per_job
        res["cpu_fixed_s"] = b["median_cpu_s"] - per_job * b["jobs"]
    if args.profile:  # per-job costs are linear in the job count, so a tenth of the DAG shows where time goes
        scale = 1.0 if args.profile_full else min(studies)
        prof = wd / "dag_dry_run.prof"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof),
                        *smk_cmd(studies[scale], repo, "-n", "--quiet", "rules")[1:]],
                       env=smk_env(studies[scale], repo), capture_output=True, text=True, check=True)
        res["profiled_s"] = time.perf_counter() - t
        res["profiled_jobs"] = next(d["jobs"] for d in res["dry_runs"] if d["epochs"] == sum(
            max(1, round(e * scale)) for _, _, e in runs))
        res["profile"] = summarize_profile(pstats.Stats(str(prof)), str(repo) + os.sep)
        res["profile_file"] = str(prof)
    # no-op on a finished small study
    if args.noop:
        log("part 3: tiny study (1 model x 2 epochs), full run, then no-op dry runs")
        shutil.rmtree(wd / "small", ignore_errors=True)  # a fresh study: the full run runs every job
        small = build_tiny_study(wd / "small", n_models=1, n_epochs=2)
        _, t_full, _ = run_smk(small, repo)
        times, cpus, outs = [], [], []
        for _ in range(args.dag_repeats):
            p, dt, cpu = run_smk(small, repo, "-n")
            times.append(dt)
            cpus.append(cpu)
            outs.append(p.stdout + p.stderr)
        nothing = all("Nothing to be done" in o for o in outs)
        res["noop"] = {"full_run_s": t_full, "s": times, "median_s": med(times), "median_cpu_s": med(cpus),
                       "nothing_to_do": nothing}
        res["noop_target_holds"] = nothing and med(times) <= 5
        if not nothing:
            res["noop"]["dry_run_tail"] = outs[-1][-3000:]
    return res


_PHASES = [  # (label, file suffix, function): snakemake's phases of a dry run (cumulative times)
    ("whole run", "snakemake/cli.py", "main"),
    ("DAG: dependency resolution (dag.update: rule matching, input functions, Job objects)",
     "snakemake/dag.py", "update"),
    ("DAG: needrun (which outputs exist, mtimes, params/code changes)", "snakemake/dag.py", "update_needrun"),
    ("DAG: per-job params evaluation (update_conda_envs -> job.params)", "snakemake/dag.py", "update_conda_envs"),
    ("DAG: script checks per job (ScriptProcessor -> script.get_source)", "snakemake/dag.py", "process"),
    ("dry-run listing: per-job log_info (resources evaluation, formatting)", "snakemake/jobs.py", "log_info"),
]


def summarize_profile(st, ours_prefix: str) -> dict:
    rows = []
    for (fn, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        key = f"{_short(fn)}:{line}({func})"
        rows.append((key, nc, tt, ct))
    total = max((r[3] for r in rows), default=0.0)
    plumbing = ("runpy", "asyncio/", "importlib", "<string>", "builtins.exec", "contextvars", "__main__.py",
                "cli.py", "api.py")
    by_cum = sorted((r for r in rows if not any(x in r[0] for x in plumbing)), key=lambda r: -r[3])
    by_tot = sorted(rows, key=lambda r: -r[2])
    top_cum = [{"function": k, "calls": nc, "tottime_s": tt, "cumtime_s": ct} for k, nc, tt, ct in by_cum[:40]]
    top_tot = [{"function": k, "calls": nc, "tottime_s": tt, "cumtime_s": ct} for k, nc, tt, ct in by_tot[:20]]
    phases = []
    for label, suffix, name in _PHASES:
        ct = max((v[3] for (fn, _l, f), v in st.stats.items() if f == name and fn.endswith(suffix)), default=0.0)
        phases.append({"phase": label, "cumtime_s": ct})
    # our code: functions in the workflow copy (Snakefile, rules, clipdyn) entered from snakemake
    ours = 0.0
    for (fn, _l, _f), (_cc, _nc, _tt, ct, callers) in st.stats.items():
        if fn.startswith(ours_prefix) and not any(c[0].startswith(ours_prefix) for c in callers):
            ours += ct
    phases.append({"phase": "of all the above: clipdyn code (Snakefile parse incl. Study, input functions, "
                             "params lambdas, code hashes)", "cumtime_s": ours})
    return {"total_s": total, "phases": phases, "top_cumulative": top_cum, "top_self": top_tot}


def _short(fn: str) -> str:
    for marker in ("site-packages/", "/workflow/", "lib/python3"):
        if marker in fn:
            return fn.split(marker, 1)[1]
    return fn


def print_part3(r: dict) -> None:
    rows = [[d["command"], d["epochs"], d["jobs"], d["median_s"], d["median_cpu_s"],
             ", ".join(f"{x:.1f}" for x in d["s"])] for d in r["dry_runs"]]
    runs = ", ".join(f"{a} {n}" for _, a, n in r["runs"])
    tenth = "; first row: a tenth of the epochs" if len(r["dry_runs"]) > 2 else ""
    print(table(f"3. DAG scale: dry run of the study ({runs} epochs; every dataset and metric of the study{tenth})",
                ["command", "epochs", "jobs", "median s", "CPU s", "runs s"], rows))
    print("jobs by rule: " + ", ".join(f"{k} {v}" for k, v in r["by_rule"].items()))
    if "shipped" in r:
        sh = r["shipped"]
        print(table("3a. the shipped config/config.yaml with every epoch of the three runs",
                    ["command", "epochs", "jobs", "median s", "CPU s", "runs s"],
                    [[sh["command"], sh["epochs"], sh["jobs"], sh["median_s"], sh["median_cpu_s"],
                      ", ".join(f"{x:.1f}" for x in sh["s"])]]))
        print("jobs by rule: " + ", ".join(f"{k} {v}" for k, v in sh["by_rule"].items()))
    if "cpu_ms_per_job" in r:
        print(f"cost model (CPU): {r['cpu_fixed_s']:.1f} s fixed + {r['cpu_ms_per_job']:.2f} ms per job")
    print(f"dry-run target <= 30 s: {'HOLDS' if r['dry_run_target_holds'] else 'MISSED'} "
          f"({r['dry_run_s']:.1f} s for {r['jobs']} jobs"
          + (f"; shipped config {r['shipped']['median_s']:.1f} s for {r['shipped']['jobs']} jobs)" if "shipped" in r
             else ")"))
    if "profile" in r:
        p = r["profile"]
        whole = p["phases"][0]["cumtime_s"] or 1.0
        print(table(f"3b. where a dry run's time goes (cProfile, {r['profiled_jobs']} jobs; phases overlap only "
                    "where noted)", ["phase", "s", "share"],
                    [[x["phase"], x["cumtime_s"], f"{100 * x['cumtime_s'] / whole:.0f}%"] for x in p["phases"]]))
        print(table(f"3c. cProfile of `snakemake -n --quiet rules`, {r['profiled_jobs']} jobs "
                    f"({r['profiled_s']:.1f} s under the profiler; "
                    f"{r['profile_file']}), top by cumulative time", ["function", "calls", "self s", "cum s"],
                    [[x["function"][-90:], x["calls"], x["tottime_s"], x["cumtime_s"]] for x in p["top_cumulative"][:25]]))
        print(table("3d. top by self time", ["function", "calls", "self s", "cum s"],
                    [[x["function"][-90:], x["calls"], x["tottime_s"], x["cumtime_s"]] for x in p["top_self"][:15]]))
    if "noop" in r:
        n = r["noop"]
        print(table("3e. no-op on a finished small study (tiny study, 1 model x 2 epochs, after a full run)",
                    ["command", "nothing to do", "median s", "CPU s", "runs s"],
                    [["snakemake -n", n["nothing_to_do"], n["median_s"], n["median_cpu_s"],
                      ", ".join(f"{x:.1f}" for x in n["s"])]]))
        print(f"(the full run before it took {n['full_run_s']:.0f} s) no-op target <= 5 s: "
              f"{'HOLDS' if r['noop_target_holds'] else 'MISSED'}")


# ----------------------------------------------------------------------------------- part 4
class ProcWatcher(threading.Thread):
    """Samples /proc for every descendant of ``pid``: peak VmHWM / RssAnon / RssFile per command."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every, self.stop, self.peaks = pid, every, threading.Event(), {}

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for pr in procs:
                try:
                    status = Path(f"/proc/{pr.pid}/status").read_text()
                    cmd = " ".join(pr.cmdline())
                except (OSError, psutil.Error):
                    continue
                vals = {k: int(v) / 1024 for k, v in re.findall(r"^(VmHWM|VmRSS|RssAnon|RssFile):\s+(\d+) kB",
                                                               status, re.M)}
                kind = ("embed_images job" if "embed_images" in cmd else "embedding worker" if "clipdyn.worker" in cmd
                        else "snakemake" if "snakemake" in cmd
                        else "time" if cmd.startswith("/usr/bin/time") else cmd[:60])
                cur = self.peaks.setdefault(kind, {})
                for k, v in vals.items():
                    cur[k] = max(cur.get(k, 0.0), v)
            self.stop.wait(self.every)


def part4(args, wd: Path, repo: Path, dev) -> dict:


    from clipdyn.localhub import LocalHub
    from clipdyn.study import preprocess_of
    from study_fixture import TinyStudy

    arch, n = args.p1_model, args.p4_images
    log(f"part 4: one embed_images job through snakemake ({arch}, {n} images)")
    root = wd / "mem"
    shutil.rmtree(root, ignore_errors=True)
    hub = LocalHub(root / "hub")
    ck = make_checkpoints(wd / "ckpt" / arch, arch, 1)[0]
    hub.publish("clipdyn-bench/run", {"full_checkpoints/run/epoch_1.pt": ck})
    folder = make_image_folder(wd / f"images_{n}", n)
    hub.publish_folder("clipdyn-bench/images", folder, repo_type="dataset")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    cfg = {
        "model_configs": [str(MODEL_CONFIGS)],
        "models": {"m": {"arch": arch, "repo": "clipdyn-bench/run", "revision": "main",
                         "checkpoint": "full_checkpoints/run/epoch_{epoch}.pt", "epochs": "auto"}},
        "datasets": {"imgs": {"repo": "clipdyn-bench/images", "format": "image_folder", "files": ["*"]}},
        "classsets": {"c": {"source": "names", "names": names, "templates": "simple"}},
        "metrics": {"zs": {"kind": "zeroshot_accuracy", "inputs": {"dataset": "imgs"}, "classset": "c"}},
        "embedding": {"batch_size": args.batch_size, "threads": args.threads, "decode_workers": args.workers,
                      "mem_mb": 8000},
        "figures": {"enabled": False},
    }
    study = TinyStudy(root=root, hub=root / "hub", config=root / "config.yaml", workdir=root / "work")
    study.workdir.mkdir(parents=True, exist_ok=True)
    study.write_config(cfg)
    pp = preprocess_of(arch, [str(MODEL_CONFIGS)]).id
    r = "results"
    run_smk(study, repo, f"{r}/data/imgs/pixels_{pp}.npy", f"{r}/checkpoints/m/epoch_1.pt", "--notemp")
    target = f"{r}/embeddings/m/epoch_1/imgs.parquet"
    timefile = root / "time-v.txt"
    prefix = ["/usr/bin/time", "-v", "-o", str(timefile)] if Path("/usr/bin/time").exists() else []
    t = time.perf_counter()
    env = smk_env(study, repo)
    env["CLIPDYN_WORKER_DIR"] = tempfile.mkdtemp(prefix="cw")  # a fresh worker, started by this job
    proc = subprocess.Popen([*prefix, *smk_cmd(study, repo, target)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = ProcWatcher(proc.pid)
    watcher.start()
    text, _ = proc.communicate()
    watcher.stop.set()
    watcher.join()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {target} failed:\n{text[-4000:]}")
    jobs = re.findall(r"^(?:local)?rule (\w+):", text, re.M)
    res = {"model": arch, "images": n, "image_size": int(pp.split("px")[0]), "wall_s": wall, "jobs_run": jobs,
           "peaks_mb": watcher.peaks, "pixel_cache_mb": (study.workdir / f"{r}/data/imgs/pixels_{pp}.npy").stat().st_size / 1e6,
           "checkpoint_mb": ck.stat().st_size / 1e6, "device": str(dev)}
    if prefix and timefile.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timefile.read_text())
        res["time_v_max_rss_mb"] = int(m.group(1)) / 1024 if m else None
    logf = study.workdir / f"{r}/logs/embed_images/m/epoch_1/imgs.log"
    res["job_log_tail"] = logf.read_text()[-800:] if logf.exists() else ""
    return res


def print_part4(r: dict) -> None:
    job = r["peaks_mb"].get("embed_images job", {})
    wrk = r["peaks_mb"].get("embedding worker", {})
    smk = r["peaks_mb"].get("snakemake", {})
    print(table(f"4. peak memory of one embed_images job ({r['model']}, {r['images']} images of {r['image_size']} px, "
                f"pixel cache {r['pixel_cache_mb']:.0f} MB, checkpoint {r['checkpoint_mb']:.0f} MB, {r['device']})",
                ["process", "peak RSS MB (VmHWM)", "anon MB", "file-backed MB"],
                [["embed_images job (the rule's script)", job.get("VmHWM", float("nan")), job.get("RssAnon", float("nan")),
                  job.get("RssFile", float("nan"))],
                 ["its embedding worker (clipdyn.worker: torch, model, batches)", wrk.get("VmHWM", float("nan")),
                  wrk.get("RssAnon", float("nan")), wrk.get("RssFile", float("nan"))],
                 ["snakemake (scheduler)", smk.get("VmHWM", float("nan")), smk.get("RssAnon", float("nan")),
                  smk.get("RssFile", float("nan"))]]))
    if r.get("time_v_max_rss_mb"):
        print(f"/usr/bin/time -v on the snakemake run: Maximum resident set size {r['time_v_max_rss_mb']:.0f} MB "
              f"(the largest single process); wall {r['wall_s']:.1f} s; jobs run: {', '.join(r['jobs_run'])}")


# ----------------------------------------------------------------------------------- main
def machine_info(args) -> dict:
    import open_clip
    import snakemake
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
            "snakemake": snakemake.__version__, "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    if args.device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--quick", action="store_true", help="~1 minute smoke version (small sizes, no finished-study run)")
    ap.add_argument("--parts", default="1,2,3,4", help="which parts to run, e.g. 1,2 (default all)")
    ap.add_argument("--json", nargs="?", const="", default=None, metavar="PATH",
                    help="also write the figures as JSON (default path: bench_extraction_<device>[_quick].json "
                         "next to this script)")
    ap.add_argument("--workdir", help="keep generated images/checkpoints/studies here (reused between runs); "
                    "default: a temporary folder, removed at the end")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--workers", type=int, default=None, help="decode processes for the pixel cache and the "
                    "DataLoader (default: cores, at most 8)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 64 on cpu, 256 on cuda")
    ap.add_argument("--precision", default="auto", help="embed_pixels precision (auto: bf16 on cuda, fp32 on cpu)")
    ap.add_argument("--repeats", type=int, default=None, help="part 1 repeats (default 3, quick 1)")
    ap.add_argument("--p1-model", default=None, help="part 1/4 model (default ViT-S-32-alt on cpu, ViT-B-16 on cuda)")
    ap.add_argument("--p1-images", type=int, default=None, help="part 1 images (default 256 cpu, 4096 cuda)")
    ap.add_argument("--p2-models", default=None,
                    help=f"part 2 models, comma-separated, each optionally :IMAGES (default cpu: "
                         f"'{NANO}:1000,ViT-S-32-alt:128'; cuda: 'ViT-B-16:2000')")
    ap.add_argument("--epochs", type=int, default=None, help="part 2 checkpoints (default 8, quick 4)")
    ap.add_argument("--load-archs", default=None, help="part 2b: models whose load_model cost is measured "
                    "(default: the part 1 model and ViT-B-16; quick: the part 1 model; '' for none)")
    ap.add_argument("--p4-images", type=int, default=None, help="part 4 images (default 256)")
    ap.add_argument("--dag-repeats", type=int, default=None, help="part 3 repeats of each dry run (default 3)")
    ap.add_argument("--no-profile", dest="profile", action="store_false", help="part 3: skip cProfile")
    ap.add_argument("--profile-full", action="store_true", help="part 3: profile the full DAG, not a tenth")
    ap.add_argument("--no-noop", dest="noop", action="store_false",
                    help="part 3: skip the full run + no-op dry run of a tiny study")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    q = args.quick
    args.workers = args.workers or min(8, os.cpu_count() or 1)
    args.batch_size = args.batch_size or (256 if cuda else 64)
    args.repeats = args.repeats or (1 if q else 3)
    args.p1_model = args.p1_model or ("ViT-B-16" if cuda else "ViT-S-32-alt")
    args.p1_images = args.p1_images or (1024 if q and cuda else 4096 if cuda else 64 if q else 256)
    args.p2_models = args.p2_models or ("ViT-B-16:2000" if cuda else f"{NANO}:200" if q
                                        else f"{NANO}:1000,ViT-S-32-alt:128")
    args.epochs = args.epochs or (4 if q else 8)
    if args.load_archs is None:
        args.load_archs = args.p1_model if q or args.p1_model == "ViT-B-16" else f"{args.p1_model},ViT-B-16"
    args.p4_images = args.p4_images or (64 if q else 256)
    args.dag_repeats = args.dag_repeats or (1 if q else 3)
    if q:
        args.noop = False
        args.profile = False
    parts = {int(p) for p in args.parts.split(",") if p.strip()}

    wd = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="clipdyn-bench-"))
    wd.mkdir(parents=True, exist_ok=True)
    results = {"argv": sys.argv[1:], "args": vars(args), "machine": machine_info(args)}
    m = results["machine"]
    print(f"# clipdyn extraction benchmark: {m.get('cpu', '?')}, {m['cpus']} cores"
          f"{', ' + m['gpu'] if 'gpu' in m else ''}; torch {m['torch']}, open_clip {m['open_clip']}, "
          f"snakemake {m['snakemake']}; load average at start {m.get('loadavg_start', ('?',))[0]}")
    try:
        dev = setup_torch(args)
        repo = snapshot_repo(wd) if parts & {3, 4} else None
        if 1 in parts:
            results["part1"] = part1(args, wd, dev)
            print_part1(results["part1"])
        if 2 in parts:
            results["part2"] = []
            for spec in args.p2_models.split(","):
                arch, _, n = spec.partition(":")
                r = part2(args, wd, dev, arch.strip(), int(n or 1000), args.epochs)
                results["part2"].append(r)
                print_part2(r)
            if args.load_archs:
                results["part2b"] = load_cost(args, wd, [a for a in args.load_archs.split(",") if a])
                print_load_cost(results["part2b"])
        if 3 in parts:
            results["part3"] = part3(args, wd, repo)
            print_part3(results["part3"])
        if 4 in parts:
            results["part4"] = part4(args, wd, repo, dev)
            print_part4(results["part4"])
    finally:
        results["wall_s"] = time.perf_counter() - T0
        try:
            results["machine"]["loadavg_end"] = os.getloadavg()
        except OSError:
            pass
        if args.json is not None:
            path = Path(args.json) if args.json else HERE / f"bench_extraction_{args.device.split(':')[0]}" \
                f"{'_quick' if q else ''}.json"
            path.write_text(json.dumps(results, indent=1, default=str))
            print(f"\nJSON: {path}")
        if not args.workdir:
            shutil.rmtree(wd, ignore_errors=True)
    print(f"\ntotal wall time {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
