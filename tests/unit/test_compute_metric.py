"""The metric step: one metric of one model over all epochs, unchanged epochs read back, not recomputed."""
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipdyn.io import provenance, read_classifier, read_embeddings, write_classifier, write_embeddings, write_frame
from clipdyn.metrics.compute import compute_metric, load_tables, metric_memo_paths
from clipdyn.metrics.intervals import resample_counts
from clipdyn.metrics.registry import evaluate

EPOCHS = [1, 2, 3]


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    n, c, d = 40, 4, 8
    ids = [f"img{i}" for i in range(n)]
    labels = rng.integers(0, c, n)
    write_frame(pd.DataFrame({"image_id": ids, "label": labels}), tmp_path / "manifest.parquet",
                provenance(classnames=[f"c{i}" for i in range(c)]))
    write_frame(pd.DataFrame(), tmp_path / "trials.parquet", provenance())
    files = {"tables": {"ds": {"manifest": str(tmp_path / "manifest.parquet"),
                               "trials": str(tmp_path / "trials.parquet")}},
             "embeddings": {}, "classifiers": {}}
    for e in EPOCHS:
        W = rng.normal(size=(c, d))
        X = W[labels] * e + rng.normal(size=(n, d)) * 2  # accuracy rises with the epoch
        write_embeddings(tmp_path / f"emb_{e}.parquet", ids, X.astype(np.float32), provenance(epoch=e))
        write_classifier(tmp_path / f"clf_{e}.parquet", W / np.linalg.norm(W, axis=1, keepdims=True),
                         [f"c{i}" for i in range(c)], 100.0, provenance(epoch=e))
        files["embeddings"][e] = {"ds": str(tmp_path / f"emb_{e}.parquet")}
        files["classifiers"][e] = str(tmp_path / f"clf_{e}.parquet")
    out = tmp_path / "metrics" / "m" / "zs.parquet"
    kw = dict(files=files, kind="zeroshot_accuracy", roles={"dataset": "ds"}, options={},
              spatial=[], code="code-v1", model="m", metric="zs", out=str(out))
    return tmp_path, kw


def test_rows_equal_a_direct_evaluation_per_epoch(study):
    tmp, kw = study
    assert compute_metric(**kw) == {"computed": EPOCHS, "reused": []}
    got = pd.read_parquet(kw["out"])
    assert sorted(got["epoch"].unique()) == EPOCHS and set(got["metric"]) == {"zs"}
    tables = {"ds": load_tables(**kw["files"]["tables"]["ds"])}
    for e in EPOCHS:
        direct = evaluate("zeroshot_accuracy", embeddings={"ds": read_embeddings(tmp / f"emb_{e}.parquet")},
                          tables=tables, classifier=read_classifier(tmp / f"clf_{e}.parquet"),
                          inputs={"dataset": "ds"}, options={}).rows
        mine = got.query("epoch == @e").set_index("measure")["value"]
        for _, r in direct.iterrows():
            np.testing.assert_equal(mine[r["measure"]], r["value"])
        rows, details = metric_memo_paths(kw["out"], "zs", e)
        assert rows.exists() and len(pd.read_parquet(details)) == 40


def test_unchanged_epochs_are_reused_and_the_output_is_the_same(study):
    tmp, kw = study
    compute_metric(**kw)
    first = pd.read_parquet(kw["out"])
    assert compute_metric(**kw) == {"computed": [], "reused": EPOCHS}
    pd.testing.assert_frame_equal(pd.read_parquet(kw["out"]), first)


def test_a_new_epoch_is_the_only_one_computed(study):
    tmp, kw = study
    first_two = dict(kw["files"], embeddings={e: kw["files"]["embeddings"][e] for e in (1, 2)})
    compute_metric(**dict(kw, files=first_two))
    assert compute_metric(**kw) == {"computed": [3], "reused": [1, 2]}


def test_a_rewritten_embedding_recomputes_only_its_epoch(study):
    tmp, kw = study
    compute_metric(**kw)
    p = tmp / "emb_2.parquet"
    e = read_embeddings(p)
    time.sleep(0.01)
    write_embeddings(p, e.ids, e.X * 0.5, provenance(epoch=2))  # a rerun of that embedding job
    assert compute_metric(**kw) == {"computed": [2], "reused": [1, 3]}


INTERVALS = {"enabled": True, "resamples": 300, "method": "percentile", "seed": 0, "level": 0.95}


def test_rows_carry_finite_intervals_and_the_same_resamples_at_every_epoch(study):
    tmp, kw = study
    compute_metric(**dict(kw, intervals=INTERVALS))
    got = pd.read_parquet(kw["out"])
    top1 = got[got["measure"] == "zeroshot_top1"].sort_values("epoch")
    assert np.isfinite(top1[["se", "ci_low", "ci_high"]].to_numpy()).all()
    assert (top1["ci_low"] <= top1["value"]).all() and (top1["value"] <= top1["ci_high"]).all()
    assert all(len(r) == 300 for r in top1["replicates"])
    # resample k draws the same images at every epoch: per-image hits recomputed from the details
    counts = resample_counts(40, 300, 0, "ds")
    for e, reps in zip(top1["epoch"], top1["replicates"]):
        _, details = metric_memo_paths(kw["out"], "zs", e)
        d = pd.read_parquet(details)
        hits = (d["label"] == d["predicted"]).to_numpy(float)
        np.testing.assert_allclose(reps, counts @ hits / 40, rtol=1e-6)
    # top-5 of 4 classes is undefined: NaN value and NaN interval
    assert got.loc[got["measure"] == "zeroshot_top5", ["value", "ci_low"]].isna().all().all()


def test_intervals_off_leave_nan_columns_and_no_replicates(study):
    tmp, kw = study
    compute_metric(**dict(kw, intervals=dict(INTERVALS, enabled=False)))
    got = pd.read_parquet(kw["out"])
    assert got[["se", "ci_low", "ci_high"]].isna().all().all() and all(len(r) == 0 for r in got["replicates"])


@pytest.mark.parametrize("change", [{"code": "code-v2"}, {"options": {"note": "changed"}},
                                    {"intervals": dict(INTERVALS, resamples=200)},
                                    {"intervals": dict(INTERVALS, method="bca")}])
def test_changed_code_or_options_recompute_every_epoch(study, change):
    tmp, kw = study
    kw = dict(kw, intervals=INTERVALS)
    compute_metric(**kw)
    assert compute_metric(**kw) == {"computed": [], "reused": EPOCHS}
    assert compute_metric(**dict(kw, **change)) == {"computed": EPOCHS, "reused": []}


def test_a_missing_or_foreign_memo_file_is_recomputed(study):
    tmp, kw = study
    compute_metric(**kw)
    rows1, details1 = metric_memo_paths(kw["out"], "zs", 1)
    details1.unlink()  # an epoch whose details are gone
    rows3, _ = metric_memo_paths(kw["out"], "zs", 3)
    write_frame(pd.read_parquet(rows3), rows3, provenance(memo_key="something else"))
    assert compute_metric(**kw) == {"computed": [1, 3], "reused": [2]}


def test_a_damaged_embedding_fails_the_step_naming_it_and_a_damaged_kept_epoch_is_recomputed(study):
    from clipdyn.io import DamagedFileError

    tmp, kw = study
    compute_metric(**kw)
    rows, _ = metric_memo_paths(kw["out"], "zs", 1)
    rows.write_bytes(rows.read_bytes()[:50])  # a kept epoch's rows, truncated
    assert compute_metric(**kw) == {"computed": [1], "reused": [2, 3]}
    emb = kw["files"]["embeddings"][2]["ds"]
    Path(emb).write_bytes(Path(emb).read_bytes()[:100])  # an interrupted copy
    with pytest.raises(DamagedFileError, match="delete it and run the workflow again") as err:
        compute_metric(**kw)
    assert err.value.path == emb
