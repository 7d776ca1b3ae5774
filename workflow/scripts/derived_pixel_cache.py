"""Corrupted copies of a pixel cache (ImageNet-C style), deterministic per image and severity."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.io import read_meta
from clipdyn.pixels import derive_corrupted

meta = dict(read_meta(snakemake.input.index), dataset=snakemake.wildcards.dataset)
n = derive_corrupted(snakemake.input.pixels, snakemake.input.index, snakemake.params.severities,
                     snakemake.output.pixels, snakemake.output.index,
                     corruption=snakemake.params.corruption, meta=meta)
print(f"{n} corrupted images")
