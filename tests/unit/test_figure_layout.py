"""Every figure's text stays on the canvas and clear of every other text.

Figures 1-3 and the robustness view are rendered from two synthetic metric tables whose rows
are the ones the workflow would write for a config: the demo's (``config/demo.yaml``) and the
shipped study's (``config/config.yaml``: three models, 33 epochs each, long dataset and variant
names), with each config's labels, x axis and reference curves. A text whose rendered bounding
box leaves the figure or overlaps another text's fails the test, naming both texts.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from test_figures import synthetic_metrics

from clipdyn.figures import figure1, figure2, figure3, robustness_figures
from clipdyn.figures.style import style
from clipdyn.io import METRIC_COLUMNS

REPO = Path(__file__).resolve().parents[2]
FIGURES = {"fig1": figure1, "fig2": figure2, "fig3": figure3, "robustness": robustness_figures}
#: a text may touch the canvas edge or a neighbour by this many pixels (anti-aliasing, rounding)
TOLERANCE_PX = 1.0


# ----------------------------------------------------------------------------- tables from configs

def _rows_of(kind: str, inputs: dict, options: dict) -> list:
    """(measure, dataset, variant) of the rows one ``metrics:`` entry of ``kind`` writes."""
    one = lambda role: [inputs[role]]  # noqa: E731
    many = lambda role: list(inputs.get(role) or [])  # noqa: E731
    if kind == "zeroshot_accuracy":
        return [(m, d, "") for m in ("zeroshot_top1", "zeroshot_top5") for d in one("dataset")]
    if kind == "shape_bias":
        rule = options.get("decision", "imagenet_mapping")
        return [(m, d, rule) for m in ("shape_bias", "texture_bias", "cue_conflict_shape_accuracy",
                                       "cue_conflict_texture_accuracy", "fraction_correct_shape",
                                       "fraction_correct_texture") for d in one("dataset")]
    if kind == "noise_sensitivity":
        noisy = inputs["noisy"]
        return ([("noise_accuracy", noisy, f"severity_{s}") for s in range(6)]
                + [("noise_sensitivity", noisy, f"severity_{s}") for s in range(1, 6)]
                + [("noise_sensitivity", noisy, "mean")])
    if kind == "low_level_alignment":
        return [("low_level_alignment", d, v) for d in many("datasets") + ["mean"]
                for v in ("spearman", "pearson", "kendall")]
    if kind == "mid_level_alignment":
        return [("mid_level_alignment", d, v) for d in one("dataset") for v in ("unanimous", "2afc", "majority")]
    if kind == "saliency_alignment":
        return [("saliency_alignment", d, v) for d in one("dataset") for v in ("cc", "nss", "auc_judd")]
    if kind == "calibration":
        sets = one("in_distribution") + many("shifted")
        return ([(m, d, v) for m in ("ece", "nll") for d in sets for v in ("raw", "temperature_scaled")]
                + [("temperature", d, "fitted") for d in sets])
    if kind == "ood_detection":
        return [(m, d, "mcm") for m in ("ood_auroc", "ood_fpr95") for d in many("ood")]
    raise AssertionError(f"no synthetic rows for metric kind {kind!r}")


def _epochs(n: int, total: int) -> list:
    return sorted({int(round(e)) for e in np.linspace(1, total, n)})


def metrics_for_config(config: dict, n_epochs: int, seed: int = 0) -> pd.DataFrame:
    """A metric table with the rows ``config`` would give, ``n_epochs`` per model, smooth values in range."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, (model, m) in enumerate(config["models"].items()):
        total = int(m.get("total_epochs") or n_epochs)
        for e in _epochs(n_epochs, total):
            t = e / total
            for name, metric in config["metrics"].items():
                for measure, dataset, variant in _rows_of(metric["kind"], metric["inputs"],
                                                          metric.get("options") or {}):
                    value = float(np.clip(0.2 + 0.5 * t + 0.05 * k + rng.normal(0, 0.02), 0.01, 0.99))
                    rows.append((model, e, name, measure, dataset, variant, value, 1000))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def spec_for_config(config: dict) -> dict:
    """The figure spec the workflow builds (``figure_spec`` in workflow/rules/common.smk)."""
    spec = dict(config.get("figures") or {})
    spec.setdefault("labels", {})
    spec.setdefault("total_epochs", {})
    spec.setdefault("reference_curves", {})
    for name, m in config["models"].items():
        if m.get("label") is not None:
            spec["labels"].setdefault(name, m["label"])
        if m.get("total_epochs") is not None:
            spec["total_epochs"].setdefault(name, m["total_epochs"])
        if m.get("reference_curve") is not None:
            ref = dict(m["reference_curve"])
            spec["reference_curves"].setdefault(name, dict(ref, csv=str(REPO / ref.pop("file"))))
    return spec


def _config(name: str) -> dict:
    from clipdyn.config.study import apply_base

    return apply_base(yaml.safe_load((REPO / "config" / name).read_text()), [REPO])


CASES = {
    "demo": lambda: (metrics_for_config(_config("demo.yaml"), n_epochs=8), spec_for_config(_config("demo.yaml"))),
    "study": lambda: (metrics_for_config(_config("config.yaml"), n_epochs=33),
                      spec_for_config(_config("config.yaml"))),
    # the CIFAR-100 variant: only accuracy and noise rows, every other panel says "no data"
    "cifar100": lambda: (metrics_for_config(_config("cifar100.yaml"), n_epochs=33),
                         spec_for_config(_config("cifar100.yaml"))),
    # the unit tests' own table: several models with missing measures (notes in the panels)
    "synthetic": lambda: (synthetic_metrics(), {"base_model": "B-32", "labels": {"B-32": "ViT-B/32"}}),
}


# ----------------------------------------------------------------------------- the check

def _visible_ticks(fig) -> set:
    """The tick-label texts of the ticks each axis draws (those inside its view interval)."""
    keep = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = hi - lo
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is not None and lo - 1e-9 * span <= loc <= hi + 1e-9 * span:
                    keep.update({id(tick.label1), id(tick.label2)})
    return keep


def _all_ticks(fig) -> set:
    return {id(lab) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks() for lab in (tick.label1, tick.label2)}


def layout_problems(fig, png: Path) -> list:
    """Texts leaving the canvas or overlapping another text, after drawing ``fig`` as ``png``."""
    with style():
        canvas = FigureCanvasAgg(fig)
        fig.savefig(png, dpi=100)
        canvas.draw()
        renderer = canvas.get_renderer()
        ticks, visible_ticks = _all_ticks(fig), _visible_ticks(fig)
        texts = []
        for t in fig.findobj(Text):
            if not t.get_visible() or not t.get_text().strip():
                continue
            if id(t) in ticks and id(t) not in visible_ticks:
                continue
            box = t.get_window_extent(renderer)
            if box.width > 0 and box.height > 0:
                texts.append((repr(t.get_text())[:60], box))
    canvas_box = fig.bbox
    tol = TOLERANCE_PX
    problems = []
    for name, box in texts:
        if (box.x0 < canvas_box.x0 - tol or box.y0 < canvas_box.y0 - tol or box.x1 > canvas_box.x1 + tol
                or box.y1 > canvas_box.y1 + tol):
            problems.append(f"{name} leaves the canvas: {np.round(box.extents, 1).tolist()} "
                            f"not inside {np.round(canvas_box.extents, 1).tolist()}")
    for (n1, b1), (n2, b2) in itertools.combinations(texts, 2):
        w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if w > tol and h > tol:
            problems.append(f"{n1} overlaps {n2} by {w:.1f} x {h:.1f} px")
    return problems


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_texts_stay_on_the_canvas_and_apart(case, name, tmp_path):
    metrics, spec = CASES[case]()
    fig = FIGURES[name](metrics, spec)
    problems = layout_problems(fig, tmp_path / f"{case}-{name}.png")
    assert not problems, f"{name} ({case} labels):\n" + "\n".join(problems)


def test_the_check_sees_a_label_off_the_canvas_and_an_overlap(tmp_path):
    """The check itself: a y label longer than its axes, and two texts on one spot, are caught."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), layout="constrained")
    ax = fig.subplots()
    ax.set_ylabel("a very long y label " * 4)
    ax.text(0.5, 0.5, "here", transform=ax.transAxes)
    ax.text(0.5, 0.5, "there", transform=ax.transAxes)
    problems = layout_problems(fig, tmp_path / "bad.png")
    assert any("leaves the canvas" in p and "very long" in p for p in problems), problems
    assert any("'here' overlaps 'there'" in p for p in problems), problems
