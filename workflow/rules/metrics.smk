# Metrics stage: cheap CPU functions of cached embeddings. Each metric's params
# carry a hash of its library code, so editing one metric reruns only its jobs.


rule compute_metric:
    input:
        unpack(metric_inputs),
    output:
        rows=f"{R}/metrics/{{model}}/epoch_{{epoch}}/{{metric}}.parquet",
        details=f"{R}/metrics/{{model}}/epoch_{{epoch}}/{{metric}}.details.parquet",
    params:
        job=metric_params,  # one callable per job (see embed_images)
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/compute_metric/{{model}}/epoch_{{epoch}}/{{metric}}.log",
    script:
        "../scripts/compute_metric.py"


rule collect_metrics:
    input:
        all_metric_files(),
    output:
        parquet=f"{R}/metrics.parquet",
        csv=f"{R}/metrics.csv",
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/collect_metrics.log",
    localrule: True
    script:
        "../scripts/collect_metrics.py"
