"""Table 1: per model, texture bias vs every other metric across epochs (CSV, Markdown, LaTeX)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

import pandas as pd

from clipdyn.figures import table1, write_table1

metrics = pd.read_parquet(snakemake.input.metrics)
df = table1(metrics, snakemake.params.spec, level=snakemake.params.level)
write_table1(df, snakemake.output.csv, snakemake.output.md, snakemake.output.tex)
print(df.to_string())
