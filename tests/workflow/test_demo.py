"""The offline demo, reduced (`--scale ci`): the demo's own hub builder, config/demo.yaml, the whole
workflow, then two more epochs published as a new commit: only their jobs run."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from clipdyn.fixtures.studies import REPO, TinyStudy, parse_job_counts

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(os.environ.get("CLIPDYN_SKIP_DEMO_TEST", "0") == "1",
                       reason="CLIPDYN_SKIP_DEMO_TEST=1 (the reduced demo end to end takes ~10 min on 2 cores)"),
]


@pytest.fixture(scope="module")
def demo():
    root = Path(tempfile.mkdtemp(prefix="clipdyn-demo-"))
    hub = root / "hub"
    subprocess.run([sys.executable, "-m", "clipdyn.demo", "build", "--hub", str(hub), "--scale", "ci"],
                   check=True, capture_output=True, text=True, timeout=600)
    manifest = json.loads((hub / "demo-manifest.json").read_text())
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["models"] = {k: v for k, v in cfg["models"].items() if k in manifest["models"]}
    cfg["figures"]["scale_models"] = list(cfg["models"])
    cfg["results"] = "results"
    study = TinyStudy(root=root, hub=hub, config=root / "config.yaml", workdir=root / "work")
    study.workdir.mkdir()
    study.write_config(cfg)
    study.snakemake(timeout=3600)
    yield study, manifest
    shutil.rmtree(root, ignore_errors=True)


def test_demo_runs_every_metric_and_figure(demo):
    study, manifest = demo
    r = study.workdir / "results"
    m = pd.read_parquet(r / "metrics.parquet")
    n_epochs = {name: len(v["epochs"]) for name, v in manifest["models"].items()}
    for model, n in n_epochs.items():
        assert m.query("model == @model and measure == 'zeroshot_top1'")["epoch"].nunique() == n
    for measure in ("zeroshot_top1", "texture_bias", "noise_sensitivity", "low_level_alignment",
                   "mid_level_alignment", "saliency_alignment", "ece", "ood_auroc"):
        assert measure in set(m["measure"]), measure
    for f in ("fig1", "fig2", "fig3", "robustness"):
        assert (r / "figures" / f"{f}.png").stat().st_size > 10_000
    assert (r / "figures" / "table1.md").exists()


def test_more_epochs_run_only_the_new_epochs_jobs(demo):
    study, manifest = demo
    subprocess.run([sys.executable, "-m", "clipdyn.demo", "more-epochs", "--hub", str(study.hub), "--n", "2"],
                   check=True, capture_output=True, text=True, timeout=600)
    cfg = study.read_config()
    n_models = len(cfg["models"])
    n_embedded = len({d for m in cfg["metrics"].values() for v in m["inputs"].values()
                      for d in ([v] if isinstance(v, str) else v)})
    n_classsets = len({m["classset"] for m in cfg["metrics"].values() if m.get("classset")})
    n_new = 2 * n_models
    jobs = parse_job_counts((lambda p: p.stdout + p.stderr)(study.snakemake("-n", "--quiet", "rules")))
    # one fetch per new checkpoint; its embeddings and classifiers read it through its record
    assert jobs == {"list_epochs": n_models, "fetch_checkpoint": n_new,
                    "embed_images": n_new * n_embedded,
                    "text_classifier": n_new * n_classsets, "compute_metric": n_models * len(cfg["metrics"]),
                    "collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}
    study.snakemake(timeout=3600)
    m = pd.read_parquet(study.workdir / "results" / "metrics.parquet")
    for model, v in manifest["models"].items():
        assert m.query("model == @model")["epoch"].max() == max(v["epochs"]) + 2
