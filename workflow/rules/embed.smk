# Embed stage: every (model, epoch, dataset) once, on a GPU when there is one.


rule embed_images:
    input:
        unpack(embed_inputs),
    output:
        f"{R}/embeddings/{{model}}/epoch_{{epoch}}/{{dataset}}.parquet",
    params:
        # one function for everything that varies per job: Snakemake inspects and calls each
        # callable once per job, which is most of a 10,000-job DAG's build time
        job=embed_params,
        precision=EMBED.precision,
        compile=EMBED.compile,
        model_configs=STUDY.model_config_paths,
        code=code_of("embed_images.py"),
    priority: checkpoint_priority
    threads: EMBED.threads
    resources:
        gpu=1,
        mem_mb=job_mem_mb,
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
        job=text_params,
        precision=EMBED.precision,
        model_configs=STUDY.model_config_paths,
        code=code_of("text_classifier.py"),
    priority: checkpoint_priority
    threads: EMBED.threads
    resources:
        gpu=1,
        mem_mb=job_mem_mb,
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/text_classifier/{{model}}/epoch_{{epoch}}/{{classset}}.log",
    script:
        "../scripts/text_classifier.py"
