"""Fetch one checkpoint into the HF cache (by blob) and write the lease one job reads it through."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn import budget

j = snakemake.params.job
path = budget.fetch(j, snakemake.output[0], owner=snakemake.params.owner)
print(f"{j['repo']}/{j['filename']} -> {path}")
