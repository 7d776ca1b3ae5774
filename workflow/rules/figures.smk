# Figures stage: the study's Figures 1-3, Table 1 and the robustness views, from
# the collected metric table. Params carry the figure settings and a hash of the
# figures package, so they are redrawn only when their numbers, settings or code change.


def figure_spec():
    """The config's `figures:` mapping plus what the models section says about each model."""
    spec = {k: v for k, v in config.get("figures", {}).items() if k != "enabled"}
    spec.setdefault("labels", {})
    spec.setdefault("total_epochs", {})
    spec.setdefault("reference_curves", {})
    for name, m in STUDY.models.items():
        if "label" in m.raw:
            spec["labels"].setdefault(name, m.raw["label"])
        if "total_epochs" in m.raw:
            spec["total_epochs"].setdefault(name, m.raw["total_epochs"])
        if "reference_curve" in m.raw:
            ref = dict(m.raw["reference_curve"])
            csv = ref.pop("file")
            if not Path(csv).is_absolute() and not Path(csv).exists():
                csv = str(Path(workflow.basedir) / csv)
            spec["reference_curves"].setdefault(name, dict(ref, csv=csv))
    return spec


FIGURE_CODE = source_hash("clipdyn.figures")


rule figure:
    input:
        metrics=f"{R}/metrics.parquet",
    output:
        pdf=f"{R}/figures/{{figure}}.pdf",
        png=report(
            f"{R}/figures/{{figure}}.png",
            caption="../report/{figure}.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    params:
        spec=figure_spec(),
        code=FIGURE_CODE,
    wildcard_constraints:
        figure="fig1|fig2|fig3|robustness",
    log:
        f"{R}/logs/figures/{{figure}}.log",
    localrule: True
    script:
        "../scripts/render_figure.py"


rule table1:
    input:
        metrics=f"{R}/metrics.parquet",
    output:
        csv=report(
            f"{R}/figures/table1.csv",
            caption="../report/table1.rst",
            category="Tables",
        ),
        md=f"{R}/figures/table1.md",
        tex=f"{R}/figures/table1.tex",
    params:
        spec=figure_spec(),
        code=FIGURE_CODE,
    log:
        f"{R}/logs/figures/table1.log",
    localrule: True
    script:
        "../scripts/render_table1.py"
