import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# the workflow folder (workflow/: rules, scripts, the clipdyn library), wherever the entry Snakefile
# is (the top-level one, or workflow/Snakefile for the catalog's layout)
WORKFLOW_DIR = Path(workflow.current_basedir).parent
# the library lives next to the rules (workflow/clipdyn); importable without `pip install -e .`
sys.path.insert(0, str(WORKFLOW_DIR))

from clipdyn.codeid import code_hash  # noqa: E402
from clipdyn.embed.jobs import embed_images_job, text_classifier_job  # noqa: E402
from clipdyn.hub.checkpoints import fetch_job, release_job  # noqa: E402
from clipdyn.hub import sources as checkpoint_sources  # noqa: E402
from clipdyn.hub.listing import (
    RECORD as LISTING_RECORD,
    Listings,
    invocation,
)  # noqa: E402
from clipdyn.metrics import registry as metric_registry  # noqa: E402
from clipdyn.config.study import ConfigError, Study, apply_base  # noqa: E402

# `base: config/config.yaml`: a few-line config (your own models) on top of the study's datasets and metrics
try:
    _full = apply_base(config, [WORKFLOW_DIR.parent])
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None
if _full is not config:
    config.clear()
    config.update(_full)

validate(config, "../schemas/config.schema.yaml")

# A job killed mid-run leaves its outputs marked incomplete; the next run of the same command
# recomputes exactly those jobs: workflow/profiles/default (loaded by Snakemake itself) sets
# rerun-incomplete. Outputs are written atomically, so a partial file is never there to be trusted.

# One Hub listing per invocation: the top-level run resolves each model's checkpoints once and
# records them (below, while parsing: hooks can be off); its job processes (SLURM jobs re-parse
# this file) read that record, named in CLIPDYN_LISTING, and --report/--unlock/--lint the latest
# one, instead of listing (clipdyn.hub.listing).
LISTINGS = Listings(
    Path(Study.results_dir(config)) / LISTING_RECORD,
    invocation(getattr(workflow, "is_main_process", True), sys.argv),
)

try:
    STUDY = Study(config, listings=LISTINGS)
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

# a top-level run writes its record now: its jobs read it, whatever runs next in this results folder
if LISTINGS.save() is not None:

    envvars:
        "CLIPDYN_LISTING",  # clipdyn.hub.listing.ENV: passed to the job processes of any executor


for (
    _notice
) in (
    STUDY.notices
):  # checkpoints skipped for now (still being written), epochs not there yet
    print(_notice, file=sys.stderr)

R = STUDY.results
DOWNLOADED = STUDY.downloaded_datasets
DERIVED = STUDY.derived_datasets
EMBED = STUDY.embedding
SCRIPTS = WORKFLOW_DIR / "scripts"


def code_of(entry, *steps):
    """Hash of what a rule's entry computes (clipdyn.codeid; the library definitions it reaches,
    wherever they live). ``entry``: its script (a name in workflow/scripts), or the library function
    its ``run`` block calls (module and function joined by a colon); ``steps``: definitions it runs
    without importing them by name (a metric kind's evaluator). Enters ``params``, so an edit of that
    code reruns the rule's jobs, and an edit elsewhere, or a move, does not."""
    target = entry if ":" in entry else str(SCRIPTS / entry)
    return code_hash(target, frozenset(steps))


def _alt(names):
    """Wildcard regex matching exactly these names (a never-matching one if empty)."""
    import re

    return "|".join(re.escape(n) for n in names) or "(?!x)x"


wildcard_constraints:
    model=_alt(STUDY.models),
    epoch=r"\d+",
    dataset=_alt(STUDY.datasets),
    metric=_alt(STUDY.metrics),
    classset=_alt(STUDY.classsets),
    preprocess=r"\d+px-[a-z]+-[a-z]+",


def model_of(wc):
    return STUDY.models[wc.model]


def ckpt_file(wc):
    m = model_of(wc)
    e = int(wc.epoch)
    if e not in m.files:
        raise WorkflowError(f"model {wc.model}: epoch {e} is not on the Hub listing")
    return m.files[e]


def job_mem_mb(wc, attempt=1):
    """Memory request of a checkpoint's embedding and text jobs: from the checkpoint's size in the
    listing (clipdyn.embed.memory.job_mem_mb), unless `embedding: mem_mb` is set."""
    from clipdyn.embed.memory import job_mem_mb as mem

    return mem(getattr(ckpt_file(wc), "size", None), EMBED.mem_mb, attempt)


def embed_runtime_min(wc, input, attempt=1):
    """Time limit (minutes) of an embedding job on a cluster: from the checkpoint's size in the listing
    and the pixel cache's size (clipdyn.embed.memory.job_runtime_min)."""
    from clipdyn.embed.memory import job_runtime_min

    pixels = Path(input.pixels)  # not there yet in a dry run
    return job_runtime_min(
        getattr(ckpt_file(wc), "size", None),
        pixels.stat().st_size if pixels.exists() else None,
        attempt,
    )


def checkpoint_params(wc):
    m, f = model_of(wc), ckpt_file(wc)
    return {
        "repo": m.repo,
        "repo_type": m.repo_type,
        "revision": f.revision
        or m.revision,  # Hub revisions as epochs: the commit listed
        "filename": f.path,
        "blob": f.blob,
    }


# checkpoint_budget: N holds at most N checkpoints in the run's own store (clipdyn.hub.checkpoints)
BUDGET = STUDY.checkpoint_budget
STORE = f"{R}/checkpoint_store"


def checkpoint_consumers(model, epoch):
    """Outputs of every job of the study that reads checkpoint (model, epoch)."""
    datasets, classsets = [], []
    for m in STUDY.metrics.values():
        datasets += [d for d in m.datasets if d not in datasets]
        if metric_registry.get(m.kind).needs_classset and m.classset not in classsets:
            classsets.append(m.classset)
    return [f"{R}/embeddings/{model}/epoch_{epoch}/{d}.parquet" for d in datasets] + [
        f"{R}/text/{model}/epoch_{epoch}/{c}.parquet" for c in classsets
    ]


def record_path(model, epoch):
    """The checkpoint's record (clipdyn.hub.checkpoints): its identity and where it is read from."""
    return f"{R}/checkpoints/{model}/epoch_{epoch}.json"


def _before(wc, k):
    """The Hub checkpoint k places before (model, epoch) in the workflow's order, or None."""
    i = _HUB_RANK.get((wc.model, int(wc.epoch)), 0) - k
    return _HUB_ORDER[i] if i >= 0 else None


def fetch_inputs(wc):
    """Under a budget N, the k-th checkpoint is fetched once every reader of the (k-N)-th is done
    (so at most N are held, and the next download runs while the last N are read)."""
    prev = _before(wc, int(BUDGET)) if BUDGET else None
    return checkpoint_consumers(*prev) if prev else []


def fetch_params(wc):
    """What fetch_checkpoint fetches (the identity) and, under a budget, the run's store and the
    blob it may evict first (the (k-N)-th's: its readers are done). The budget changes only the
    fetch jobs (their readers take the record as an ancient input)."""
    out = {
        "job": checkpoint_params(wc),
        "budget": BUDGET,
        "store": STORE if BUDGET else None,
    }
    if BUDGET:
        prev = _before(wc, int(BUDGET))
        out["done"] = [ckpt_blob(*prev)] if prev else []
    return out


def ckpt_blob(model, epoch):
    return STUDY.models[model].files[epoch].blob


# Checkpoints in order (model by model, epoch by epoch): a checkpoint's downloads, embeddings
# and classifier jobs run back to back, so a persistent embedding worker that loaded it for one
# dataset still holds it for the next (clipdyn.embed.worker), and results arrive epoch by epoch.
_CHECKPOINT_ORDER = [(n, e) for n, m in STUDY.models.items() for e in m.epochs]
_CHECKPOINT_RANK = {ck: i for i, ck in enumerate(_CHECKPOINT_ORDER)}


def checkpoint_priority(wc):
    return len(_CHECKPOINT_RANK) - _CHECKPOINT_RANK.get(
        (wc.model, int(wc.epoch)), len(_CHECKPOINT_RANK)
    )


LOCAL_SOURCES = checkpoint_sources.LOCAL_KINDS
# the checkpoints a budget counts: the Hub's (a local run's files are never removed)
_HUB_ORDER = [
    ck for ck in _CHECKPOINT_ORDER if STUDY.models[ck[0]].source not in LOCAL_SOURCES
]
_HUB_RANK = {ck: i for i, ck in enumerate(_HUB_ORDER)}


def checkpoint_input(wc):
    """What a job that reads checkpoint (model, epoch) takes as input: a Hub checkpoint's record
    (ancient: fetching it again never makes a reader stale), a local run's file where it is.
    """
    if model_of(wc).source in LOCAL_SOURCES:
        # a local run's checkpoint is read where it is: never copied, linked, moved or deleted
        return ckpt_file(wc).path
    return ancient(record_path(wc.model, wc.epoch))


def pixels_of(model, dataset):
    pp = STUDY.models[model].preprocess.id
    return {
        "pixels": f"{R}/data/{dataset}/pixels_{pp}.npy",
        "pixel_index": f"{R}/data/{dataset}/pixels_{pp}.parquet",
    }


def all_metric_files():
    return [
        f"{R}/metrics/{name}/{metric}.parquet"
        for name in STUDY.models
        for metric in STUDY.metrics
    ]


def figure_targets():
    if not STUDY.figures_enabled or not STUDY.metrics:
        return []
    out = []
    for f in ("fig1", "fig2", "fig3", "robustness"):
        out += [f"{R}/figures/{f}.pdf", f"{R}/figures/{f}.png"]
    out += [f"{R}/figures/table1.{ext}" for ext in ("csv", "md", "tex")]
    return out


def all_targets():
    return (
        [f"{R}/checkpoints/{m}/epochs.tsv" for m in STUDY.models]
        + (
            [f"{STORE}/released.json"]
            if BUDGET and STUDY.metrics and _HUB_ORDER
            else []
        )
        + [f"{R}/metrics.parquet", f"{R}/metrics.csv"]
        + figure_targets()
    )


# ---- embed stage helpers


def embed_inputs(wc):
    return {
        "checkpoint": checkpoint_input(wc),
        **pixels_of(wc.model, wc.dataset),
    }


def embed_params(wc):
    m = model_of(wc)
    spatial = STUDY.spatial(wc.dataset)
    return {
        "arch": m.arch,
        "allow_pickle": m.allow_pickle,
        "spatial": spatial,
        "batch_size": STUDY.batch_size(wc.model),
        # only datasets with spatial maps carry it: changing it re-embeds just those
        **({"saliency_map": EMBED.saliency_map} if spatial else {}),
        "provenance": embed_provenance(wc),
    }


def embed_provenance(wc):
    m, f = model_of(wc), ckpt_file(wc)
    src = STUDY.datasets[STUDY.downloaded(wc.dataset)]
    return {
        "model": wc.model,
        "arch": m.arch,
        "epoch": int(wc.epoch),
        "checkpoint_repo": m.repo,
        "checkpoint_file": f.path,
        "checkpoint_blob": f.blob,
        "dataset": wc.dataset,
        "dataset_repo": src.repo,
        "dataset_revision": src.revision,
        "subset": src.subset,
        "preprocess": m.preprocess.id,
    }


def text_params(wc):
    m, f = model_of(wc), ckpt_file(wc)
    return {
        "arch": m.arch,
        "allow_pickle": m.allow_pickle,
        "classset": STUDY.classsets[wc.classset].as_dict(),
        "provenance": {
            "model": wc.model,
            "arch": m.arch,
            "epoch": int(wc.epoch),
            "checkpoint_file": f.path,
            "checkpoint_blob": f.blob,
            "classset": wc.classset,
        },
    }


def text_inputs(wc):
    cs = STUDY.classsets[wc.classset]
    out = {"checkpoint": checkpoint_input(wc)}
    if cs.source == "dataset":
        out["manifest"] = f"{R}/data/{cs.dataset}/manifest.parquet"
    return out


# ---- metrics stage helpers


def metric_files(wc):
    """The files a metric job reads, by what they are (no names to split downstream):
    ``tables``: dataset -> {manifest, trials}; ``embeddings``: epoch -> dataset -> file;
    ``classifiers``: epoch -> file (kinds that need a class set)."""
    m = STUDY.metrics[wc.metric]
    epochs = model_of(wc).epochs
    files = {
        "tables": {
            d: {
                "manifest": f"{R}/data/{d}/manifest.parquet",
                "trials": f"{R}/data/{d}/trials.parquet",
            }
            for d in m.datasets
        },
        "embeddings": {
            e: {
                d: f"{R}/embeddings/{wc.model}/epoch_{e}/{d}.parquet"
                for d in m.datasets
            }
            for e in epochs
        },
        "classifiers": {},
    }
    if metric_registry.get(m.kind).needs_classset:
        files["classifiers"] = {
            e: f"{R}/text/{wc.model}/epoch_{e}/{m.classset}.parquet" for e in epochs
        }
    return files


def metric_inputs(wc):
    """Every file of :func:`metric_files`, for the DAG."""
    f = metric_files(wc)
    return (
        [p for t in f["tables"].values() for p in t.values()]
        + [p for per in f["embeddings"].values() for p in per.values()]
        + list(f["classifiers"].values())
    )


def metric_code(kind):
    k = metric_registry.get(kind)
    return code_of("compute_metric.py", f"{k.module}:{k.evaluator}")


def metric_params(wc):
    m = STUDY.metrics[wc.metric]
    return {
        "files": metric_files(wc),
        "kind": m.kind,
        "inputs": m.inputs,
        "options": metric_options(wc),
        "spatial": [d for d in m.datasets if STUDY.spatial(d)],
        "code": metric_code(m.kind),
        "intervals": STUDY.intervals.as_dict(),
    }


def metric_options(wc):
    m = STUDY.metrics[wc.metric]
    # defaults live in the evaluator (saliency_alignment's crop: read from the embedding file's
    # recorded preprocessing), so a notebook calling it gets the same numbers
    return dict(m.options)


# ---- figures stage helpers


def figure_spec():
    """The config's `figures:` mapping plus what the models section says about each model."""
    spec = dict(STUDY.figures)
    spec.setdefault("labels", {})
    spec.setdefault("total_epochs", {})
    spec.setdefault("reference_curves", {})
    for name, m in STUDY.models.items():
        if m.label is not None:
            spec["labels"].setdefault(name, m.label)
        if m.total_epochs is not None:
            spec["total_epochs"].setdefault(name, m.total_epochs)
        if m.reference_curve is not None:
            ref = dict(m.reference_curve)
            csv = ref.pop("file")
            if not Path(csv).is_absolute() and not Path(csv).exists():
                csv = str(WORKFLOW_DIR.parent / csv)  # relative to the repository
            spec["reference_curves"].setdefault(name, dict(ref, csv=csv))
    return spec


def reference_csvs():
    """The reference-curve CSV files the figures read (a curve without `csv` uses the package's)."""
    curves = figure_spec()["reference_curves"].values()
    return sorted({c["csv"] for c in curves if c.get("csv")})


FIGURE_CODE = code_of("render_figure.py")
TABLE_CODE = code_of("render_table1.py")
