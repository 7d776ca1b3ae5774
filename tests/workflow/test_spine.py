"""The workflow spine, run for real: Hub cache -> embeddings -> zero-shot accuracy -> figures,
and what a rerun does after each kind of change."""

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipdyn.fixtures.studies import ARCH, copy_workflow, publish_epochs

pytestmark = pytest.mark.workflow


def test_full_run_produces_every_artifact(spine_study):
    r = spine_study.workdir / "results"
    for model in ("tiny_a", "tiny_b"):
        tsv = pd.read_csv(r / "checkpoints" / model / "epochs.tsv", sep="\t")
        assert list(tsv["epoch"]) == [1, 2, 3] and tsv["selected"].all()
        assert tsv["blob"].str.len().eq(64).all() and tsv["commit"].str.len().eq(40).all()
        for e in (1, 2, 3):
            emb = r / "embeddings" / model / f"epoch_{e}" / "tiny_imagenet.parquet"
            assert emb.exists()
    metrics = pd.read_parquet(r / "metrics.parquet")
    assert set(metrics["measure"]) == {"zeroshot_top1", "zeroshot_top5"}
    assert len(metrics) == 2 * 3 * 2 * 2  # models x epochs x {top1, top5} x datasets
    assert (r / "metrics.csv").exists()
    for f in ("fig1.pdf", "fig1.png"):
        assert (r / "figures" / f).stat().st_size > 1000


def test_embedding_file_is_checked_and_carries_provenance(spine_study):
    from clipdyn.io import read_embeddings

    r = spine_study.workdir / "results"
    t = read_embeddings(r / "embeddings" / "tiny_a" / "epoch_2" / "tiny_imagenet.parquet")
    manifest = pd.read_parquet(r / "data" / "tiny_imagenet" / "manifest.parquet")
    assert len(t.ids) == len(manifest) == 36
    assert t.X.dtype == np.float32 and np.isfinite(t.X).all()
    tsv = pd.read_csv(r / "checkpoints" / "tiny_a" / "epochs.tsv", sep="\t").set_index("epoch")
    assert t.meta["model"] == "tiny_a" and t.meta["epoch"] == 2
    assert t.meta["checkpoint_blob"] == tsv.loc[2, "blob"]
    assert t.meta["checkpoint_commit"] == tsv.loc[2, "commit"]
    assert t.meta["preprocess"] == "32px-bicubic-shortest" and "clipdyn_version" in t.meta


def test_accuracy_equals_direct_open_clip_computation(spine_study):
    """Decode the shard members with PIL, preprocess with open_clip's own transform, classify with
    open_clip's zero-shot classifier: the workflow's top-1 must be the same number."""
    import io

    import open_clip
    import torch
    from PIL import Image

    from clipdyn.embed.model import register_model_configs

    register_model_configs([])
    r = spine_study.workdir / "results"
    manifest = pd.read_parquet(r / "data" / "tiny_imagenet" / "manifest.parquet")
    snap = Path(pd.read_json(r / "datasets" / "tiny_imagenet" / "snapshot.json", typ="series")["path"])
    classnames = (snap / "classnames.txt").read_text().splitlines()
    templates = [t.replace("{c}", "{}")
                 for t in (snap / "zeroshot_classification_templates.txt").read_text().splitlines()]
    tsv = pd.read_csv(r / "checkpoints" / "tiny_b" / "epochs.tsv", sep="\t").set_index("epoch")
    ckpt = spine_study.hub / "models--clipdyn-test--tiny-b" / "snapshots" / tsv.loc[3, "commit"] / tsv.loc[3, "file"]
    model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=str(ckpt))
    model.eval()
    images = []
    for path, member in zip(manifest["path"], manifest["member"]):
        with tarfile.open(path) as tf:
            images.append(preprocess(Image.open(io.BytesIO(tf.extractfile(member).read())).convert("RGB")))
    with torch.no_grad():
        feats = torch.nn.functional.normalize(model.encode_image(torch.stack(images)), dim=-1)
        W = open_clip.build_zero_shot_classifier(model, open_clip.get_tokenizer(ARCH), classnames, templates,
                                                 device="cpu", use_tqdm=False)
    hits = int((feats @ W).argmax(1).eq(torch.tensor(manifest["label"].to_numpy())).sum())
    top1 = hits / len(manifest)
    metrics = pd.read_parquet(r / "metrics.parquet")
    got = metrics.query("model == 'tiny_b' and epoch == 3 and measure == 'zeroshot_top1' "
                        "and dataset == 'tiny_imagenet'")["value"].item()
    assert got == pytest.approx(top1, abs=1e-12)


def test_second_run_has_nothing_to_do(spine_study):
    proc = spine_study.snakemake("-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_editing_a_metric_module_reruns_only_metric_collection_and_figures(spine_study, tmp_path):
    copy = copy_workflow(tmp_path / "repo")
    zs = copy / "workflow" / "clipdyn" / "metrics" / "zeroshot.py"
    sig = "def zeroshot_accuracy(*, embeddings, tables, classifier, inputs, options) -> MetricResult:\n"
    # code, not a comment (the hash is over the syntax tree), in the kind's evaluator
    zs.write_text(zs.read_text().replace(sig, sig + "    _an_edit = 1\n", 1))
    jobs = spine_study.dry_run_jobs(repo=copy)
    assert jobs.pop("compute_metric") == 2 * 2  # (model, metric) jobs; each recomputes its 3 epochs
    assert jobs == {"collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}


def test_changing_one_datasets_subset_reruns_only_that_dataset(spine_study):
    backup = spine_study.read_config()
    cfg = spine_study.read_config()
    cfg["datasets"]["tiny_imagenet_all"]["subset"] = 24
    spine_study.write_config(cfg)
    try:
        jobs = spine_study.dry_run_jobs()
    finally:
        spine_study.write_config(backup)
    # the rerun embeddings read their checkpoints by record (ancient input): no fetch job
    assert jobs == {"prepare_manifest": 1, "pixel_cache": 1, "embed_images": 6,
                    "compute_metric": 2, "collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}


@pytest.mark.parametrize("change", [{"resamples": 500}, {"method": "bca"}, {"enabled": False}])
def test_changing_the_intervals_settings_reruns_every_metric_job_and_nothing_upstream(spine_study, change):
    backup = spine_study.read_config()
    cfg = spine_study.read_config()
    cfg["intervals"] = change
    spine_study.write_config(cfg)
    try:
        jobs = spine_study.dry_run_jobs()
    finally:
        spine_study.write_config(backup)
    # (model, metric) jobs: 2 x 2, each recomputing its epochs; the collection, figures and table follow
    assert jobs == {"compute_metric": 4, "collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}


def test_new_epoch_on_the_hub_adds_exactly_its_jobs(spine_study):
    from clipdyn.fixtures.localhub import LocalHub

    # a new commit on the model repo: epoch 4 of tiny_a (epochs: auto)
    publish_epochs(LocalHub(spine_study.hub), "tiny-a", [4], seed=0, scratch=spine_study.root / "scratch")
    jobs = spine_study.dry_run_jobs()
    # one fetch of the new checkpoint, read by its 2 embeddings and 1 classifier
    assert jobs == {"list_epochs": 1, "fetch_checkpoint": 1, "embed_images": 2, "text_classifier": 1,
                    "compute_metric": 2, "collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}
    spine_study.snakemake()
    metrics = pd.read_parquet(spine_study.workdir / "results" / "metrics.parquet")
    assert sorted(metrics.query("model == 'tiny_a'")["epoch"].unique()) == [1, 2, 3, 4]
    # the metric jobs computed only the new epoch and read the others back
    for metric in spine_study.read_config()["metrics"]:
        log = (spine_study.workdir / "results" / "logs" / "compute_metric" / "tiny_a" / f"{metric}.log").read_text()
        assert "computed epochs 4; reused (unchanged inputs and code) epochs 1-3" in log, log
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(spine_study.snakemake("-n"))


def test_editing_a_reference_curve_csv_redraws_only_the_figures(spine_study):
    """A published curve drawn beside ours (models.<m>.reference_curve) is an input of the figures."""
    csv = spine_study.root / "reference.csv"
    csv.write_text("imagenet-zeroshot-val-top1,name,epoch\n0.10,run-a.pt,1\n0.20,run-a.pt,2\n")
    backup = spine_study.read_config()
    cfg = spine_study.read_config()
    cfg["models"]["tiny_a"]["reference_curve"] = {"file": str(csv), "run": "run-a"}
    spine_study.write_config(cfg)
    try:
        spine_study.snakemake()
        csv.write_text(csv.read_text() + "0.30,run-a.pt,3\n")
        jobs = spine_study.dry_run_jobs()
    finally:
        spine_study.write_config(backup)
    assert jobs == {"figure": 4, "all": 1}


def test_embedding_jobs_ask_for_memory_by_checkpoint_size(spine_study):
    """Without `embedding: mem_mb`, a checkpoint's embedding and text jobs declare 3000 MB + its size
    (from the Hub listing); with it, the configured value."""
    import re

    from clipdyn.embed.memory import JOB_BASE_MB

    cfg = spine_study.read_config()
    saved = dict(cfg)
    tsv = pd.read_csv(spine_study.workdir / "results" / "checkpoints" / "tiny_a" / "epochs.tsv", sep="\t")
    blob = tsv.loc[tsv["epoch"] == 1, "blob"].iloc[0]
    size = next(spine_study.hub.glob(f"models--*/blobs/{blob}")).stat().st_size  # the listing's size
    want = JOB_BASE_MB + -(-size // 2**20)
    try:
        cfg["embedding"] = {k: v for k, v in cfg["embedding"].items() if k != "mem_mb"}
        spine_study.write_config(cfg)
        out = spine_study.snakemake("-n", "--forcerun", "embed_images", "text_classifier").stdout
        mem = {int(m) for m in re.findall(r"\bmem_mb=(\d+)", out)}
        assert want in mem and 1000 not in mem, out[-3000:]
    finally:
        spine_study.write_config(saved)
    out = spine_study.snakemake("-n", "--forcerun", "embed_images").stdout
    assert {int(m) for m in re.findall(r"\bmem_mb=(\d+)", out)} >= {1000}
