# clipdyn: how CLIP models change during training, epoch by epoch.
# The workflow's entry (`snakemake` from the repository root); workflow/Snakefile includes it for
# the Snakemake workflow catalog's layout and module usage.
# Stages: hub (listings, checkpoints, datasets) -> data (manifests, pixel caches)
# -> embed (image embeddings, zero-shot classifiers) -> metrics -> figures.

from snakemake.utils import min_version

min_version("8.0")


# The study by default; `--configfile other.yaml` replaces it rather than being merged into it
# (a merge would mix the study's models and datasets into, say, the demo's).
if not config:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),
