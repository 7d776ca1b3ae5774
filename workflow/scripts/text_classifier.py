"""Zero-shot classifier of one checkpoint for one class set (open_clip.build_zero_shot_classifier)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.embed.worker import run_job_step
from clipdyn.hub.checkpoints import open_checkpoint

p = snakemake.params
j = p.job
with open_checkpoint(snakemake.input.checkpoint) as checkpoint:
    run_job_step("clipdyn.embed.classifier:text_classifier",
                 dict(checkpoint=str(checkpoint), manifest=snakemake.input.get("manifest"),
                      out=snakemake.output[0], arch=j["arch"], allow_pickle=j["allow_pickle"],
                      classset=j["classset"], model_configs=list(p.model_configs), provenance=j["provenance"],
                      threads=snakemake.threads, precision=p.precision),
                 snakemake)
