# Embed stage: every (model, epoch, dataset) once, on a GPU when there is one.


rule embed_images:
    input:
        unpack(embed_inputs),
    output:
        f"{R}/embeddings/{{model}}/epoch_{{epoch}}/{{dataset}}.parquet",
    log:
        f"{R}/logs/embed_images/{{model}}/epoch_{{epoch}}/{{dataset}}.log",
    priority: checkpoint_priority
    conda:
        "../../envs/clipdyn.yaml"
    threads: EMBED.threads
    resources:
        gpu=1,
        mem_mb=job_mem_mb,
        runtime=embed_runtime_min,
    params:
        # one function for everything that varies per job: Snakemake inspects and calls each
        # callable once per job, which is most of a 10,000-job DAG's build time
        job=embed_params,
        precision=EMBED.precision,
        compile=EMBED.compile,
        model_configs=STUDY.model_config_paths,
        code=code_of("clipdyn.embed.jobs:embed_images_job"),
    run:
        embed_images_job(
            input=input,
            output=output[0],
            params=params,
            threads=threads,
            log=log[0],
            how=EMBED,
            conda_env=conda_env,
        )


rule text_classifier:
    input:
        unpack(text_inputs),
    output:
        f"{R}/text/{{model}}/epoch_{{epoch}}/{{classset}}.parquet",
    log:
        f"{R}/logs/text_classifier/{{model}}/epoch_{{epoch}}/{{classset}}.log",
    priority: checkpoint_priority
    conda:
        "../../envs/clipdyn.yaml"
    threads: EMBED.threads
    resources:
        gpu=1,
        mem_mb=job_mem_mb,
    params:
        job=text_params,
        precision=EMBED.precision,
        model_configs=STUDY.model_config_paths,
        code=code_of("clipdyn.embed.jobs:text_classifier_job"),
    run:
        text_classifier_job(
            input=input,
            output=output[0],
            params=params,
            threads=threads,
            log=log[0],
            how=EMBED,
            conda_env=conda_env,
        )
