"""Build the offline demo's local Hugging Face hub: trained tiny CLIPs and shape-world datasets.

:func:`build` trains the demo models (``clipdyn.demo.train``) on the shape world
(``clipdyn.demo.world``), renders the evaluation sets, and publishes everything
into a Hugging Face cache folder with :class:`clipdyn.fixtures.localhub.LocalHub`, in the
layouts of the real sources, so that the workflow reads it with ``HF_HUB_OFFLINE=1``
and ``HF_HUB_CACHE=<hub>`` through the same ``huggingface_hub`` calls as the study.

Model repos (``repo_type="model"``), one per run, like ``laion/scaling-laws-openclip``::

    clipdyn-demo/<run>:  full_checkpoints/<run>/epoch_<n>.pt      (open_clip training checkpoints)

Dataset repos (``repo_type="dataset"``), written with ``clipdyn.fixtures.writers``:

====================================  ==============  ==========================================
repo                                  format          role in the demo
====================================  ==============  ==========================================
clipdyn-demo/wds_shapes               webdataset      held-out classification (zero-shot,
                                                      calibration, clean set of the noise test)
clipdyn-demo/shapes_shifted           image_folder    texture independent of class (shifted set)
clipdyn-demo/wds_shapes_ood           webdataset      unseen shapes/textures, noise blobs (OOD)
clipdyn-demo/cue-conflict             cue_conflict    shape of A, texture of B (Geirhos layout)
clipdyn-demo/IQA-PyTorch-Datasets     iqa_*           tid2013.tgz, kadid10k.tgz   (SYNTHETIC MOS)
clipdyn-demo/IQA-PyTorch-Datasets-metainfo            meta_info_*Dataset.csv
clipdyn-demo/nights                   nights          2AFC triplets               (SYNTHETIC votes)
clipdyn-demo/saliency                 saliency        objects on clutter       (SYNTHETIC fixations)
====================================  ==============  ==========================================

Cue-conflict categories. The cue-conflict layout (and its adapter) only knows the 16
Geirhos categories, so the demo's eight shape classes are stored under eight of those
names, a fixed and arbitrary aliasing (:data:`CUE_CONFLICT_ALIASES`, e.g. folder
``clock`` holds circles). ``category_mapping.csv`` (columns ``category,imagenet_index``,
the index being the class index in the demo class set ``wds_shapes/classnames.txt``)
maps them back, for the shape-bias metric's ``decision: imagenet_mapping`` with
``category_mapping: <that file>``. It is in the cue-conflict repo and, as
``cue_conflict_category_mapping.csv``, next to the manifest.

``<hub>/demo-manifest.json`` lists every repo with its revision, file template,
epochs, format and options, the class names and templates, the synthetic-data
rules, the training settings and the per-epoch numbers of the training probe
(zero-shot accuracy on ``wds_shapes`` and shape bias on ``cue-conflict``, the same
images the workflow evaluates), so a workflow config can be checked against it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from ..atomic import atomic_path
from ..fixtures.localhub import LocalHub, repo_folder
from . import world

ORG = "clipdyn-demo"
MANIFEST = "demo-manifest.json"
CATEGORY_MAPPING = "cue_conflict_category_mapping.csv"
#: file template of the checkpoints inside a model repo (as laion/scaling-laws-openclip)
CHECKPOINT_TEMPLATE = "full_checkpoints/{run}/epoch_{epoch}.pt"

#: run name -> open_clip architecture (smallest first: stand-ins for base, large, huge)
RUNS: Dict[str, str] = {"demo-s": "clipdyn-demo-s", "demo-m": "clipdyn-demo-m", "demo-l": "clipdyn-demo-l"}

#: demo class -> the Geirhos category name its cue-conflict folder carries (arbitrary, fixed)
CUE_CONFLICT_ALIASES: Dict[str, str] = {
    "circle": "clock", "crescent": "boat", "cross": "airplane", "diamond": "knife",
    "heart": "bear", "square": "oven", "star": "bird", "triangle": "bottle",
}


@dataclass(frozen=True)
class Scale:
    """How much to train and render. Counts are per class unless named otherwise."""

    runs: Sequence[str]
    epochs: int
    n_train: int          # training image-caption pairs (total)
    n_classification: int
    n_shifted: int
    n_ood: int
    cue_conflict_per_pair: int  # images per (shape class, texture class) pair, 64 pairs
    iqa_refs: int         # references per IQA set (x 4 types x 5 levels distorted images)
    nights: int           # triplets (total)
    saliency: int         # images (total)


SCALES: Dict[str, Scale] = {
    "full": Scale(runs=("demo-s", "demo-m", "demo-l"), epochs=8, n_train=3072, n_classification=40, n_shifted=20,
                  n_ood=40, cue_conflict_per_pair=5, iqa_refs=8, nights=200, saliency=48),
    # the end-to-end CI test: two models, a few epochs, small sets
    "ci": Scale(runs=("demo-s", "demo-m"), epochs=4, n_train=1024, n_classification=12, n_shifted=8, n_ood=10,
                cue_conflict_per_pair=1, iqa_refs=3, nights=48, saliency=12),
}


def _schedule(scale: Scale, epochs: int):
    from .train import Schedule

    batch = 32
    steps = scale.n_train // batch
    # the cosine runs over twice the built epochs, so more-epochs still has a learning rate
    return Schedule(lr=1e-3, weight_decay=0.1, batch_size=batch, warmup_steps=max(1, steps // 2),
                    decay_steps=2 * epochs * steps, final_lr_fraction=0.1)


# --- data -------------------------------------------------------------------------------------

@dataclass
class TrainingData:
    images: np.ndarray
    captions: List[str]


def training_data(scale: Scale, seed: int) -> TrainingData:
    images, captions, _ = world.training_pairs(scale.n_train, seed=seed)
    return TrainingData(images, captions)


def probe_data(scale: Scale, seed: int):
    """The held-out and cue-conflict images, exactly those published in wds_shapes and cue-conflict."""
    from .train import ProbeData

    images, labels = world.classification_set(scale.n_classification, seed=seed)
    items = world.cue_conflict_set(scale.cue_conflict_per_pair, seed=seed)
    return ProbeData(images=images, labels=labels,
                     conflict_images=np.stack([img for _, _, img in items]),
                     conflict_shape=np.array([world.SHAPES.index(a) for a, _, _ in items]),
                     conflict_texture=np.array([world.SHAPES.index(b) for _, b, _ in items]))


def _dataset_card(title: str, body: str) -> str:
    return (f"# {title}\n\nPart of the clipdyn offline demo: rendered by `clipdyn.demo.world` "
            f"(procedural shape world, seeded), not collected.\n\n{body.strip()}\n")


def _category_mapping_csv() -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["category", "imagenet_index"])
    for k, shape in enumerate(world.SHAPES):
        w.writerow([CUE_CONFLICT_ALIASES[shape], k])
    return buf.getvalue()


def _iqa_records(kind: str, refs, dists):
    """File names and score scale of each layout (TID2013: MOS in [0, 9]; KADID-10k: [1, 5])."""
    if kind == "tid2013":
        ref_names = [f"I{i + 1:02d}.BMP" for i in range(len(refs))]
        rows = [(ref_names[i], f"i{i + 1:02d}_{t + 1:02d}_{level}.bmp", img, 9 * (q - 1) / 4)
                for i, t, level, img, q in dists]
    else:
        ref_names = [f"I{i + 1:02d}.png" for i in range(len(refs))]
        rows = [(ref_names[i], f"I{i + 1:02d}_{t + 1:02d}_{level:02d}.png", img, q)
                for i, t, level, img, q in dists]
    return dict(zip(ref_names, refs)), rows


def write_datasets(root: os.PathLike, scale: Scale, seed: int = 0) -> Dict[str, dict]:
    """Render every evaluation set and write it under ``root/<repo name>/`` in its real layout.

    Returns, per dataset name, the manifest entry without revision: ``repo_id``,
    ``folder`` (local, to publish), ``format``, ``files``, ``options`` and so on.
    """
    from ..fixtures import writers

    root = Path(root)
    out: Dict[str, dict] = {}
    classnames, templates = list(world.SHAPES), list(world.TEMPLATES)
    rules = world.SYNTHETIC_RULES
    wds_files = ["test/*.tar", "test/nshards.txt", "classnames.txt", "zeroshot_classification_templates.txt"]

    def entry(name, repo, fmt, n, **kw):
        out[name] = {"repo_id": f"{ORG}/{repo}", "repo_type": "dataset", "format": fmt, "n_images": int(n),
                     "folder": str(root / repo), **kw}
        return root / repo

    images, labels = world.classification_set(scale.n_classification, seed=seed)
    d = entry("shapes", "wds_shapes", "webdataset", len(images), files=wds_files, options={"split": "test"},
              role="held-out classification, training distribution (class texture in 75% of images)")
    writers.write_webdataset(d, images, labels, classnames, templates, split="test", shard_size=64)
    (d / "README.md").write_text(_dataset_card("wds_shapes", "Held-out shape-world images, clip-benchmark layout."))

    images, labels = world.classification_set(scale.n_shifted, seed=seed, p_texture=1 / len(world.TEXTURES),
                                              stream="shifted")
    d = entry("shapes_shifted", "shapes_shifted", "image_folder", len(images), files=["*/*.png"], options={},
              role="shifted: texture uniform and independent of the class")
    writers.write_image_folder(d, images, labels, classnames)
    (d / "README.md").write_text(_dataset_card("shapes_shifted", "Textures drawn independently of the class."))

    images, labels, ood_names = world.ood_set(scale.n_ood, seed=seed)
    d = entry("shapes_ood", "wds_shapes_ood", "webdataset", len(images), files=wds_files, options={"split": "test"},
              role="out-of-distribution: shapes and textures never seen in training, noise blobs")
    writers.write_webdataset(d, images, labels, ood_names, templates, split="test", shard_size=64)
    (d / "README.md").write_text(_dataset_card("wds_shapes_ood", "Unseen shapes and textures (OOD)."))

    items = world.cue_conflict_set(scale.cue_conflict_per_pair, seed=seed)
    d = entry("cue_conflict", "cue-conflict", "cue_conflict", len(items), files=["*/*.png", "category_mapping.csv"],
              options={}, category_mapping="category_mapping.csv", aliases=dict(CUE_CONFLICT_ALIASES),
              role="cue conflict: shape of class A filled with the texture of class B (A == B included)")
    writers.write_cue_conflict(d, [(CUE_CONFLICT_ALIASES[a], CUE_CONFLICT_ALIASES[b], img) for a, b, img in items])
    (d / "category_mapping.csv").write_text(_category_mapping_csv())
    (d / "README.md").write_text(_dataset_card("cue-conflict", (
        "Folder names are Geirhos category names used as aliases of the demo classes: "
        + ", ".join(f"{v} = {k}" for k, v in CUE_CONFLICT_ALIASES.items())
        + ". category_mapping.csv maps each to its class index in wds_shapes/classnames.txt.")))

    iqa_dir = root / "IQA-PyTorch-Datasets"
    meta_dir = root / "IQA-PyTorch-Datasets-metainfo"
    tmp_iqa = root / "_iqa"
    for kind, stream in (("tid2013", "iqa-tid2013"), ("kadid10k", "iqa-kadid10k")):
        refs, dists = world.iqa_set(scale.iqa_refs, seed=seed, stream=stream)
        ref_map, rows = _iqa_records(kind, refs, dists)
        writers.write_iqa(tmp_iqa, kind, ref_map, rows, archive=True)
        meta = f"meta_info_{'TID2013' if kind == 'tid2013' else 'KADID10k'}Dataset.csv"
        iqa_dir.mkdir(parents=True, exist_ok=True)
        meta_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_iqa / f"{kind}.tgz"), iqa_dir / f"{kind}.tgz")
        shutil.move(str(tmp_iqa / meta), meta_dir / meta)
        out[kind] = {"repo_id": f"{ORG}/IQA-PyTorch-Datasets", "repo_type": "dataset", "format": f"iqa_{kind}",
                     "n_images": len(refs) + len(rows), "files": [f"{kind}.tgz"], "options": {},
                     "extra_files": {"meta_info": {"repo": f"{ORG}/IQA-PyTorch-Datasets-metainfo", "file": meta,
                                                   "repo_type": "dataset"}},
                     "folder": str(iqa_dir), "meta_folder": str(meta_dir),
                     "score_scale": "[0, 9] = 9 * (q - 1) / 4" if kind == "tid2013" else "[1, 5] = q",
                     "synthetic": rules["iqa"], "role": "full-reference IQA with SYNTHETIC opinion scores"}
    shutil.rmtree(tmp_iqa, ignore_errors=True)
    card = _dataset_card("IQA (synthetic)", "SYNTHETIC opinion scores. " + rules["iqa"]
                         + " Stored as TID2013 MOS in [0, 9] (9 * (q - 1) / 4) and KADID-10k in [1, 5] (q).")
    (iqa_dir / "README.md").write_text(card)
    (meta_dir / "README.md").write_text(card)

    triplets = world.nights_set(scale.nights, seed=seed)
    for t in triplets:
        t["votes"] = world.NIGHTS_RATERS
    d = entry("nights", "nights", "nights", 3 * len(triplets), files=["data.csv", "ref/**", "distort/**"],
              options={}, synthetic=rules["nights"], role="2AFC similarity triplets with SYNTHETIC votes")
    writers.write_nights(d, triplets)
    (d / "README.md").write_text(_dataset_card("nights (synthetic)", "SYNTHETIC votes. " + rules["nights"]))

    sal_images, maps, fixations = world.saliency_set(scale.saliency, seed=seed)
    d = entry("saliency", "saliency", "saliency", len(sal_images), files=["images/*", "maps/*", "fixations/*"],
              options={}, synthetic=rules["saliency"], role="free viewing with SYNTHETIC fixation maps")
    writers.write_saliency(d, sal_images, maps, fixations)
    (d / "README.md").write_text(_dataset_card("saliency (synthetic)", "SYNTHETIC fixations. " + rules["saliency"]))
    return out


# --- training in worker processes -------------------------------------------------------------

def _train_task(run: str, arch: str, out_dir: str, data: TrainingData, probe, epochs: int, schedule: dict,
                seed: int, resume: Optional[str]) -> List[dict]:
    import torch

    from .train import Schedule, train_run

    # one thread per model: bit-reproducible whatever the number of jobs, and tiny ops
    # scale badly across threads anyway
    torch.set_num_threads(1)
    return train_run(arch, run, out_dir, data.images, data.captions, epochs, Schedule(**schedule), seed=seed,
                     resume=resume, probe_data=probe, log=lambda s: print(s, flush=True))


def _datasets_task(root: str, scale: Scale, seed: int) -> Dict[str, dict]:
    return write_datasets(root, scale, seed)


def _run_tasks(tasks: Dict[str, tuple], jobs: int) -> Dict[str, object]:
    """Run ``name -> (fn, args)`` tasks, in ``jobs`` spawned processes (1 = here, in order)."""
    if jobs <= 1:
        return {name: fn(*args) for name, (fn, args) in tasks.items()}
    # fork where there is one: the workers inherit the imported torch and open_clip instead
    # of importing them again (seconds each). The parent has run no torch op yet, so no
    # torch thread pool is forked.
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context(method)) as pool:
        futures = {name: pool.submit(fn, *args) for name, (fn, args) in tasks.items()}
        return {name: f.result() for name, f in futures.items()}


# --- publishing -------------------------------------------------------------------------------

def _publish_checkpoints(hub: LocalHub, run: str, folder: Path, epochs: Sequence[int]) -> str:
    files = {CHECKPOINT_TEMPLATE.format(run=run, epoch=e): folder / f"epoch_{e}.pt" for e in epochs}
    return hub.publish(f"{ORG}/{run}", files, repo_type="model")


def _publish_datasets(hub: LocalHub, entries: Dict[str, dict]) -> None:
    published: Dict[tuple, str] = {}
    for name, e in entries.items():
        key = (e["repo_id"], e["folder"])
        if key not in published:
            published[key] = hub.publish_folder(e["repo_id"], e.pop("folder"), repo_type="dataset")
        else:
            e.pop("folder")
        e["revision"] = published[key]
        meta_folder = e.pop("meta_folder", None)
        if meta_folder is not None:
            meta = e["extra_files"]["meta_info"]
            mkey = (meta["repo"], meta_folder)
            if mkey not in published:
                published[mkey] = hub.publish_folder(meta["repo"], meta_folder, repo_type="dataset")
            meta["revision"] = published[mkey]


def checkpoint_path(hub_dir: os.PathLike, run: str, epoch: int, revision: Optional[str] = None) -> Path:
    """Local path of a published checkpoint (in the snapshot of ``revision``, default the head)."""
    hub = LocalHub(hub_dir)
    revision = revision or hub.head(f"{ORG}/{run}")
    return (repo_folder(hub_dir, f"{ORG}/{run}") / "snapshots" / revision
            / CHECKPOINT_TEMPLATE.format(run=run, epoch=epoch))


def _probe_log(history: List[dict]) -> List[dict]:
    """Rounded, and NaN (no shape or texture hit at all) as null, so the manifest is strict JSON."""
    def clean(v):
        if isinstance(v, float):
            return None if v != v else round(v, 6)
        return v

    return [{k: clean(v) for k, v in row.items()} for row in history]


def build(hub_dir: os.PathLike, epochs: Optional[int] = None, scale: Union[str, Scale] = "full", seed: int = 0,
          jobs: int = 2, log: Callable[[str], None] = print) -> dict:
    """Train, render and publish the demo hub into ``hub_dir``; returns the manifest.

    ``scale``: a name in :data:`SCALES` or a :class:`Scale`. Refuses a folder that
    already holds a demo manifest (use :func:`more_epochs`, or delete the folder).
    ``jobs`` worker processes share the models and the datasets; every model trains
    on one torch thread, so the result does not depend on ``jobs``. Workers are forked:
    from a process that has already run multi-threaded torch code (a notebook, a test
    session), prefer the command line or ``jobs=1``.
    """
    t0 = time.perf_counter()
    hub_dir = Path(hub_dir)
    if (hub_dir / MANIFEST).exists():
        raise FileExistsError(f"{hub_dir / MANIFEST} exists: this hub is built already. Add epochs with "
                              f"`python -m clipdyn.demo more-epochs --hub {hub_dir}`, or delete the folder.")
    sc = SCALES[scale] if isinstance(scale, str) else scale
    epochs = int(epochs or sc.epochs)
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    schedule = _schedule(sc, epochs)
    hub = LocalHub(hub_dir)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=hub_dir))
    try:
        data = training_data(sc, seed)
        probe = probe_data(sc, seed)
        log(f"rendered {len(data.images)} training pairs in {time.perf_counter() - t0:.1f} s")

        # longest first, so the datasets fill in beside the small models
        tasks = {run: (_train_task, (run, RUNS[run], str(staging / run), data, probe, epochs, asdict(schedule),
                                     seed, None))
                 for run in sorted(sc.runs, key=lambda r: -list(RUNS).index(r))}
        tasks["datasets"] = (_datasets_task, (str(staging / "datasets"), sc, seed))
        results = _run_tasks(tasks, jobs)
        t_train = time.perf_counter()

        datasets = results.pop("datasets")
        _publish_datasets(hub, datasets)
        models = {}
        for run in sc.runs:
            revision = _publish_checkpoints(hub, run, staging / run, range(1, epochs + 1))
            models[run] = {
                "repo_id": f"{ORG}/{run}", "repo_type": "model", "arch": RUNS[run],
                "model_config": f"clipdyn/embed/model_configs/{RUNS[run]}.json",
                "checkpoint": CHECKPOINT_TEMPLATE.replace("{run}", run),
                "epochs": list(range(1, epochs + 1)), "revision": revision,
                "probe": _probe_log(results[run]),
            }
        (hub_dir / CATEGORY_MAPPING).write_text(_category_mapping_csv())
        manifest = {
            "generator": "clipdyn.demo.build",
            "scale": scale if isinstance(scale, str) else "custom", "scale_settings": asdict(sc), "seed": seed,
            "models": models,
            "datasets": datasets,
            "classnames": list(world.SHAPES),
            "templates": list(world.TEMPLATES),
            "class_textures": dict(world.CLASS_TEXTURE),
            "cue_conflict": {"aliases": dict(CUE_CONFLICT_ALIASES), "category_mapping": CATEGORY_MAPPING,
                             "decision": "imagenet_mapping",
                             "note": "imagenet_index = class index in the demo class set (wds_shapes classnames)"},
            "training": {"schedule": asdict(schedule), "n_train": sc.n_train, "p_texture": 0.75,
                         "caption_templates": [list(t) for t in world.CAPTION_TEMPLATES],
                         "texture_contrast": world.TEXTURE_CONTRAST, "image_size": 32},
            "synthetic_rules": dict(world.SYNTHETIC_RULES),
            "probe_note": ("probe = per-epoch numbers printed during training: zeroshot_acc on wds_shapes "
                           "(class-name prompts, the shipped templates), shape_bias on cue-conflict (A != B)"),
        }
        manifest = _write_manifest(hub_dir, manifest)
        log(f"demo hub built in {hub_dir}: {time.perf_counter() - t0:.1f} s "
            f"(training and rendering {t_train - t0:.1f} s, publishing {time.perf_counter() - t_train:.1f} s)")
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(hub_dir: Path, manifest: dict) -> dict:
    """Write the manifest atomically; returns it as read back (JSON types)."""
    text = json.dumps(manifest, indent=1) + "\n"
    with atomic_path(hub_dir / MANIFEST) as tmp:
        tmp.write_text(text)
    return json.loads(text)


def load_manifest(hub_dir: os.PathLike) -> dict:
    path = Path(hub_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the hub first with "
                                f"`python -m clipdyn.demo build --hub {hub_dir}`")
    return json.loads(path.read_text())


def more_epochs(hub_dir: os.PathLike, n: int = 2, jobs: int = 2, log: Callable[[str], None] = print) -> dict:
    """Resume every demo model from its last published epoch and publish ``n`` more, as a new commit.

    Model and optimizer state come from the last checkpoint; the learning-rate schedule
    and data order are functions of the step and epoch, so the result equals a run
    trained for that many epochs at once. Updates and returns the manifest.
    """
    t0 = time.perf_counter()
    hub_dir = Path(hub_dir)
    manifest = load_manifest(hub_dir)
    if n < 1:
        raise ValueError("n must be >= 1")
    sc = Scale(**manifest["scale_settings"])
    seed = int(manifest["seed"])
    schedule = manifest["training"]["schedule"]
    hub = LocalHub(hub_dir)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=hub_dir))
    try:
        data = training_data(sc, seed)
        probe = probe_data(sc, seed)
        tasks = {}
        for run, m in sorted(manifest["models"].items(), key=lambda kv: -list(RUNS).index(kv[0])):
            last = max(m["epochs"])
            resume = checkpoint_path(hub_dir, run, last, m["revision"])
            if not resume.exists():
                raise FileNotFoundError(f"{resume}: the manifest's last checkpoint of {run} is not in the hub")
            tasks[run] = (_train_task, (run, m["arch"], str(staging / run), data, probe, last + n, schedule, seed,
                                        str(resume)))
        results = _run_tasks(tasks, jobs)
        for run, m in manifest["models"].items():
            new = list(range(max(m["epochs"]) + 1, max(m["epochs"]) + n + 1))
            m["revision"] = _publish_checkpoints(hub, run, staging / run, new)
            m["epochs"] = m["epochs"] + new
            m["probe"] = m["probe"] + _probe_log(results[run])
        manifest = _write_manifest(hub_dir, manifest)
        log(f"published {n} more epoch(s) per model in {time.perf_counter() - t0:.1f} s")
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
