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


# One job per Hub checkpoint (clipdyn.hub.checkpoints): fetch it by identity (repo, revision, file,
# blob) and write its permanent record, which every job that reads the checkpoint takes as an
# ancient input. A local rule: downloads run where the network is (a cluster's head node).
rule fetch_checkpoint:
    input:
        fetch_inputs,
    output:
        f"{R}/checkpoints/{{model}}/epoch_{{epoch}}.json",
    log:
        f"{R}/logs/fetch_checkpoint/{{model}}/epoch_{{epoch}}.log",
    priority: checkpoint_priority
    localrule: True
    conda:
        "../../envs/clipdyn.yaml"
    resources:
        hub_downloads=1,
    params:
        fetch=fetch_params,
    run:
        fetch_job(fetch_params=params.fetch, record=output[0], log=log[0])


# checkpoint_budget: every job that reads a checkpoint is done; empty the run's store.
rule release_checkpoints:
    input:
        lambda wc: [f for ck in _HUB_ORDER for f in checkpoint_consumers(*ck)],
    output:
        f"{STORE}/released.json",
    log:
        f"{R}/logs/release_checkpoints.log",
    localrule: True
    conda:
        "../../envs/clipdyn.yaml"
    params:
        store=lambda wc, output: str(Path(output[0]).parent),
    run:
        release_job(store=params.store, out=output[0], log=log[0])


rule download_dataset:
    output:
        f"{R}/datasets/{{dataset}}/snapshot.json",
    log:
        f"{R}/logs/download_dataset/{{dataset}}.log",
    wildcard_constraints:
        dataset=_alt(DOWNLOADED),
    localrule: True  # needs the network, not a GPU (a cluster's compute nodes may have none)
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
