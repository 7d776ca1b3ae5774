"""Every metric kind of the study, in one place.

A *metric kind* (``kind:`` of a ``metrics:`` entry in the config, e.g. ``shape_bias``) is declared
here once, with

- its roles: the named inputs of a ``metrics:`` entry, each naming one dataset or a list of them,
- whether it needs a zero-shot classifier (a ``classset:``),
- the module that holds its evaluator (a dotted name, imported only when the kind is evaluated,
  so that reading the registry imports no metric module: a metric's code identity is its own
  module's, and editing one metric's module reruns only that metric's jobs),
- the rows it produces: each row's *measure* (the quantity, e.g. ``texture_bias``) with its
  direction (higher or lower is better), its figure title and axis label, and the dataset and
  variant a figure panel shows by default,
- readable names of its variants.

The config check (:class:`clipdyn.config.study.Study`), the workflow's rules and the figures read this
registry; adding a kind touches this file, the metric's own module and its tests.

Example:
    >>> KINDS["shape_bias"].roles
    {'dataset': 'one'}
    >>> [m.name for m in KINDS["calibration"].measures]
    ['ece', 'nll', 'temperature']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Tuple

if TYPE_CHECKING:  # keep the import light: no numpy/pandas just to read the registry
    from clipdyn.data.formats import DatasetTables
    from clipdyn.io import Classifier, EmbeddingTable

    from .result import MetricResult

__all__ = ["Measure", "MetricKind", "KINDS", "MEASURES", "get", "evaluator", "evaluate"]


@dataclass(frozen=True)
class Measure:
    """One quantity an evaluator reports (a row's measure), and how a figure presents it.

    ``title`` names the figure panel; ``axis`` is the axis text and may hold ``{variant}``
    (e.g. "{variant} with human fixations" -> "CC with human fixations"). ``better`` is
    ``"higher"``, ``"lower"`` or None (neither, e.g. a fitted temperature); ``better_words``
    replaces the plain "better" where the study's words are sharper ("more human-like").
    ``percent``: the values are fractions shown in percent (accuracies). A panel shows by default
    the first of ``datasets`` / ``variants`` present in the table (else the first present in
    sorted order); ``plain_imagenet`` prefers the plain ImageNet set among several datasets;
    ``dataset_as`` takes the dataset that measure's panel shows (calibration of the set whose
    accuracy the figures show).
    """

    name: str
    title: str
    axis: str
    better: Optional[str]
    better_words: str = "better"
    percent: bool = False
    datasets: Tuple[str, ...] = ()
    variants: Tuple[str, ...] = ()
    plain_imagenet: bool = False
    dataset_as: Optional[str] = None

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower", None):
            raise ValueError(f"measure {self.name}: better must be 'higher', 'lower' or None, not {self.better!r}")

    @property
    def arrow(self) -> str:
        """``"↑ better"``, ``"↓ more robust"``, or "" when neither direction is better."""
        if self.better == "higher":
            return f"↑ {self.better_words}"
        if self.better == "lower":
            return f"↓ {self.better_words}"
        return ""

    def axis_label(self, variant: str = "", two_lines: bool = True) -> str:
        """The axis text with the better direction: ``"ECE  ↓ better"``."""
        text = self.axis.format(variant=VARIANT_NAMES.get(variant, variant))
        if not self.arrow:
            return text
        return f"{text}\n{self.arrow}" if two_lines else f"{text}  {self.arrow}"


@dataclass(frozen=True)
class MetricKind:
    """A metric kind: its roles, class-set need, evaluator and output rows (see the module docstring).

    ``one``: roles naming one dataset (all required); ``many``: roles naming a list of datasets
    (optional, may be empty). ``module``: dotted name of the module holding the evaluator function
    ``evaluator``. ``spatial_maps``: the kind's datasets are embedded with per-patch maps.
    ``variant_names``: readable names of the variants its rows carry.
    """

    name: str
    one: Tuple[str, ...]
    many: Tuple[str, ...]
    needs_classset: bool
    module: str
    evaluator: str
    measures: Tuple[Measure, ...]
    variant_names: Mapping[str, str] = field(default_factory=dict)
    spatial_maps: bool = False

    @property
    def roles(self) -> Dict[str, str]:
        """role -> ``"one"`` (names one dataset) or ``"list"`` (names a list, may be empty)."""
        return {**{r: "one" for r in self.one}, **{r: "list" for r in self.many}}


_MORE_HUMAN = "more human-like"

_KINDS = [
    MetricKind(
        "zeroshot_accuracy", one=("dataset",), many=(), needs_classset=True,
        module="clipdyn.metrics.zeroshot", evaluator="zeroshot_accuracy",
        measures=(Measure("zeroshot_top1", "Zero-shot top-1 accuracy", "top-1 accuracy (%)", "higher",
                          percent=True, plain_imagenet=True),
                  Measure("zeroshot_top5", "Zero-shot top-5 accuracy", "top-5 accuracy (%)", "higher",
                          percent=True, plain_imagenet=True))),
    MetricKind(
        "shape_bias", one=("dataset",), many=(), needs_classset=True,
        module="clipdyn.metrics.shape_bias", evaluator="shape_bias_task",
        measures=(Measure("shape_bias", "Shape bias", "shape bias", "higher", _MORE_HUMAN,
                          variants=("imagenet_mapping",)),
                  Measure("texture_bias", "Texture bias", "texture bias", "lower", _MORE_HUMAN,
                          variants=("imagenet_mapping",)),
                  Measure("cue_conflict_shape_accuracy", "Cue-conflict shape accuracy", "shape accuracy", "higher"),
                  Measure("cue_conflict_texture_accuracy", "Cue-conflict texture accuracy", "texture accuracy",
                          None),
                  Measure("fraction_correct_shape", "Fraction correct shape (model-vs-human)",
                          "shape hits / all images", "higher"),
                  Measure("fraction_correct_texture", "Fraction correct texture (model-vs-human)",
                          "texture hits / all images", None)),
        variant_names={"imagenet_mapping": "ImageNet-class mapping", "category_prompts": "category prompts"}),
    MetricKind(
        "noise_sensitivity", one=("clean", "noisy"), many=(), needs_classset=True,
        module="clipdyn.metrics.noise_sensitivity", evaluator="noise_sensitivity_task",
        measures=(Measure("noise_accuracy", "Accuracy under Gaussian noise", "accuracy (%)", "higher",
                          percent=True, plain_imagenet=True, variants=("severity_0",)),
                  Measure("noise_sensitivity", "Noise sensitivity", "normalised accuracy drop", "lower",
                          "more robust", variants=("mean",))),
        variant_names={"mean": "mean"}),
    MetricKind(
        "low_level_alignment", one=(), many=("datasets",), needs_classset=False,
        module="clipdyn.metrics.low_level_alignment", evaluator="low_level_alignment_task",
        measures=(Measure("low_level_alignment", "Low-level alignment", "{variant} with human quality scores",
                          "higher", _MORE_HUMAN, datasets=("mean",), variants=("spearman",)),),
        variant_names={"spearman": "Spearman ρ", "pearson": "Pearson r", "kendall": "Kendall τ"}),
    MetricKind(
        "mid_level_alignment", one=("dataset",), many=(), needs_classset=False,
        module="clipdyn.metrics.mid_level_alignment", evaluator="mid_level_alignment_task",
        measures=(Measure("mid_level_alignment", "Mid-level alignment", "{variant} agreement with humans",
                          "higher", _MORE_HUMAN, variants=("unanimous", "2afc")),),
        variant_names={"unanimous": "unanimous-vote accuracy", "2afc": "2AFC", "majority": "majority vote"}),
    MetricKind(
        "saliency_alignment", one=("dataset",), many=(), needs_classset=False,
        module="clipdyn.metrics.saliency_alignment", evaluator="saliency_alignment_task",
        measures=(Measure("saliency_alignment", "Saliency alignment", "{variant} with human fixations",
                          "higher", _MORE_HUMAN, variants=("cc",)),),
        variant_names={"cc": "CC", "nss": "NSS", "auc_judd": "AUC-Judd"}, spatial_maps=True),
    MetricKind(
        "calibration", one=("in_distribution",), many=("shifted",), needs_classset=True,
        module="clipdyn.metrics.calibration", evaluator="calibration_task",
        measures=(Measure("ece", "Expected calibration error", "ECE", "lower", variants=("raw",),
                          dataset_as="zeroshot_top1"),
                  Measure("nll", "Negative log-likelihood", "NLL", "lower", variants=("raw",),
                          dataset_as="zeroshot_top1"),
                  Measure("rms_calibration_error", "RMS calibration error (adaptive bins)", "RMS calibration error",
                          "lower", variants=("raw",), dataset_as="zeroshot_top1"),
                  Measure("temperature", "Fitted temperature", "temperature", None, variants=("fitted",),
                          dataset_as="zeroshot_top1")),
        variant_names={"raw": "raw", "temperature_scaled": "temperature-scaled"}),
    MetricKind(
        "ood_detection", one=("in_distribution",), many=("ood",), needs_classset=True,
        module="clipdyn.metrics.ood", evaluator="ood_detection_task",
        measures=(Measure("ood_auroc", "OOD detection AUROC", "AUROC", "higher", variants=("mcm",)),
                  Measure("ood_fpr95", "OOD detection FPR at 95% TPR", "FPR at 95% TPR", "lower",
                          variants=("mcm",))),
        variant_names={"mcm": "MCM"}),
]

#: metric kind name -> :class:`MetricKind`
KINDS: Mapping[str, MetricKind] = MappingProxyType({k.name: k for k in _KINDS})

#: measure name -> :class:`Measure`, over every kind (a measure belongs to one kind)
MEASURES: Mapping[str, Measure] = MappingProxyType({m.name: m for k in _KINDS for m in k.measures})

#: readable names of variants, over every kind
VARIANT_NAMES: Mapping[str, str] = MappingProxyType({v: text for k in _KINDS for v, text in k.variant_names.items()})


def get(kind: str) -> MetricKind:
    """The registered kind ``kind``; a ValueError naming the known kinds otherwise."""
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown metric kind {kind!r}; known kinds: {sorted(KINDS)}") from None


def evaluator(kind: str) -> Callable[..., "MetricResult"]:
    """The evaluator function of ``kind``, imported from its module on first use."""
    k = get(kind)
    return getattr(importlib.import_module(k.module), k.evaluator)


def evaluate(kind: str, *, embeddings: Dict[str, "EmbeddingTable"], tables: Dict[str, "DatasetTables"],
             classifier: Optional["Classifier"], inputs: Dict[str, object], options: Optional[dict] = None
             ) -> "MetricResult":
    """Run the evaluator of ``kind`` after checking its roles and that every dataset named in
    ``inputs`` has embeddings and tables.

    Each evaluator takes ``embeddings`` (dataset name -> :class:`~clipdyn.io.EmbeddingTable`),
    ``tables`` (dataset name -> :class:`~clipdyn.data.formats.DatasetTables`), ``classifier`` (the
    zero-shot :class:`~clipdyn.io.Classifier`, None for kinds that need none), ``inputs`` (the
    kind's roles -> dataset name(s)) and ``options`` (the ``metrics:`` entry's options), and returns
    a :class:`~clipdyn.metrics.result.MetricResult`: rows with columns
    :data:`~clipdyn.metrics.result.ROW_COLUMNS` (``n`` = the number of images, trials or datasets
    actually used) and an optional per-image/per-trial ``details`` table kept for reanalysis.

    Example (in a notebook)::

        from clipdyn.io import read_embeddings, read_classifier
        res = evaluate("zeroshot_accuracy", embeddings={"imagenet": read_embeddings(p)},
                       tables={"imagenet": tables}, classifier=read_classifier(q),
                       inputs={"dataset": "imagenet"}, options={})
        res.rows
    """
    k = get(kind)
    roles = k.roles
    unknown = sorted(set(inputs) - set(roles))
    if unknown:
        raise ValueError(f"metric kind {kind!r} has roles {sorted(roles)}; unknown role(s) {unknown}")
    inputs = dict(inputs)
    names: List[str] = []
    for role, arity in roles.items():
        if arity == "one":
            value = inputs.get(role)
            if not isinstance(value, str) or not value:
                raise ValueError(f"metric kind {kind!r} needs role {role!r} to name one dataset, got {value!r}")
            names.append(value)
        else:
            value = inputs.get(role)
            inputs[role] = [] if value is None else [value] if isinstance(value, str) else [str(v) for v in value]
            names.extend(inputs[role])
    for name in dict.fromkeys(names):
        if name not in embeddings:
            raise ValueError(f"metric kind {kind!r}: no embeddings given for dataset {name!r}")
        if name not in tables:
            raise ValueError(f"metric kind {kind!r}: no dataset tables given for dataset {name!r}")
    return evaluator(kind)(embeddings=embeddings, tables=tables, classifier=classifier, inputs=inputs,
                           options=dict(options or {}))
