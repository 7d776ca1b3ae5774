# Hub stage: what is published (epochs.tsv), checkpoints, dataset snapshots.
# Checkpoints are identified by content hash (blob), so a new commit that only
# adds epochs reruns nothing for the earlier ones.


rule list_epochs:
    output:
        f"{R}/checkpoints/{{model}}/epochs.tsv",
    log:
        f"{R}/logs/list_epochs/{{model}}.log",
    localrule: True
    conda:
        "../../envs/clipdyn.yaml"
    params:
        listing=lambda wc: [
            [f.epoch, f.path, f.commit, f.blob] for f in model_of(wc).files.values()
        ],
        selected=lambda wc: model_of(wc).epochs,
    script:
        "../scripts/write_epochs.py"


# One lease per job that reads a checkpoint (clipdyn.budget): a temp file naming the checkpoint
# in the HF cache, fetched by identity (repo, revision, file, blob). A consumer added later gets
# its own lease, so no existing consumer's input is ever re-created (nothing reruns).
rule download_checkpoint:
    input:
        unpack(lease_inputs),
    output:
        temp(f"{R}/checkpoints/{{model}}/epoch_{{epoch}}/{{consumer}}.lease"),
    log:
        f"{R}/logs/download_checkpoint/{{model}}/epoch_{{epoch}}/{{consumer}}.log",
    wildcard_constraints:
        consumer=_alt(CONSUMERS),
    priority: checkpoint_priority
    conda:
        "../../envs/clipdyn.yaml"
    resources:
        hub_downloads=1,
    params:
        job=checkpoint_params,  # one callable per job (see embed_images)
        owner=owner_path,  # used only under checkpoint_budget (read from the config: switching reruns nothing)
    script:
        "../scripts/download_checkpoint.py"


# checkpoint_budget: once every job that reads a checkpoint is done, remove it from the HF
# cache (if this workflow put it there); in order, so at most N checkpoints are held.
rule checkpoint_done:
    input:
        unpack(done_inputs),
    output:
        f"{R}/checkpoints/{{model}}/epoch_{{epoch}}.done",
    log:
        f"{R}/logs/checkpoint_done/{{model}}/epoch_{{epoch}}.log",
    priority: checkpoint_priority
    localrule: True
    conda:
        "../../envs/clipdyn.yaml"
    params:
        job=checkpoint_params,
        owner=owner_path,
    script:
        "../scripts/checkpoint_done.py"


rule download_dataset:
    output:
        f"{R}/datasets/{{dataset}}/snapshot.json",
    log:
        f"{R}/logs/download_dataset/{{dataset}}.log",
    wildcard_constraints:
        dataset=_alt(DOWNLOADED),
    conda:
        "../../envs/clipdyn.yaml"
    resources:
        hub_downloads=1,
    params:
        path=lambda wc: STUDY.datasets[wc.dataset].path,
        extra_files=lambda wc: STUDY.datasets[wc.dataset].extra_files,
        repo=lambda wc: STUDY.datasets[wc.dataset].repo,
        repo_type=lambda wc: STUDY.datasets[wc.dataset].repo_type,
        revision=lambda wc: STUDY.datasets[wc.dataset].revision,
        files=lambda wc: list(STUDY.datasets[wc.dataset].files),
        archives=lambda wc: list(STUDY.datasets[wc.dataset].archives),
        download_dir=lambda wc: f"{STUDY.download_dir}/{wc.dataset}",
    script:
        "../scripts/download_dataset.py"
