"""Typed specs of a study: what the config says, with every default in one place.

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml`` (types, enums,
required keys) and :class:`clipdyn.config.study.Study` builds these specs from it once. Rules and
library code read their attributes; nothing else holds a default of a config key (the schema
holds none, ``config/README.md`` quotes these). Light on purpose: no torch, no pandas, so that
importing a spec (as the pixel-cache code does for :class:`Preprocess`) reaches nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union


def _known(cls, raw: Mapping, skip: Tuple[str, ...] = ()) -> dict:
    """The keys of ``raw`` that are fields of ``cls`` (the schema already refused unknown keys)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names and k not in skip}


#: Noise sensitivity's baseline (``options.baseline`` of a ``noise_sensitivity`` metric), default
#: first: ``derived`` = the noisy dataset's severity 0, its images through the same geometry and
#: JPEG round trip as the noisy severities with no noise (the drop is the noise's alone);
#: ``clean`` = the clean dataset through the model's own preprocessing (the drop then also holds
#: ImageNet-C's Resize(256)+CenterCrop(224) and JPEG q85).
NOISE_BASELINES = ("derived", "clean")
DEFAULT_NOISE_BASELINE = NOISE_BASELINES[0]


@dataclass(frozen=True)
class Preprocess:
    """The model-independent part of open_clip's eval preprocessing (mean/std are applied on the device)."""

    size: int
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @property
    def id(self) -> str:
        return f"{self.size}px-{self.interpolation}-{self.resize_mode}"

    @classmethod
    def from_id(cls, pid: str) -> "Preprocess":
        size, interp, mode = pid.split("-")
        return cls(int(size.removesuffix("px")), interp, mode)


@dataclass(frozen=True)
class EmbeddingSettings:
    """The ``embedding:`` block: how checkpoints are run over pixel caches."""

    batch_size: int = 256  #: images per forward pass (halved on out-of-memory); a model's own wins
    precision: str = "auto"  #: auto (bf16 autocast on a GPU that has it, fp32 on the CPU) | fp32 | bf16 | fp16
    threads: int = 2  #: CPU threads of an embedding / classifier job
    decode_workers: int = 4  #: processes decoding images into a pixel cache
    #: memory request (MB) of an embedding / classifier job; None: from the checkpoint's size
    #: (clipdyn.embed.memory.job_mem_mb)
    mem_mb: Optional[int] = None
    compile: bool = False  #: torch.compile the image tower
    worker: str = "auto"  #: persistent embedding worker: auto | on | off
    worker_idle_s: float = 120.0  #: a worker exits after this long without a job
    #: how a ViT's per-patch map is formed (clipdyn.embed.saliency_maps.SALIENCY_MAPS)
    saliency_map: str = "cls_attention"

    @classmethod
    def from_config(cls, raw: Optional[Mapping]) -> "EmbeddingSettings":
        return cls(**_known(cls, raw or {}))


@dataclass(frozen=True)
class IntervalSettings:
    """The ``intervals:`` block: bootstrap intervals of every metric value (:mod:`clipdyn.metrics.intervals`)."""

    enabled: bool = True  #: false: no intervals (the columns se, ci_low, ci_high are NaN)
    resamples: int = 1000  #: bootstrap resamples per value
    method: str = "percentile"  #: percentile | bca
    seed: int = 0  #: seed of the resamples (the same units get the same resamples at every epoch)
    level: float = 0.95  #: coverage of the interval

    @classmethod
    def from_config(cls, raw: Optional[Mapping]) -> "IntervalSettings":
        return cls(**_known(cls, raw or {}))

    def as_dict(self) -> dict:
        """What a metric job reads (plain types, in its params)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DatasetSpec:
    """One ``datasets:`` entry: downloaded (``repo`` or ``path``) or derived (``derived_from``)."""

    name: str
    format: Optional[str] = None
    repo: Optional[str] = None
    repo_type: str = "dataset"
    revision: str = "main"
    files: Tuple[str, ...] = ()
    archives: Tuple[Dict[str, Any], ...] = ()  #: HTTP(S) archives (url, checksum) of a dataset not on the Hub
    path: Optional[str] = None
    root: str = ""
    extract: Tuple[str, ...] = ()
    options: Dict[str, Any] = field(default_factory=dict)
    subset: Optional[int] = None
    subset_seed: int = 0
    on_bad_image: str = "error"
    extra_files: Dict[str, Dict[str, str]] = field(default_factory=dict)
    derived_from: Optional[str] = None
    corruption: str = "gaussian_noise"  #: gaussian_noise (ImageNet-C's sigmas) | gaussian_noise_cifar (CIFAR-C's)
    #: 0 = the noise-free baseline (same geometry and JPEG, no noise); 1..5 = ImageNet-C's severities
    severities: Tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    corruption_geometry: str = "imagenet_c"  #: imagenet_c (noise on Resize(256)+CenterCrop(224)) | model | native
    jpeg_quality: Optional[int] = 85  #: ImageNet-C's JPEG round trip; null for none

    @property
    def derived(self) -> bool:
        return self.derived_from is not None

    @classmethod
    def from_config(cls, name: str, raw: Mapping) -> "DatasetSpec":
        d = _known(cls, raw)
        for key in ("files", "extract", "severities", "archives"):
            if key in d:
                d[key] = tuple(d[key])
        if "revision" in d:
            d["revision"] = str(d["revision"])
        extra = {k: dict({"repo_type": "dataset", "revision": "main"}, **v)
                 for k, v in (d.get("extra_files") or {}).items()}
        d["extra_files"] = {k: dict(v, revision=str(v["revision"])) for k, v in extra.items()}
        return cls(name=name, **d)


@dataclass(frozen=True)
class ClassSetSpec:
    """One ``classsets:`` entry: the class names and prompt templates of a zero-shot classifier."""

    name: str
    source: str  #: openclip_imagenet | dataset | names
    dataset: Optional[str] = None
    names: Tuple[str, ...] = ()
    templates: Optional[str] = None  #: default: ``dataset`` for a dataset's classes, else ``openai``

    @property
    def template_source(self) -> str:
        return self.templates or ("dataset" if self.source == "dataset" else "openai")

    @classmethod
    def from_config(cls, name: str, raw: Mapping) -> "ClassSetSpec":
        d = _known(cls, raw)
        d["names"] = tuple(d.get("names") or ())
        return cls(name=name, **d)

    def as_dict(self) -> dict:
        """What the classifier step reads (plain types: it crosses to the embedding worker)."""
        return {"source": self.source, "dataset": self.dataset, "names": list(self.names),
                "templates": self.template_source}


@dataclass(frozen=True)
class MetricSpec:
    """One ``metrics:`` entry (a *metric*): a metric *kind* applied to named datasets."""

    name: str
    kind: str
    inputs: Dict[str, Union[str, List[str]]]  #: role -> dataset, or a list of datasets
    classset: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)

    @property
    def datasets(self) -> List[str]:
        """Every dataset the metric reads, in role order, once each."""
        out: List[str] = []
        for val in self.inputs.values():
            for d in [val] if isinstance(val, str) else val:
                if d not in out:
                    out.append(d)
        return out

    @classmethod
    def from_config(cls, name: str, raw: Mapping) -> "MetricSpec":
        d = _known(cls, raw)
        d["inputs"] = {k: (v if isinstance(v, str) else list(v)) for k, v in (d.get("inputs") or {}).items()}
        d["options"] = dict(d.get("options") or {})
        return cls(name=name, **d)


@dataclass
class ModelSpec:
    """One ``models:`` entry, resolved: the epochs selected and the checkpoint file of each."""

    name: str
    arch: str
    repo: Optional[str]
    checkpoint: str  #: file template in the repo, with ``{epoch}`` (one fixed name for revisions and final models)
    preprocess: Preprocess
    epochs: List[int] = field(default_factory=list)
    files: Dict[int, Any] = field(default_factory=dict)  #: epoch -> :class:`clipdyn.hub.client.CheckpointFile`
    repo_type: str = "model"
    revision: str = "main"
    allow_pickle: bool = False
    batch_size: Optional[int] = None  #: overrides ``embedding.batch_size`` for this model
    label: Optional[str] = None
    total_epochs: Optional[int] = None
    reference_curve: Optional[Dict[str, Any]] = None
    epoch_selection: Any = "auto"  #: the config's ``epochs:`` (auto, a list, or first/last/step)
    #: where the checkpoints come from (:data:`clipdyn.hub.sources.KINDS`); ``repo`` is None for local ones
    source: str = "hub_files"
    local: Optional[str] = None  #: a local run's folder or checkpoint file
    pretrained: Optional[str] = None  #: ``hf-hub:<org>/<name>`` (open_clip's pretrained weights)
    revisions: Any = None  #: epochs as Hub revisions: a ``{epoch}`` name template or epoch -> revision
    epoch: Optional[int] = None  #: the epoch a single-checkpoint model is drawn at

    #: config keys that are not plain fields
    _CONFIG_RENAMES = {"epochs": "epoch_selection"}

    @classmethod
    def from_config(cls, name: str, raw: Mapping, preprocess: Preprocess) -> "ModelSpec":
        d = {cls._CONFIG_RENAMES.get(k, k): v for k, v in raw.items() if k != "preprocess"}
        d = _known(cls, d)
        if "revision" in d:
            d["revision"] = str(d["revision"])
        return cls(name=name, preprocess=preprocess, **d)
