"""Embed one dataset with one checkpoint; write image_id + embedding (+ spatial maps) to Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.embed.worker import run_job_step
from clipdyn.hub.checkpoints import open_checkpoint

p = snakemake.params
j = p.job
with open_checkpoint(snakemake.input.checkpoint) as checkpoint:
    run_job_step("clipdyn.embed.encode:embed_images",
                 dict(checkpoint=str(checkpoint), pixels=snakemake.input.pixels,
                      pixel_index=snakemake.input.pixel_index, out=snakemake.output[0], arch=j["arch"],
                      allow_pickle=j["allow_pickle"], spatial=j["spatial"], batch_size=j["batch_size"],
                      **({"saliency_map": j["saliency_map"]} if "saliency_map" in j else {}),
                      precision=p.precision, compile=p.compile, model_configs=list(p.model_configs),
                      provenance=j["provenance"], threads=snakemake.threads),
                 snakemake)
