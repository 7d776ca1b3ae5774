"""Fetch one checkpoint into the HF cache and link it into results/ (no copy)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn import hub

p = snakemake.params
path = hub.download_file(p.repo, p.filename, revision=p.revision, repo_type=p.repo_type, expected_blob=p.blob)
hub.link(path, snakemake.output[0])
print(f"{p.repo}/{p.filename} -> {path}")
