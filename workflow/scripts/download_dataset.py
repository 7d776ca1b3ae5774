"""Fetch the needed files of a dataset repo (snapshot_download) and record where they are."""
import json
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn import hub

p = snakemake.params
folder, commit = hub.download_snapshot(p.repo, revision=p.revision, repo_type=p.repo_type,
                                       allow_patterns=p.files or None)
record = {"repo": p.repo, "repo_type": p.repo_type, "revision": p.revision, "commit": commit,
          "files": list(p.files), "path": str(folder)}
with open(snakemake.output[0], "w") as f:
    json.dump(record, f, indent=2)
print(json.dumps(record, indent=2))
