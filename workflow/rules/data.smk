# Data stage: one canonical manifest per dataset, and one decoded pixel cache per
# (dataset, preprocessing) shared by every model and epoch.


rule prepare_manifest:
    input:
        snapshot=f"{R}/datasets/{{dataset}}/snapshot.json",
    output:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
        trials=f"{R}/data/{{dataset}}/trials.parquet",
    params:
        format=lambda wc: STUDY.datasets[wc.dataset]["format"],
        root=lambda wc: STUDY.datasets[wc.dataset].get("root", ""),
        extract=lambda wc: STUDY.datasets[wc.dataset].get("extract", []),
        options=lambda wc: STUDY.datasets[wc.dataset].get("options", {}),
        subset=lambda wc: STUDY.datasets[wc.dataset].get("subset"),
        subset_seed=lambda wc: STUDY.datasets[wc.dataset].get("subset_seed", 0),
        extract_dir=lambda wc: f"{R}/data/{wc.dataset}/extracted",
        code=lambda wc: source_hash(
            adapter_module(STUDY.datasets[wc.dataset]["format"]),
            "clipdyn.datasets.__init__",
            "clipdyn.datasets._common",
            "clipdyn.manifests",
            "clipdyn.archives",
        ),
    wildcard_constraints:
        dataset=_alt(DOWNLOADED),
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/prepare_manifest/{{dataset}}.log",
    script:
        "../scripts/prepare_manifest.py"


rule derive_manifest:
    input:
        manifest=lambda wc: f"{R}/data/{STUDY.downloaded(wc.dataset)}/manifest.parquet",
    output:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
        trials=f"{R}/data/{{dataset}}/trials.parquet",
    params:
        corruption=lambda wc: STUDY.datasets[wc.dataset].get(
            "corruption", "gaussian_noise"
        ),
        severities=lambda wc: STUDY.datasets[wc.dataset].get(
            "severities", [1, 2, 3, 4, 5]
        ),
    wildcard_constraints:
        dataset=_alt(DERIVED),
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/derive_manifest/{{dataset}}.log",
    script:
        "../scripts/derive_manifest.py"


rule pixel_cache:
    input:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
    output:
        pixels=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.npy",
        index=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.parquet",
    params:
        on_bad_image=lambda wc: STUDY.datasets[wc.dataset].get("on_bad_image", "error"),
        code=lambda wc: source_hash("clipdyn.pixels", "clipdyn.images"),
    wildcard_constraints:
        dataset=_alt(DOWNLOADED),
    threads: EMBED.get("decode_workers", 4)
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/pixel_cache/{{dataset}}/{{preprocess}}.log",
    script:
        "../scripts/pixel_cache.py"


rule derived_pixel_cache:
    input:
        manifest=f"{R}/data/{{dataset}}/manifest.parquet",
    output:
        pixels=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.npy",
        index=f"{R}/data/{{dataset}}/pixels_{{preprocess}}.parquet",
    params:
        corruption=lambda wc: {
            "corruption": STUDY.datasets[wc.dataset].get("corruption", "gaussian_noise"),
            "geometry": STUDY.datasets[wc.dataset].get("corruption_geometry", "imagenet_c"),
            "jpeg_quality": STUDY.datasets[wc.dataset].get("jpeg_quality", 85),
        },
        on_bad_image=lambda wc: STUDY.datasets[STUDY.downloaded(wc.dataset)].get(
            "on_bad_image", "error"
        ),
        code=lambda wc: source_hash("clipdyn.pixels", "clipdyn.images", "clipdyn.corruptions"),
    wildcard_constraints:
        dataset=_alt(DERIVED),
    threads: EMBED.get("decode_workers", 4)
    conda:
        "../../envs/clipdyn.yaml"
    log:
        f"{R}/logs/derived_pixel_cache/{{dataset}}/{{preprocess}}.log",
    script:
        "../scripts/derived_pixel_cache.py"
