import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# the library lives next to the rules; importable without `pip install -e .`
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from clipdyn.study import METRIC_KINDS, ConfigError, Study, metric_code_hash, source_hash  # noqa: E402

validate(config, "../schemas/config.schema.yaml")

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


def checkpoint_path(wc):
    return f"{R}/checkpoints/{wc.model}/epoch_{wc.epoch}.pt"


def pixels_of(model, dataset):
    pp = STUDY.models[model].preprocess.id
    return {
        "pixels": f"{R}/data/{dataset}/pixels_{pp}.npy",
        "pixel_index": f"{R}/data/{dataset}/pixels_{pp}.parquet",
    }


def metric_files(model, epoch):
    return [
        f"{R}/metrics/{model}/epoch_{epoch}/{metric}.parquet" for metric in STUDY.metrics
    ]


def all_metric_files():
    return [
        f
        for name, m in STUDY.models.items()
        for e in m.epochs
        for f in metric_files(name, e)
    ]


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
