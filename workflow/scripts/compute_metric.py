"""Compute one metric for one (model, epoch) from cached embeddings."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.workflow_steps import compute_metric

j = snakemake.params.job
w = snakemake.wildcards
compute_metric(inputs=dict(snakemake.input), kind=j["kind"], roles=j["inputs"], options=j["options"],
               spatial=j["spatial"], model=w.model, epoch=int(w.epoch), metric=w.metric,
               out_rows=snakemake.output.rows, out_details=snakemake.output.details)
