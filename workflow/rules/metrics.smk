# Metrics stage: cheap CPU functions of cached embeddings, one job per (model, metric) over
# all its epochs. Each epoch's result is kept with a key (code hash, options, input file states),
# so a new epoch computes only that epoch and an edited metric recomputes only that metric.
# (One job per (model, epoch, metric) made a 10,000-job DAG; see README "Job granularity".)


rule compute_metric:
    input:
        metric_inputs,
    output:
        f"{R}/metrics/{{model}}/{{metric}}.parquet",
    log:
        f"{R}/logs/compute_metric/{{model}}/{{metric}}.log",
    conda:
        "../../envs/clipdyn.yaml"
    params:
        job=metric_params,  # one callable per job (see embed_images)
    script:
        "../scripts/compute_metric.py"


rule collect_metrics:
    input:
        all_metric_files(),
    output:
        parquet=f"{R}/metrics.parquet",
        csv=f"{R}/metrics.csv",
    log:
        f"{R}/logs/collect_metrics.log",
    localrule: True
    conda:
        "../../envs/clipdyn.yaml"
    params:
        code=code_of("collect_metrics.py"),
    script:
        "../scripts/collect_metrics.py"
