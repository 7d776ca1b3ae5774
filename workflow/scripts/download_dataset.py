"""Fetch the needed files of a dataset repo (snapshot_download) or its HTTP archives, and record where they are."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.data.manifests import fetch_dataset

p = snakemake.params
record = fetch_dataset(path=p.path, repo=p.repo, repo_type=p.repo_type, revision=p.revision, files=p.files,
                       extra_files=p.extra_files, out=snakemake.output[0], archives=p.archives,
                       download_dir=p.download_dir, dataset=snakemake.wildcards.dataset)
print(record)
