# Metrics stage: cheap CPU functions of cached embeddings. Each metric's params
# carry a hash of its library code, so editing one metric reruns only its jobs.


def metric_inputs(wc):
    m = STUDY.metrics[wc.metric]
    out = {}
    for d in STUDY.metric_datasets(wc.metric):
        out[f"emb__{d}"] = f"{R}/embeddings/{wc.model}/epoch_{wc.epoch}/{d}.parquet"
        out[f"manifest__{d}"] = f"{R}/data/{d}/manifest.parquet"
        out[f"trials__{d}"] = f"{R}/data/{d}/trials.parquet"
    if METRIC_KINDS[m["kind"]]["classset"]:
        out["classifier"] = f"{R}/text/{wc.model}/epoch_{wc.epoch}/{m['classset']}.parquet"
    return out


def metric_options(wc):
    m = STUDY.metrics[wc.metric]
    opts = dict(m.get("options", {}))
    if m["kind"] == "saliency_alignment":
        # spatial maps cover what the model saw: the centre crop, unless it squashed the image
        squash = model_of(wc).preprocess.resize_mode == "squash"
        opts.setdefault("crop", "none" if squash else "center")
    return opts


rule compute_metric:
    input:
        unpack(metric_inputs),
    output:
        rows=f"{R}/metrics/{{model}}/epoch_{{epoch}}/{{metric}}.parquet",
        details=f"{R}/metrics/{{model}}/epoch_{{epoch}}/{{metric}}.details.parquet",
    params:
        kind=lambda wc: STUDY.metrics[wc.metric]["kind"],
        inputs=lambda wc: STUDY.metrics[wc.metric].get("inputs", {}),
        options=metric_options,
        spatial=lambda wc: [
            d for d in STUDY.metric_datasets(wc.metric) if STUDY.spatial(d)
        ],
        code=lambda wc: metric_code_hash(STUDY.metrics[wc.metric]["kind"]),
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
    log:
        f"{R}/logs/collect_metrics.log",
    localrule: True
    script:
        "../scripts/collect_metrics.py"
