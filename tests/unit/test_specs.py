"""Each config default lives in one place (clipdyn.config.specs); the schema and config/README.md agree with it.

- every key the schema allows for a model, dataset, class set, metric or the embedding block is a
  field of its spec (a key the spec lacked would be dropped silently);
- config/README.md documents every such key, and the default it quotes is the spec's;
- the schema holds no defaults (a second home would drift).
"""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from clipdyn.config.specs import (
    ClassSetSpec,
    DatasetSpec,
    EmbeddingSettings,
    IntervalSettings,
    MetricSpec,
    ModelSpec,
    Preprocess,
)
from clipdyn.config.study import Study

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
README = (ROOT / "config" / "README.md").read_text()

#: spec, its properties in the schema, the config/README.md section that documents it
SPECS = [
    (ModelSpec, SCHEMA["properties"]["models"]["additionalProperties"]["properties"], "## `models.<name>`"),
    (DatasetSpec, SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"], "## `datasets.<name>`"),
    (EmbeddingSettings, SCHEMA["properties"]["embedding"]["properties"], "## `embedding`"),
    (IntervalSettings, SCHEMA["properties"]["intervals"]["properties"], "## `intervals`"),
]


def _config_key(spec, field_name: str) -> str:
    renames = {v: k for k, v in getattr(spec, "_CONFIG_RENAMES", {}).items()}
    return renames.get(field_name, field_name)


def _table(section: str) -> dict:
    """{key: {column: cell}} of the first table under ``section`` in config/README.md."""
    text = README[README.index(section):]
    rows, header = {}, None
    for line in text.splitlines()[1:]:
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            if header and rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        key = cells[0].strip("`")
        rows[key] = dict(zip(header, cells))
    return rows


def _walk(schema):
    if isinstance(schema, dict):
        yield schema
        for v in schema.values():
            yield from _walk(v)
    elif isinstance(schema, list):
        for v in schema:
            yield from _walk(v)


def test_the_schema_holds_no_defaults():
    assert [s for s in _walk(SCHEMA) if "default" in s] == []


@pytest.mark.parametrize("spec,props,section", SPECS, ids=lambda x: getattr(x, "__name__", None))
def test_every_schema_key_is_a_spec_field(spec, props, section):
    fields = {_config_key(spec, f.name) for f in dataclasses.fields(spec)}
    missing = sorted(set(props) - fields - {"preprocess"})  # preprocess: resolved into a Preprocess
    assert not missing, f"schema keys {missing} have no field in {spec.__name__}: their values would be dropped"


@pytest.mark.parametrize("spec,props,section", SPECS, ids=lambda x: getattr(x, "__name__", None))
def test_readme_documents_every_key_with_the_specs_default(spec, props, section):
    table = _table(section)
    for key in props:
        assert key in table, f"config/README.md {section} has no row for `{key}`"
    for f in dataclasses.fields(spec):
        key = _config_key(spec, f.name)
        if key not in props or f.default is dataclasses.MISSING:
            continue
        cell = table[key]["default"]
        if f.default is None or f.default == ():  # optional: the README may say in words what absence means
            continue
        quoted = cell.replace("`", "")
        got = yaml.safe_load(quoted) if quoted else ""
        want = list(f.default) if isinstance(f.default, tuple) else f.default
        assert got == want, f"{section} `{key}`: README says {cell!r}, {spec.__name__}.{f.name} = {f.default!r}"


def test_top_level_defaults_are_the_studys():
    table = _table("## Top level")
    assert table["results"]["default"].strip("`") == Study.RESULTS
    assert table["download_dir"]["default"].strip("`") == Study.DOWNLOAD_DIR


def test_specs_from_config_apply_the_defaults_once():
    d = DatasetSpec.from_config("x", {"repo": "a/b", "format": "webdataset", "revision": 123})
    assert d.revision == "123" and d.repo_type == "dataset" and d.severities == (0, 1, 2, 3, 4, 5)
    assert EmbeddingSettings.from_config(None) == EmbeddingSettings()
    assert EmbeddingSettings.from_config({"batch_size": 8}).batch_size == 8
    c = ClassSetSpec.from_config("c", {"source": "dataset", "dataset": "x"})
    assert c.template_source == "dataset" and ClassSetSpec("c", "openclip_imagenet").template_source == "openai"
    m = MetricSpec.from_config("m", {"kind": "calibration", "inputs": {"in_distribution": "a", "shifted": ["b", "a"]}})
    assert m.datasets == ["a", "b"] and m.options == {}
    ms = ModelSpec.from_config("m", {"arch": "A", "repo": "o/r", "checkpoint": "e_{epoch}.pt", "epochs": [1, 2]},
                               Preprocess(224))
    assert ms.epoch_selection == [1, 2] and ms.revision == "main" and ms.allow_pickle is False


def test_study_reads_no_key_twice():
    """The rules read specs, not the raw config: no `.get(key, default)` chains left in the rules."""
    chains = []
    for f in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"(config|STUDY\.\w+\[[^]]+\]|EMBED)\.get\(", line):
                chains.append(f"{f.name}:{n}: {line.strip()}")
    assert not chains, "\n".join(chains)
