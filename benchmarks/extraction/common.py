"""What the measurements share: logging, tables, generated inputs, torch set-up, snakemake runs."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent  # benchmarks/
REPO = HERE.parent
MODEL_CONFIGS = HERE / "model_configs"

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
    """Open_clip training checkpoints of ``arch`` (random weights, one seed per epoch) in
    ``folder``, as the tests make them (:func:`clipdyn.fixtures.studies.make_checkpoint`). Reused if there."""
    from clipdyn.fixtures.studies import make_checkpoint

    out = []
    for e in range(1, epochs + 1):
        p = folder / f"epoch_{e}.pt"
        out.append(p)
        if not p.exists():
            make_checkpoint(p, e, seed=1, arch=arch)
    return out


# ----------------------------------------------------------------------------------- torch
def setup_torch(args):
    import logging

    import torch

    from clipdyn.embed.model import register_model_configs

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


# ----------------------------------------------------------------------------------- snakemake
def snapshot_repo(wd: Path) -> Path:
    """A copy of the workflow as it is now (edits by others during the benchmark cannot reach it)."""
    from clipdyn.fixtures.studies import copy_workflow

    dst = wd / "repo"
    if dst.exists():
        shutil.rmtree(dst)
    return copy_workflow(dst)


def smk_env(study, repo: Path) -> dict:
    env = dict(study.env)
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "workflow"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_smk(study, repo: Path, *args, prefix=(), timeout=3600) -> tuple:
    """Run snakemake on ``study`` (a :class:`clipdyn.fixtures.studies.TinyStudy`) with the workflow copy
    ``repo``; returns (process, wall seconds, CPU seconds of it and its children)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([*prefix, *study.cmd(*args, repo=repo)], env=smk_env(study, repo), capture_output=True,
                       text=True, timeout=timeout)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n"
                           f"{p.stderr[-4000:]}")
    return p, dt, cpu
