"""What the figures show: the figure configuration and the measure vocabulary.

The figure functions read the tidy metric table (:data:`clipdyn.io.METRIC_COLUMNS`)
and a :class:`FigureSpec`, built from the ``figures:`` block of the workflow config
with :meth:`FigureSpec.from_config`. Every key is optional; the defaults are chosen
from the table itself (the models it holds, the datasets and variants each measure
was computed on), so an empty spec renders every figure.

Keys of the ``figures:`` config block (all optional):

``base_model`` (str)
    Model of Figures 1 and 2. Default: the first of ``scale_models`` when given,
    else the first model of the table in sorted order.
``scale_models`` (list of str)
    Models of Figure 3, in legend order. Default: every model of the table, sorted.
``labels`` (mapping model -> str)
    Display names (for example ``ViT-B/32``). Default: the model name.
``x_axis`` ("epoch" | "fraction")
    Horizontal axis of Figures 1-3: the checkpoint's epoch, or the fraction of
    training done, ``epoch / total_epochs``. Default ``"epoch"``.
``total_epochs`` (mapping model -> int)
    Length of each model's training run in epochs, for ``x_axis: fraction``.
    Default: the last epoch of the model's published run when ``reference_curves``
    names one, else the largest epoch of that model in the table.
``human_texture_bias`` (mapping with ``value`` and ``source``, or null)
    The human reference drawn as a horizontal line on texture-bias panels (and as
    ``1 - value`` on shape-bias panels). Default ``{value: 0.04, source: "Geirhos
    et al. 2019, human observers, cue-conflict"}``; null draws no line.
``reference_curves`` (mapping model -> mapping)
    Published zero-shot accuracy per epoch drawn thinly beside a model's own curve
    in Figure 1 (and Figure 3), labelled "published". Per model: ``run`` (the run
    name in the CSV's ``name`` column, with or without ``.pt``; required), ``csv``
    (path; default the LAION curves shipped as ``clipdyn/data/
    laion_imagenet_zeroshot_curves.csv``), ``column`` (default
    ``imagenet-zeroshot-val-top1``), ``scale`` (``auto`` | ``fraction`` | ``percent``;
    default ``auto``: a column whose values are all <= 1 is a fraction; the LAION
    file holds fractions), ``clip`` (bool, default true: draw only the epochs within
    the range this model was measured at, so ten measured epochs are not squashed
    against a 400-epoch curve).
``accuracy_scale`` ("auto" | "fraction" | "percent")
    Unit of ``zeroshot_top1``/``zeroshot_top5``/``noise_accuracy`` values in the
    metric table. Accuracies are always drawn in percent. Default ``"auto"``: a
    fraction when every value in the table is <= 1.
``panels`` (mapping measure -> {dataset, variant, metric})
    Which dataset and variant each panel of a measure (a row's ``measure``, e.g.
    ``texture_bias``) uses, overriding :data:`DEFAULT_SELECTION` (for example
    ``{zeroshot_top1: {dataset: imagenet1k}, texture_bias: {variant: category_prompts}}``),
    and, when two ``metrics:`` entries of the config report the same measure, which
    entry (``metric``). A key left out is chosen by the preference list below, then
    the first available value in sorted order.
``table_measures`` (list of str)
    Measures correlated with texture bias in Table 1. Default
    :data:`DEFAULT_TABLE_MEASURES`; measures absent from the table are skipped.
``ood_datasets`` (list of str)
    OOD sets drawn in the robustness figure. Default: every set of ``ood_auroc``.
``ece_datasets`` (list of str)
    Sets whose ECE is drawn in the robustness figure. Default: the ImageNet set of
    the accuracy panel when ECE was measured on it, else every set with ECE.
``robust_fit`` (``theil_sen`` or None)
    A robust linear fit through every point of each robustness panel (Theil-Sen:
    the median of pairwise slopes, insensitive to a few outlying models), drawn
    with its slope; for a zoo of final models, one point per model. Default: none.
``dpi`` (int)
    Resolution of the PNG files. Default 200.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import pandas as pd

from ..metrics import registry
from ..metrics.registry import Measure

#: Human texture bias on the cue-conflict stimuli (shape bias ~0.96).
DEFAULT_HUMAN_TEXTURE_BIAS = {"value": 0.04, "source": "Geirhos et al. 2019, human observers, cue-conflict"}

#: Column of the LAION reference CSV holding zero-shot top-1.
LAION_TOP1_COLUMN = "imagenet-zeroshot-val-top1"


#: Readable names of measure variants (from the registry).
VARIANT_NAMES = registry.VARIANT_NAMES

#: The measures of the tidy table, as the figures present them (from the registry).
MEASURES = registry.MEASURES


def measure_info(measure: str) -> Measure:
    """The presentation of ``measure``; an unknown measure gets its own name and no direction."""
    return MEASURES.get(measure) or Measure(measure, measure.replace("_", " "), measure.replace("_", " "), None)


#: Measures whose values are accuracies (converted to percent for display).
ACCURACY_MEASURES = tuple(m.name for m in MEASURES.values() if m.percent)

#: Preferred (dataset, variant) per measure, tried in order before "first available" (from the registry).
DEFAULT_SELECTION: dict[str, dict[str, list]] = {
    m.name: {k: list(v) for k, v in (("dataset", m.datasets), ("variant", m.variants)) if v}
    for m in MEASURES.values() if m.datasets or m.variants}

#: Measures that Table 1 correlates with texture bias, in row order.
DEFAULT_TABLE_MEASURES = ["zeroshot_top1", "noise_sensitivity", "low_level_alignment", "mid_level_alignment",
                          "saliency_alignment", "ece", "ood_auroc"]

_ACC_SCALES = ("auto", "fraction", "percent")


@dataclass(frozen=True)
class Series:
    """One resolved line: a measure on one dataset with one variant, from one ``metrics:`` entry."""

    measure: str
    dataset: str
    variant: str
    metric: str = ""

    def describe(self) -> str:
        """Short text for axis labels and table cells: ``"imagenet1k, raw"``."""
        return ", ".join(p for p in (self.dataset, self.variant) if p)


@dataclass
class FigureSpec:
    """Figure configuration; see the module docstring for every key."""

    base_model: Optional[str] = None
    scale_models: Optional[list] = None
    labels: dict = field(default_factory=dict)
    x_axis: str = "epoch"
    total_epochs: dict = field(default_factory=dict)
    human_texture_bias: Optional[dict] = field(default_factory=lambda: dict(DEFAULT_HUMAN_TEXTURE_BIAS))
    reference_curves: dict = field(default_factory=dict)
    accuracy_scale: str = "auto"
    panels: dict = field(default_factory=dict)
    table_measures: list = field(default_factory=lambda: list(DEFAULT_TABLE_MEASURES))
    ood_datasets: Optional[list] = None
    ece_datasets: Optional[list] = None
    robust_fit: Optional[str] = None
    dpi: int = 200

    def __post_init__(self) -> None:
        if self.x_axis not in ("epoch", "fraction"):
            raise ValueError(f"figures.x_axis must be 'epoch' or 'fraction', not {self.x_axis!r}")
        if self.robust_fit not in (None, "theil_sen"):
            raise ValueError(f"figures.robust_fit must be 'theil_sen' or null, not {self.robust_fit!r}")
        if self.accuracy_scale not in _ACC_SCALES:
            raise ValueError(f"figures.accuracy_scale must be one of {_ACC_SCALES}, not {self.accuracy_scale!r}")
        h = self.human_texture_bias
        if h is not None and ("value" not in h or not np.isfinite(float(h["value"]))):
            raise ValueError("figures.human_texture_bias needs a finite 'value' (or null for no line)")
        for model, ref in self.reference_curves.items():
            if not isinstance(ref, Mapping) or not ref.get("run"):
                raise ValueError(f"figures.reference_curves.{model} needs a 'run' (the run name in the CSV)")
        for measure, sel in self.panels.items():
            if not isinstance(sel, Mapping) or set(sel) - {"dataset", "variant", "metric"}:
                raise ValueError(f"figures.panels.{measure} takes only 'dataset', 'variant' and 'metric'")

    @classmethod
    def from_config(cls, config: "SpecLike") -> "FigureSpec":
        """A spec from the config's ``figures:`` mapping (or None, or a spec itself)."""
        if config is None:
            return cls()
        if isinstance(config, FigureSpec):
            return config
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown figure config keys {sorted(unknown)}; known: {sorted(known)}")
        kwargs = {k: v for k, v in config.items() if v is not None or k == "human_texture_bias"}
        for key in ("labels", "total_epochs", "reference_curves", "panels"):
            if key in kwargs:
                kwargs[key] = dict(kwargs[key])
        return cls(**kwargs)

    # -- models -----------------------------------------------------------------

    def label(self, model: str) -> str:
        return str(self.labels.get(model, model))

    def resolve_scale_models(self, metrics: pd.DataFrame) -> list:
        if self.scale_models:
            return _known(list(self.scale_models), metrics, "scale_models")
        models = sorted(metrics["model"].unique())
        if not models:
            raise ValueError("the metric table is empty: no model to draw")
        return models

    def resolve_base_model(self, metrics: pd.DataFrame) -> str:
        if self.base_model:
            return _known([self.base_model], metrics, "base_model")[0]
        if self.scale_models:
            return _known([self.scale_models[0]], metrics, "scale_models")[0]
        return self.resolve_scale_models(metrics)[0]

    def total_epochs_of(self, model: str, metrics: pd.DataFrame) -> float:
        """Epochs of the whole run for ``x_axis: fraction``: ``total_epochs``, else the length of
        the model's published reference run, else the last epoch of the model in the table."""
        if model in self.total_epochs:
            return float(self.total_epochs[model])
        if model in self.reference_curves:
            return float(reference_curve(self.reference_curves[model])["epoch"].max())
        seen = metrics.loc[metrics["model"] == model, "epoch"]
        return float(seen.max()) if len(seen) and seen.max() > 0 else 1.0

    # -- dataset/variant selection ----------------------------------------------

    def series(self, metrics: pd.DataFrame, measure: str, dataset: Optional[str] = None,
               variant: Optional[str] = None) -> Optional[Series]:
        """The (dataset, variant, metric entry) a panel of ``measure`` uses, or None if the measure is absent.

        Explicit arguments win, then ``panels`` in the spec, then
        :data:`DEFAULT_SELECTION`, then the first available value in sorted order.
        The choice is made over all models together so every model's line in a
        panel means the same thing.
        """
        rows = metrics[metrics["measure"] == measure]
        if rows.empty:
            return None
        chosen = dict(self.panels.get(measure, {}))
        if dataset is not None:
            chosen["dataset"] = dataset
        if variant is not None:
            chosen["variant"] = variant
        prefs = DEFAULT_SELECTION.get(measure, {})
        info = measure_info(measure)
        for key in ("dataset", "variant", "metric"):
            if key in chosen:
                rows = rows[rows[key] == chosen[key]]
                continue
            available = sorted(rows[key].unique())
            pick = next((p for p in prefs.get(key, []) if p in available), None)
            if pick is None and key == "dataset" and info.plain_imagenet:
                pick = _prefer_imagenet(available)
            if pick is None and key == "dataset" and info.dataset_as:
                # e.g. calibration of the same set whose accuracy the figures show
                other = self.series(metrics, info.dataset_as)
                pick = other.dataset if other is not None and other.dataset in available else None
            chosen[key] = pick if pick is not None else available[0]
            rows = rows[rows[key] == chosen[key]]
        return Series(measure, str(chosen["dataset"]), str(chosen["variant"]), str(chosen["metric"]))

    def accuracy_factor(self, metrics: pd.DataFrame) -> float:
        """Multiplier that turns accuracy values of the table into percent."""
        if self.accuracy_scale == "percent":
            return 1.0
        if self.accuracy_scale == "fraction":
            return 100.0
        acc = metrics.loc[metrics["measure"].isin(ACCURACY_MEASURES), "value"]
        return 100.0 if acc.dropna().le(1.0).all() else 1.0


def _known(models: list, metrics: pd.DataFrame, key: str) -> list:
    """``models``, after checking that each has rows in the table (a misspelt name would
    otherwise give figures that say "no data" everywhere)."""
    present = set(metrics["model"].unique())
    unknown = [m for m in models if m not in present]
    if unknown:
        raise ValueError(f"figures.{key} names model(s) {unknown} that have no rows in the metric table; "
                         f"it holds {sorted(present)}")
    return models


#: What the figure functions accept as a spec: a FigureSpec, the config mapping, or None.
SpecLike = Union[FigureSpec, Mapping[str, Any], None]


def _prefer_imagenet(available: list) -> Optional[str]:
    """The plain ImageNet set among several accuracy sets (not -v2, -r, -sketch ...)."""
    plain = [d for d in available if d.lower().replace("-", "").replace("_", "") in
             ("imagenet", "imagenet1k", "imagenetval", "imagenet1kval", "wdsimagenet1k")]
    return plain[0] if plain else None


@functools.lru_cache(maxsize=8)
def _read_reference_csv(csv: Optional[str], mtime_ns: int) -> pd.DataFrame:
    """The reference CSV (the shipped LAION curves when ``csv`` is None), cached by path and mtime."""
    if csv:
        return pd.read_csv(csv)
    with resources.files("clipdyn").joinpath("figures/laion_imagenet_zeroshot_curves.csv").open() as fh:
        return pd.read_csv(fh)


def reference_curve(ref: Mapping[str, Any]) -> pd.DataFrame:
    """A published accuracy curve: columns ``epoch`` and ``value`` (percent), sorted by epoch.

    ``ref`` holds ``run`` and optionally ``csv``, ``column``, ``scale`` (see the module
    docstring). Raises ValueError if the run is not in the CSV, naming close matches.
    """
    csv = ref.get("csv")
    table = _read_reference_csv(str(csv) if csv else None, Path(csv).stat().st_mtime_ns if csv else 0)
    column = ref.get("column", LAION_TOP1_COLUMN)
    if column not in table or "name" not in table or "epoch" not in table:
        raise ValueError(f"reference CSV {csv or 'laion_imagenet_zeroshot_curves.csv'} needs columns "
                         f"'name', 'epoch' and {column!r}; it has {list(table.columns)}")
    run = str(ref["run"])
    names = table["name"].astype(str)
    rows = table[(names == run) | (names == run + ".pt") | (names.str.removesuffix(".pt") == run)]
    if rows.empty:
        close = [n for n in names.unique() if run.split("_")[0] in n][:5]
        raise ValueError(f"reference run {run!r} is not in the reference CSV; similar names: {close}")
    out = rows[["epoch", column]].rename(columns={column: "value"}).dropna()
    out = out.groupby("epoch", as_index=False)["value"].mean().sort_values("epoch")
    scale = ref.get("scale", "auto")
    if scale not in _ACC_SCALES:
        raise ValueError(f"reference curve scale must be one of {_ACC_SCALES}, not {scale!r}")
    if scale == "fraction" or (scale == "auto" and out["value"].le(1.0).all()):
        out["value"] = out["value"] * 100.0
    return out.reset_index(drop=True)
