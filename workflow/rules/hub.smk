# Hub stage: what is published (epochs.tsv), checkpoints, dataset snapshots.
# Checkpoints are identified by content hash (blob), so a new commit that only
# adds epochs reruns nothing for the earlier ones.


rule list_epochs:
    output:
        f"{R}/checkpoints/{{model}}/epochs.tsv",
    params:
        listing=lambda wc: [
            [f.epoch, f.path, f.commit, f.blob]
            for f in model_of(wc).files.values()
        ],
        selected=lambda wc: model_of(wc).epochs,
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/list_epochs/{{model}}.log",
    localrule: True
    script:
        "../scripts/write_epochs.py"


# The output is a symlink into the HF cache, kept (not temp): re-creating a temp
# input would make every job that consumes it look stale.
rule download_checkpoint:
    output:
        f"{R}/checkpoints/{{model}}/epoch_{{epoch}}.pt",
    params:
        job=checkpoint_params,  # one callable per job (see embed_images)
    priority: checkpoint_priority
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/download_checkpoint/{{model}}/epoch_{{epoch}}.log",
    resources:
        hub_downloads=1,
    script:
        "../scripts/download_checkpoint.py"


rule download_dataset:
    output:
        f"{R}/datasets/{{dataset}}/snapshot.json",
    params:
        path=lambda wc: STUDY.datasets[wc.dataset].path,
        extra_files=lambda wc: STUDY.datasets[wc.dataset].extra_files,
        repo=lambda wc: STUDY.datasets[wc.dataset].repo,
        repo_type=lambda wc: STUDY.datasets[wc.dataset].repo_type,
        revision=lambda wc: STUDY.datasets[wc.dataset].revision,
        files=lambda wc: list(STUDY.datasets[wc.dataset].files),
        archives=lambda wc: list(STUDY.datasets[wc.dataset].archives),
        download_dir=lambda wc: f"{STUDY.download_dir}/{wc.dataset}",
    wildcard_constraints:
        dataset=_alt(DOWNLOADED),
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/download_dataset/{{dataset}}.log",
    resources:
        hub_downloads=1,
    script:
        "../scripts/download_dataset.py"
