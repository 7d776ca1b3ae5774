"""Single-checkpoint models (final-model zoos) in the figures: one point per model in the
robustness views, with an optional robust (Theil-Sen) linear fit; Table 1 says why it has
no correlation for them."""

import numpy as np
import pytest
from scipy import stats
from test_figures import synthetic_metrics

from clipdyn import figures
from clipdyn.figures.robustness import theil_sen
from clipdyn.figures.table import table1

ZOO = {"B-16": [32], "L-14": [32], "H-14": [32], "g-14": [32]}  # final models, one epoch each


def test_theil_sen_ignores_an_outlying_model():
    x = np.arange(10.0)
    y = 2 * x + 1
    y[3] = 100.0
    assert theil_sen(x, y) == pytest.approx((2.0, 1.0))
    assert np.polyfit(x, y, 1)[0] != pytest.approx(2.0, abs=0.1)  # least squares is pulled away
    assert theil_sen([1, 2], [1, 2]) is None and theil_sen([1, 1, 1], [1, 2, 3]) is None


def test_zoo_robustness_view_has_one_point_per_model_and_the_fit(tmp_path):
    metrics = synthetic_metrics(epochs=ZOO, drop={})
    spec = {"scale_models": list(ZOO), "robust_fit": "theil_sen"}
    fig = figures.robustness_figures(metrics, spec, tmp_path / "r.pdf", tmp_path / "r.png")
    ax_shape = fig.axes[2]
    pts = ax_shape.collections  # one scatter per model, one point each
    assert len(pts) == 4 and all(len(c.get_offsets()) == 1 for c in pts)
    acc = metrics.query("measure == 'zeroshot_top1'").set_index("model")["value"] * 100
    sb = metrics.query("measure == 'shape_bias' and variant == 'imagenet_mapping'").set_index("model")["value"]
    slope = stats.theilslopes(sb[list(ZOO)].to_numpy(), acc[list(ZOO)].to_numpy())[0]
    texts = [t.get_text() for t in ax_shape.texts]
    assert f"Theil-Sen slope {slope:.3g} (n=4)" in texts, texts
    assert any(line.get_linestyle() == "-." for line in ax_shape.lines)
    assert (tmp_path / "r.png").stat().st_size > 1000
    plain = figures.robustness_figures(metrics, {"scale_models": list(ZOO)})
    assert not any("Theil-Sen" in t.get_text() for t in plain.axes[2].texts)


def test_figures_and_table1_take_single_point_models(tmp_path):
    metrics = synthetic_metrics(epochs={"run": [1, 2, 3, 4, 5], "final": [32]}, drop={})
    spec = {"base_model": "final", "scale_models": ["run", "final"]}
    for draw in (figures.figure1, figures.figure2, figures.figure3):
        draw(metrics, spec, tmp_path / "f.pdf", tmp_path / "f.png")
    t = table1(metrics, spec)
    final = t[t["model"] == "final"]
    assert final["spearman_rho"].isna().all()
    assert final["note"].str.contains("fewer than").any()
    with pytest.raises(ValueError, match="robust_fit"):
        figures.robustness_figures(metrics, {"robust_fit": "ols"})
