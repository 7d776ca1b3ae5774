# Figures stage: the study's Figures 1-3, Table 1 and the robustness views, from
# the collected metric table. Params carry the figure settings and a hash of the
# figures package, so they are redrawn only when their numbers, settings or code change.


rule figure:
    input:
        metrics=f"{R}/metrics.parquet",
        # published curves drawn beside ours: an edited CSV redraws the figures
        references=reference_csvs(),
    output:
        pdf=f"{R}/figures/{{figure}}.pdf",
        png=report(
            f"{R}/figures/{{figure}}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        f"{R}/logs/figures/{{figure}}.log",
    wildcard_constraints:
        figure="fig1|fig2|fig3|robustness",
    localrule: True
    conda:
        "../../envs/clipdyn.yaml"
    params:
        spec=figure_spec(),
        code=FIGURE_CODE,
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
    log:
        f"{R}/logs/figures/table1.log",
    localrule: True
    conda:
        "../../envs/clipdyn.yaml"
    params:
        spec=figure_spec(),
        level=STUDY.intervals.level,
        code=TABLE_CODE,
    script:
        "../scripts/render_table1.py"
