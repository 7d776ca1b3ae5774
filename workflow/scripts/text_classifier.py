"""Zero-shot classifier of one checkpoint for one class set (open_clip.build_zero_shot_classifier)."""
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
run_step("clipdyn.classifier:text_classifier",
         dict(checkpoint=checkpoint_of(snakemake.input.checkpoint), manifest=snakemake.input.get("manifest"),
              out=snakemake.output[0], arch=j["arch"], allow_pickle=j["allow_pickle"], classset=j["classset"],
              model_configs=list(p.model_configs), provenance=j["provenance"], threads=snakemake.threads,
              precision=p.precision),
         log=snakemake.log[0], mode=how.worker, idle_s=how.worker_idle_s)
