"""The metric registry is the one source of what a metric kind is: the config check, the rules'
inputs and the figures read it, and reading it imports no metric module."""

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clipdyn.config.study import ConfigError, Study
from clipdyn.hub.client import CheckpointFile
from clipdyn.metrics import registry

ROOT = Path(__file__).resolve().parents[2]
KIND_MODULES = sorted({k.module for k in registry.KINDS.values()})


def _python(code: str) -> str:
    env_path = str(ROOT / "workflow")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("kind", sorted(registry.KINDS))
def test_every_kind_has_an_evaluator_in_its_own_module(kind):
    k = registry.KINDS[kind]
    fn = registry.evaluator(kind)
    assert fn.__module__ == k.module and k.module.startswith("clipdyn.metrics.")
    params = inspect.signature(fn).parameters
    assert {"embeddings", "tables", "classifier", "inputs", "options"} <= set(params)
    assert k.measures and len({m.name for m in k.measures}) == len(k.measures)
    assert set(k.one).isdisjoint(k.many) and (k.one or k.many)


def test_a_measure_belongs_to_one_kind():
    names = [m.name for k in registry.KINDS.values() for m in k.measures]
    assert len(names) == len(set(names)) == len(registry.MEASURES)


def test_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric kind 'fid'; known kinds: \['calibration'"):
        registry.get("fid")


def test_reading_the_registry_imports_no_metric_module():
    loaded = _python("import sys, clipdyn.metrics.registry, clipdyn.metrics as m; "
                     "print(' '.join(sorted(n for n in sys.modules if n.startswith('clipdyn.metrics'))))")
    assert loaded.split() == ["clipdyn.metrics", "clipdyn.metrics.registry"]


def test_a_kind_module_imports_only_what_it_uses():
    # the ood evaluator uses the zero-shot logits and the interval statistics, not the other kinds' modules
    loaded = _python("import sys, clipdyn.metrics.ood; "
                     "print(' '.join(sorted(n for n in sys.modules if n.startswith('clipdyn.metrics.'))))")
    assert set(loaded.split()) == {"clipdyn.metrics.ood", "clipdyn.metrics.zeroshot", "clipdyn.metrics._join",
                                   "clipdyn.metrics.result", "clipdyn.metrics.intervals"}


def test_notebook_imports_give_the_functions_whatever_was_imported_first():
    out = _python("import inspect, clipdyn.metrics.shape_bias, clipdyn.metrics.noise_sensitivity\n"
                  "from clipdyn.metrics import shape_bias, noise_sensitivity, auroc\n"
                  "import clipdyn.metrics as m\n"
                  "print(inspect.isfunction(shape_bias), inspect.isfunction(noise_sensitivity),"
                  " inspect.isfunction(auroc), inspect.isfunction(m.shape_bias))")
    assert out == "True True True True"
    mod = importlib.import_module("clipdyn.metrics.shape_bias")
    assert inspect.ismodule(mod) and hasattr(mod, "shape_bias_task")


# ----------------------------------------------------------------------------- the config check

def _config(metrics: dict) -> dict:
    return {
        "models": {"m": {"arch": "clipdyn-demo-s", "repo": "org/run", "checkpoint": "epoch_{epoch}.pt", "epochs": [1]}},
        "datasets": {d: {"format": "image_folder", "source": {"path": "/nowhere"}} for d in ("a", "b", "c")},
        "classsets": {"cs": {"source": "names", "names": ["x", "y"], "templates": "mcm"}},   # mcm: OOD needs it
        "metrics": metrics,
    }


def _study(config: dict) -> Study:
    return Study(config, list_epochs=lambda *a: [CheckpointFile(1, "epoch_1.pt", "c0", "b0")])


def _entry(kind: str) -> dict:
    k = registry.KINDS[kind]
    entry = {"kind": kind, "inputs": {**{r: "a" for r in k.one}, **{r: ["b", "c"] for r in k.many}}}
    if k.needs_classset:
        entry["classset"] = "cs"
    if kind == "ood_detection":
        entry["options"] = {"prompts": "classset"}  # the class set 'cs' has the 80 templates, not MCM's prompt
    if kind == "noise_sensitivity":
        entry["options"] = {"baseline": "clean"}  # 'a' is not derived: it has no noise-free severity 0
    return entry


def test_every_registered_kind_passes_the_config_check():
    study = _study(_config({f"entry_{kind}": _entry(kind) for kind in registry.KINDS}))
    assert {m.kind for m in study.metrics.values()} == set(registry.KINDS)
    spatial = {d for m in study.metrics.values() if registry.KINDS[m.kind].spatial_maps for d in m.datasets}
    assert all(study.spatial(d) == (d in spatial) for d in "abc") and spatial


def test_config_check_names_the_known_kinds_and_roles():
    with pytest.raises(ConfigError, match=r"metrics\.x\.kind: unknown metric kind 'fid'; known: \[.*'shape_bias'"):
        _study(_config({"x": {"kind": "fid", "inputs": {}}}))
    for kind, k in registry.KINDS.items():
        bad = _entry(kind)
        bad["inputs"]["bogus"] = "a"
        with pytest.raises(ConfigError, match=rf"metrics\.x\.inputs\.bogus: kind {kind} has no role 'bogus'"):
            _study(_config({"x": bad}))
        for role in k.one:
            bad = _entry(kind)
            del bad["inputs"][role]
            with pytest.raises(ConfigError, match=rf"metrics\.x\.inputs\.{role}: missing"):
                _study(_config({"x": bad}))
        if k.needs_classset:
            bad = _entry(kind)
            del bad["classset"]
            with pytest.raises(ConfigError, match=r"metrics\.x\.classset: None is not a configured class set"):
                _study(_config({"x": bad}))


def test_noise_baseline_derived_needs_the_noisy_sets_severity_0():
    config = _config({"ns": {"kind": "noise_sensitivity", "inputs": {"clean": "a", "noisy": "a_noisy"},
                             "classset": "cs"}})
    config["datasets"]["a_noisy"] = {"derived_from": "a", "severities": [1, 2, 3, 4, 5]}
    with pytest.raises(ConfigError, match=r"metrics\.ns: the default baseline \('derived'\).*add 0 to "
                                          r"datasets\.a_noisy\.severities.*baseline: clean"):
        _study(config)
    config["metrics"]["ns"]["options"] = {"baseline": "clean"}   # the named variant: no severity 0 needed
    assert _study(config).metrics["ns"].options == {"baseline": "clean"}
    del config["metrics"]["ns"]["options"]
    config["datasets"]["a_noisy"]["severities"] = [0, 1, 2, 3, 4, 5]
    _study(config)
    del config["datasets"]["a_noisy"]["severities"]   # the default lists severity 0
    assert _study(config).datasets["a_noisy"].severities == (0, 1, 2, 3, 4, 5)
    config["metrics"]["ns"]["inputs"]["noisy"] = "b"   # a downloaded set has no severity 0
    with pytest.raises(ConfigError, match=r"'b' is not a derived dataset.*baseline: clean"):
        _study(config)


def test_the_schema_does_not_list_kinds_again():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    kind = schema["properties"]["metrics"]["additionalProperties"]["properties"]["kind"]
    assert kind["type"] == "string" and "enum" not in kind


@pytest.mark.parametrize("config", ["config/config.yaml", "config/demo.yaml"])
def test_shipped_configs_use_registered_kinds(config):
    metrics = yaml.safe_load((ROOT / config).read_text())["metrics"]
    assert {m["kind"] for m in metrics.values()} <= set(registry.KINDS)


# ----------------------------------------------------------------------------- the figures

def test_figures_present_every_measure_the_registry_declares():
    from clipdyn.figures import spec, timecourse

    for name, measure in registry.MEASURES.items():
        assert spec.measure_info(name) is measure
        assert measure.title and measure.axis and measure.axis_label()
    named = (set(spec.DEFAULT_TABLE_MEASURES) | set(timecourse.FIGURE3_MEASURES) | set(timecourse.ALIGNMENT_MEASURES)
             | set(spec.ACCURACY_MEASURES) | set(spec.DEFAULT_SELECTION) | {"texture_bias", "shape_bias", "ece",
                                                                          "ood_auroc"})
    assert named <= set(registry.MEASURES), named - set(registry.MEASURES)


def test_schema_takes_the_noise_baselines_and_nothing_else():
    from snakemake.utils import validate

    from clipdyn.config.specs import NOISE_BASELINES

    schema = str(ROOT / "workflow/schemas/config.schema.yaml")
    for baseline in NOISE_BASELINES:
        cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
        cfg["metrics"]["noise_sensitivity"]["options"] = {"baseline": baseline}
        validate(cfg, schema)
    cfg["metrics"]["noise_sensitivity"]["options"] = {"baseline": "model"}
    with pytest.raises(Exception, match="baseline"):
        validate(cfg, schema)
