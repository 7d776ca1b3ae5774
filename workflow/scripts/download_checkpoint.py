"""Fetch one checkpoint into the HF cache (by blob) and write the lease one job reads it through."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn import budget

j = snakemake.params.job
# whether a budget is on says how the job runs, not what it fetches: from the config, not params
# (a lease's params are kept with its metadata; a changed one would rerun every consumer)
owner = snakemake.params.owner if snakemake.config.get("checkpoint_budget") else None
path = budget.fetch(j, snakemake.output[0], owner=owner)
print(f"{j['repo']}/{j['filename']} -> {path}")
