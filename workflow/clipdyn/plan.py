"""A plan before the bill: what a study will download, hold on disk and compute, before it runs.

``python -m clipdyn plan`` (``make plan``) resolves the config as the workflow does (one
listing per model, nothing downloaded) and writes ``<results>/plan.md``:

* per model: the epochs selected and their checkpoint bytes (the listing's sizes);
* peak disk for checkpoints with and without ``checkpoint_budget`` (the budget holds at
  most that many checkpoints at once, in the order the workflow runs them);
* per dataset: bytes to download (Hub listing sizes, or the archive's ``Content-Length``
  from a HEAD request) and images embedded per checkpoint (the manifest's rows when it
  exists, else the count its publisher gives, marked as such);
* GPU-hours per GPU type: measured images/s where ``benchmarks/*.json`` has a CUDA figure
  for the architecture, else an estimate from the forward pass's FLOPs (derived from the
  open_clip config) at an assumed utilisation, marked as an estimate.

Figures that cannot be known without the network are given as "unknown", never guessed;
``--no-hub`` plans without any network, assuming every epoch ``1..total_epochs`` is published
and estimating checkpoint sizes from the parameter count (weights + Adam's two moments, fp32).
"""

from __future__ import annotations

import fnmatch
import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .config.specs import DatasetSpec
from .config.study import Study, arch_config
from .hub import client as hub
from .progress import ranges as _ranges

#: dense bf16/fp16 tensor-core peak (FLOP/s) from the vendors' data sheets
GPU_PEAK = {"V100 (fp16)": 125e12, "A100": 312e12, "L40S": 362e12, "H100 SXM": 989e12, "H200": 989e12}
#: assumed share of that peak an inference forward pass reaches (an estimate, not a measurement)
ASSUMED_UTILISATION = 0.4
#: bytes per parameter of an open_clip training checkpoint: fp32 weights + AdamW's two fp32 moments
CHECKPOINT_BYTES_PER_PARAM = 12

#: images the adapter reads, as published (used only when no manifest exists yet); format -> count, source
PUBLISHED_IMAGES = {
    ("webdataset", "clip-benchmark/wds_imagenet1k"): (50_000, "ImageNet-1k validation set"),
    ("webdataset", "clip-benchmark/wds_imagenetv2"): (10_000, "ImageNetV2 matched-frequency"),
    ("webdataset", "clip-benchmark/wds_imagenet_sketch"): (50_889, "ImageNet-Sketch"),
    ("webdataset", "clip-benchmark/wds_imagenet-r"): (30_000, "ImageNet-R: renditions of 200 classes"),
    ("webdataset", "clip-benchmark/wds_imagenet-a"): (7_500, "ImageNet-A: natural adversarial examples of 200 classes"),
    ("webdataset", "clip-benchmark/wds_imagenet-o"): (2_000, "ImageNet-O"),
    ("webdataset", "clip-benchmark/wds_dtd"): (1_880, "DTD test split"),
    ("webdataset", "clip-benchmark/wds_vtab-cifar100"): (10_000, "CIFAR-100 test split"),
    ("cue_conflict", None): (1_280, "Geirhos et al. 2019: 16 classes x 80"),
    ("iqa_tid2013", None): (3_025, "TID2013: 3,000 distorted + 25 reference images"),
    ("iqa_kadid10k", None): (10_206, "KADID-10k: 10,125 distorted + 81 reference images"),
    ("nights", None): (60_057, "NIGHTS: 20,019 triplets x 3 images"),
    ("saliency", None): (1_003, "MIT1003"),
}


@dataclass
class ModelPlan:
    name: str
    arch: str
    epochs: List[int]
    sizes: Dict[int, Optional[int]]
    size_source: str
    image_flops: float
    text_flops: float
    params: int


@dataclass
class DatasetPlan:
    name: str
    images: Optional[int]
    images_source: str
    bytes: Optional[int]
    bytes_source: str
    embedded: bool = True
    notes: List[str] = field(default_factory=list)


def _vit_flops(tower: dict, tokens: int) -> float:
    """Forward FLOPs of a transformer tower: 2 x multiply-adds of its attention and MLP blocks."""
    w, layers = tower["width"], tower["layers"]
    r = tower.get("mlp_ratio", 4.0)
    macs = layers * (tokens * w * w * (4 + 2 * r) + 2 * tokens * tokens * w)
    return 2.0 * macs


def model_costs(arch: str, extra_dirs: Sequence[str] = ()) -> tuple[float, float, int]:
    """(FLOPs per image, FLOPs per prompt, parameter count) of an open_clip ViT, from its config."""
    cfg = arch_config(arch, extra_dirs)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    size = v.get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    patches = (size // v["patch_size"]) ** 2 + 1
    image = _vit_flops(v, patches)
    ctx = t.get("context_length", 77)
    text = _vit_flops(t, ctx)
    r = v.get("mlp_ratio", 4.0)
    params = (v["layers"] * (4 + 2 * r) * v["width"] ** 2 + 3 * v["patch_size"] ** 2 * v["width"]
              + patches * v["width"] + v["width"] * cfg["embed_dim"]
              + t["layers"] * 12 * t["width"] ** 2 + t.get("vocab_size", 49408) * t["width"]
              + ctx * t["width"] + t["width"] * cfg["embed_dim"])
    return image, text, int(params)


def _assumed_listing(config: dict):
    """A listing without the network: every epoch 1..total_epochs, no sizes."""

    def list_epochs(repo, template, revision, repo_type):
        for name, m in config["models"].items():
            if m.get("repo") == repo and m.get("checkpoint") == template:
                if "total_epochs" not in m:
                    raise hub.HubError(f"--no-hub needs models.{name}.total_epochs to know the epochs")
                return [hub.CheckpointFile(e, template.format(epoch=e), "unknown", "")
                        for e in range(1, int(m["total_epochs"]) + 1)]
        raise AssertionError(repo)

    return list_epochs


def _manifest_rows(results: Path, dataset: str) -> Optional[int]:
    p = results / "data" / dataset / "manifest.parquet"
    if not p.is_file():
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(p).metadata.num_rows


def _head_size(url: str, timeout: float = 10.0) -> Optional[int]:
    try:
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "clipdyn"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            n = r.headers.get("Content-Length")
            return int(n) if n is not None else None
    except Exception:
        return None


def _hub_bytes(d: DatasetSpec) -> Optional[int]:
    try:
        _, files = hub.list_repo(d.repo, d.revision, d.repo_type)
    except Exception:
        return None
    pats = d.files or ["*"]
    sizes = [f.size for f in files if any(fnmatch.fnmatch(f.path, p) for p in pats)]
    return None if any(s is None for s in sizes) else sum(sizes)


def dataset_plans(study: Study, results: Path, network: bool) -> Dict[str, DatasetPlan]:
    out: Dict[str, DatasetPlan] = {}
    embedded = {d for m in study.metrics.values() for d in m.datasets}
    for name, d in study.datasets.items():
        if d.derived:
            continue
        rows = _manifest_rows(results, name)
        if rows is not None:
            images, src = rows, "manifest"
        else:
            key = (d.format, d.repo) if d.format == "webdataset" else (d.format, None)
            pub = PUBLISHED_IMAGES.get(key)
            images, src = (pub[0], f"published: {pub[1]}") if pub else (None, "unknown until downloaded")
            if images is not None and d.subset:
                images, src = min(images, int(d.subset)), f"subset of {src}"
        if d.archives:
            sizes = [_head_size(a["url"]) if network else None for a in d.archives]
            nbytes = None if any(s is None for s in sizes) else sum(sizes)
            bsrc = "HEAD Content-Length" if nbytes is not None else "unknown (no network)" if not network else "unknown"
        elif d.repo:
            nbytes = _hub_bytes(d) if network else None
            bsrc = "Hub listing" if nbytes is not None else "unknown (no network)" if not network else "unknown"
        else:
            nbytes, bsrc = 0, "local folder"
        out[name] = DatasetPlan(name, images, src, nbytes, bsrc, embedded=name in embedded)
        for a in d.extra_files.values():
            out[name].notes.append(f"+ {a['file']}")
    for name, d in study.datasets.items():
        if d.derived:
            src = out[d.derived_from]
            sev = len(d.severities)
            images = None if src.images is None else src.images * sev
            out[name] = DatasetPlan(name, images, f"{sev} severities x {d.derived_from}", 0, "generated",
                                    embedded=name in embedded)
    return out


def _prompts(study: Study) -> int:
    from .embed.classifier import class_templates  # the templates' home

    n = 0
    used = {m.classset for m in study.metrics.values()} - {None}
    for cs in used:
        c = study.classsets[cs]
        classes = 1000 if c.source == "openclip_imagenet" else len(c.names) or 1000
        # a dataset's own templates are known only once it is downloaded: 18 as a guess
        templates = 18 if c.template_source == "dataset" else len(class_templates(c.template_source))
        n += classes * templates
    return n


def _measured_rates(bench_dir: Path) -> Dict[tuple, float]:
    """(gpu, arch) -> images/s from benchmark JSONs that measured on CUDA."""
    rates = {}
    for p in sorted(bench_dir.glob("*.json")) if bench_dir.is_dir() else []:
        try:
            b = json.loads(p.read_text())
        except ValueError:
            continue
        part = b.get("part1", {})
        if part.get("device") == "cuda" and part.get("e2e_images_per_s"):
            gpu = b.get("machine", {}).get("gpu", "CUDA GPU")
            rates[(gpu, part["model"])] = float(part["e2e_images_per_s"])
    return rates


def build(config: dict, network: bool = True, bench_dir: Optional[Path] = None) -> dict:
    """Everything the plan says, as numbers (see :func:`render`)."""
    study = Study(config) if network else Study(config, list_epochs=_assumed_listing(config))
    results = Path(Study.results_dir(config))
    extra = study.model_config_paths
    models = []
    for name, m in study.models.items():
        image, text, params = model_costs(m.arch, extra)
        sizes = {e: m.files[e].size for e in m.epochs}
        if all(s is not None for s in sizes.values()):
            src = "listing"
        else:
            est = params * CHECKPOINT_BYTES_PER_PARAM
            sizes = {e: (s if s is not None else est) for e, s in sizes.items()}
            src = f"estimate: {params / 1e6:.0f} M parameters x {CHECKPOINT_BYTES_PER_PARAM} B"
        models.append(ModelPlan(name, m.arch, list(m.epochs), sizes, src, image, text, params))
    datasets = dataset_plans(study, results, network)
    order = [(mp.name, e, mp.sizes[e]) for mp in models for e in mp.epochs]  # the workflow's checkpoint order
    budget = study.checkpoint_budget
    total = sum(s for _, _, s in order)
    peak_budget = None
    if budget:
        k = int(budget)
        peak_budget = max(sum(s for _, _, s in order[i:i + k]) for i in range(max(1, len(order) - k + 1)))
    per_ckpt_images = sum(d.images or 0 for d in datasets.values() if d.embedded)
    unknown_images = [d.name for d in datasets.values() if d.embedded and d.images is None]
    prompts = _prompts(study)
    rates = _measured_rates(bench_dir or Path(__file__).resolve().parents[2] / "benchmarks")
    gpu_hours = {}
    for mp in models:
        flops = len(mp.epochs) * (per_ckpt_images * mp.image_flops + prompts * mp.text_flops)
        row = {}
        for gpu, peak in GPU_PEAK.items():
            row[gpu] = (flops / (peak * ASSUMED_UTILISATION) / 3600, "estimate")
        for (gpu, arch), rate in rates.items():
            if arch == mp.arch:
                row[gpu] = (len(mp.epochs) * per_ckpt_images / rate / 3600, "measured")
        gpu_hours[mp.name] = row
    return {"models": models, "datasets": datasets, "order": order, "budget": budget, "total": total,
            "peak_budget": peak_budget, "per_ckpt_images": per_ckpt_images, "unknown_images": unknown_images,
            "prompts": prompts, "gpu_hours": gpu_hours, "network": network,
            "pixel_bytes": _pixel_bytes(study, datasets)}


def _pixel_bytes(study: Study, datasets: Dict[str, DatasetPlan]) -> Optional[int]:
    sizes = {m.preprocess.size for m in study.models.values()}
    n = sum(d.images or 0 for d in datasets.values() if d.embedded)
    return sum(n * s * s * 3 for s in sizes)


def _b(n: Optional[float]) -> str:
    from .progress import human_bytes

    return "unknown" if n is None else human_bytes(n)


def render(p: dict, config_name: str = "") -> str:
    lines = [f"# Plan{f' of {config_name}' if config_name else ''}", ""]
    if not p["network"]:
        lines += ["Planned with `--no-hub`: epochs assumed to be `1..total_epochs` (not listed), checkpoint sizes "
                  "estimated from the parameter count, dataset bytes unknown.", ""]
    lines += ["## Checkpoints", "", "| model | arch | epochs selected | checkpoints | bytes each | bytes | source |",
              "|---|---|---|---|---|---|---|"]
    for mp in p["models"]:
        sizes = list(mp.sizes.values())
        each = _b(sizes[0]) if len(set(sizes)) == 1 else f"{_b(min(sizes))}-{_b(max(sizes))}"
        lines.append(f"| {mp.name} | {mp.arch} | {_ranges(mp.epochs) if len(mp.epochs) < 8 else _grid(mp.epochs)} | "
                     f"{len(mp.epochs)} | {each} | {_b(sum(sizes))} | {mp.size_source} |")
    n = len(p["order"])
    lines += ["", f"- all {n} checkpoints: **{_b(p['total'])}**; without a budget they all stay in the Hugging "
                  "Face cache, so this is the peak disk for checkpoints."]
    if p["budget"]:
        lines.append(f"- with `checkpoint_budget: {p['budget']}` (at most {p['budget']} checkpoints held at once): "
                     f"peak **{_b(p['peak_budget'])}**.")
    else:
        lines.append("- `checkpoint_budget` is not set; with `checkpoint_budget: 2` the peak would be "
                     f"{_b(max(sum(s for _, _, s in p['order'][i:i + 2]) for i in range(max(1, n - 1))))}.")
    lines += ["", "## Datasets", "", "| dataset | images per checkpoint | images from | download | bytes from |",
              "|---|---|---|---|---|"]
    for d in p["datasets"].values():
        imgs = "unknown" if d.images is None else f"{d.images:,}"
        if not d.embedded:
            imgs += " (no metric uses it)"
        lines.append(f"| {d.name} | {imgs} | {d.images_source} | {_b(d.bytes)} | {d.bytes_source} |")
    fetched = [d for d in p["datasets"].values() if d.bytes_source != "generated"]
    known = [d.bytes for d in fetched if d.bytes is not None]
    lines += ["", f"- images embedded per checkpoint: **{p['per_ckpt_images']:,}**"
                  + (f" (plus unknown counts of {p['unknown_images']})" if p["unknown_images"] else "")
                  + f", and {p['prompts']:,} prompts for the zero-shot classifiers.",
              f"- dataset downloads: {_b(sum(known))} known"
              + ("" if len(known) == len(fetched) else f" ({len(fetched) - len(known)} of {len(fetched)} unknown, "
                 "see the table)") + ".",
              f"- pixel caches (uint8, one per dataset and input size): {_b(p['pixel_bytes'])}.", "",
              "## GPU-hours (embedding and classifiers, every selected checkpoint)", ""]
    gpus = list(next(iter(p["gpu_hours"].values())).keys()) if p["gpu_hours"] else []
    lines += ["| model | " + " | ".join(gpus) + " |", "|---|" + "---|" * len(gpus)]
    total = {g: 0.0 for g in gpus}
    for name, row in p["gpu_hours"].items():
        cells = []
        for g in gpus:
            h, kind = row[g]
            total[g] += h
            cells.append(f"{h:,.1f}" + ("" if kind == "measured" else "*"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{total[g]:,.1f}**" for g in gpus) + " |")
    lines += ["", f"\\* estimate: forward FLOPs from the open_clip config (2 x multiply-adds of the attention and MLP "
                  f"blocks) at {ASSUMED_UTILISATION:.0%} of the GPU's dense bf16 peak; not measured. Figures without "
                  "a star are measured (benchmarks/*.json). Decoding, checkpoint loading and downloads are not "
                  "included.", ""]
    return "\n".join(lines)


def _grid(epochs: List[int]) -> str:
    steps = {b - a for a, b in zip(epochs, epochs[1:-1])}
    if len(steps) == 1:
        return f"{epochs[0]}, {epochs[1]}, ..., {epochs[-2]}, {epochs[-1]}"
    return _ranges(epochs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    import yaml

    ap = argparse.ArgumentParser(prog="python -m clipdyn plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", default="config/config.yaml")
    ap.add_argument("--out", help="default: <results>/plan.md")
    ap.add_argument("--no-hub", action="store_true", help="no network: assume epochs 1..total_epochs, estimate sizes")
    args = ap.parse_args(argv)
    config = yaml.safe_load(Path(args.configfile).read_text())
    from snakemake.utils import validate

    from .config.study import apply_base

    config = apply_base(config, [Path(__file__).resolve().parents[2]])  # `base:` as the workflow reads it

    validate(config, str(Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"))
    try:
        plan = build(config, network=not args.no_hub)
    except Exception as err:  # a Hub error names the repo and what to do
        raise SystemExit(f"plan: {err}\n(without Hub access: python -m clipdyn plan --no-hub)")
    text = render(plan, args.configfile)
    out = Path(args.out or Path(Study.results_dir(config)) / "plan.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return 0
