# Metrics stage: cheap CPU functions of cached embeddings, one job per (model, metric) over
# all its epochs. Each epoch's result is kept with a key (code hash, options, input file states),
# so a new epoch computes only that epoch and an edited metric recomputes only that metric.
# (One job per (model, epoch, metric) made a 10,000-job DAG; see README "Job granularity".)


rule compute_metric:
    input:
        metric_inputs,
    output:
        f"{R}/metrics/{{model}}/{{metric}}.parquet",
    params:
        job=metric_params,  # one callable per job (see embed_images)
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/compute_metric/{{model}}/{{metric}}.log",
    script:
        "../scripts/compute_metric.py"


rule collect_metrics:
    input:
        all_metric_files(),
    output:
        parquet=f"{R}/metrics.parquet",
        csv=f"{R}/metrics.csv",
    params:
        code=code_of("collect_metrics.py"),
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/collect_metrics.log",
    localrule: True
    script:
        "../scripts/collect_metrics.py"
