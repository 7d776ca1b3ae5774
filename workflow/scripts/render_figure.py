"""Render one figure (fig1, fig2, fig3 or robustness) from the metric table."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

import pandas as pd

from clipdyn import figures

which = snakemake.wildcards.figure
draw = {"fig1": figures.figure1, "fig2": figures.figure2, "fig3": figures.figure3,
        "robustness": figures.robustness_figures}[which]
metrics = pd.read_parquet(snakemake.input.metrics)
draw(metrics, snakemake.params.spec, snakemake.output.pdf, snakemake.output.png)
print(f"{which}: {snakemake.output.pdf}, {snakemake.output.png}")
