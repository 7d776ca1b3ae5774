# Embed stage: every (model, epoch, dataset) once, on a GPU when there is one.


rule embed_images:
    input:
        unpack(embed_inputs),
    output:
        f"{R}/embeddings/{{model}}/epoch_{{epoch}}/{{dataset}}.parquet",
    params:
        arch=lambda wc: model_of(wc).arch,
        allow_pickle=lambda wc: model_of(wc).allow_pickle,
        spatial=lambda wc: STUDY.spatial(wc.dataset),
        batch_size=lambda wc: model_of(wc).raw.get(
            "batch_size", EMBED.get("batch_size", 256)
        ),
        precision=EMBED.get("precision", "auto"),
        model_configs=STUDY.model_config_paths,
        provenance=embed_provenance,
        code=source_hash("clipdyn.embed", "clipdyn.devices"),
    threads: EMBED.get("threads", 2)
    resources:
        gpu=1,
        mem_mb=EMBED.get("mem_mb", 8000),
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/embed_images/{{model}}/epoch_{{epoch}}/{{dataset}}.log",
    script:
        "../scripts/embed_images.py"


rule text_classifier:
    input:
        unpack(text_inputs),
    output:
        f"{R}/text/{{model}}/epoch_{{epoch}}/{{classset}}.parquet",
    params:
        arch=lambda wc: model_of(wc).arch,
        allow_pickle=lambda wc: model_of(wc).allow_pickle,
        classset=lambda wc: config["classsets"][wc.classset],
        model_configs=STUDY.model_config_paths,
        provenance=lambda wc: {
            "model": wc.model,
            "arch": model_of(wc).arch,
            "epoch": int(wc.epoch),
            "checkpoint_file": ckpt_file(wc).path,
            "checkpoint_blob": ckpt_file(wc).blob,
            "classset": wc.classset,
        },
        code=source_hash("clipdyn.embed", "clipdyn.devices"),
    threads: EMBED.get("threads", 2)
    resources:
        gpu=1,
        mem_mb=EMBED.get("mem_mb", 8000),
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/text_classifier/{{model}}/epoch_{{epoch}}/{{classset}}.log",
    script:
        "../scripts/text_classifier.py"
