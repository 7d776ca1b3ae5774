"""The study a config describes: models x epochs x datasets x metrics, resolved.

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml``
and then builds a :class:`Study`, which adds the checks a schema cannot express
(a checkpoint template with ``{epoch}``, metric inputs that name configured
datasets, figures that name configured models) and resolves each model's epochs
against the Hub listing. Every error names the config key and what to do.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..embed import MODEL_CONFIG_DIR
from ..hub import client as hub
from ..hub import sources
from ..metrics import registry as metric_registry
from ..progress import ranges as _ranges
from .specs import (
    DEFAULT_NOISE_BASELINE,
    ClassSetSpec,
    DatasetSpec,
    EmbeddingSettings,
    IntervalSettings,
    MetricSpec,
    ModelSpec,
    Preprocess,
)

__all__ = ["Study", "ConfigError", "Preprocess", "ModelSpec", "DatasetSpec", "ClassSetSpec",
           "MetricSpec", "EmbeddingSettings", "arch_config", "preprocess_of"]

class ConfigError(ValueError):
    """The config is wrong; the message names the key."""


def _open_clip_config_dirs(extra: Sequence[str]) -> List[Path]:
    dirs = [MODEL_CONFIG_DIR]
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


def known_arch_configs(extra_dirs: Sequence[str] = ()) -> Dict[str, dict]:
    """Every open_clip JSON model config known here (open_clip's, clipdyn's, ``model_configs``), by name."""
    out: Dict[str, dict] = {}
    for d in _open_clip_config_dirs(extra_dirs):
        for p in ([d] if d.is_file() else sorted(d.glob("*.json")) if d.is_dir() else []):
            out.setdefault(p.stem, json.loads(p.read_text()))
    return out


def preprocess_of(arch: str, extra_dirs: Sequence[str] = (), override: Optional[dict] = None) -> Preprocess:
    cfg = arch_config(arch, extra_dirs)
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise ConfigError(f"{arch}: non-square image_size {size} is not supported")
        size = size[0]
    pp = dict(cfg.get("preprocess_cfg", {}))
    pp.update(override or {})
    return Preprocess(int(pp.get("size", size)), **{k: pp[k] for k in ("interpolation", "resize_mode") if k in pp})


class Study:
    """The resolved study: typed specs of every config entry, each model's epochs resolved.

    ``list_epochs`` is injectable for tests of the resolution alone. ``listings`` (a
    :class:`clipdyn.hub.listing.Listings`) records what the top-level run resolved and hands the
    record to job processes instead of listing again; None resolves every time.
    """

    #: top-level defaults (the other keys' defaults are in :mod:`clipdyn.config.specs`)
    RESULTS = "results"
    DOWNLOAD_DIR = "downloads"

    @classmethod
    def results_dir(cls, config: dict) -> str:
        """The ``results`` folder a config names (known before the study is resolved)."""
        return config.get("results") or cls.RESULTS

    def __init__(self, config: dict, list_epochs=hub.discover_epochs, listings=None):
        self.config = config
        self.listings = listings
        self.results: str = self.results_dir(config)
        #: datasets downloaded over HTTP, outside ``results`` so a new results folder downloads nothing again
        self.download_dir: str = config.get("download_dir") or self.DOWNLOAD_DIR
        #: at most this many checkpoints held in the HF cache at once (None: no budget)
        self.checkpoint_budget: Optional[int] = config.get("checkpoint_budget")
        self.model_config_paths = [str(p) for p in config.get("model_configs") or []]
        self.embedding = EmbeddingSettings.from_config(config.get("embedding"))
        #: the ``intervals:`` block (bootstrap intervals of the metric values)
        self.intervals = IntervalSettings.from_config(config.get("intervals"))
        #: the ``figures:`` block (its defaults: clipdyn.figures.spec.FigureSpec), and whether to draw them
        self.figures: dict = {k: v for k, v in (config.get("figures") or {}).items() if k != "enabled"}
        self.figures_enabled = bool((config.get("figures") or {}).get("enabled", True))
        self.datasets: Dict[str, DatasetSpec] = {
            name: DatasetSpec.from_config(name, d) for name, d in (config.get("datasets") or {}).items()}
        self.classsets: Dict[str, ClassSetSpec] = {
            name: ClassSetSpec.from_config(name, c) for name, c in (config.get("classsets") or {}).items()}
        self.metrics: Dict[str, MetricSpec] = {
            name: MetricSpec.from_config(name, m) for name, m in (config.get("metrics") or {}).items()}
        self._check_datasets()
        self._check_classsets()
        self._check_metrics()
        #: skipped checkpoints and epochs not written yet (local runs), for the log
        self.notices: List[str] = []
        results = Path(self.results_dir(config))
        self.hash_cache = sources.HashCache(results / "checkpoints" / "local-sha256.json")
        self.models: Dict[str, ModelSpec] = {
            name: self._resolve_model(name, m, list_epochs) for name, m in config["models"].items()}
        self._check_figures()
        self.spatial_datasets = frozenset(d for m in self.metrics.values()
                                          if metric_registry.KINDS[m.kind].spatial_maps for d in m.datasets)

    # ---------------------------------------------------------------- checks
    def _check_datasets(self):
        ds = self.datasets
        for name, d in ds.items():
            if d.derived:
                src = d.derived_from
                if src not in ds:
                    raise ConfigError(f"datasets.{name}.derived_from: {src!r} is not a configured dataset "
                                      f"(configured: {sorted(ds)})")
                if ds[src].derived:
                    raise ConfigError(f"datasets.{name}.derived_from: {src!r} is itself derived; "
                                      "derive from a downloaded dataset")
                from ..data.corruptions import CORRUPTIONS

                if d.corruption not in CORRUPTIONS:
                    raise ConfigError(f"datasets.{name}.corruption: {d.corruption!r} unknown; "
                                      f"known: {sorted(CORRUPTIONS)}")
            else:
                from ..data.formats import ADAPTERS, known  # noqa: F401  (known registers the adapters)

                if d.format not in ADAPTERS:
                    raise ConfigError(f"datasets.{name}.format: unknown format {d.format!r}; known formats: "
                                      f"{sorted(ADAPTERS)}")

    def _check_classsets(self):
        for name, c in self.classsets.items():
            if c.source == "dataset" and c.dataset not in self.datasets:
                raise ConfigError(f"classsets.{name}.dataset: {c.dataset!r} is not a configured dataset")
            if c.source == "names" and not c.names:
                raise ConfigError(f"classsets.{name}.names: give the class names for source 'names'")

    def _check_metrics(self):
        ds, cs = self.datasets, self.classsets
        for name, m in self.metrics.items():
            kind = m.kind
            if kind not in metric_registry.KINDS:
                raise ConfigError(f"metrics.{name}.kind: unknown metric kind {kind!r}; known: "
                                  f"{sorted(metric_registry.KINDS)}")
            spec = metric_registry.KINDS[kind]
            roles = list(spec.roles)
            for role in spec.one:
                if role not in m.inputs:
                    raise ConfigError(f"metrics.{name}.inputs.{role}: missing (kind {kind} needs roles {roles})")
            for role, val in m.inputs.items():
                if role not in roles:
                    raise ConfigError(f"metrics.{name}.inputs.{role}: kind {kind} has no role {role!r} "
                                      f"(roles: {roles})")
                for dsn in ([val] if isinstance(val, str) else val):
                    if dsn not in ds:
                        raise ConfigError(f"metrics.{name}.inputs.{role}: {dsn!r} is not a configured dataset "
                                          f"(configured: {sorted(ds)})")
            if spec.needs_classset:
                if m.classset not in cs:
                    raise ConfigError(f"metrics.{name}.classset: {m.classset!r} is not a configured class set "
                                      f"(configured: {sorted(cs)})")
            if kind == "noise_sensitivity" and m.options.get("baseline", DEFAULT_NOISE_BASELINE) == "derived":
                noisy = ds[m.inputs["noisy"]]
                if not noisy.derived or 0 not in noisy.severities:
                    where = (f"add 0 to datasets.{noisy.name}.severities" if noisy.derived else
                             f"{noisy.name!r} is not a derived dataset, so it has no severity 0")
                    raise ConfigError(
                        f"metrics.{name}: the default baseline ('derived') is the noisy dataset's severity 0, "
                        f"the same geometry and JPEG without noise; {where}, or set options.baseline: clean "
                        "(the clean dataset through the model's own preprocessing)")
            if kind == "ood_detection" and m.options.get("prompts", "mcm") == "mcm":
                templates = cs[m.classset].template_source
                if templates != "mcm":
                    raise ConfigError(
                        f"metrics.{name}: MCM scores use the single prompt 'a photo of a <label>', but class set "
                        f"{m.classset!r} has templates {templates!r}; give the metric a class set with "
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
        """The model's checkpoints from its source (``clipdyn.hub.sources``), and the epochs selected."""
        try:
            found = self._listed(name, m, lambda: sources.resolve(name, m, self.hash_cache, list_epochs))
        except sources.SourceError as err:
            raise ConfigError(str(err)) from err
        self.notices += found.notices
        arch, pp = self._arch_of(name, m, found)
        preprocess = preprocess_of(arch, self.model_config_paths, {**pp, **m.get("preprocess", {})})
        files = found.files
        where = f"{m['repo']}@{found.revision}" if found.kind == "hub_files" else \
            f"{found.repo}" if found.repo else str(m.get("local"))
        if found.kind in ("hub_final", "local_final"):
            epochs = sorted(files)
        else:
            epochs = hub.select_epochs(m.get("epochs", "auto"), sorted(files))  # the Hub's selection, every source
        missing = [e for e in epochs if e not in files]
        if missing and found.kind == "local_run":  # not written yet (or being written): the next run takes them
            self.notices.append(f"model {name}: epoch(s) {_ranges(missing)} not in {where} yet; evaluating "
                                f"{_ranges([e for e in epochs if e in files]) or 'none'}")
            epochs = [e for e in epochs if e in files]
        elif missing:
            avail = sorted(files)
            what = f"as {m['checkpoint']!r}" if found.kind == "hub_files" else f"as revisions {m.get('revisions')!r}"
            raise ConfigError(f"models.{name}.epochs: epoch(s) {missing} not found in {where} {what}; "
                              f"available: {_ranges(avail) or 'none'}")
        if not files:
            raise ConfigError(f"models.{name}: no checkpoint matches {m.get('checkpoint')!r} in {where}")
        if not epochs:
            raise ConfigError(f"models.{name}: no checkpoint of {where} is complete yet, or none matches "
                              f"models.{name}.epochs ({m.get('epochs', 'auto')!r}); available: "
                              f"{_ranges(sorted(files)) or 'none'}")
        spec = ModelSpec.from_config(name, {**m, "arch": arch, "repo": found.repo, "revision": found.revision,
                                            "checkpoint": m.get("checkpoint", "")}, preprocess)
        spec.files, spec.epochs, spec.source = files, epochs, found.kind
        return spec

    def _listed(self, name: str, m: dict, resolve) -> "sources.Resolved":
        """``resolve()``, or the recorded resolution of this source (job processes; see clipdyn.hub.listing)."""
        if self.listings is None:
            return resolve()
        from ..hub.listing import ListingMissing, source_key

        try:
            return self.listings.get(name, source_key(m), resolve)
        except ListingMissing as err:
            raise ConfigError(str(err)) from err

    def _arch_of(self, name: str, m: dict, found: "sources.Resolved") -> tuple:
        """The architecture and preprocessing of a model. A ``pretrained: hf-hub:`` model's come from its
        ``open_clip_config.json`` (``model_cfg``, ``preprocess_cfg``) as in open_clip's factory; ``arch``
        names the architecture whose config equals ``model_cfg`` (found among the known ones if not given)."""
        if found.kind != "hub_final" or "pretrained" not in m or not found.open_clip_config:
            if "arch" not in m:
                raise ConfigError(f"models.{name}.arch: missing (the open_clip architecture, e.g. ViT-B-16)")
            return m["arch"], {}
        try:
            oc = sources.open_clip_config(found.repo, found.revision)
        except hub.HubError as err:
            raise ConfigError(f"models.{name}.pretrained: {err}") from err
        pp = {k: v for k, v in oc.get("preprocess_cfg", {}).items() if k in ("size", "interpolation", "resize_mode")}
        if isinstance(pp.get("size"), (list, tuple)):
            pp["size"] = pp["size"][0]
        arch = m.get("arch") or sources.arch_for(oc.get("model_cfg", oc), known_arch_configs(self.model_config_paths))
        if arch is None:
            raise ConfigError(f"models.{name}: the model_cfg in {sources.OPEN_CLIP_CONFIG} of {found.repo} is not one "
                              "of the open_clip architectures known here; set `arch`, or save its model_cfg as "
                              "<name>.json in a folder listed in `model_configs` and set `arch: <name>`")
        return arch, pp

    # ---------------------------------------------------------------- queries
    @property
    def downloaded_datasets(self) -> List[str]:
        return [n for n, d in self.datasets.items() if not d.derived]

    @property
    def derived_datasets(self) -> List[str]:
        return [n for n, d in self.datasets.items() if d.derived]

    def spatial(self, dataset: str) -> bool:
        """Whether embeddings of ``dataset`` keep per-patch maps (datasets of a kind with ``spatial_maps``)."""
        return dataset in self.spatial_datasets

    def downloaded(self, dataset: str) -> str:
        """The downloaded dataset a (possibly derived) dataset comes from."""
        return self.datasets[dataset].derived_from or dataset

    def batch_size(self, model: str) -> int:
        return self.models[model].batch_size or self.embedding.batch_size



def apply_base(config: dict, search: Sequence[os.PathLike] = ()) -> dict:
    """The config with ``base: <another config>`` filled in: every top-level key of this config replaces
    the base's (``models`` replaces the base's models), the rest comes from the base. A base's
    ``figures`` lose ``base_model``/``scale_models`` when ``models`` is replaced (they named its models).
    A relative ``base`` is looked up in the working folder, then in ``search`` (the repo)."""
    if "base" not in config:
        return config
    import yaml

    name = Path(config["base"])
    cands = [name] + [Path(d) / name for d in search if not name.is_absolute()]
    path = next((p for p in cands if p.is_file()), None)
    if path is None:
        raise ConfigError(f"base: {str(name)!r} not found (looked in {', '.join(str(c) for c in cands)})")
    base = yaml.safe_load(path.read_text()) or {}
    if "base" in base:
        raise ConfigError(f"base: {path} has a base itself; give the config it builds on instead")
    own = {k: v for k, v in config.items() if k != "base"}
    if "models" in own and "figures" not in own and isinstance(base.get("figures"), dict):
        base["figures"] = {k: v for k, v in base["figures"].items() if k not in ("base_model", "scale_models")}
    return {**base, **own}
