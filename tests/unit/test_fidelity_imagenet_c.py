"""ImageNet-C geometry (issue 13.6): the derived noisy set against an independent port of
hendrycks/robustness ``ImageNet-C/create_c/make_imagenet_c.py``: ``trn.Resize(256)`` +
``trn.CenterCrop(224)`` of the original image, ``gaussian_noise``, ``np.uint8``, saved as JPEG
``quality=85, optimize=True``; a model then applies its own preprocessing to that file."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipdyn.config.study import Preprocess
from clipdyn.data.corruptions import (
    IMAGENET_C_JPEG_QUALITY,
    corrupt_for_model,
    imagenet_c_crop,
    jpeg_roundtrip,
    noise_seed,
)
from clipdyn.data.pixels import build_pixel_cache, open_pixels, pil_transform


def port_resize_256_crop_224(img):
    """torchvision Resize(256) on a PIL image: shorter side to 256, longer int(256 * long / short),
    PIL bilinear; CenterCrop(224): top/left = int(round((side - 224) / 2))."""
    w, h = img.size
    if w <= h:
        nw, nh = 256, int(256 * h / w)
    else:
        nw, nh = int(256 * w / h), 256
    img = img.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    return img.crop((left, top, left + 224, top + 224))


def port_imagenet_c_file(img, severity, rng):
    """make_imagenet_c.py for one image: the bytes of the stored JPEG, decoded. Severity 0: the same
    pipeline with sigma 0 (the noise-free baseline of noise sensitivity)."""
    x = np.array(port_resize_256_crop_224(img.convert("RGB"))) / 255.
    c = [0.0, .08, .12, 0.18, 0.26, 0.38][severity]
    x = np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255
    buf = io.BytesIO()
    Image.fromarray(np.uint8(x)).save(buf, format="JPEG", quality=85, optimize=True)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _image(seed, w, h):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)   # smooth-ish content
    return Image.fromarray(base).resize((w, h), Image.BICUBIC)


@pytest.mark.parametrize("w,h", [(300, 217), (217, 300), (256, 256), (500, 333)])
def test_crop_matches_torchvision_geometry_port(w, h):
    img = _image(w * h, w, h)
    np.testing.assert_array_equal(np.asarray(imagenet_c_crop(img)), np.asarray(port_resize_256_crop_224(img)))


@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("size", [224, 160])
def test_default_pipeline_equals_model_reading_imagenet_c_file(severity, size):
    img = _image(severity, 320, 240)
    tf = pil_transform(Preprocess(size, "bicubic", "shortest"))
    seed = noise_seed("n01440764/ILSVRC2012_val_00000293", severity)
    ours = corrupt_for_model(img, severity, seed, tf)
    reference = np.asarray(tf(port_imagenet_c_file(img, severity, np.random.default_rng(seed))))
    np.testing.assert_array_equal(ours, reference)
    assert ours.shape == (size, size, 3) and ours.dtype == np.uint8


@pytest.mark.parametrize("size", [224, 160])
def test_baseline_severity_0_is_the_noise_pipeline_with_sigma_0(size):
    """The default baseline's pixels: Resize(256) + CenterCrop(224) + JPEG q85 with no noise, then the
    model's preprocessing; not the clean image through the model's preprocessing alone (the former
    baseline, ``options.baseline: clean``)."""
    img = _image(7, 320, 240)
    tf = pil_transform(Preprocess(size, "bicubic", "shortest"))
    ours = corrupt_for_model(img, 0, noise_seed("n01440764/ILSVRC2012_val_00000293", 0), tf)
    reference = np.asarray(tf(port_imagenet_c_file(img, 0, np.random.default_rng(0))))
    np.testing.assert_array_equal(ours, reference)
    clean = np.asarray(tf(img.convert("RGB")))
    assert ours.shape == clean.shape
    assert np.abs(ours.astype(int) - clean.astype(int)).mean() > 1   # the 87.5 % crop and JPEG differ


def test_jpeg_round_trip_is_on_by_default_and_can_be_turned_off():
    img = _image(1, 300, 260)
    tf = pil_transform(Preprocess(224, "bicubic", "shortest"))
    with_jpeg = corrupt_for_model(img, 2, 5, tf)
    without = corrupt_for_model(img, 2, 5, tf, jpeg_quality=None)
    assert IMAGENET_C_JPEG_QUALITY == 85
    assert not np.array_equal(with_jpeg, without)
    # without JPEG, at 224 px the model's transform is the identity on ImageNet-C's crop: pure noise formula
    x = np.asarray(port_resize_256_crop_224(img)) / 255.
    expected = np.uint8(np.clip(x + np.random.default_rng(5).normal(size=x.shape, scale=0.12), 0, 1) * 255)
    np.testing.assert_array_equal(without, expected)


def test_model_geometry_variant_noises_the_model_crop():
    img = _image(2, 300, 200)
    tf = pil_transform(Preprocess(64, "bicubic", "shortest"))
    out = corrupt_for_model(img, 4, 9, tf, geometry="model", jpeg_quality=None)
    x = np.asarray(tf(img)) / 255.
    expected = np.uint8(np.clip(x + np.random.default_rng(9).normal(size=x.shape, scale=0.26), 0, 1) * 255)
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, corrupt_for_model(img, 4, 9, tf, jpeg_quality=None))
    with pytest.raises(ValueError, match="geometry"):
        corrupt_for_model(img, 4, 9, tf, geometry="center")


def test_constant_image_and_bad_quality():
    flat = np.full((224, 224, 3), 128, np.uint8)
    np.testing.assert_array_equal(jpeg_roundtrip(flat), flat)      # JPEG keeps a constant image
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(flat, 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_derived_pixel_cache_rows_are_per_image_and_severity(tmp_path, workers):
    rows = []
    for i, (w, h) in enumerate([(300, 240), (260, 400), (256, 256)]):
        p = tmp_path / f"img{i}.png"
        _image(i, w, h).save(p)
        rows.append({"image_id": f"img{i}", "path": str(p), "member": "", "label": i})
    src = pd.DataFrame(rows)
    parts = [src.assign(source_id=src["image_id"], image_id=src["image_id"] + f"@s{s}", severity=s) for s in (0, 1, 5)]
    derived = pd.concat(parts, ignore_index=True)
    pp = Preprocess(96, "bicubic", "shortest")
    spec = {"corruption": "gaussian_noise", "geometry": "imagenet_c", "jpeg_quality": 85}
    out = build_pixel_cache(derived, pp, tmp_path / "px.npy", tmp_path / "px.parquet", workers=workers, chunk=2,
                            corruption=spec)
    assert out == {"n": 9, "skipped": 0}
    arr, ids, _ = open_pixels(tmp_path / "px.npy", tmp_path / "px.parquet")
    assert list(ids) == list(derived["image_id"])
    tf = pil_transform(pp)
    for k, row in derived.iterrows():
        img = Image.open(row["path"])
        ref = tf(port_imagenet_c_file(img, row["severity"], np.random.default_rng(noise_seed(row["source_id"],
                                                                                              row["severity"]))))
        np.testing.assert_array_equal(arr[k], np.asarray(ref))
