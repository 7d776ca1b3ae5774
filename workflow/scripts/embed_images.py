"""Embed one dataset with one checkpoint; write image_id + embedding (+ spatial maps) to Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.workflow_steps import embed_images

p = snakemake.params
embed_images(checkpoint=snakemake.input.checkpoint, pixels=snakemake.input.pixels,
             pixel_index=snakemake.input.pixel_index, out=snakemake.output[0], arch=p.arch,
             allow_pickle=p.allow_pickle, spatial=p.spatial, batch_size=p.batch_size, precision=p.precision,
             model_configs=p.model_configs, provenance=p.provenance, threads=snakemake.threads)
