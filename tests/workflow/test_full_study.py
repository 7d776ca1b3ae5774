"""Every dataset kind and every metric of both studies, end to end on tiny fixtures in the
real layouts; every figure and the table rendered; reruns only where numbers change."""


import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from clipdyn.fixtures.studies import copy_workflow, shared_data

pytestmark = pytest.mark.workflow

EXPECTED = {  # measure -> datasets it must report
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
        for measure, datasets in EXPECTED.items():
            got = set(rows.loc[rows["measure"] == measure, "dataset"])
            assert datasets <= got, (measure, epoch, got)
    # each row names the config entry that computed it; its measures are the ones its kind declares
    from clipdyn.metrics.registry import KINDS

    kinds = {name: m["kind"] for name, m in full_study.read_config()["metrics"].items()}
    assert set(m["metric"]) == set(kinds)
    for name, rows in m.groupby("metric"):
        assert set(rows["measure"]) <= {x.name for x in KINDS[kinds[name]].measures}, name
    # the shape-bias identity, and n = the cue-conflict stimuli whose shape and texture differ (the
    # published sample beside the repository: 80 stimuli, 16 with shape == texture; else the stand-in)
    stimuli = pd.read_parquet(full_study.workdir / "results" / "data" / "cue_conflict" / "manifest.parquet")
    sb = m.query("measure in ['shape_bias', 'texture_bias'] and epoch == 1").set_index("measure")["value"]
    if not np.isnan(sb["shape_bias"]):
        assert sb["shape_bias"] + sb["texture_bias"] == pytest.approx(1.0)
    acc = m.query("measure == 'cue_conflict_shape_accuracy' and epoch == 1")
    assert acc["n"].item() == (stimuli["shape"] != stimuli["texture"]).sum()
    if shared_data("cue-conflict-sample").exists():
        assert (len(stimuli), acc["n"].item()) == (80, 64)
    sev = m.query("measure == 'noise_sensitivity' and epoch == 1")["variant"]
    assert {f"severity_{k}" for k in range(1, 6)} | {"mean"} <= set(sev)
    # the RMS calibration error has no bin below 100 images (hendrycks/imagenet-r's calib_err): NaN there
    no_bin = (m["measure"] == "rms_calibration_error") & (m["n"] < 100)
    assert m.loc[no_bin, "value"].isna().all()
    assert m.loc[~no_bin, "value"].notna().sum() > 0.9 * (~no_bin).sum()
    # every value carries its bootstrap interval (intervals on by default); NaN only where undefined
    finite = m[np.isfinite(m["value"])]
    has = np.isfinite(finite[["se", "ci_low", "ci_high"]]).all(axis=1)
    assert has.mean() > 0.9, finite.loc[~has, ["measure", "dataset", "variant", "value", "n"]]
    assert (finite.loc[has, "ci_low"] <= finite.loc[has, "ci_high"]).all()
    assert all(len(r) == 1000 for r in finite.loc[has, "replicates"])
    assert "replicates" not in pd.read_csv(full_study.workdir / "results" / "metrics.csv", nrows=1).columns


def test_shape_bias_details_keep_per_image_decisions(full_study):
    d = pd.read_parquet(full_study.workdir / "results" / "metrics" / "tiny_a" / "epoch_2"
                        / "shape_bias.details.parquet")
    stimuli = pd.read_parquet(full_study.workdir / "results" / "data" / "cue_conflict" / "manifest.parquet")
    assert len(d) == len(stimuli) and {"image_id", "shape", "texture", "predicted"} <= set(d.columns)
    assert set(d["image_id"]) == set(stimuli["image_id"])


def test_saliency_embeddings_keep_spatial_maps_and_others_do_not(full_study):
    from clipdyn.io import read_embeddings, read_meta

    r = full_study.workdir / "results" / "embeddings" / "tiny_a" / "epoch_1"
    sal = read_embeddings(r / "saliency.parquet", spatial=True)
    assert sal.spatial.shape == (6, 4, 4)  # 32 px / patch 8
    assert "grid" not in read_meta(r / "tiny_imagenet.parquet")
    assert read_meta(r / "saliency.parquet")["saliency_map"] == "cls_attention"  # the default, recorded
    assert "saliency_map" not in read_meta(r / "tiny_imagenet.parquet")


def test_saliency_map_variant_reembeds_only_the_saliency_datasets(full_study):
    """embedding.saliency_map reaches only the embedding jobs of datasets with spatial maps."""
    backup = full_study.read_config()
    cfg = full_study.read_config()
    cfg.setdefault("embedding", {})["saliency_map"] = "attention_rollout"
    full_study.write_config(cfg)
    try:
        jobs = full_study.dry_run_jobs()
    finally:
        full_study.write_config(backup)
    spatial = list((full_study.workdir / "results" / "embeddings").glob("*/epoch_*/saliency.parquet"))
    saliency_metrics = [n for n, m in cfg["metrics"].items() if m["kind"] == "saliency_alignment"]
    assert spatial and saliency_metrics
    # each re-embedding reads its checkpoint by record (clipdyn.hub.checkpoints): no fetch job
    assert jobs == {"embed_images": len(spatial),
                    "compute_metric": len(saliency_metrics) * len(cfg["models"]),
                    "collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}


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


def test_table1_correlations_equal_scipy(full_study, tmp_path):
    r = full_study.workdir / "results"
    m = pd.read_parquet(r / "metrics.parquet")
    t = pd.read_csv(r / "figures" / "table1.csv")
    assert (r / "figures" / "table1.md").read_text().count("|") > 10
    assert "\\begin{tabular}" in (r / "figures" / "table1.tex").read_text()
    # the rule's table is the study's metric table through table1 (two epochs: no correlation, said so)
    from clipdyn.figures import FigureSpec, table1, write_table1

    cfg = full_study.read_config()
    spec = FigureSpec.from_config({**{k: v for k, v in cfg["figures"].items() if k != "enabled"},
                                   "labels": {n: x["label"] for n, x in cfg["models"].items() if "label" in x}})
    write_table1(table1(m, spec), tmp_path / "table1.csv")
    assert (tmp_path / "table1.csv").read_text() == (r / "figures" / "table1.csv").read_text()
    row = t[(t["model"] == "tiny_a") & (t["measure"] == "zeroshot_top1")].iloc[0]
    assert np.isnan(row["spearman_rho"]) and "fewer than 3 shared epochs (n=2)" in row["note"]
    # the same study's rows with two more epochs (the real values, shifted and reordered, so the
    # ranks differ): every correlation of the table equals scipy's on the points it names
    sign = (-1.0) ** m["epoch"]
    more = pd.concat([m] + [m.assign(epoch=m["epoch"] + 2 * k, value=m["value"] * (1 + 0.1 * k) * sign)
                            for k in (1, 2)], ignore_index=True)
    t3 = table1(more, spec)
    checked = 0
    for x in t3[t3["measure"] != "texture_bias"].itertuples():
        tb = more.query("model == @x.model and measure == 'texture_bias' and variant == 'imagenet_mapping'")
        other = more.query("model == @x.model and measure == @x.measure and dataset == @x.dataset "
                           "and variant == @x.variant and metric == @x.metric")
        both = tb.merge(other, on="epoch").dropna(subset=["value_x", "value_y"])
        assert x.n_epochs == len(both) >= 5, x
        rho, p = stats.spearmanr(both["value_x"], both["value_y"])
        if np.isfinite(rho):
            assert x.spearman_rho == pytest.approx(rho) and x.p_value == pytest.approx(p)
            checked += 1
    assert checked >= 5, t3[["measure", "spearman_rho", "note"]]


def test_unrelated_changes_do_not_redraw(full_study, tmp_path):
    # a library module no rule uses, and a config value no output depends on
    copy = tmp_path / "repo"
    copy_workflow(copy)
    lh = copy / "workflow" / "clipdyn" / "fixtures" / "localhub.py"
    lh.write_text(lh.read_text() + "\n# unrelated edit\n")
    cfg = full_study.read_config()
    cfg["embedding"]["mem_mb"] = 1234
    full_study.write_config(cfg)
    proc = full_study.snakemake("-n", repo=copy)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_is_self_contained_html(full_study):
    out = full_study.root / "report.html"
    full_study.snakemake("--report", str(out))
    html = out.read_text(errors="replace")
    assert out.stat().st_size > 100_000 and "<html" in html.lower()
