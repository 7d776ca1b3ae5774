"""Compute one metric of one model at every epoch from cached embeddings (unchanged epochs reused)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.metrics.compute import compute_metric

j = snakemake.params.job
w = snakemake.wildcards
compute_metric(files=j["files"], kind=j["kind"], roles=j["inputs"], options=j["options"], spatial=j["spatial"],
               code=j["code"], model=w.model, metric=w.metric, out=snakemake.output[0], intervals=j["intervals"])
