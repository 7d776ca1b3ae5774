"""The figures draw each value's bootstrap interval: a band behind every time course, bars on the
robustness scatters; nothing where the table has no intervals."""
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection

from clipdyn.figures import figure1, figure2, figure3, robustness_figures
from tests.unit.test_figures import SPEC, synthetic_metrics


def with_intervals(df, half_width=0.01):
    df = df.copy()
    df["se"] = half_width / 1.96
    df["ci_low"], df["ci_high"] = df["value"] - half_width, df["value"] + half_width
    return df


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


@pytest.mark.parametrize("draw", [figure1, figure2, figure3])
def test_time_courses_draw_a_band_per_model_with_intervals_and_none_without(draw):
    m = synthetic_metrics()
    fig = draw(with_intervals(m), SPEC)
    drawn = [ax for ax in fig.axes if ax.get_lines()]
    assert drawn and all(bands(ax) for ax in drawn)
    # the band spans the interval: value +- 0.01 (accuracies in percent: +- 1)
    ax = next(a for a in drawn if "Texture bias" in a.get_title(loc="left")) if draw is figure1 else drawn[0]
    verts = bands(ax)[0].get_paths()[0].vertices
    assert np.ptp(verts[:, 1]) > 0
    plain = draw(m, SPEC)
    assert not any(bands(ax) for ax in plain.axes)


def test_band_edges_are_the_interval_bounds():
    m = with_intervals(synthetic_metrics(), half_width=0.05)
    fig = figure1(m, dict(SPEC, scale_models=["B-32"]))
    ax = next(a for a in fig.axes if a.get_title(loc="left") == "Texture bias")
    ys = bands(ax)[0].get_paths()[0].vertices[:, 1]
    tb = m[(m.model == "B-32") & (m.measure == "texture_bias") & (m.variant == "imagenet_mapping")]
    assert ys.max() == pytest.approx(tb["ci_high"].max()) and ys.min() == pytest.approx(tb["ci_low"].min())


def test_robustness_scatters_draw_error_bars():
    fig = robustness_figures(with_intervals(synthetic_metrics()), SPEC)
    assert all(any(isinstance(c, LineCollection) for c in ax.collections) for ax in fig.axes if ax.collections)
    plain = robustness_figures(synthetic_metrics(), SPEC)
    assert not any(isinstance(c, LineCollection) for ax in plain.axes for c in ax.collections)
