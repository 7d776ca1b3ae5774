"""Table 1's intervals: rho and the peak epoch over whole-study resamples (the metric rows' replicates,
the same images resampled at every epoch)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clipdyn.figures import table1
from clipdyn.figures.table import display_table, peak_range, rho_interval
from clipdyn.metrics.intervals import interval_fields, mean_of

SETTINGS = {"enabled": True, "resamples": 400, "method": "percentile", "seed": 0, "level": 0.95}
EPOCHS = list(range(1, 9))


def study(n_images: int, tex_trend: float, acc_curve, seed: int = 0) -> pd.DataFrame:
    """Per-image 0/1 outcomes at every epoch, turned into metric rows the way the metric job does
    (value, interval and replicates of each row from the same images' resamples)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, e in enumerate(EPOCHS):
        tex_hits = rng.random(n_images) < 0.6 - tex_trend * i
        acc_hits = rng.random(n_images) < acc_curve(i)
        for measure, dataset, variant, hits in (("texture_bias", "cue", "imagenet_mapping", tex_hits),
                                                ("zeroshot_top1", "imagenet", "", acc_hits)):
            f = interval_fields(mean_of(hits, dataset), SETTINGS)
            rows.append({"model": "m", "epoch": e, "metric": measure, "measure": measure, "dataset": dataset,
                         "variant": variant, "value": hits.mean(), "n": n_images, "se": f["se"],
                         "ci_low": f["ci_low"], "ci_high": f["ci_high"], "replicates": f["replicates"]})
    return pd.DataFrame(rows)


SPEC = {"table_measures": ["zeroshot_top1"]}


def test_rho_interval_is_rho_recomputed_on_each_whole_study_resample():
    m = study(300, 0.02, lambda i: 0.3 + 0.04 * i)
    t = table1(m, SPEC).set_index("measure").loc["zeroshot_top1"]
    tb = np.stack(m[m.measure == "texture_bias"].sort_values("epoch")["replicates"]).astype(float)
    acc = np.stack(m[m.measure == "zeroshot_top1"].sort_values("epoch")["replicates"]).astype(float)
    rhos = [stats.spearmanr(tb[:, k], acc[:, k])[0] for k in range(tb.shape[1])]
    assert t["rho_ci_low"] == pytest.approx(np.quantile(rhos, 0.025))
    assert t["rho_ci_high"] == pytest.approx(np.quantile(rhos, 0.975))
    assert t["rho_ci_low"] <= t["spearman_rho"] <= t["rho_ci_high"]


def test_rho_interval_is_narrow_for_a_clear_trend_and_wide_for_noise():
    clear = table1(study(2000, 0.03, lambda i: 0.2 + 0.08 * i), SPEC).set_index("measure").loc["zeroshot_top1"]
    noisy = table1(study(100, 0.0, lambda i: 0.5), SPEC).set_index("measure").loc["zeroshot_top1"]
    assert -1.0 <= clear["rho_ci_low"] <= clear["rho_ci_high"] < -0.9
    assert noisy["rho_ci_high"] - noisy["rho_ci_low"] > 1.0  # no trend: rho could be almost anything


def test_peak_range_is_one_epoch_for_a_sharp_peak_and_wide_for_a_flat_series():
    sharp = table1(study(2000, 0.02, lambda i: 0.8 if i == 4 else 0.3), SPEC).set_index("measure")
    flat = table1(study(200, 0.02, lambda i: 0.5), SPEC).set_index("measure")
    s, f = sharp.loc["zeroshot_top1"], flat.loc["zeroshot_top1"]
    assert s["peak_epoch"] == s["peak_epoch_low"] == s["peak_epoch_high"] == 5
    assert f["peak_epoch_high"] - f["peak_epoch_low"] >= 4
    # texture bias (lower is better) falls: its resampled best epoch is the last
    assert sharp.loc["texture_bias", "peak_epoch_low"] >= 6
    view = display_table(table1(study(2000, 0.02, lambda i: 0.8 if i == 4 else 0.3), SPEC))
    assert "95%: 5)" in " ".join(view["Best (epoch)"]) and "[" in " ".join(view["ρ with texture bias"])


def test_no_replicates_no_intervals():
    m = study(200, 0.02, lambda i: 0.3 + 0.04 * i).drop(columns=["replicates"])
    t = table1(m, SPEC)
    assert t["rho_ci_low"].isna().all() and t["peak_epoch_low"].isna().all()
    assert np.isfinite(t.set_index("measure").loc["zeroshot_top1", "spearman_rho"])


def test_interval_helpers_on_hand_made_replicates():
    e = np.arange(4.0)[:, None]
    assert rho_interval(e + np.zeros((4, 50)), e + np.zeros((4, 50))) == (1.0, 1.0)
    assert np.isnan(rho_interval(np.zeros((4, 50)), e + np.zeros((4, 50)))[0])  # constant: undefined
    m = np.zeros((3, 40))
    m[0, :20], m[2, 20:] = 1.0, 1.0  # half the resamples peak at the first epoch, half at the last
    assert peak_range(m, [10, 20, 30], "higher") == (10, 30)
    assert peak_range(-m, [10, 20, 30], "lower") == (10, 30)


def test_the_configured_level_sets_table_1s_intervals_and_says_so(tmp_path):
    """`intervals: level` reaches Table 1 (the rule passes it): a 50% interval lies inside the 95% one,
    the table records its level, and the Markdown and LaTeX views name it."""
    from clipdyn.figures.table import write_table1

    m = study(300, 0.01, lambda i: 0.45 + 0.01 * i)
    wide = table1(m, SPEC).set_index("measure").loc["zeroshot_top1"]
    narrow_table = table1(m, SPEC, level=0.5)
    narrow = narrow_table.set_index("measure").loc["zeroshot_top1"]
    assert (wide["ci_level"], narrow["ci_level"]) == (0.95, 0.5)
    assert wide["rho_ci_low"] < narrow["rho_ci_low"] <= narrow["rho_ci_high"] < wide["rho_ci_high"]
    assert wide["peak_epoch_low"] <= narrow["peak_epoch_low"] <= narrow["peak_epoch_high"] <= wide["peak_epoch_high"]
    _, md, tex = write_table1(narrow_table, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    text = md.read_text()
    assert "50% bootstrap intervals" in text and "25% and 75% quantiles" in text and "95%" not in text
    assert "; 50%: " in text
    assert r"50\% bootstrap intervals" in tex.read_text()
    with pytest.raises(ValueError, match="intervals: level"):
        table1(m, SPEC, level=95)
