"""The CIFAR-100 variant (config/cifar100.yaml): clean and noisy zero-shot accuracy and the
normalised drop, on CIFAR-100 from clip-benchmark's webdataset with its own class names and
templates, and CIFAR-100-C's Gaussian noise.

The configuration is checked (schema, config check); then a small CIFAR-100 in the Hub repo's
layout (``clip-benchmark/wds_vtab-cifar100``: ``test/{0..N-1}.tar`` + ``test/nshards.txt``,
``classnames.txt``, ``zeroshot_classification_templates.txt``) goes through the dataset adapter,
the manifests, the clean and the derived pixel caches with the config's own corruption settings,
and the zero-shot and noise-sensitivity evaluators (embeddings from a fixed pixel feature standing
in for a model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from clipdyn.config.specs import Preprocess
from clipdyn.config.study import Study, apply_base
from clipdyn.data.corruptions import noise_seed
from clipdyn.data.formats import DatasetTables
from clipdyn.data.manifests import derive_manifest, prepare_manifest
from clipdyn.data.pixels import build_pixel_cache, open_pixels, pil_transform
from clipdyn.embed.classifier import class_templates
from clipdyn.fixtures import writers
from clipdyn.hub.client import CheckpointFile
from clipdyn.io import Classifier, EmbeddingTable, read_frame, read_meta
from clipdyn.metrics import registry

REPO = Path(__file__).resolve().parents[2]

#: CIFAR-100's class names in label order, as CLIP_benchmark exports them to ``classnames.txt``
#: (the dataset's own fine labels, underscores kept: CLIP_benchmark's ``builder.py`` renames
#: Food-101's and SUN397's classes, not CIFAR's; ``en_classnames.json`` has no ``cifar100`` entry)
CIFAR100_CLASSNAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()

#: CLIP_benchmark's ``en_zeroshot_classification_templates.json`` entry ``cifar100`` (CLIP's 18)
CIFAR100_TEMPLATES = [
    "a photo of a {c}.", "a blurry photo of a {c}.", "a black and white photo of a {c}.",
    "a low contrast photo of a {c}.", "a high contrast photo of a {c}.", "a bad photo of a {c}.",
    "a good photo of a {c}.", "a photo of a small {c}.", "a photo of a big {c}.", "a photo of the {c}.",
    "a blurry photo of the {c}.", "a black and white photo of the {c}.", "a low contrast photo of the {c}.",
    "a high contrast photo of the {c}.", "a bad photo of the {c}.", "a good photo of the {c}.",
    "a photo of the small {c}.", "a photo of the big {c}.",
]


def _config() -> dict:
    return apply_base(yaml.safe_load((REPO / "config" / "cifar100.yaml").read_text()), [REPO])


def test_vendored_names_and_templates_are_the_hub_files_size():
    """The Hub repo lists classnames.txt at 725 bytes and the templates at 480: one line each, newline-ended."""
    assert len(CIFAR100_CLASSNAMES) == 100 and CIFAR100_CLASSNAMES == sorted(CIFAR100_CLASSNAMES)
    assert len("\n".join(CIFAR100_CLASSNAMES) + "\n") == 725
    assert len("\n".join(CIFAR100_TEMPLATES) + "\n") == 480


def test_config_is_valid_and_checked(monkeypatch, tmp_path):
    from snakemake.utils import validate

    monkeypatch.chdir(tmp_path)
    cfg = _config()
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    study = Study(cfg, list_epochs=lambda *a: [CheckpointFile(1, "epoch_1.pt", "c0", "b0")])
    assert set(study.metrics) == {"zeroshot_cifar100", "noise_sensitivity_cifar100"}
    assert set(study.datasets) == {"cifar100", "cifar100_gaussian_noise"}
    assert set(study.models) == {"B-16", "L-14", "H-14"}   # the study's models, from the base
    noisy = study.datasets["cifar100_gaussian_noise"]
    assert (noisy.corruption, noisy.corruption_geometry, noisy.jpeg_quality) == ("gaussian_noise_cifar", "native",
                                                                                  None)
    assert noisy.severities == (0, 1, 2, 3, 4, 5)
    assert study.classsets["cifar100"].as_dict() == {"source": "dataset", "dataset": "cifar100", "names": [],
                                                      "templates": "dataset"}
    assert study.datasets["cifar100"].repo == "clip-benchmark/wds_vtab-cifar100"


# ----------------------------------------------------------------------------- the data path

N_CLASSES, PER_CLASS = 4, 3   # images of the first 4 of the 100 classes


def _images(seed: int = 0):
    """32 px images: class k is a colour gradient of its own, with a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32] / 31.0
    images, labels = [], []
    for k in range(N_CLASSES):
        base = np.stack([(k & 1) * xx + (1 - (k & 1)) * yy, (k >> 1) * (1 - xx) + (1 - (k >> 1)) * xx,
                         np.full_like(xx, k / N_CLASSES)], axis=-1)
        for _ in range(PER_CLASS):
            img = np.clip(base * 200 + 20 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
            images.append(img)
            labels.append(k)
    return images, labels


def _features(pixels: np.ndarray) -> np.ndarray:
    """A fixed embedding standing in for a model: 8 x 8 block means of the pixels, centred, L2-normalised."""
    n, s = pixels.shape[:2]
    x = pixels.astype(np.float64).reshape(n, 8, s // 8, 8, s // 8, 3).mean(axis=(2, 4)).reshape(n, -1)
    x -= 128.0
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fabricated repo through manifests and pixel caches, with the config's own settings."""
    tmp = tmp_path_factory.mktemp("cifar100")
    images, labels = _images()
    repo = tmp / "wds_vtab-cifar100"
    writers.write_webdataset(repo, images, labels, CIFAR100_CLASSNAMES, CIFAR100_TEMPLATES, shard_size=5)
    cfg = _config()
    spec = cfg["datasets"]["cifar100"]
    prepare_manifest(snapshot={"path": str(repo), "repo": spec["repo"], "revision": spec["revision"]},
                     fmt=spec["format"], root="", extract=[], extract_dir=str(tmp / "x"), options=spec["options"],
                     subset=None, subset_seed=0, out_manifest=str(tmp / "clean.parquet"),
                     out_trials=str(tmp / "clean_trials.parquet"), dataset="cifar100")
    noisy = cfg["datasets"]["cifar100_gaussian_noise"]
    derive_manifest(str(tmp / "clean.parquet"), noisy["corruption"], noisy["severities"], str(tmp / "noisy.parquet"),
                    str(tmp / "noisy_trials.parquet"), dataset="cifar100_gaussian_noise")
    pp = Preprocess(64, "bicubic", "shortest")
    clean_images, _ = read_frame(tmp / "clean.parquet")
    noisy_images, _ = read_frame(tmp / "noisy.parquet")
    build_pixel_cache(clean_images, pp, tmp / "clean.npy", tmp / "clean_px.parquet", workers=1)
    corruption = {"corruption": noisy["corruption"], "geometry": noisy["corruption_geometry"],
                  "jpeg_quality": noisy["jpeg_quality"]}
    build_pixel_cache(noisy_images, pp, tmp / "noisy.npy", tmp / "noisy_px.parquet", workers=1,
                      corruption=corruption)
    clean_px, clean_ids, _ = open_pixels(tmp / "clean.npy", tmp / "clean_px.parquet")
    noisy_px, noisy_ids, _ = open_pixels(tmp / "noisy.npy", tmp / "noisy_px.parquet")
    return dict(tmp=tmp, pp=pp, images=images, labels=labels, clean_images=clean_images, noisy_images=noisy_images,
                clean=(np.asarray(clean_px), list(clean_ids)), noisy=(np.asarray(noisy_px), list(noisy_ids)))


def test_adapter_reads_the_layout_with_its_names_and_templates(built):
    meta = read_meta(built["tmp"] / "clean.parquet")
    assert meta["classnames"] == CIFAR100_CLASSNAMES and meta["templates"] == CIFAR100_TEMPLATES
    assert list(built["clean_images"]["label"]) == built["labels"]
    # the classifier's templates: the dataset's 18, with CLIP_benchmark's "{c}" placeholder
    templates = class_templates("dataset", meta["templates"])
    assert len(templates) == 18 and templates[0].format("aquarium_fish") == "a photo of a aquarium_fish."


def test_noisy_pixels_are_cifar_c_and_severity_0_is_the_clean_image(built):
    clean_px, clean_ids = built["clean"]
    noisy_px, noisy_ids = built["noisy"]
    tf = pil_transform(built["pp"])
    by_id = dict(zip(noisy_ids, noisy_px))
    for i, (img, image_id) in enumerate(zip(built["images"], clean_ids)):
        # the baseline (severity 0, no JPEG, native geometry): exactly the clean pixels
        np.testing.assert_array_equal(by_id[f"{image_id}@s0"], clean_px[i])
        for s, c in ((1, 0.04), (5, 0.10)):
            # make_cifar_c.py: noise on the 32 px image, np.uint8 (truncation), no JPEG; then the model's transform
            x = img / 255.
            x = np.clip(x + np.random.default_rng(noise_seed(image_id, s)).normal(size=x.shape, scale=c), 0, 1) * 255
            np.testing.assert_array_equal(by_id[f"{image_id}@s{s}"], np.asarray(tf(Image.fromarray(np.uint8(x)))))


def test_zero_shot_and_noise_rows(built):
    clean_px, clean_ids = built["clean"]
    noisy_px, noisy_ids = built["noisy"]
    Xc, Xn = _features(clean_px), _features(noisy_px)
    labels = np.array(built["labels"])
    W = np.zeros((100, Xc.shape[1]))
    for k in range(N_CLASSES):   # the stand-in "text" embedding of class k: its images' mean
        W[k] = Xc[labels == k].mean(axis=0)
    W[N_CLASSES:] = np.random.default_rng(1).normal(size=(100 - N_CLASSES, Xc.shape[1])) * 0.01
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    clf = Classifier(W=W, classnames=list(CIFAR100_CLASSNAMES), logit_scale=100.0)
    tables = {"cifar100": DatasetTables(images=built["clean_images"], classnames=CIFAR100_CLASSNAMES),
              "cifar100_gaussian_noise": DatasetTables(images=built["noisy_images"], classnames=CIFAR100_CLASSNAMES)}
    embeddings = {"cifar100": EmbeddingTable(ids=np.array(clean_ids), X=Xc),
                  "cifar100_gaussian_noise": EmbeddingTable(ids=np.array(noisy_ids), X=Xn)}
    cfg = _config()["metrics"]
    rows = []
    for name in ("zeroshot_cifar100", "noise_sensitivity_cifar100"):
        m = cfg[name]
        res = registry.evaluate(m["kind"], embeddings=embeddings, tables=tables, classifier=clf,
                                inputs=m["inputs"], options=m.get("options") or {})
        rows.append(res.rows)
    r = pd.concat(rows).set_index(["measure", "dataset", "variant"])["value"]
    top1 = r[("zeroshot_top1", "cifar100", "")]
    base = r[("noise_accuracy", "cifar100_gaussian_noise", "severity_0")]
    assert top1 == base == 1.0          # severity 0 is the clean image: same accuracy
    noisy = "cifar100_gaussian_noise"
    for s in range(1, 6):
        acc = r[("noise_accuracy", noisy, f"severity_{s}")]
        assert r[("noise_sensitivity", noisy, f"severity_{s}")] == pytest.approx((base - acc) / base)
    mean = r[("noise_sensitivity", "cifar100_gaussian_noise", "mean")]
    assert mean == pytest.approx(np.mean([r[("noise_sensitivity", "cifar100_gaussian_noise", f"severity_{s}")]
                                          for s in range(1, 6)]))


def test_models_are_the_studys_without_imagenet_curves():
    """The CIFAR-100 figures draw no published curve: the study's published curves are ImageNet accuracies."""
    mine, study = _config()["models"], yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]
    assert set(mine) == set(study)
    for name, m in study.items():
        assert mine[name] == {k: v for k, v in m.items() if k != "reference_curve"}


def test_plan_counts_the_cifar100_images(tmp_path, capsys, monkeypatch):
    from clipdyn import plan

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "plan.md"
    assert plan.main(["--configfile", str(REPO / "config/cifar100.yaml"), "--no-hub", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| cifar100 | 10,000 | published: CIFAR-100 test split |" in text
    assert "| cifar100_gaussian_noise | 60,000 | 6 severities x cifar100 |" in text
