"""Read a downloaded dataset with its format adapter into the canonical manifest (and trials)."""
import json
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from pathlib import Path

from clipdyn.data.manifests import prepare_manifest

p = snakemake.params
snap = json.loads(Path(snakemake.input.snapshot).read_text())
summary = prepare_manifest(snapshot=snap, fmt=p.format, root=p.root, extract=p.extract,
                           extract_dir=p.extract_dir, options=p.options, subset=p.subset,
                           subset_seed=p.subset_seed, out_manifest=snakemake.output.manifest,
                           out_trials=snakemake.output.trials, dataset=snakemake.wildcards.dataset)
print(summary)
