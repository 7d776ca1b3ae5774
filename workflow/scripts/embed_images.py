"""Embed one dataset with one checkpoint; write image_id + embedding (+ spatial maps) to Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.budget import checkpoint_of
from clipdyn.specs import EmbeddingSettings
from clipdyn.worker import run_step

p = snakemake.params
j = p.job
# how the job runs, not what it computes: from the config, not params (switching reruns nothing)
how = EmbeddingSettings.from_config(snakemake.config.get("embedding"))
run_step("clipdyn.embed:embed_images",
         dict(checkpoint=checkpoint_of(snakemake.input.checkpoint), pixels=snakemake.input.pixels,
              pixel_index=snakemake.input.pixel_index, out=snakemake.output[0], arch=j["arch"],
              allow_pickle=j["allow_pickle"], spatial=j["spatial"], batch_size=j["batch_size"],
              **({"saliency_map": j["saliency_map"]} if "saliency_map" in j else {}),
              precision=p.precision, compile=p.compile, model_configs=list(p.model_configs),
              provenance=j["provenance"],
              threads=snakemake.threads),
         log=snakemake.log[0], mode=how.worker, idle_s=how.worker_idle_s)
