"""Zero-shot classifier of one checkpoint for one class set (open_clip.build_zero_shot_classifier)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.worker import run_step

p = snakemake.params
j = p.job
cfg = snakemake.config.get("embedding", {})  # how the job runs, not what it computes: no params
run_step("clipdyn.classifier:text_classifier",
         dict(checkpoint=snakemake.input.checkpoint, manifest=snakemake.input.get("manifest"),
              out=snakemake.output[0], arch=j["arch"], allow_pickle=j["allow_pickle"], classset=j["classset"],
              model_configs=list(p.model_configs), provenance=j["provenance"], threads=snakemake.threads,
              precision=p.precision),
         log=snakemake.log[0], mode=cfg.get("worker", "auto"), idle_s=cfg.get("worker_idle_s", 120))
