"""One short check of clipdyn's GPU embedding path (issue 15), as one command, with JSON figures.

On random-init open_clip ViT-B-16, ViT-L-14 and ViT-H-14 saved as training checkpoints
(``module.`` prefixes, AdamW-shaped optimizer state), it measures and asserts:

- load: time and peak host RSS per architecture (a fresh process each), the GPU memory after
  loading (the weights only: the optimizer state never reaches the GPU);
- embeddings: float32, finite, in image order; CUDA fp32 close to CPU fp32; the bf16-vs-fp32 gap
  of embeddings, cosine distances and top-1 zero-shot decisions (reported);
- batch-size invariance; out-of-memory halving under a memory cap (the result equals the uncapped
  run; no prefetch thread and no GPU memory left behind, also after a failure at batch size 1);
- the compile cache does not keep models: three checkpoints in a row through the worker's model
  cache with ``compile: true``, each freed when the next is loaded;
- ViT-B-16 end-to-end (pixel cache -> ``embed_pixels`` -> Parquet) / bare forward >= 0.9, images/s;
  the ViT-H-14 text classifier's time (1000 classes x 80 templates).

Every figure goes to ``--out`` (JSON) before the asserts are judged; the exit status is 1 when one
failed (``failed`` in the JSON lists them).

Run it on a GPU machine without network (torch installed, open_clip not), here first (7 MB of wheels;
``.whl/`` is git-ignored, and the device tool carries it with ``carry: [".whl"]``):

    pip download --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
        -d .whl/ open_clip_torch==3.3.0 ftfy regex wcwidth timm huggingface_hub safetensors tqdm

(``--python-version``: the machine's Python). Then, as one command on the machine:

    pip install -q --no-deps --no-index --find-links .whl open_clip_torch ftfy regex wcwidth timm \
        huggingface_hub safetensors tqdm && python benchmarks/gpu_check.py --out benchmarks/gpu_check_h200.json

The script first checks its imports (open_clip, torchvision, timm, huggingface_hub and its own
dependencies, pandas, pyarrow, PIL) and, when one is missing, stops at once naming it, with the
``pip download`` line to extend (a torchvision wheel must match the machine's torch).

It writes ~19 GB of checkpoints under ``--workdir`` (default: a temporary folder, removed at the
end) and takes about 5 minutes on one H100/H200. ``--cpu`` runs the same checks on tiny models on
the CPU in well under a minute (what ``tests/unit/test_gpu_check.py`` runs in ``make test``); there
the memory cap is simulated (out-of-memory errors raised above a batch size) and the timing
targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

GPU_ARCHS = ("ViT-B-16", "ViT-L-14", "ViT-H-14")
CPU_ARCHS = ("clipdyn-tiny", "clipdyn-demo-s")


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def quiet(msg: str) -> None:
    pass


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmHWM``: its peak). Not ``ru_maxrss``: that survives exec, so a
    child started by a large parent reports the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prefetch_threads() -> int:
    return sum(t.name == "clipdyn-prefetch" for t in threading.enumerate())


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Checks:
    """Named pass/fail results; figures are kept apart, in the report dict."""

    def __init__(self):
        self.results: dict = {}

    def __call__(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results[name] = {"ok": bool(ok), "detail": detail}
        log(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        return bool(ok)

    @property
    def failed(self):
        return [k for k, v in self.results.items() if not v["ok"]]


# ------------------------------------------------------------------------- checkpoints and images


def make_checkpoint(arch: str, path: Path, seed: int, dev) -> dict:
    """A training-style checkpoint of a random-init ``arch``: {'epoch', 'name', 'state_dict' with
    'module.' keys, 'optimizer' with AdamW's exp_avg/exp_avg_sq per parameter}."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(arch, device=dev)  # random init, on the GPU where there is one
    params = list(model.parameters())
    state = {}
    for i, p in enumerate(params):
        state[i] = {"step": torch.tensor(1000.0), "exp_avg": (torch.randn_like(p) * 1e-3).cpu(),
                    "exp_avg_sq": (torch.rand_like(p) * 1e-6).cpu()}
    sd = {f"module.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    weights = sum(v.numel() * v.element_size() for v in sd.values())
    groups = [{"lr": 5e-4, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.2, "params": list(range(len(params)))}]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": seed, "name": arch, "state_dict": sd, "optimizer": {"state": state, "param_groups": groups}},
               path)
    del model, state, sd
    gc.collect()
    return {"checkpoint_bytes": path.stat().st_size, "weights_bytes": weights}


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: smooth random images (8x8 colour blocks, upsampled)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    k = -(-size // 8)
    return np.ascontiguousarray(small.repeat(k, axis=1).repeat(k, axis=2)[:, :size, :size])


def image_size(model) -> int:
    s = model.visual.image_size
    return s[0] if isinstance(s, (tuple, list)) else s


# ------------------------------------------------------------------------- load in a fresh process


def load_only(arch: str, ckpt: str, device: str, how: str = "clipdyn") -> dict:
    """Load ``ckpt`` as the workflow does (``how="open_clip"``: as ``open_clip.load_checkpoint`` does,
    reading the whole file, for comparison); peak RSS and GPU memory (run in its own process). On the
    CPU every weight is read once after loading, so that the weights' pages count in the RSS."""
    import torch

    from clipdyn.embed.model import _skip_random_init, load_model, register_model_configs

    register_model_configs([])
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.zeros(1, device=dev)  # the CUDA context, before the baseline
    base = rss_mb()
    t = time.perf_counter()
    if how == "open_clip":
        import open_clip

        with _skip_random_init():
            model = open_clip.create_model(arch)
        open_clip.load_checkpoint(model, ckpt, strict=True, weights_only=True)
        model = model.to(dev).eval()
    else:
        model = load_model(arch, ckpt, device=dev)
    sync(dev)
    load_s = time.perf_counter() - t
    if dev.type == "cpu":
        with torch.inference_mode():
            sum(float(p.float().sum()) for p in model.parameters())
    out = {"load_s": load_s, "rss_before_mb": base, "rss_after_mb": rss_mb(),
           "peak_rss_mb": rss_mb("VmHWM"),
           "weights_bytes": sum(p.numel() * p.element_size() for p in model.state_dict().values())}
    if dev.type == "cuda":
        out["gpu_allocated_bytes"] = torch.cuda.memory_allocated(dev)
    return out


def measure_load(arch: str, ckpt: Path, dev, how: str = "clipdyn") -> dict:
    proc = subprocess.run([sys.executable, __file__, "--load-only", arch, str(ckpt), str(dev), "--load-how", how],
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"loading {ckpt} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- the checks


def check_arch(arch, ckpt, meta, dev, args, checks: Checks, report: dict) -> None:
    import open_clip
    import torch

    from clipdyn.embed.classifier import zero_shot_classifier
    from clipdyn.embed.encode import embed_pixels
    from clipdyn.embed.model import load_model

    r = report.setdefault("archs", {}).setdefault(arch, {})
    r.update(checkpoint_gb=meta["checkpoint_bytes"] / 1e9, weights_gb=meta["weights_bytes"] / 1e9)
    weights_mb = meta["weights_bytes"] / 2**20
    if not (args.cpu and arch != args.archs[0]):  # on the CPU one fresh process (importing torch) is enough
        ld = measure_load(arch, ckpt, dev)
        peak_over = ld["peak_rss_mb"] - ld["rss_before_mb"]
        r.update(load_s=ld["load_s"], peak_rss_gb=ld["peak_rss_mb"] / 1024,
                 rss_before_load_gb=ld["rss_before_mb"] / 1024, peak_rss_over_baseline_gb=peak_over / 1024)
        checks(f"{arch}: peak RSS of a load ~ the weights, not the checkpoint",
               peak_over <= 1.3 * weights_mb + 512,
               f"peak {peak_over:.0f} MB over the baseline; weights {weights_mb:.0f} MB, "
               f"checkpoint {meta['checkpoint_bytes'] / 2**20:.0f} MB; load {ld['load_s']:.1f} s")
    if dev.type == "cuda":
        gpu = ld["gpu_allocated_bytes"]
        r["gpu_after_load_gb"] = gpu / 1e9
        checks(f"{arch}: the optimizer state never reaches the GPU", gpu <= 1.02 * meta["weights_bytes"] + 2**26,
               f"{gpu / 2**20:.0f} MB allocated for {weights_mb:.0f} MB of weights")

    model = load_model(arch, str(ckpt), device=dev)
    size = image_size(model)
    n = args.images
    px = images(n, size, seed=1)
    bs = args.batch_size
    t = time.perf_counter()
    X32, _ = embed_pixels(model, px, dev, batch_size=bs, precision="fp32", log=quiet)
    t32 = time.perf_counter() - t
    info: dict = {}
    t = time.perf_counter()
    X16, _ = embed_pixels(model, px, dev, batch_size=bs, precision=args.half, log=quiet, info=info)
    t16 = time.perf_counter() - t
    r.update(images=n, image_size=size, fp32_images_per_s=n / t32, half_images_per_s=n / t16,
             half_precision=info["precision"])
    checks(f"{arch}: embeddings float32 and finite", X32.dtype == np.float32 == X16.dtype
           and bool(np.isfinite(X32).all() and np.isfinite(X16).all()), f"shape {X32.shape}")
    perm = np.random.default_rng(2).permutation(n)
    Xp, _ = embed_pixels(model, px[perm], dev, batch_size=bs, precision="fp32", log=quiet)
    rel = float(np.abs(Xp - X32[perm]).max() / np.abs(X32).max())
    checks(f"{arch}: embeddings in image order", rel < 1e-3, f"permuted input, max rel diff {rel:.1e}")
    Xb, _ = embed_pixels(model, px, dev, batch_size=max(1, bs // 4 - 1), precision="fp32", log=quiet)
    rel = float(np.abs(Xb - X32).max() / np.abs(X32).max())
    r["batch_invariance_max_rel"] = rel
    checks(f"{arch}: batch-size invariance (fp32, batch {bs} vs {max(1, bs // 4 - 1)})", rel < 1e-3, f"{rel:.1e}")
    if dev.type == "cuda":
        k = args.cpu_images
        cpu_model = load_model(arch, str(ckpt), device="cpu")
        Xc, _ = embed_pixels(cpu_model, px[:k], "cpu", batch_size=k, precision="fp32", log=quiet)
        del cpu_model
        gc.collect()
        rel = float(np.abs(Xc - X32[:k]).max() / np.abs(Xc).max())
        r["cuda_fp32_vs_cpu_fp32_max_rel"] = rel
        checks(f"{arch}: CUDA fp32 close to CPU fp32 ({k} images)", rel < 1e-3, f"{rel:.1e}")

    # the bf16-vs-fp32 gap of what the metrics read: cosine distances and top-1 decisions
    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    u32, u16 = unit(X32.astype(np.float64)), unit(X16.astype(np.float64))
    d32, d16 = 1 - u32 @ u32.T, 1 - u16 @ u16.T
    names = list(open_clip.IMAGENET_CLASSNAMES)[:args.classes]
    templates = list(open_clip.OPENAI_IMAGENET_TEMPLATES)[:args.decision_templates]
    W32 = zero_shot_classifier(model, arch, names, templates, dev, precision="fp32", log=quiet)
    W16 = zero_shot_classifier(model, arch, names, templates, dev, precision=args.half, log=quiet)
    top32 = (u32 @ W32.T).argmax(1)
    gap = {"precision": info["precision"],
           "embedding_max_rel": float(np.abs(X16 - X32).max() / np.abs(X32).max()),
           "cosine_distance_max_abs": float(np.abs(d16 - d32).max()),
           "cosine_distance_mean_abs": float(np.abs(d16 - d32).mean()),
           "cosine_distance_spread": float(d32[np.triu_indices(n, 1)].std()),
           "classifier_max_abs": float(np.abs(W16 - W32).max()),
           "top1_changed_image_tower": int(((u16 @ W32.T).argmax(1) != top32).sum()),
           "top1_changed_both_towers": int(((u16 @ W16.T).argmax(1) != top32).sum()),
           "top1_of": n, "classes": len(names), "templates": len(templates)}
    r["half_vs_fp32"] = gap
    log(f"{arch}: {gap['precision']} vs fp32: cosine distance max |diff| {gap['cosine_distance_max_abs']:.1e} "
        f"(spread {gap['cosine_distance_spread']:.1e}); top-1 changed {gap['top1_changed_both_towers']}/{n}")
    del model
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def memory_cap(model, dev, batch_fits: int, sim_calls: list):
    """Out-of-memory above ``batch_fits`` images (0: always): a real cap on the GPU (the allocator's
    fraction, from the activation memory per image), simulated on the CPU (an OutOfMemoryError raised
    by a pre-hook)."""
    import torch

    if dev.type == "cuda":
        torch.cuda.empty_cache()  # cached free blocks would be used past the cap
        total = torch.cuda.get_device_properties(dev).total_memory
        base = torch.cuda.memory_reserved(dev)
        headroom = 2**26 if batch_fits else 2**20
        try:
            yield lambda per_image: torch.cuda.set_per_process_memory_fraction(
                min(1.0, (base + per_image * batch_fits * 1.5 + headroom) / total), dev)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, dev)
        return

    def hook(m, a):
        sim_calls.append(len(a[0]))
        if len(a[0]) > batch_fits:
            raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
    h = model.visual.register_forward_pre_hook(hook)
    try:
        yield lambda per_image: None
    finally:
        h.remove()


def check_oom(arch, ckpt, dev, args, checks: Checks, report: dict) -> None:
    import torch

    from clipdyn.embed.encode import embed_pixels
    from clipdyn.embed.model import load_model

    model = load_model(arch, str(ckpt), device=dev)
    px = images(args.oom_images, image_size(model), seed=3)
    big = args.oom_batch
    ref, _ = embed_pixels(model, px, dev, batch_size=big, precision="auto", log=quiet)
    per_image = 0
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        embed_pixels(model, px[:16], dev, batch_size=16, precision="auto", log=quiet)
        per_image = (torch.cuda.max_memory_allocated(dev) - base) / 16
    threads0 = prefetch_threads()
    fits = max(2, big // 8)
    calls: list = []
    info: dict = {}
    msgs: list = []
    with memory_cap(model, dev, fits, calls) as set_cap:
        set_cap(per_image)
        capped, _ = embed_pixels(model, px, dev, batch_size=big, precision="auto", log=msgs.append, info=info)
    rel = float(np.abs(capped - ref).max() / np.abs(ref).max())
    halvings = sum("batch size halved" in m for m in msgs)
    report["oom"] = {"arch": arch, "batch_size": big, "effective_batch_size": info["effective_batch_size"],
                     "halvings": halvings, "max_rel_diff_vs_uncapped": rel,
                     "per_image_activation_mb": per_image / 2**20}
    checks("out of memory: the batch is halved and the result equals the uncapped run",
           info["effective_batch_size"] < big and halvings >= 1 and rel < 2e-2,
           f"batch {big} -> {info['effective_batch_size']} after {halvings} halvings; max rel diff {rel:.1e} "
           "(the capped run's other batch size rounds bf16 differently)")
    # out of memory even at batch size 1: raised, and nothing left behind
    base = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0
    raised = False
    with memory_cap(model, dev, 0, calls) as set_cap:
        set_cap(0)
        try:
            embed_pixels(model, px, dev, batch_size=8, precision="auto", log=quiet)
        except Exception as err:  # noqa: BLE001
            raised = "out of memory" in str(err).lower() or "ALLOC_FAILED" in str(err)
    gc.collect()
    left = (torch.cuda.memory_allocated(dev) - base) if dev.type == "cuda" else 0
    report["oom"]["left_after_failure_bytes"] = int(left)
    checks("out of memory at batch size 1: raised, no thread and no GPU memory left behind",
           raised and prefetch_threads() == threads0 and left <= 2**20,
           f"raised {raised}; prefetch threads {prefetch_threads()} (before {threads0}); {left} bytes left")
    del model
    gc.collect()


def check_compile_cache(arch, ckpts, dev, args, checks: Checks, report: dict) -> None:
    import torch

    from clipdyn.embed import encode, step

    backend = args.compile_backend
    real = torch.compile
    torch.compile = lambda m, **kw: real(m, backend=backend, **kw)
    saved = step._MODEL_CACHE
    step._MODEL_CACHE = {}  # as in a worker
    refs, times, mem = [], [], []
    try:
        px = None
        for ckpt in ckpts:
            model = step.model_for(arch, str(ckpt), dev, False, "gpu_check")
            px = images(args.compile_images, image_size(model), seed=4) if px is None else px
            t = time.perf_counter()
            encode.embed_pixels(model, px, dev, batch_size=args.batch_size, precision="auto", log=quiet, compile=True)
            times.append(time.perf_counter() - t)
            refs.append(weakref.ref(model))
            del model
            gc.collect()
            if dev.type == "cuda":
                mem.append(torch.cuda.memory_allocated(dev))
        alive = [r() is not None for r in refs]
        step.release_cached_model()
        after = [r() is not None for r in refs]
    finally:
        step._MODEL_CACHE = saved
        torch.compile = real
    report["compile"] = {"arch": arch, "backend": backend, "checkpoints": len(ckpts), "seconds": times,
                         "gpu_allocated_bytes": mem, "alive_while_cached": alive}
    grows = len(mem) > 1 and mem[-1] > mem[0] * 1.1 + 2**26
    checks("compile: the cache keeps only the current checkpoint's model",
           alive == [False] * (len(ckpts) - 1) + [True] and not any(after) and not grows,
           f"alive {alive}, after release {after}; GPU allocated {[round(m / 2**20) for m in mem]} MB")


def check_e2e(arch, ckpt, dev, args, checks: Checks, report: dict, workdir: Path) -> None:
    import torch

    from clipdyn.embed.encode import embed_pixels
    from clipdyn.embed.model import load_model
    from clipdyn.io import provenance, write_embeddings

    model = load_model(arch, str(ckpt), device=dev)
    size, n, bs = image_size(model), args.e2e_images, args.batch_size
    npy = workdir / "pixels.npy"
    arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    for s in range(0, n, 512):
        arr[s:s + 512] = images(min(512, n - s), size, seed=10 + s)
    arr.flush()
    del arr
    arr = np.load(npy, mmap_mode="r")
    ids = [f"img{i:06d}" for i in range(n)]
    out = workdir / "emb.parquet"
    v = model.visual
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    mean = torch.tensor(v.image_mean or OPENAI_DATASET_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(v.image_std or OPENAI_DATASET_STD, device=dev).view(1, 3, 1, 1)
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    x = torch.from_numpy(np.array(arr)).to(dev).permute(0, 3, 1, 2).float().div_(255).sub_(mean).div_(std)
    x = x.contiguous(memory_format=fmt)
    info: dict = {}

    def bare():
        from clipdyn.embed.precision import autocast_dtype

        dtype = autocast_dtype("auto", dev, quiet)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            for s in range(0, n, bs):
                model.encode_image(x[s:s + bs])
        sync(dev)

    def e2e():
        X, _ = embed_pixels(model, arr, dev, batch_size=bs, precision="auto", log=quiet, info=info)
        write_embeddings(out, ids, X, provenance(model=arch, n_images=n, **info))

    embed_pixels(model, arr[:bs], dev, batch_size=bs, precision="auto", log=quiet)  # warm-up (channels_last)
    bare()
    t_bare, t_e2e = [], []
    for rep in range(args.repeats):
        for which in (("bare", "e2e") if rep % 2 == 0 else ("e2e", "bare")):
            t = time.perf_counter()
            bare() if which == "bare" else e2e()
            (t_bare if which == "bare" else t_e2e).append(time.perf_counter() - t)
    ratio = float(np.median(t_bare) / np.median(t_e2e))
    report["e2e"] = {"arch": arch, "images": n, "batch_size": bs, "precision": info.get("precision"),
                     "bare_s": t_bare, "e2e_s": t_e2e, "bare_images_per_s": n / float(np.median(t_bare)),
                     "e2e_images_per_s": n / float(np.median(t_e2e)), "ratio": ratio}
    msg = (f"{n / np.median(t_e2e):.0f} vs {n / np.median(t_bare):.0f} images/s = {ratio:.3f} "
           f"(medians of {args.repeats})")
    if dev.type == "cuda":
        checks(f"{arch}: end-to-end (pixel cache -> Parquet) / bare forward >= 0.9", ratio >= 0.9, msg)
    else:
        log(f"{arch}: end-to-end / bare forward (reported only on the CPU): {msg}")
    model = x = None  # (read by bare())
    gc.collect()


def check_text(arch, ckpt, dev, args, checks: Checks, report: dict) -> None:
    import open_clip

    from clipdyn.embed.classifier import zero_shot_classifier
    from clipdyn.embed.model import load_model

    model = load_model(arch, str(ckpt), device=dev)
    names = list(open_clip.IMAGENET_CLASSNAMES)[:args.text_classes]
    templates = list(open_clip.OPENAI_IMAGENET_TEMPLATES)[:args.text_templates]
    zero_shot_classifier(model, arch, names[:10], templates[:2], dev, precision="auto", log=quiet)  # warm-up
    sync(dev)
    t = time.perf_counter()
    W = zero_shot_classifier(model, arch, names, templates, dev, precision="auto", log=quiet)
    sync(dev)
    s = time.perf_counter() - t
    report["text_classifier"] = {"arch": arch, "classes": len(names), "templates": len(templates), "seconds": s}
    checks(f"{arch}: text classifier ({len(names)} classes x {len(templates)} templates)",
           W.shape[0] == len(names) and bool(np.isfinite(W).all()) and s < args.text_limit_s,
           f"{s:.1f} s (limit {args.text_limit_s:g} s)")
    del model
    gc.collect()


# ------------------------------------------------------------------------- main


def machine(dev) -> dict:
    import open_clip
    import torch

    m = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
         "open_clip": open_clip.__version__, "cpu_count": os.cpu_count(), "device": str(dev)}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        m.update(gpu=torch.cuda.get_device_name(dev), gpu_memory_gb=p.total_memory / 2**30,
                 compute_capability=f"{p.major}.{p.minor}", gpu_count=torch.cuda.device_count())
    return m


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="reduced mode: tiny models on the CPU (what make test runs)")
    ap.add_argument("--out", default=None, help="JSON file for the figures (default: print only)")
    ap.add_argument("--workdir", default=None, help="where the checkpoints go (default: a temporary folder)")
    ap.add_argument("--archs", nargs="+", default=None)
    ap.add_argument("--load-only", nargs=3, metavar=("ARCH", "CKPT", "DEVICE"), help=argparse.SUPPRESS)
    ap.add_argument("--load-how", default="clipdyn", choices=["clipdyn", "open_clip"], help=argparse.SUPPRESS)
    ap.add_argument("--rss-compare", action="store_true",
                    help="only: peak RSS of loading each arch's training checkpoint, "
                         "clipdyn vs open_clip.load_checkpoint")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default: inductor on a GPU)")
    args = ap.parse_args(argv)
    gpu = not args.cpu
    args.half = "auto" if gpu else "bf16"  # on the CPU: bf16 autocast (auto would be fp32 there)
    args.archs = args.archs or list(GPU_ARCHS if gpu else CPU_ARCHS)
    # sizes: a few minutes on one H100/H200; seconds on the CPU with tiny models
    args.images = 256 if gpu else 24
    args.cpu_images = 4
    args.batch_size = 128 if gpu else 8
    args.classes = 1000 if gpu else 20
    args.decision_templates = 4 if gpu else 2
    args.oom_images = 512 if gpu else 24
    args.oom_batch = 256 if gpu else 8
    args.compile_images = 256 if gpu else 8
    args.compile_backend = args.compile_backend or ("inductor" if gpu else "eager")  # eager: no C compiler
    args.e2e_images = 4096 if gpu else 64
    args.repeats = 3 if gpu else 2
    args.text_classes = 1000 if gpu else 20
    args.text_templates = 80 if gpu else 4
    args.text_limit_s = 120.0 if gpu else 60.0
    return args


WHEELS = ("open_clip_torch==3.3.0", "ftfy", "regex", "wcwidth", "timm", "huggingface_hub", "safetensors", "tqdm")


def missing_modules() -> list:
    """What this check imports beyond torch and numpy, and the machine lacks."""
    import importlib

    out = []
    for mod in ("open_clip", "torchvision", "timm", "ftfy", "regex", "huggingface_hub", "safetensors", "pandas",
                "pyarrow", "PIL"):
        try:
            importlib.import_module(mod)
        except Exception as err:  # noqa: BLE001 (an ImportError deeper down counts too)
            out.append(f"{mod} ({type(err).__name__}: {err})")
    return out


def main(argv=None) -> int:
    args = parse(argv)
    missing = [] if args.load_only else missing_modules()
    if missing:
        log("missing on this machine: " + "; ".join(missing))
        log("bring wheels (here, with network): pip download --no-deps --only-binary=:all: --python-version "
            f"{sys.version_info.major}.{sys.version_info.minor} --platform manylinux2014_x86_64 -d .whl/ "
            + " ".join(WHEELS) + " [+ the missing ones above]; there: pip install --no-deps --no-index "
            "--find-links .whl <the same names>")
        return 3
    if args.load_only:
        print(json.dumps(load_only(*args.load_only, how=args.load_how)))
        return 0
    import torch

    from clipdyn.embed.model import register_model_configs

    if not args.cpu and not torch.cuda.is_available():
        log("no CUDA device: run with --cpu for the reduced check")
        return 2
    register_model_configs([])
    dev = torch.device("cpu" if args.cpu else "cuda", 0) if not args.cpu else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    report: dict = {"mode": "cpu" if args.cpu else "gpu", "machine": machine(dev), "started": time.time()}
    checks = Checks()
    own = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_check_"))
    t_all = time.perf_counter()
    try:
        ckpts, metas = {}, {}
        for i, arch in enumerate(args.archs):
            t = time.perf_counter()
            ckpts[arch] = workdir / arch / "epoch_1.pt"
            metas[arch] = make_checkpoint(arch, ckpts[arch], seed=i + 1, dev=dev)
            log(f"{arch}: checkpoint {metas[arch]['checkpoint_bytes'] / 1e9:.2f} GB "
                f"(weights {metas[arch]['weights_bytes'] / 1e9:.2f} GB) written in {time.perf_counter() - t:.1f} s")
        if args.rss_compare:
            for arch in args.archs:
                r = report.setdefault("archs", {}).setdefault(arch, dict(metas[arch]))
                for how in ("clipdyn", "open_clip"):
                    ld = measure_load(arch, ckpts[arch], dev, how)
                    r[how] = dict(ld, peak_over_baseline_mb=ld["peak_rss_mb"] - ld["rss_before_mb"])
                    log(f"{arch} via {how}: peak {r[how]['peak_over_baseline_mb']:.0f} MB over the baseline, "
                        f"load {ld['load_s']:.1f} s")
                checks(f"{arch}: memory-mapped load peaks below reading the file",
                       r["clipdyn"]["peak_over_baseline_mb"] < r["open_clip"]["peak_over_baseline_mb"])
                ckpts[arch].unlink()
            return 1 if checks.failed else 0
        for arch in args.archs:
            check_arch(arch, ckpts[arch], metas[arch], dev, args, checks, report)
        small, large = args.archs[0], args.archs[-1]
        check_oom(small, ckpts[small], dev, args, checks, report)
        extra = [ckpts[small]]
        for seed in (11, 12):
            p = workdir / small / f"epoch_{seed}.pt"
            make_checkpoint(small, p, seed=seed, dev=dev)
            extra.append(p)
        check_compile_cache(small, extra, dev, args, checks, report)
        check_e2e(small, ckpts[small], dev, args, checks, report, workdir)
        check_text(large, ckpts[large], dev, args, checks, report)
    finally:
        report["seconds"] = time.perf_counter() - t_all
        report["checks"] = checks.results
        report["failed"] = checks.failed
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")
            log(f"figures written to {args.out}")
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"{len(checks.results) - len(checks.failed)}/{len(checks.results)} checks passed in {report['seconds']:.0f} s"
        + (f"; FAILED: {', '.join(checks.failed)}" if checks.failed else ""))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
