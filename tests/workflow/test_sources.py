"""Every checkpoint source, run for real: a local open_clip training run followed while it trains,
Hub revisions as epochs, and a final model by its open_clip ``hf-hub:`` name, in one tiny study;
and bad input of each kind named before any job runs."""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipdyn.fixtures.studies import (
    TinyStudy,
    build_tiny_study,
    make_checkpoint,
    publish_final,
    publish_revisions,
    write_local_run,
)

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def sources_study():
    import tempfile

    from clipdyn.fixtures.localhub import LocalHub

    root = Path(tempfile.mkdtemp(prefix="clipdyn-sources-"))
    study = build_tiny_study(root, n_models=1, n_epochs=2)
    hub = LocalHub(study.hub)
    write_local_run(root / "logs" / "tiny-run", [1, 2], half_written=3)
    publish_revisions(hub, "clipdyn-test/tiny-steps", [1, 2, 3], seed=3, scratch=root / "scratch")
    publish_final(hub, "clipdyn-test/tiny-final", seed=5)
    cfg = study.read_config()
    cfg["models"]["run"] = {"arch": "clipdyn-tiny", "local": "../logs/tiny-run"}  # relative to the workdir
    cfg["models"]["steps"] = {"arch": "clipdyn-tiny", "repo": "clipdyn-test/tiny-steps",
                              "revisions": "epoch-{epoch}", "checkpoint": "checkpoint.pt",
                              "epochs": {"auto": True, "step": 2, "include_last": True}}
    cfg["models"]["final"] = {"pretrained": "hf-hub:clipdyn-test/tiny-final", "label": "Tiny final"}
    cfg["figures"]["scale_models"] = ["tiny_a", "run", "steps", "final"]
    study.write_config(cfg)
    proc = study.snakemake()
    study.first_log = proc.stdout + proc.stderr
    yield study
    shutil.rmtree(root, ignore_errors=True)


def _tsv(study, model):
    return pd.read_csv(study.workdir / "results" / "checkpoints" / model / "epochs.tsv", sep="\t",
                       keep_default_na=False)


def _state(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.iterdir())}


def test_every_source_is_evaluated(sources_study):
    r = sources_study.workdir / "results"
    metrics = pd.read_parquet(r / "metrics.parquet")
    epochs = {m: sorted(g["epoch"].unique()) for m, g in metrics.groupby("model")}
    assert epochs == {"tiny_a": [1, 2], "run": [1, 2], "steps": [1, 3], "final": [0]}
    run = _tsv(sources_study, "run")
    ck = sources_study.root / "logs" / "tiny-run" / "checkpoints"
    assert list(run["epoch"]) == [1, 2]  # epoch_latest.pt is not an epoch; epoch_3.pt is half-written
    assert list(run["file"]) == [str((ck / f"epoch_{e}.pt").resolve()) for e in (1, 2)]
    assert list(run["blob"]) == [hashlib.sha256((ck / f"epoch_{e}.pt").read_bytes()).hexdigest() for e in (1, 2)]
    steps = _tsv(sources_study, "steps")
    refs = sources_study.hub / "models--clipdyn-test--tiny-steps" / "refs"
    assert list(steps["epoch"]) == [1, 2, 3] and list(steps["selected"]) == [True, False, True]
    assert list(steps["commit"]) == [(refs / f"epoch-{e}").read_text() for e in (1, 2, 3)]
    final = _tsv(sources_study, "final")
    assert list(final["file"]) == ["open_clip_model.safetensors"] and list(final["epoch"]) == [0]
    from clipdyn.io import read_embeddings

    emb = read_embeddings(r / "embeddings" / "run" / "epoch_2" / "tiny_imagenet.parquet")
    assert emb.meta["checkpoint_blob"] == run["blob"][1]
    # each revision is its own checkpoint: different content, different embeddings
    assert steps["blob"][0] != steps["blob"][2]
    e1, e3 = (read_embeddings(r / "embeddings" / "steps" / f"epoch_{e}" / "tiny_imagenet.parquet") for e in (1, 3))
    assert e1.meta["checkpoint_blob"] == steps["blob"][0] and e3.meta["checkpoint_blob"] == steps["blob"][2]
    assert not np.allclose(e1.X, e3.X)
    # the final model loads from safetensors through its results/ link
    fin = read_embeddings(r / "embeddings" / "final" / "epoch_0" / "tiny_imagenet.parquet")
    assert fin.meta["checkpoint_blob"] == final["blob"][0] and np.isfinite(fin.X).all()
    for f in ("fig1.png", "fig3.png", "robustness.png", "table1.md"):
        assert (r / "figures" / f).stat().st_size > 100


def test_half_written_checkpoint_is_named_and_the_rest_goes_on(sources_study):
    assert "model run: skipping epoch 3:" in sources_study.first_log
    assert "epoch_3.pt is still being written (a zip archive without its end record" in sources_study.first_log
    # local checkpoints are read where they are: nothing under results/checkpoints links or copies them
    assert not (sources_study.workdir / "results" / "checkpoints" / "run" / "epoch_1.pt").exists()


def test_rerun_while_training_continues_evaluates_only_new_epochs(sources_study):
    ck = sources_study.root / "logs" / "tiny-run" / "checkpoints"
    make_checkpoint(ck / "epoch_3.pt", 3, 7)  # finished writing
    make_checkpoint(ck / "epoch_4.pt", 4, 7)  # and one more epoch
    shutil.copy(ck / "epoch_4.pt", ck / "epoch_latest.pt")
    before = _state(ck)
    jobs = sources_study.dry_run_jobs()
    assert jobs == {"list_epochs": 1, "embed_images": 2, "text_classifier": 2, "compute_metric": 1,
                    "collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}
    sources_study.snakemake()
    metrics = pd.read_parquet(sources_study.workdir / "results" / "metrics.parquet")
    assert sorted(metrics.query("model == 'run'")["epoch"].unique()) == [1, 2, 3, 4]
    log = (sources_study.workdir / "results" / "logs" / "compute_metric" / "run" / "zeroshot.log").read_text()
    assert "computed epochs 3-4; reused (unchanged inputs and code) epochs 1-2" in log, log
    assert _state(ck) == before  # never moved, deleted or rewritten
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(sources_study.snakemake("-n"))
    cache = sources_study.workdir / "results" / "checkpoints" / "local-sha256.json"
    assert len(pd.read_json(cache, orient="index")) == 4


@pytest.mark.parametrize("case, message", [
    ("no_folder", "config error: models.run.local: .*logs/no-such-run does not exist"),
    ("no_match", r"config error: models.run.checkpoint: no file in .*tiny-run/checkpoints matches "
                 r"'ckpt_\{epoch\}.bin'; files there: .*epoch_1.pt"),
    ("no_revision", r"config error: models.steps.revisions: epoch 9: revision 'release-9' does not exist in "
                    r"model repo clipdyn-test/tiny-steps; its branches and tags: epoch-1, epoch-2"),
    ("no_revision_match", r"config error: models.steps.revisions: no branch or tag of model repo "
                          r"clipdyn-test/tiny-steps matches 'step-\{epoch\}'"),
    ("not_a_checkpoint", r"config error: models.run: .*epoch_7.pt is not a checkpoint \(starts with b'<html>"),
])
def test_bad_input_is_named_before_any_job(sources_study, case, message):
    import re

    cfg = sources_study.read_config()
    junk = None
    if case == "no_folder":
        cfg["models"]["run"]["local"] = "../logs/no-such-run"
    elif case == "no_match":
        cfg["models"]["run"]["checkpoint"] = "ckpt_{epoch}.bin"
    elif case == "no_revision":
        cfg["models"]["steps"]["revisions"] = {1: "epoch-1", 9: "release-9"}
    elif case == "no_revision_match":
        cfg["models"]["steps"]["revisions"] = "step-{epoch}"
    else:
        junk = sources_study.root / "logs" / "tiny-run" / "checkpoints" / "epoch_7.pt"
        junk.write_text("<html>Bad gateway</html>")
    bad = TinyStudy(root=sources_study.root, hub=sources_study.hub, config=sources_study.root / f"{case}.yaml",
                    workdir=sources_study.workdir)
    bad.write_config(cfg)
    try:
        proc = bad.snakemake("-n", check=False)
    finally:
        if junk:
            os.unlink(junk)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and re.search(message, out), out[-3000:]
