import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# the library lives next to the rules; importable without `pip install -e .`
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from clipdyn.metrics import registry as metric_registry  # noqa: E402
from clipdyn.study import ConfigError, Study, metric_code_hash, source_hash  # noqa: E402

validate(config, "../schemas/config.schema.yaml")

# A job killed mid-run leaves its outputs marked incomplete; the next run of the same
# command recomputes exactly those jobs (as --rerun-incomplete would). Outputs are written
# atomically (temp file + rename), so a partial file is never there to be trusted.
if getattr(workflow, "dag_settings", None) is not None:
    workflow.dag_settings.force_incomplete = True

try:
    STUDY = Study(config)
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

R = config.get("results", "results")
DOWNLOADED = [d for d in STUDY.datasets if "derived_from" not in STUDY.datasets[d]]
DERIVED = [d for d in STUDY.datasets if "derived_from" in STUDY.datasets[d]]
EMBED = config.get("embedding", {})


def _alt(names):
    """Wildcard regex matching exactly these names (a never-matching one if empty)."""
    import re

    return "|".join(re.escape(n) for n in names) or "(?!x)x"


wildcard_constraints:
    model=_alt(STUDY.models),
    epoch=r"\d+",
    dataset=_alt(STUDY.datasets),
    metric=_alt(STUDY.metrics),
    classset=_alt(config.get("classsets", {})),
    preprocess=r"\d+px-[a-z]+-[a-z]+",


def adapter_module(fmt):
    from clipdyn.datasets import ADAPTERS

    return ADAPTERS[fmt].__module__


def model_of(wc):
    return STUDY.models[wc.model]


def ckpt_file(wc):
    m = model_of(wc)
    e = int(wc.epoch)
    if e not in m.files:
        raise WorkflowError(f"model {wc.model}: epoch {e} is not on the Hub listing")
    return m.files[e]


def checkpoint_params(wc):
    m, f = model_of(wc), ckpt_file(wc)
    return {
        "repo": m.repo,
        "repo_type": m.repo_type,
        "revision": m.revision,
        "filename": f.path,
        "blob": f.blob,
    }


# Checkpoints in order (model by model, epoch by epoch): a checkpoint's downloads, embeddings
# and classifier jobs run back to back, so a persistent embedding worker that loaded it for one
# dataset still holds it for the next (clipdyn.worker), and results arrive epoch by epoch.
_CHECKPOINT_RANK = {
    (name, e): i
    for i, (name, e) in enumerate((n, e) for n, m in STUDY.models.items() for e in m.epochs)
}


def checkpoint_priority(wc):
    return len(_CHECKPOINT_RANK) - _CHECKPOINT_RANK.get((wc.model, int(wc.epoch)), len(_CHECKPOINT_RANK))


def checkpoint_path(wc):
    return f"{R}/checkpoints/{wc.model}/epoch_{wc.epoch}.pt"


def pixels_of(model, dataset):
    pp = STUDY.models[model].preprocess.id
    return {
        "pixels": f"{R}/data/{dataset}/pixels_{pp}.npy",
        "pixel_index": f"{R}/data/{dataset}/pixels_{pp}.parquet",
    }


def all_metric_files():
    return [f"{R}/metrics/{name}/{metric}.parquet" for name in STUDY.models for metric in STUDY.metrics]


def figure_targets():
    figs = config.get("figures", {})
    if not figs.get("enabled", True) or not STUDY.metrics:
        return []
    out = []
    for f in ("fig1", "fig2", "fig3", "robustness"):
        out += [f"{R}/figures/{f}.pdf", f"{R}/figures/{f}.png"]
    out += [f"{R}/figures/table1.{ext}" for ext in ("csv", "md", "tex")]
    return out


def all_targets():
    return (
        [f"{R}/checkpoints/{m}/epochs.tsv" for m in STUDY.models]
        + [f"{R}/metrics.parquet", f"{R}/metrics.csv"]
        + figure_targets()
    )


# ---- embed stage helpers


def embed_inputs(wc):
    return {"checkpoint": checkpoint_path(wc), **pixels_of(wc.model, wc.dataset)}


def embed_params(wc):
    m = model_of(wc)
    return {
        "arch": m.arch,
        "allow_pickle": m.allow_pickle,
        "spatial": STUDY.spatial(wc.dataset),
        "batch_size": m.raw.get("batch_size", EMBED.get("batch_size", 256)),
        "provenance": embed_provenance(wc),
    }


def embed_provenance(wc):
    m, f = model_of(wc), ckpt_file(wc)
    d = STUDY.datasets[wc.dataset]
    src = STUDY.datasets[STUDY.downloaded(wc.dataset)]
    return {
        "model": wc.model,
        "arch": m.arch,
        "epoch": int(wc.epoch),
        "checkpoint_repo": m.repo,
        "checkpoint_file": f.path,
        "checkpoint_blob": f.blob,
        "dataset": wc.dataset,
        "dataset_repo": src.get("repo"),
        "dataset_revision": str(src.get("revision", "main")),
        "subset": src.get("subset"),
        "preprocess": m.preprocess.id,
    }


def text_params(wc):
    m, f = model_of(wc), ckpt_file(wc)
    return {
        "arch": m.arch,
        "allow_pickle": m.allow_pickle,
        "classset": config["classsets"][wc.classset],
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
    cs = config["classsets"][wc.classset]
    out = {"checkpoint": checkpoint_path(wc)}
    if cs.get("source") == "dataset":
        out["manifest"] = f"{R}/data/{cs['dataset']}/manifest.parquet"
    return out


# ---- metrics stage helpers


def metric_inputs(wc):
    """Every epoch's embeddings (and classifier) of the metric's datasets, plus their manifests."""
    m = STUDY.metrics[wc.metric]
    out = {}
    datasets = STUDY.metric_datasets(wc.metric)
    for d in datasets:
        out[f"manifest__{d}"] = f"{R}/data/{d}/manifest.parquet"
        out[f"trials__{d}"] = f"{R}/data/{d}/trials.parquet"
    clf = metric_registry.get(m["kind"]).needs_classset
    for e in model_of(wc).epochs:
        for d in datasets:
            out[f"emb__{d}__{e}"] = f"{R}/embeddings/{wc.model}/epoch_{e}/{d}.parquet"
        if clf:
            out[f"classifier__{e}"] = f"{R}/text/{wc.model}/epoch_{e}/{m['classset']}.parquet"
    return out


def metric_params(wc):
    m = STUDY.metrics[wc.metric]
    return {
        "epochs": list(model_of(wc).epochs),
        "kind": m["kind"],
        "inputs": m.get("inputs", {}),
        "options": metric_options(wc),
        "spatial": [d for d in STUDY.metric_datasets(wc.metric) if STUDY.spatial(d)],
        "code": metric_code_hash(m["kind"]),
    }


def metric_options(wc):
    m = STUDY.metrics[wc.metric]
    opts = dict(m.get("options", {}))
    if m["kind"] == "saliency_alignment":
        # spatial maps cover what the model saw: the centre crop, unless it squashed the image
        squash = model_of(wc).preprocess.resize_mode == "squash"
        opts.setdefault("crop", "none" if squash else "center")
    return opts


# ---- figures stage helpers


def figure_spec():
    """The config's `figures:` mapping plus what the models section says about each model."""
    spec = {k: v for k, v in config.get("figures", {}).items() if k != "enabled"}
    spec.setdefault("labels", {})
    spec.setdefault("total_epochs", {})
    spec.setdefault("reference_curves", {})
    for name, m in STUDY.models.items():
        if "label" in m.raw:
            spec["labels"].setdefault(name, m.raw["label"])
        if "total_epochs" in m.raw:
            spec["total_epochs"].setdefault(name, m.raw["total_epochs"])
        if "reference_curve" in m.raw:
            ref = dict(m.raw["reference_curve"])
            csv = ref.pop("file")
            if not Path(csv).is_absolute() and not Path(csv).exists():
                csv = str(Path(workflow.basedir) / csv)
            spec["reference_curves"].setdefault(name, dict(ref, csv=csv))
    return spec


def reference_csvs():
    """The reference-curve CSV files the figures read (a curve without `csv` uses the package's)."""
    curves = figure_spec()["reference_curves"].values()
    return sorted({c["csv"] for c in curves if c.get("csv")})


FIGURE_CODE = source_hash("clipdyn.figures")
