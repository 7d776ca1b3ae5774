"""Zero-shot classifier of one checkpoint for one class set (open_clip.build_zero_shot_classifier)."""
import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from clipdyn.workflow_steps import text_classifier

p = snakemake.params
text_classifier(checkpoint=snakemake.input.checkpoint, manifest=snakemake.input.get("manifest"),
                out=snakemake.output[0], arch=p.arch, allow_pickle=p.allow_pickle, classset=p.classset,
                model_configs=p.model_configs, provenance=p.provenance, threads=snakemake.threads)
