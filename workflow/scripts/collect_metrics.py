"""Collect every metric row into results/metrics.parquet and .csv."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.metrics.compute import collect_metrics

n = collect_metrics(list(snakemake.input), snakemake.output.parquet, snakemake.output.csv)
print(f"{n} metric rows from {len(snakemake.input)} files")
