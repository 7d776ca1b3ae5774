"""Fetch one Hub checkpoint by identity and write its record (clipdyn.hub.checkpoints)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.hub.checkpoints import fetch

f = snakemake.params.fetch
fetch(f["job"], snakemake.output[0], store=f["store"], budget=f["budget"], done=f.get("done", ()))
