"""benchmarks/versus_clip_benchmark.py: the config it derives for the workflow, the checkpoints and
the dataset folder it hands CLIP_benchmark (the runs themselves are the benchmark's, not a test's)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    path = REPO / "benchmarks" / "versus_clip_benchmark.py"
    spec = importlib.util.spec_from_file_location("versus_clip_benchmark", path)
    mod = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path[:] = saved
    return mod


def test_derived_config_keeps_only_the_zeroshot_metric_and_what_it_reads(bench):
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg = bench.derived_config(None)
    assert list(cfg["metrics"]) == ["zeroshot"]
    assert cfg["metrics"]["zeroshot"] == demo["metrics"]["zeroshot"]
    assert list(cfg["datasets"]) == ["shapes"] and list(cfg["classsets"]) == ["shapes"]
    assert cfg["figures"] == {"enabled": False}
    assert cfg["models"] == demo["models"]
    assert cfg["embedding"] == demo["embedding"]
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))


def test_quick_restricts_the_models_to_the_checkpoints_clip_benchmark_gets(bench, tmp_path):
    manifest = {"models": {m: {"repo_id": f"org/{m}", "repo_type": "model", "arch": f"arch-{m}",
                               "revision": "abc", "checkpoint": f"ck/{m}/epoch_{{epoch}}.pt",
                               "epochs": [1, 2, 3]} for m in ("demo-s", "demo-m")}}
    ckpts = bench.demo_checkpoints(tmp_path, manifest, quick=True)
    assert [(c["model"], c["epoch"]) for c in ckpts] == [("demo-s", 1), ("demo-s", 2), ("demo-s", 3), ("demo-m", 1)]
    assert ckpts[0]["file"] == tmp_path / "models--org--demo-s" / "snapshots" / "abc" / "ck/demo-s/epoch_1.pt"
    assert len(bench.demo_checkpoints(tmp_path, manifest, quick=False)) == 6
    cfg = bench.derived_config(ckpts)
    assert {m: v["epochs"] for m, v in cfg["models"].items()} == {"demo-s": [1, 2, 3], "demo-m": [1]}


def _wds(root: Path, shards: int) -> None:
    (root / "test").mkdir(parents=True)
    (root / "test" / "nshards.txt").write_text(f"{shards}\n")
    for i in range(shards):
        (root / "test" / f"{i}.tar").write_bytes(b"")
    (root / "classnames.txt").write_text("a\nb\n")
    (root / "zeroshot_classification_templates.txt").write_text("a {c}.\n")


def test_wds_root_is_the_snapshot_in_clip_benchmarks_layout(bench, tmp_path):
    manifest = {"datasets": {"shapes": {"repo_id": "org/wds_shapes", "repo_type": "dataset", "revision": "r1"}}}
    root = tmp_path / "datasets--org--wds_shapes" / "snapshots" / "r1"
    _wds(root, 3)
    assert bench.wds_root(tmp_path, manifest) == root
    (root / "test" / "2.tar").unlink()
    with pytest.raises(SystemExit, match=r"lacks some of 0\.\.2\.tar"):
        bench.wds_root(tmp_path, manifest)
    (root / "classnames.txt").unlink()
    with pytest.raises(SystemExit, match="classnames.txt"):
        bench.wds_root(tmp_path, manifest)
