"""Fetch one checkpoint into the HF cache and link it into results/ (no copy)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn import hub

j = snakemake.params.job
path = hub.download_file(j["repo"], j["filename"], revision=j["revision"], repo_type=j["repo_type"],
                         expected_blob=j["blob"])
hub.link(path, snakemake.output[0])
print(f"{j['repo']}/{j['filename']} -> {path}")
