"""Every dataset kind and every metric of both studies, end to end on tiny fixtures in the
real layouts; every figure and the table rendered; reruns only where numbers change."""

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from study_fixture import REPO

pytestmark = pytest.mark.workflow

EXPECTED = {  # metric -> datasets it must report
    "zeroshot_top1": {"tiny_imagenet"},
    "zeroshot_top5": {"tiny_imagenet"},
    "shape_bias": {"cue_conflict"},
    "texture_bias": {"cue_conflict"},
    "cue_conflict_shape_accuracy": {"cue_conflict"},
    "noise_accuracy": {"tiny_imagenet_c"},
    "noise_sensitivity": {"tiny_imagenet_c"},
    "low_level_alignment": {"tid2013", "kadid10k", "mean"},
    "mid_level_alignment": {"nights"},
    "saliency_alignment": {"saliency"},
    "ece": {"tiny_imagenet", "tiny_imagenet_c"},
    "nll": {"tiny_imagenet", "tiny_imagenet_c"},
    "temperature": {"tiny_imagenet"},
    "ood_auroc": {"ood_noise"},
    "ood_fpr95": {"ood_noise"},
}


def test_every_metric_for_every_epoch(full_study):
    m = pd.read_parquet(full_study.workdir / "results" / "metrics.parquet")
    for epoch in (1, 2):
        rows = m[m["epoch"] == epoch]
        for metric, datasets in EXPECTED.items():
            got = set(rows.loc[rows["metric"] == metric, "dataset"])
            assert datasets <= got, (metric, epoch, got)
    # the shape-bias identity and the real n of the cue-conflict set (80 stimuli, 16 with shape == texture)
    sb = m.query("metric in ['shape_bias', 'texture_bias'] and epoch == 1").set_index("metric")["value"]
    if not np.isnan(sb["shape_bias"]):
        assert sb["shape_bias"] + sb["texture_bias"] == pytest.approx(1.0)
    acc = m.query("metric == 'cue_conflict_shape_accuracy' and epoch == 1")
    assert acc["n"].item() == 64
    sev = m.query("metric == 'noise_sensitivity' and epoch == 1")["variant"]
    assert {f"severity_{k}" for k in range(1, 6)} | {"mean"} <= set(sev)
    assert m["value"].notna().sum() > 0.9 * len(m)


def test_shape_bias_details_keep_per_image_decisions(full_study):
    d = pd.read_parquet(full_study.workdir / "results" / "metrics" / "tiny_a" / "epoch_2" / "shape_bias.details.parquet")
    assert len(d) == 80 and {"image_id", "shape", "texture", "predicted"} <= set(d.columns)


def test_saliency_embeddings_keep_spatial_maps_and_others_do_not(full_study):
    from clipdyn.io import read_embeddings, read_meta

    r = full_study.workdir / "results" / "embeddings" / "tiny_a" / "epoch_1"
    sal = read_embeddings(r / "saliency.parquet", spatial=True)
    assert sal.spatial.shape == (6, 4, 4)  # 32 px / patch 8
    assert "grid" not in read_meta(r / "tiny_imagenet.parquet")


def _valid_png(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


@pytest.mark.parametrize("fig", ["fig1", "fig2", "fig3", "robustness"])
def test_figures_are_valid_files(full_study, fig):
    d = full_study.workdir / "results" / "figures"
    pdf = (d / f"{fig}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-1024:] and len(pdf) > 5_000
    w, h = _valid_png(d / f"{fig}.png")
    assert w >= 800 and h >= 400 and (d / f"{fig}.png").stat().st_size > 20_000


def test_table1_correlations_equal_scipy(full_study):
    r = full_study.workdir / "results"
    m = pd.read_parquet(r / "metrics.parquet")
    t = pd.read_csv(r / "figures" / "table1.csv")
    assert (r / "figures" / "table1.md").read_text().count("|") > 10
    assert "\\begin{tabular}" in (r / "figures" / "table1.tex").read_text()
    tb = m.query("metric == 'texture_bias' and variant == 'imagenet_mapping'").set_index("epoch")["value"]
    row = t[(t["model"] == "tiny_a") & (t["metric"] == "zeroshot_top1")].iloc[0]
    acc = m.query("metric == 'zeroshot_top1' and dataset == 'tiny_imagenet'").set_index("epoch")["value"]
    common = tb.index.intersection(acc.index)
    if len(common) >= 3:
        rho, p = stats.spearmanr(tb[common], acc[common])
        assert row["spearman_rho"] == pytest.approx(rho)
    else:  # two epochs: no correlation, said so
        assert np.isnan(row["spearman_rho"])


def test_unrelated_changes_do_not_redraw(full_study, tmp_path):
    # a library module no rule uses, and a config value no output depends on
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "workflow", copy / "workflow", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    shutil.copytree(REPO / "config", copy / "config")
    lh = copy / "workflow" / "clipdyn" / "localhub.py"
    lh.write_text(lh.read_text() + "\n# unrelated edit\n")
    cfg = full_study.read_config()
    cfg["embedding"]["mem_mb"] = 1234
    full_study.write_config(cfg)
    import study_fixture

    orig, study_fixture.REPO = study_fixture.REPO, copy
    try:
        proc = full_study.snakemake("-n")
    finally:
        study_fixture.REPO = orig
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_is_self_contained_html(full_study):
    out = full_study.root / "report.html"
    full_study.snakemake("--report", str(out))
    html = out.read_text(errors="replace")
    assert out.stat().st_size > 100_000 and "<html" in html.lower()
