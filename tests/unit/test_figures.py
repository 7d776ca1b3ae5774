"""Figures 1-3, the robustness figure and Table 1 from synthetic tidy metric tables."""

from __future__ import annotations

import math
import struct

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from clipdyn.figures import (
    FigureSpec,
    figure1,
    figure2,
    figure3,
    reference_curve,
    robustness_figures,
    table1,
    write_table1,
)
from clipdyn.figures.spec import DEFAULT_TABLE_MEASURES
from clipdyn.figures.table import display_table, to_latex, to_markdown
from clipdyn.io import METRIC_COLUMNS
from clipdyn.metrics.registry import KINDS

#: measure -> the config entry (``metric``) of the synthetic table that reports it: one per kind
ENTRY = {m.name: kind for kind, k in KINDS.items() for m in k.measures}

IMAGENET = "imagenet1k"
LAION_B32 = "Model-B-32_Data-80M_Samples-34B_lr-1e-3_bs-88k.pt"


def synthetic_metrics(seed: int = 0, epochs: dict | None = None, drop: dict | None = None) -> pd.DataFrame:
    """A tidy metric table shaped like the workflow's, with smooth trends plus noise.

    ``epochs`` maps model -> list of epochs; ``drop`` maps model -> measures it lacks.
    Each row's ``metric`` (config entry) is named after the measure's kind.
    """
    rng = np.random.default_rng(seed)
    epochs = epochs or {"B-32": list(range(1, 33)), "L-14": list(range(1, 21, 2)), "H-14": [1, 2, 4, 8, 12]}
    drop = drop if drop is not None else {"H-14": {"saliency_alignment", "mid_level_alignment"},
                                          "L-14": {"ood_auroc", "ood_fpr95"}}
    rows = []

    def add(model, epoch, measure, dataset, variant, value, n=100):
        if measure not in drop.get(model, set()):
            rows.append((model, epoch, ENTRY[measure], measure, dataset, variant, float(value), n))

    for k, (model, eps) in enumerate(epochs.items()):
        total = max(eps)
        for e in eps:
            t = e / total
            noise = lambda s=0.01: rng.normal(0, s)  # noqa: E731
            acc = 0.55 + 0.1 * k - 0.5 * math.exp(-5 * t) + noise()
            add(model, e, "zeroshot_top1", IMAGENET, "", acc, 1000)
            add(model, e, "zeroshot_top5", IMAGENET, "", min(acc + 0.2, 1), 1000)
            tex = 0.45 + 0.25 * t - 0.05 * k + noise(0.02)
            for rule, shift in (("imagenet_mapping", 0.0), ("category_prompts", -0.05)):
                add(model, e, "texture_bias", "cue-conflict", rule, tex + shift, 1200)
                add(model, e, "shape_bias", "cue-conflict", rule, 1 - tex - shift, 1200)
                add(model, e, "cue_conflict_shape_accuracy", "cue-conflict", rule, 0.2 + 0.1 * t, 1200)
                add(model, e, "cue_conflict_texture_accuracy", "cue-conflict", rule, 0.4 + 0.2 * t, 1200)
            sens = []
            for s in range(6):
                a = acc * (1 - 0.12 * s * (1 - 0.4 * t)) + noise(0.005)
                add(model, e, "noise_accuracy", "imagenet-noise", f"severity_{s}", a, 500)
                if s:
                    sens.append((acc - a) / acc)
                    add(model, e, "noise_sensitivity", "imagenet-noise", f"severity_{s}", sens[-1], 500)
            add(model, e, "noise_sensitivity", "imagenet-noise", "mean", np.mean(sens), 500)
            for variant, scale in (("spearman", 1.0), ("pearson", 0.95), ("kendall", 0.7)):
                per = {d: scale * (0.3 + 0.3 * t + off) + noise(0.02) for d, off in (("tid2013", 0.0),
                                                                                  ("kadid10k", 0.1))}
                for d, v in per.items():
                    add(model, e, "low_level_alignment", d, variant, v, 300)
                add(model, e, "low_level_alignment", "mean", variant, np.mean(list(per.values())), 600)
            add(model, e, "mid_level_alignment", "nights-like", "2afc", 0.6 + 0.2 * t - 0.1 * t * t + noise(), 200)
            add(model, e, "mid_level_alignment", "nights-like", "majority", 0.55 + 0.2 * t + noise(), 200)
            for variant, base in (("cc", 0.3), ("nss", 1.0), ("auc_judd", 0.7)):
                add(model, e, "saliency_alignment", "salicon-like", variant, base + 0.1 * t + noise(), 50)
            for d in (IMAGENET, "imagenet-sketch"):
                add(model, e, "ece", d, "raw", 0.12 - 0.06 * t + noise(0.005), 1000)
                add(model, e, "ece", d, "temperature_scaled", 0.04 - 0.01 * t + abs(noise(0.003)), 1000)
                add(model, e, "nll", d, "raw", 2.5 - t + noise(), 1000)
                add(model, e, "temperature", d, "fitted", 1.2 + noise(), 1000)
            for d, off in (("textures-like", 0.0), ("inaturalist-like", 0.08)):
                add(model, e, "ood_auroc", d, "mcm", 0.6 + 0.25 * t + off + noise(), 400)
                add(model, e, "ood_fpr95", d, "mcm", 0.9 - 0.3 * t - off + noise(), 400)
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


SPEC = {
    "base_model": "B-32",
    "scale_models": ["B-32", "L-14", "H-14"],
    "labels": {"B-32": "ViT-B/32", "L-14": "ViT-L/14", "H-14": "ViT-H/14"},
    "reference_curves": {"B-32": {"run": LAION_B32}},
}


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return synthetic_metrics()


def assert_pdf(path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-"), f"{path} is not a PDF"
    assert b"%%EOF" in data[-64:], f"{path} is truncated"
    assert 5_000 < len(data) < 5_000_000, f"{path} has a suspicious size {len(data)}"


def assert_png(path, fig, dpi: int = 200) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    with Image.open(path) as im:
        im.verify()
    # constrained layout keeps the figure size, so the pixels follow from inches x dpi
    w_in, h_in = fig.get_size_inches()
    assert (width, height) == (round(w_in * dpi), round(h_in * dpi))
    assert len(data) > 20_000


def all_texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))


@pytest.mark.parametrize("draw, name", [(figure1, "fig1"), (figure2, "fig2"), (figure3, "fig3"),
                                        (robustness_figures, "robustness")])
def test_every_figure_writes_pdf_and_png(metrics, tmp_path, draw, name):
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    fig = draw(metrics, SPEC, pdf, png)
    assert_pdf(pdf)
    assert_png(png, fig)
    assert not list(tmp_path.glob(".*")), "temporary files were left behind"


def test_figures_are_byte_identical_across_runs(metrics, tmp_path):
    figure1(metrics, SPEC, tmp_path / "a.pdf", tmp_path / "a.png")
    figure1(metrics, SPEC, tmp_path / "b.pdf", tmp_path / "b.png")
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_missing_metric_is_noted_not_drawn_as_zero(metrics):
    fig = figure3(metrics, SPEC)
    ax_by_title = {ax.get_title(loc="left"): ax for ax in fig.axes}
    sal = ax_by_title["Saliency alignment"]
    assert "no data for ViT-H/14" in all_texts(sal)
    assert [line.get_label() for line in sal.get_lines()] == ["ViT-B/32", "ViT-L/14"]
    assert "no data for" not in all_texts(ax_by_title["Zero-shot top-1 accuracy"])
    rob = robustness_figures(metrics, SPEC)
    ood = {ax.get_title(loc="left"): ax for ax in rob.axes}["OOD detection"]
    assert "no data for ViT-L/14" in all_texts(ood)


def test_base_model_without_a_metric_gets_a_note(tmp_path):
    m = synthetic_metrics(drop={"B-32": {"mid_level_alignment", "low_level_alignment", "texture_bias"}})
    fig2 = figure2(m, SPEC, None, tmp_path / "f2.png")  # drawing too must cope with empty panels
    texts = all_texts(fig2)
    assert texts.count("no data for ViT-B/32") == 2
    fig1 = figure1(m, SPEC)
    tex_ax = [ax for ax in fig1.axes if ax.get_title(loc="left").startswith("Texture bias")][0]
    assert "no data for ViT-B/32" in all_texts(tex_ax)
    # only the human reference line is drawn, nothing at zero
    assert [line.get_label() for line in tex_ax.get_lines()][0].startswith("humans")
    assert len(tex_ax.get_lines()) == 1


def test_metric_absent_from_whole_table(tmp_path):
    m = synthetic_metrics(drop={mod: {"saliency_alignment", "ece", "ood_auroc", "shape_bias"}
                                for mod in ("B-32", "L-14", "H-14")})
    for draw in (figure2, figure3, robustness_figures):
        fig = draw(m, SPEC, None, tmp_path / "x.png")
        assert_png(tmp_path / "x.png", fig)
    t = table1(m, SPEC)
    assert not {"saliency_alignment", "ece", "ood_auroc"} & set(t["measure"])


def test_figure1_draws_published_curve_and_human_line(metrics):
    fig = figure1(metrics, SPEC)
    acc_ax, tex_ax = fig.axes[:2]
    labels = [line.get_label() for line in acc_ax.get_lines()]
    assert labels == ["ViT-B/32", "published"]
    pub = acc_ax.get_lines()[1]
    # clipped to the measured epochs, in percent
    assert pub.get_xdata().min() >= 1 and pub.get_xdata().max() <= 32
    ref = reference_curve({"run": LAION_B32})
    assert np.allclose(pub.get_ydata(), ref.loc[ref["epoch"].between(1, 32), "value"])
    human = [line for line in tex_ax.get_lines() if line.get_label().startswith("humans")]
    assert len(human) == 1 and np.allclose(human[0].get_ydata(), 0.04)
    assert "Geirhos et al. 2019" in all_texts(tex_ax)  # the source is written next to the line
    assert "%" in acc_ax.get_ylabel() and "↑" in acc_ax.get_ylabel()
    assert "↓" in tex_ax.get_ylabel()
    # accuracy stored as a fraction is drawn in percent
    own = acc_ax.get_lines()[0].get_ydata()
    assert 5 < np.nanmax(own) <= 100


def test_fraction_axis(metrics):
    fig = figure3(metrics, dict(SPEC, x_axis="fraction", total_epochs={"L-14": 40}))
    ax = fig.axes[0]
    by_label = {line.get_label(): line for line in ax.get_lines()}
    assert np.isclose(by_label["ViT-H/14"].get_xdata().max(), 1.0)  # default: last epoch seen
    assert np.isclose(by_label["ViT-L/14"].get_xdata().max(), 19 / 40)  # configured total
    # a model with a published run: that run's length, for its own line and the published one alike
    laion_total = reference_curve({"run": LAION_B32})["epoch"].max()
    assert np.isclose(by_label["ViT-B/32"].get_xdata().max(), 32 / laion_total)
    assert np.isclose(by_label["ViT-B/32, published"].get_xdata().max(), 32 / laion_total)
    assert "fraction of training" in fig.get_supxlabel()


def test_epoch_axis_has_integer_ticks(metrics):
    fig = figure2(metrics, dict(SPEC, base_model="H-14"))
    for ax in fig.axes:
        ticks = ax.get_xticks()
        assert np.allclose(ticks, np.round(ticks))


def test_reference_curve_is_a_fraction_turned_percent():
    ref = reference_curve({"run": LAION_B32.removesuffix(".pt")})
    assert ref["epoch"].is_monotonic_increasing and ref["epoch"].is_unique
    raw = pd.read_csv(__import__("importlib.resources").resources.files("clipdyn")
                      .joinpath("figures/laion_imagenet_zeroshot_curves.csv"))
    raw = raw[raw["name"] == LAION_B32]
    assert raw["imagenet-zeroshot-val-top1"].max() <= 1.0
    assert np.isclose(ref["value"].max(), 100 * raw["imagenet-zeroshot-val-top1"].max())
    with pytest.raises(ValueError, match="not in the reference CSV"):
        reference_curve({"run": "Model-Z-99"})


def test_table1_correlations_match_scipy(metrics):
    t = table1(metrics, SPEC)
    assert list(t["model"].unique()) == ["B-32", "L-14", "H-14"]
    m = metrics
    checked = 0
    for r in t[t["measure"] != "texture_bias"].itertuples():
        tb = m[(m.model == r.model) & (m.measure == "texture_bias") & (m.variant == "imagenet_mapping")]
        other = m[(m.model == r.model) & (m.measure == r.measure) & (m.dataset == r.dataset)
                  & (m.variant == r.variant)]
        both = tb.merge(other, on="epoch")
        if len(both) < 3:
            assert math.isnan(r.spearman_rho)
            continue
        expected = stats.spearmanr(both["value_x"], both["value_y"])
        assert r.n_epochs == len(both)
        assert np.isclose(r.spearman_rho, expected.statistic)
        assert np.isclose(r.p_value, expected.pvalue)
        checked += 1
    assert checked >= 15


def test_table1_rows_choices_and_peaks(metrics):
    t = table1(metrics, SPEC).set_index(["model", "measure"])
    b = t.loc["B-32"]
    assert list(b.index) == ["texture_bias"] + DEFAULT_TABLE_MEASURES
    assert b.loc["low_level_alignment", "dataset"] == "mean"
    assert b.loc["low_level_alignment", "variant"] == "spearman"
    assert b.loc["noise_sensitivity", "variant"] == "mean"
    assert b.loc["ece", "dataset"] == IMAGENET and b.loc["ece", "variant"] == "raw"
    # lower-is-better metrics peak at their minimum, others at their maximum
    m = metrics
    ns = m[(m.model == "B-32") & (m.measure == "noise_sensitivity") & (m.variant == "mean")]
    assert b.loc["noise_sensitivity", "peak_rule"] == "min"
    assert b.loc["noise_sensitivity", "peak_epoch"] == ns.loc[ns.value.idxmin(), "epoch"]
    acc = m[(m.model == "B-32") & (m.measure == "zeroshot_top1")]
    assert b.loc["zeroshot_top1", "peak_rule"] == "max"
    assert b.loc["zeroshot_top1", "peak_epoch"] == acc.loc[acc.value.idxmax(), "epoch"]
    assert np.isclose(b.loc["zeroshot_top1", "first_value"], 100 * acc.sort_values("epoch").value.iloc[0])
    assert b.loc["zeroshot_top1", "last_epoch"] == 32
    # missing metrics are rows with a note, not zeros
    h = t.loc[("H-14", "saliency_alignment")]
    assert math.isnan(h["spearman_rho"]) and math.isnan(h["first_value"]) and "no data" in h["note"]


def test_table1_needs_three_shared_epochs():
    m = synthetic_metrics(epochs={"B-32": [1, 2], "L-14": [1, 2, 3]}, drop={})
    t = table1(m, {"scale_models": ["B-32", "L-14"]}).set_index(["model", "measure"])
    short = t.loc[("B-32", "zeroshot_top1")]
    assert math.isnan(short["spearman_rho"]) and math.isnan(short["p_value"])
    assert "fewer than 3 shared epochs (n=2)" in short["note"]
    assert not math.isnan(t.loc[("L-14", "zeroshot_top1"), "spearman_rho"])


def test_write_table1(metrics, tmp_path):
    t = table1(metrics, SPEC)
    paths = write_table1(t, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    assert [p.name for p in paths] == ["t.csv", "t.md", "t.tex"]
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back.columns) == list(t.columns) and len(back) == len(t)
    assert np.allclose(back["spearman_rho"], t["spearman_rho"].astype(float), rtol=1e-5, equal_nan=True)
    md = (tmp_path / "t.md").read_text()
    header = [line for line in md.splitlines() if line.startswith("| Model")]
    assert len(header) == 1 and md.count("\n| ") == len(t) + 1
    tex = (tmp_path / "t.tex").read_text()
    assert tex.count(r"\\") >= len(t) + 1 and r"\toprule" in tex and "\\begin{tabular}" in tex
    assert "_" not in tex.replace(r"\_", "")  # every underscore escaped


def test_markdown_and_latex_escape():
    df = pd.DataFrame({"Model": ["a|b"], "Metric": ["x_1 & 50%"], "Note": ["ρ ↑"]})
    assert "a\\|b" in to_markdown(df)
    tex = to_latex(df)
    assert r"x\_1 \& 50\%" in tex and r"$\rho$ $\uparrow$" in tex


def test_display_table_marks_direction(metrics):
    view = display_table(table1(metrics, SPEC))
    ns = view[view["Metric"].str.startswith("Noise sensitivity")].iloc[0]
    assert ns["Metric"].endswith("↓")
    acc = view[view["Metric"].str.startswith("Zero-shot")].iloc[0]
    assert "%" in acc["Metric"] and acc["Metric"].endswith("↑")


def test_spec_selection_and_validation(metrics):
    spec = FigureSpec.from_config({"panels": {"texture_bias": {"variant": "category_prompts"}}})
    assert spec.series(metrics, "texture_bias").variant == "category_prompts"
    assert spec.series(metrics, "zeroshot_top1").dataset == IMAGENET
    assert spec.series(metrics, "saliency_alignment").variant == "cc"
    assert spec.series(metrics, "mid_level_alignment").variant == "2afc"
    assert spec.series(metrics, "no_such_metric") is None
    assert spec.resolve_base_model(metrics) == "B-32"  # first model in sorted order
    assert FigureSpec.from_config({"scale_models": ["L-14", "B-32"]}).resolve_base_model(metrics) == "L-14"
    assert FigureSpec.from_config({"human_texture_bias": None}).human_texture_bias is None
    with pytest.raises(ValueError, match="no rows in the metric table"):
        figure1(metrics, {"base_model": "B-23"})
    with pytest.raises(ValueError, match="no rows in the metric table"):
        table1(metrics, {"scale_models": ["B-32", "L-41"]})
    with pytest.raises(ValueError, match="unknown figure config keys"):
        FigureSpec.from_config({"base_modle": "B-32"})
    with pytest.raises(ValueError, match="x_axis"):
        FigureSpec.from_config({"x_axis": "steps"})
    with pytest.raises(ValueError, match="run"):
        FigureSpec.from_config({"reference_curves": {"B-32": {"csv": "x.csv"}}})


def test_accuracy_scale(metrics):
    pct = metrics.copy()
    acc = pct["measure"].isin(["zeroshot_top1", "zeroshot_top5", "noise_accuracy"])
    pct.loc[acc, "value"] *= 100
    assert FigureSpec().accuracy_factor(metrics) == 100.0
    assert FigureSpec().accuracy_factor(pct) == 1.0
    a = table1(metrics, SPEC).set_index(["model", "measure"])["last_value"]
    b = table1(pct, SPEC).set_index(["model", "measure"])["last_value"]
    assert np.allclose(a, b, equal_nan=True)


def test_two_entries_of_one_kind_are_told_apart_by_metric(metrics, tmp_path):
    # a second shape_bias entry with other options reports the same measures, datasets and variants
    other = metrics[metrics["metric"] == "shape_bias"].assign(metric="shape_bias_b", value=lambda d: d["value"] / 2)
    both = pd.concat([metrics, other], ignore_index=True)
    spec = FigureSpec.from_config(SPEC)
    assert spec.series(both, "texture_bias").metric == "shape_bias"  # first entry in sorted order
    pick = FigureSpec.from_config(dict(SPEC, panels={"texture_bias": {"metric": "shape_bias_b"}}))
    s = pick.series(both, "texture_bias")
    assert (s.metric, s.variant) == ("shape_bias_b", "imagenet_mapping")
    t = table1(both, dict(SPEC, panels={"texture_bias": {"metric": "shape_bias_b"}})).set_index(["model", "measure"])
    ref = table1(metrics, SPEC).set_index(["model", "measure"])
    assert t.loc[("B-32", "texture_bias"), "metric"] == "shape_bias_b"
    assert t.loc[("B-32", "texture_bias"), "last_value"] == pytest.approx(ref.loc[("B-32", "texture_bias"),
                                                                                  "last_value"] / 2)
    figure1(both, SPEC, tmp_path / "f.pdf", tmp_path / "f.png")  # no "several values for one point"


def test_duplicate_points_are_refused(metrics):
    with pytest.raises(ValueError, match="several values for one point"):
        figure1(pd.concat([metrics, metrics.head(1)]), SPEC)
