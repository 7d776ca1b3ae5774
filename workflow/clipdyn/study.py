"""The study a config describes: models x epochs x datasets x metrics, resolved.

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml``
and then builds a :class:`Study`, which adds the checks a schema cannot express
(a checkpoint template with ``{epoch}``, metric inputs that name configured
datasets, figures that name configured models) and resolves each model's epochs
against the Hub listing. Every error names the config key and what to do.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import hub
from .metrics import registry as metric_registry

CORRUPTIONS = {"gaussian_noise"}


class ConfigError(ValueError):
    """The config is wrong; the message names the key."""


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


@dataclass
class ModelSpec:
    name: str
    arch: str
    repo: str
    repo_type: str
    revision: str
    checkpoint: str
    epochs: List[int]
    files: Dict[int, hub.CheckpointFile]
    preprocess: Preprocess
    allow_pickle: bool
    raw: dict = field(default_factory=dict)


def _open_clip_config_dirs(extra: Sequence[str]) -> List[Path]:
    dirs = [Path(__file__).parent / "model_configs"]
    spec = importlib.util.find_spec("open_clip")
    if spec and spec.submodule_search_locations:
        dirs.append(Path(list(spec.submodule_search_locations)[0]) / "model_configs")
    return dirs + [Path(p) for p in extra]


def arch_config(arch: str, extra_dirs: Sequence[str] = ()) -> dict:
    """The open_clip JSON model config of ``arch``, read without importing torch."""
    for d in _open_clip_config_dirs(extra_dirs):
        cand = [d] if d.is_file() else [d / f"{arch}.json"]
        for p in cand:
            if p.is_file() and p.stem == arch:
                return json.loads(p.read_text())
    raise ConfigError(f"unknown open_clip architecture {arch!r}: no {arch}.json in open_clip's model configs, "
                      f"clipdyn's, or model_configs {list(extra_dirs)}")


def preprocess_of(arch: str, extra_dirs: Sequence[str] = (), override: Optional[dict] = None) -> Preprocess:
    cfg = arch_config(arch, extra_dirs)
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise ConfigError(f"{arch}: non-square image_size {size} is not supported")
        size = size[0]
    pp = dict(cfg.get("preprocess_cfg", {}))
    pp.update(override or {})
    return Preprocess(int(pp.get("size", size)), pp.get("interpolation", "bicubic"), pp.get("resize_mode", "shortest"))


_PKG = Path(__file__).parent

#: metric kind -> library modules (under clipdyn.metrics) its numbers depend on, besides the kind's own
#: module (from the registry) and the registry, which dispatches to it
METRIC_MODULES = {
    "zeroshot_accuracy": ["_join", "result"],
    "shape_bias": ["_join", "result", "zeroshot"],
    "noise_sensitivity": ["_join", "result", "zeroshot"],
    "low_level_alignment": ["_join", "result", "zeroshot"],
    "mid_level_alignment": ["_join", "result", "zeroshot", "low_level_alignment"],
    "saliency_alignment": ["_join", "result", "zeroshot"],
    "calibration": ["_join", "result", "zeroshot"],
    "ood_detection": ["_join", "result", "zeroshot"],
}


def _module_files(name: str) -> List[Path]:
    """Source files of a clipdyn module or package, found without importing it."""
    parts = name.split(".")
    if parts[0] != "clipdyn":
        raise ValueError(f"{name}: only clipdyn modules are hashed")
    base = _PKG.joinpath(*parts[1:])
    if base.is_dir():
        return sorted(base.rglob("*.py"))
    f = base.with_suffix(".py")
    if not f.exists():
        raise ValueError(f"no source file for module {name} ({f})")
    return [f]


@functools.lru_cache(maxsize=None)
def source_hash(*modules: str) -> str:
    """Short hash of the source of clipdyn modules/packages (enters ``params:`` so edits rerun jobs).

    Files are read, not imported, so building the DAG stays fast; each hash is computed once per
    process (a DAG of 10,000 jobs asks for the same few thousands of times).
    """
    h = hashlib.sha256()
    for name in modules:
        for f in _module_files(name):
            h.update(str(f.relative_to(_PKG)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def metric_code_hash(kind: str) -> str:
    """Hash of the code a metric kind's jobs depend on: its own module, the modules it uses, the registry."""
    return source_hash("clipdyn.metrics.registry", metric_registry.get(kind).module,
                       *(f"clipdyn.metrics.{m}" for m in METRIC_MODULES[kind]))


class Study:
    """The resolved study. ``list_epochs`` is injectable for tests of the resolution alone."""

    def __init__(self, config: dict, list_epochs=hub.discover_epochs):
        self.config = config
        self.model_config_paths = [str(p) for p in config.get("model_configs", [])]
        self._check_datasets()
        self._check_classsets()
        self._check_metrics()
        self.models = {name: self._resolve_model(name, m, list_epochs) for name, m in config["models"].items()}
        self._check_figures()

    # ---------------------------------------------------------------- checks
    def _check_datasets(self):
        ds = self.config.get("datasets", {})
        for name, d in ds.items():
            if "derived_from" in d:
                src = d["derived_from"]
                if src not in ds:
                    raise ConfigError(f"datasets.{name}.derived_from: {src!r} is not a configured dataset "
                                      f"(configured: {sorted(ds)})")
                if "derived_from" in ds[src]:
                    raise ConfigError(f"datasets.{name}.derived_from: {src!r} is itself derived; derive from a downloaded dataset")
                if d.get("corruption", "gaussian_noise") not in CORRUPTIONS:
                    raise ConfigError(f"datasets.{name}.corruption: {d['corruption']!r} unknown; known: {sorted(CORRUPTIONS)}")
            else:
                from .datasets import ADAPTERS, read_dataset  # noqa: F401
                from .datasets import formats  # noqa: F401

                if d["format"] not in ADAPTERS:
                    raise ConfigError(f"datasets.{name}.format: unknown format {d['format']!r}; known formats: "
                                      f"{sorted(ADAPTERS)}")

    def _check_classsets(self):
        for name, c in self.config.get("classsets", {}).items():
            if c.get("source") == "dataset":
                dsn = c.get("dataset")
                if dsn not in self.config.get("datasets", {}):
                    raise ConfigError(f"classsets.{name}.dataset: {dsn!r} is not a configured dataset")
            if c.get("source") == "names" and not c.get("names"):
                raise ConfigError(f"classsets.{name}.names: give the class names for source 'names'")

    def _check_metrics(self):
        ds = self.config.get("datasets", {})
        cs = self.config.get("classsets", {})
        for name, m in self.config.get("metrics", {}).items():
            kind = m.get("kind")
            if kind not in metric_registry.KINDS:
                raise ConfigError(f"metrics.{name}.kind: unknown metric kind {kind!r}; known: "
                                  f"{sorted(metric_registry.KINDS)}")
            spec = metric_registry.KINDS[kind]
            roles = list(spec.roles)
            inputs = m.get("inputs", {})
            for role in spec.one:
                if role not in inputs:
                    raise ConfigError(f"metrics.{name}.inputs.{role}: missing (kind {kind} needs roles {roles})")
            for role, val in inputs.items():
                if role not in roles:
                    raise ConfigError(f"metrics.{name}.inputs.{role}: kind {kind} has no role {role!r} "
                                      f"(roles: {roles})")
                for dsn in ([val] if isinstance(val, str) else val):
                    if dsn not in ds:
                        raise ConfigError(f"metrics.{name}.inputs.{role}: {dsn!r} is not a configured dataset "
                                          f"(configured: {sorted(ds)})")
            if spec.needs_classset:
                if m.get("classset") not in cs:
                    raise ConfigError(f"metrics.{name}.classset: {m.get('classset')!r} is not a configured class set "
                                      f"(configured: {sorted(cs)})")
            if kind == "ood_detection" and (m.get("options") or {}).get("prompts", "mcm") == "mcm":
                templates = cs[m["classset"]].get("templates")
                if templates != "mcm":
                    raise ConfigError(
                        f"metrics.{name}: MCM scores use the single prompt 'a photo of a <label>', but class set "
                        f"{m['classset']!r} has templates {templates!r}; give the metric a class set with "
                        "'templates: mcm', or set options.prompts: classset to use that class set's templates")

    def _check_figures(self):
        fig = self.config.get("figures", {})
        names = set(self.models)
        for key in ("base_model",):
            if fig.get(key) is not None and fig[key] not in names:
                raise ConfigError(f"figures.{key}: {fig[key]!r} is not a configured model (models: {sorted(names)})")
        for m in fig.get("scale_models", []) or []:
            if m not in names:
                raise ConfigError(f"figures.scale_models: {m!r} is not a configured model (models: {sorted(names)})")

    # ---------------------------------------------------------------- models
    def _resolve_model(self, name: str, m: dict, list_epochs) -> ModelSpec:
        template = m["checkpoint"]
        if template.count("{epoch}") != 1:
            raise ConfigError(f"models.{name}.checkpoint: {template!r} must contain '{{epoch}}' exactly once, "
                              "e.g. full_checkpoints/<run>/epoch_{epoch}.pt")
        preprocess = preprocess_of(m["arch"], self.model_config_paths, m.get("preprocess"))
        repo_type = m.get("repo_type", "model")
        revision = str(m.get("revision", "main"))
        try:
            found = list_epochs(m["repo"], template, revision, repo_type)
        except hub.HubError as err:
            raise ConfigError(f"models.{name}: {err}") from err
        files = {f.epoch: f for f in found}
        epochs = hub.select_epochs(m.get("epochs", "auto"), sorted(files))
        missing = [e for e in epochs if e not in files]
        if missing:
            avail = sorted(files)
            raise ConfigError(f"models.{name}.epochs: epoch(s) {missing} not found in {m['repo']}@{revision} "
                              f"as {template!r}; available: {_ranges(avail) or 'none'}")
        if not epochs:
            raise ConfigError(f"models.{name}: no checkpoint matches {template!r} in {m['repo']}@{revision}")
        return ModelSpec(name=name, arch=m["arch"], repo=m["repo"], repo_type=repo_type, revision=revision,
                         checkpoint=template, epochs=epochs, files=files, preprocess=preprocess,
                         allow_pickle=bool(m.get("allow_pickle", False)), raw=m)

    # ---------------------------------------------------------------- queries
    @property
    def datasets(self) -> dict:
        return self.config.get("datasets", {})

    @property
    def metrics(self) -> dict:
        return self.config.get("metrics", {})

    def metric_datasets(self, metric: str) -> List[str]:
        out: List[str] = []
        for val in self.metrics[metric].get("inputs", {}).values():
            for d in [val] if isinstance(val, str) else val:
                if d not in out:
                    out.append(d)
        return out

    def spatial(self, dataset: str) -> bool:
        """Whether embeddings of ``dataset`` keep per-patch maps (datasets of a kind with ``spatial_maps``)."""
        if getattr(self, "_spatial", None) is None:  # asked once per job: computed once
            self._spatial = {d for n, m in self.metrics.items() if metric_registry.KINDS[m["kind"]].spatial_maps
                             for d in self.metric_datasets(n)}
        return dataset in self._spatial

    def downloaded(self, dataset: str) -> str:
        """The downloaded dataset a (possibly derived) dataset comes from."""
        return self.datasets[dataset].get("derived_from", dataset)



def _ranges(xs: Sequence[int]) -> str:
    if not xs:
        return ""
    out, start, prev = [], xs[0], xs[0]
    for x in list(xs[1:]) + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
        if x is not None:
            start = prev = x
    return ", ".join(out)
