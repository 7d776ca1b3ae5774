"""Manifest of a derived (corrupted) dataset: every source image at every severity."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.data.manifests import derive_manifest

n = derive_manifest(snakemake.input.manifest, snakemake.params.corruption, snakemake.params.severities,
                    snakemake.output.manifest, snakemake.output.trials, dataset=snakemake.wildcards.dataset)
print(f"{n} rows")
