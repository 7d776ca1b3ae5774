"""Tiny studies for the tests and the benchmarks (as ``numpy.testing`` is for NumPy's).

Builds a study in a temp folder: a Hugging Face cache with tiny open_clip training
checkpoints and small datasets in the real repos' layouts, and a config that points at it.
Everything is seeded. Used with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE=<hub>``, so the
workflow goes through the real ``huggingface_hub`` code path.

It runs the workflow of the source tree it lives in (``REPO``, whose ``workflow/Snakefile`` it
runs); no rule script imports it, so editing it reruns nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
ARCH = "clipdyn-tiny"
CLASSNAMES = ["red square", "green circle", "blue triangle", "yellow cross", "white ring", "black bar"]
TEMPLATES = ["a photo of a {c}.", "a picture of a {c}."]


@dataclass
class TinyStudy:
    root: Path
    hub: Path
    config: Path
    workdir: Path

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(self.hub), HF_HOME=str(self.root / "hf-home"),
                   PYTHONHASHSEED="0", CLIPDYN_GPU_LOCK_DIR=str(self.root / "gpu-locks"))
        env.pop("HF_TOKEN", None)
        return env

    def cmd(self, *args, repo: Optional[Path] = None) -> list:
        """The snakemake command line for this study; ``repo``: a copy of the workflow to run
        instead of ``REPO``'s (the benchmarks run a snapshot)."""
        return [sys.executable, "-m", "snakemake", "--snakefile", str((repo or REPO) / "workflow" / "Snakefile"),
                "--directory", str(self.workdir), "--configfile", str(self.config), "--cores", "2",
                "--resources", "gpu=1", "--show-failed-logs", *args]

    def snakemake(self, *args, check=True, timeout=900, repo: Optional[Path] = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.cmd(*args, repo=repo), env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{(proc.stdout + proc.stderr)[-4000:]}")
        return proc

    def dry_run_jobs(self, *args, repo: Optional[Path] = None) -> dict:
        """{rule: count} of the jobs a dry run would run."""
        proc = self.snakemake("-n", "--quiet", "rules", *args, repo=repo)
        return parse_job_counts(proc.stdout + proc.stderr)

    def write_config(self, cfg: dict) -> None:
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def read_config(self) -> dict:
        return yaml.safe_load(self.config.read_text())


def parse_job_counts(text: str) -> dict:
    """Parse snakemake's 'Job stats' table into {rule: count}."""
    counts, in_table = {}, False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if not parts or set(line.strip()) <= {"-"}:
                if counts:
                    break
                continue
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
    return counts


def tiny_image(rng: np.random.Generator, label: int, size: int = 40) -> np.ndarray:
    """A coloured blob on noise: class-dependent, so embeddings differ by class."""
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    colour = np.array([(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 20), (240, 240, 240),
                       (10, 10, 10)][label % 6], dtype=np.uint8)
    c = size // 2 + rng.integers(-4, 5, 2)
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < (size // 4 + label) ** 2
    img[mask] = colour
    return img


def make_checkpoint(path: Path, epoch: int, seed: int, arch: str = ARCH) -> None:
    """An open_clip training checkpoint as open_clip_train writes it (DDP 'module.' prefix)."""
    import open_clip
    import torch

    from clipdyn.atomic import atomic_path
    from clipdyn.embed import register_model_configs

    register_model_configs([])
    torch.manual_seed(seed * 1000 + epoch)
    model = open_clip.create_model(arch)
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"epoch": epoch, "name": path.parent.name, "state_dict": sd, "optimizer": {}}, tmp)


def publish_epochs(hub, run: str, epochs, seed: int, scratch: Path) -> str:
    files = {}
    for e in epochs:
        p = scratch / run / f"epoch_{e}.pt"
        make_checkpoint(p, e, seed)
        files[f"full_checkpoints/{run}/epoch_{e}.pt"] = p
    return hub.publish(f"clipdyn-test/{run}", files)


def build_tiny_study(root: Path, n_models: int = 2, n_epochs: int = 3, full: bool = False) -> TinyStudy:
    """The local hub and a config. ``full=False``: one ImageNet-style set and zero-shot accuracy
    (the spine); ``full=True``: every dataset kind and every metric of the study."""
    from clipdyn.datasets import writers
    from clipdyn.localhub import LocalHub

    root = Path(root)
    hub = LocalHub(root / "hub")
    scratch = root / "scratch"
    rng = np.random.default_rng(0)
    models = {}
    for i in range(n_models):
        run = f"tiny-{'abc'[i]}"
        publish_epochs(hub, run, range(1, n_epochs + 1), seed=i, scratch=scratch)
        models[f"tiny_{'abc'[i]}"] = {
            "arch": ARCH, "repo": f"clipdyn-test/{run}", "revision": "main",
            "checkpoint": f"full_checkpoints/{run}/epoch_{{epoch}}.pt", "epochs": "auto",
            "label": f"Tiny {'ABC'[i]}", "total_epochs": 10,
        }
    # ImageNet-style classification set, clip-benchmark webdataset layout
    labels = [k % len(CLASSNAMES) for k in range(48)]
    images = [tiny_image(rng, lab) for lab in labels]
    writers.write_webdataset(scratch / "wds", images, labels, CLASSNAMES, TEMPLATES, shard_size=20)
    hub.publish_folder("clipdyn-test/wds_tiny", scratch / "wds", repo_type="dataset")
    datasets = {
        "tiny_imagenet": {"repo": "clipdyn-test/wds_tiny", "format": "webdataset",
                          "files": ["test/*.tar", "test/nshards.txt", "classnames.txt",
                                    "zeroshot_classification_templates.txt"],
                          "options": {"split": "test"}, "subset": 36},
    }
    classsets = {"tiny": {"source": "dataset", "dataset": "tiny_imagenet", "templates": "dataset"}}
    metrics = {"zeroshot": {"kind": "zeroshot_accuracy", "inputs": {"dataset": "tiny_imagenet"},
                            "classset": "tiny"}}
    if full:
        _add_full(root, hub, scratch, rng, datasets, classsets, metrics)
    cfg = {
        "models": models, "datasets": datasets, "classsets": classsets, "metrics": metrics,
        "embedding": {"batch_size": 16, "threads": 1, "decode_workers": 2, "mem_mb": 1000},
        "figures": {"base_model": "tiny_a", "scale_models": sorted(models)},
    }
    workdir = root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    study = TinyStudy(root=root, hub=root / "hub", config=root / "config.yaml", workdir=workdir)
    study.write_config(cfg)
    return study


def _add_full(root, hub, scratch, rng, datasets, classsets, metrics) -> None:
    from clipdyn.datasets import writers

    cats = ["airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair", "clock", "dog",
            "elephant", "keyboard", "knife", "oven", "truck"]
    # cue-conflict: the real published sample (80 real stimuli in Geirhos' layout)
    sample = REPO.parent / "shared" / "data" / "cue-conflict-sample"
    if not sample.exists():
        sample = Path(os.environ.get("CLIPDYN_SHARED", "/work/shared")) / "data" / "cue-conflict-sample"
    if sample.exists():
        hub.publish_folder("clipdyn-test/cue-conflict", sample, repo_type="dataset")
    else:  # a synthetic stand-in in the same layout
        items = [(cats[k % 16], cats[(k * 7 + 3) % 16], tiny_image(rng, k, 48)) for k in range(48)]
        writers.write_cue_conflict(scratch / "cue", items)
        hub.publish_folder("clipdyn-test/cue-conflict", scratch / "cue", repo_type="dataset")
    datasets["cue_conflict"] = {"repo": "clipdyn-test/cue-conflict", "format": "cue_conflict",
                                "files": ["*/*.png"]}
    # IQA: TID2013 and KADID-10k layouts (archives + meta-info CSV, as on the Hub)
    for kind, ext, ref_fmt in (("tid2013", "bmp", "I{:02d}.BMP"), ("kadid10k", "png", "I{:02d}.png")):
        refs, dists = {}, []
        for r in range(1, 4):
            ref_name = ref_fmt.format(r)
            base = tiny_image(rng, r, 48)
            refs[ref_name] = base
            for lvl in range(1, 5):
                noisy = np.clip(base.astype(float) + rng.normal(0, 12 * lvl, base.shape), 0, 255).astype(np.uint8)
                name = (f"i{r:02d}_01_{lvl}.bmp" if kind == "tid2013" else f"I{r:02d}_01_{lvl:02d}.png")
                dists.append((ref_name, name, noisy, 6.0 - lvl + rng.normal(0, 0.2)))
        writers.write_iqa(scratch / kind, kind, refs, dists)
        hub.publish_folder(f"clipdyn-test/{kind}", scratch / kind, repo_type="dataset")
        datasets[kind] = {"repo": f"clipdyn-test/{kind}", "format": f"iqa_{kind}", "files": ["*"]}
    # NIGHTS-style triplets
    triplets = []
    for k in range(12):
        ref = tiny_image(rng, k, 48)
        a = np.clip(ref + rng.normal(0, 10, ref.shape), 0, 255).astype(np.uint8)
        b = np.clip(ref + rng.normal(0, 40, ref.shape), 0, 255).astype(np.uint8)
        lv = float(np.clip(0.8 + rng.normal(0, 0.1), 0, 1))
        triplets.append({"ref": ref, "left": a, "right": b, "left_vote": lv, "right_vote": 1 - lv,
                         "split": "test", "is_imagenet": k % 2 == 0, "prompt": f"object {k}"})
    writers.write_nights(scratch / "nights", triplets)
    hub.publish_folder("clipdyn-test/nights", scratch / "nights", repo_type="dataset")
    datasets["nights"] = {"repo": "clipdyn-test/nights", "format": "nights", "files": ["*"]}
    # saliency: images with a blob, density map on the blob, fixations sampled from it
    imgs, maps, fix = {}, {}, {}
    yy, xx = np.mgrid[:48, :48]
    for k in range(6):
        img = tiny_image(rng, k, 48)
        cy, cx = rng.integers(12, 36, 2)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0 ** 2))
        f = np.zeros((48, 48), bool)
        pts = rng.choice(48 * 48, 10, p=(m / m.sum()).ravel())
        f.ravel()[pts] = True
        imgs[f"img{k:03d}"], maps[f"img{k:03d}"], fix[f"img{k:03d}"] = img, m, f
    writers.write_saliency(scratch / "saliency", imgs, maps, fix)
    hub.publish_folder("clipdyn-test/saliency", scratch / "saliency", repo_type="dataset")
    datasets["saliency"] = {"repo": "clipdyn-test/saliency", "format": "saliency", "files": ["*"]}
    # OOD set: plain image folder of textures no class has
    ood = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(12)]
    writers.write_image_folder(scratch / "ood", ood, [0] * 12, ["noise"])
    hub.publish_folder("clipdyn-test/ood-noise", scratch / "ood", repo_type="dataset")
    datasets["ood_noise"] = {"repo": "clipdyn-test/ood-noise", "format": "image_folder", "files": ["*"]}
    datasets["tiny_imagenet_c"] = {"derived_from": "tiny_imagenet", "corruption": "gaussian_noise",
                                   "severities": [0, 1, 2, 3, 4, 5]}
    classsets["imagenet1k"] = {"source": "openclip_imagenet", "templates": "simple"}
    classsets["tiny_mcm"] = {"source": "dataset", "dataset": "tiny_imagenet", "templates": "mcm"}
    metrics.update({
        "shape_bias": {"kind": "shape_bias", "inputs": {"dataset": "cue_conflict"}, "classset": "imagenet1k",
                       "options": {"decision": "imagenet_mapping"}},
        "noise_sensitivity": {"kind": "noise_sensitivity",
                              "inputs": {"clean": "tiny_imagenet", "noisy": "tiny_imagenet_c"}, "classset": "tiny",
                              # the tiny model scores 0 on the 40 px images blown up to ImageNet-C's crop, so
                              # the default baseline (severity 0) would make every drop NaN (nothing to lose)
                              "options": {"baseline": "clean"}},
        "low_level_alignment": {"kind": "low_level_alignment", "inputs": {"datasets": ["tid2013", "kadid10k"]}},
        "mid_level_alignment": {"kind": "mid_level_alignment", "inputs": {"dataset": "nights"}},
        "saliency_alignment": {"kind": "saliency_alignment", "inputs": {"dataset": "saliency"}},
        "calibration": {"kind": "calibration", "inputs": {"in_distribution": "tiny_imagenet",
                                                          "shifted": ["tiny_imagenet_c"]}, "classset": "tiny"},
        "ood_detection": {"kind": "ood_detection", "inputs": {"in_distribution": "tiny_imagenet",
                                                              "ood": ["ood_noise"]}, "classset": "tiny_mcm"},
    })


# --- the other checkpoint sources (clipdyn.sources): a local run, Hub revisions, a final model


def write_local_run(run_dir: Path, epochs, seed: int = 7, half_written=None) -> Path:
    """An open_clip training run folder: ``<run>/checkpoints/epoch_N.pt`` and ``epoch_latest.pt``, its
    ``out.log``; ``half_written``: an epoch whose file is cut in half, as while ``torch.save`` writes it."""
    ck = Path(run_dir) / "checkpoints"
    for e in epochs:
        make_checkpoint(ck / f"epoch_{e}.pt", e, seed)
    if half_written is not None:
        p = ck / f"epoch_{half_written}.pt"
        make_checkpoint(p, half_written, seed)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    last = max([*epochs, 0])
    if last:
        (ck / "epoch_latest.pt").write_bytes((ck / f"epoch_{last}.pt").read_bytes())
    (Path(run_dir) / "out.log").write_text("".join(f"epoch {e} done\n" for e in epochs))
    return Path(run_dir)


def publish_revisions(hub, repo: str, epochs, seed: int, scratch: Path, filename: str = "checkpoint.pt") -> dict:
    """One commit per epoch holding ``filename``, each tagged by a branch ``epoch-N``; {epoch: commit}."""
    out = {}
    for e in epochs:
        p = scratch / repo.replace("/", "--") / f"epoch_{e}.pt"
        make_checkpoint(p, e, seed)
        out[e] = hub.publish(repo, {filename: p})
        hub.branch(repo, f"epoch-{e}", out[e])
    return out


def publish_final(hub, repo: str, seed: int, arch: str = ARCH) -> str:
    """open_clip pretrained weights as on the Hub: ``open_clip_model.safetensors`` (bare state dict) and
    ``open_clip_config.json`` (``model_cfg``, ``preprocess_cfg``)."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save as save_bytes

    from clipdyn.embed import register_model_configs

    register_model_configs([])
    torch.manual_seed(seed)
    model = open_clip.create_model(arch)
    cfg = json.loads((REPO / "workflow" / "clipdyn" / "model_configs" / f"{arch}.json").read_text())
    oc = {"model_cfg": cfg, "preprocess_cfg": {"mean": list(model.visual.preprocess_cfg["mean"]),
                                               "std": list(model.visual.preprocess_cfg["std"])}}
    return hub.publish(repo, {"open_clip_model.safetensors": save_bytes({k: v.contiguous() for k, v in
                                                                         model.state_dict().items()}),
                              "open_clip_config.json": json.dumps(oc), "README.md": "final weights\n"})
