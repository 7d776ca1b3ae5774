# Data stage: one canonical manifest per dataset, and one decoded pixel cache per
# (dataset, preprocessing) shared by every model and epoch.


rule prepare_manifest:
    input:
        snapshot=f"{R}/datasets/{{dataset}}/snapshot.json",
    output:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
        trials=f"{R}/data/{{dataset}}/trials.parquet",
    log:
        f"{R}/logs/prepare_manifest/{{dataset}}.log",
    wildcard_constraints:
        dataset=_alt(DOWNLOADED),
    conda:
        "../../envs/clipdyn.yaml"
    params:
        format=lambda wc: STUDY.datasets[wc.dataset].format,
        root=lambda wc: STUDY.datasets[wc.dataset].root,
        extract=lambda wc: list(STUDY.datasets[wc.dataset].extract),
        options=lambda wc: STUDY.datasets[wc.dataset].options,
        subset=lambda wc: STUDY.datasets[wc.dataset].subset,
        subset_seed=lambda wc: STUDY.datasets[wc.dataset].subset_seed,
        extract_dir=lambda wc: f"{R}/data/{wc.dataset}/extracted",
        code=code_of("prepare_manifest.py"),
    script:
        "../scripts/prepare_manifest.py"


rule derive_manifest:
    input:
        manifest=lambda wc: f"{R}/data/{STUDY.downloaded(wc.dataset)}/manifest.parquet",
    output:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
        trials=f"{R}/data/{{dataset}}/trials.parquet",
    log:
        f"{R}/logs/derive_manifest/{{dataset}}.log",
    wildcard_constraints:
        dataset=_alt(DERIVED),
    conda:
        "../../envs/clipdyn.yaml"
    params:
        corruption=lambda wc: STUDY.datasets[wc.dataset].corruption,
        severities=lambda wc: list(STUDY.datasets[wc.dataset].severities),
        code=code_of("derive_manifest.py"),
    script:
        "../scripts/derive_manifest.py"


rule pixel_cache:
    input:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
    output:
        pixels=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.npy",
        index=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.parquet",
    log:
        f"{R}/logs/pixel_cache/{{dataset}}/{{preprocess}}.log",
    wildcard_constraints:
        dataset=_alt(DOWNLOADED),
    conda:
        "../../envs/clipdyn.yaml"
    threads: EMBED.decode_workers
    params:
        on_bad_image=lambda wc: STUDY.datasets[wc.dataset].on_bad_image,
        code=code_of("pixel_cache.py"),
    script:
        "../scripts/pixel_cache.py"


rule derived_pixel_cache:
    input:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
    output:
        pixels=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.npy",
        index=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.parquet",
    log:
        f"{R}/logs/derived_pixel_cache/{{dataset}}/{{preprocess}}.log",
    wildcard_constraints:
        dataset=_alt(DERIVED),
    conda:
        "../../envs/clipdyn.yaml"
    threads: EMBED.decode_workers
    params:
        corruption=lambda wc: {
            "corruption": STUDY.datasets[wc.dataset].corruption,
            "geometry": STUDY.datasets[wc.dataset].corruption_geometry,
            "jpeg_quality": STUDY.datasets[wc.dataset].jpeg_quality,
        },
        on_bad_image=lambda wc: STUDY.datasets[
            STUDY.downloaded(wc.dataset)
        ].on_bad_image,
        code=code_of("derived_pixel_cache.py"),
    script:
        "../scripts/derived_pixel_cache.py"
