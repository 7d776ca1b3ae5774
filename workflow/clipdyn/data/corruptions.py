"""ImageNet-C corruptions generated on the fly, deterministically.

Only Gaussian noise is implemented: it is the corruption the study sweeps over
severities. The definition follows ``gaussian_noise`` in
``hendrycks/robustness`` (``ImageNet-C/create_c/make_imagenet_c.py``)::

    c = [.08, .12, 0.18, 0.26, 0.38][severity - 1]
    x = np.array(x) / 255.
    return np.clip(x + np.random.normal(size=x.shape, scale=c), 0, 1) * 255

and the caller there stores ``Image.fromarray(np.uint8(img))``: the float result
is **truncated** towards zero (``np.uint8`` of a non-negative float is its floor),
not rounded. We match that in float64.

Geometry and storage (same file, ``save_distorted`` and ``DistortImageFolder``): the
corruption is applied to ``trn.Resize(256)`` + ``trn.CenterCrop(224)`` of the original
image, and the result saved as JPEG with ``quality=85, optimize=True``. A model then
reads that 224 px JPEG through its own preprocessing. :func:`corrupt_for_model` does the
same by default (``geometry="imagenet_c"``, ``jpeg_quality=85``); ``geometry="model"``
(noise on the model's own crop) and ``jpeg_quality=None`` (no JPEG round trip) are
named variants.

CIFAR-10/100-C (same repository, ``make_cifar_c.py``) adds the noise to the 32 px image itself
with smaller sigmas, ``c = [0.04, 0.06, .08, .09, .10][severity - 1]``, and stores ``np.uint8``
arrays (no JPEG): corruption ``gaussian_noise_cifar`` with ``geometry="native"`` (noise on the
original image at its own size) and ``jpeg_quality=None``.

Severity 0 is the baseline of noise sensitivity: the same geometry and JPEG round trip with no
noise (sigma 0), so that the clean and the noisy images differ by the noise alone
(:func:`gaussian_noise` returns the pixels unchanged, which is what the formula gives for
sigma 0: ``uint8(x / 255 * 255) == x`` for every uint8 value).

Randomness: the reference draws from NumPy's global generator, so its noise
depends on processing order. Here each image gets its own generator seeded by
:func:`noise_seed` ``(image_id, severity)`` (a SHA-256 of the two, stable across
runs, machines and Python's hash randomisation), so an image's corrupted pixels
depend only on its id and the severity, never on batch order or subsetting.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

__all__ = ["CORRUPTIONS", "GAUSSIAN_NOISE_SIGMA", "CIFAR_C_GAUSSIAN_NOISE_SIGMA", "gaussian_noise",
           "gaussian_noise_cifar", "noise_seed", "GEOMETRIES", "IMAGENET_C_RESIZE",
           "IMAGENET_C_CROP", "IMAGENET_C_JPEG_QUALITY", "imagenet_c_crop", "jpeg_roundtrip", "corrupt_for_model"]

#: where the noise is added: ``imagenet_c`` = on ImageNet-C's Resize(256) + CenterCrop(224),
#: before the model's preprocessing; ``model`` = on the model's own preprocessed crop; ``native`` =
#: on the original image at its own size (CIFAR-10/100-C's: the 32 px image), before the model's
#: preprocessing
GEOMETRIES = ("imagenet_c", "model", "native")
#: ImageNet-C's geometry (``make_imagenet_c.py``: ``trn.Resize(256), trn.CenterCrop(224)``)
IMAGENET_C_RESIZE, IMAGENET_C_CROP = 256, 224
#: the JPEG quality ImageNet-C's files were saved with (``.save(save_path, quality=85, optimize=True)``)
IMAGENET_C_JPEG_QUALITY = 85

#: noise standard deviation (in units of the [0, 1] intensity range) per severity 1..5
GAUSSIAN_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
#: the same for CIFAR-10/100-C (``make_cifar_c.py``: ``c = [0.04, 0.06, .08, .09, .10][severity - 1]``)
CIFAR_C_GAUSSIAN_NOISE_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)


def noise_seed(image_id: str, severity: int, salt: str = "gaussian_noise") -> int:
    """A stable 63-bit seed for the noise of one image at one severity.

    Uses SHA-256 of ``"{salt}\\0{severity}\\0{image_id}"``; never Python's ``hash()``
    (salted per process).
    """
    digest = hashlib.sha256(f"{salt}\0{int(severity)}\0{image_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _check_severity(severity: int, sigmas=GAUSSIAN_NOISE_SIGMA) -> float:
    """The noise sigma of ``severity``: 0.0 for severity 0 (the noise-free baseline), else ``sigmas``'."""
    if isinstance(severity, bool) or int(severity) != severity or not 0 <= int(severity) <= 5:
        raise ValueError(f"severity must be an integer in 0..5 (0: no noise, the baseline), got {severity!r}")
    return 0.0 if int(severity) == 0 else sigmas[int(severity) - 1]


def gaussian_noise(pixels: np.ndarray, severity: int, seed) -> np.ndarray:
    """ImageNet-C Gaussian noise on uint8 RGB pixels.

    ``pixels``: uint8, shape (H, W, 3) or (N, H, W, 3). ``severity``: 1..5, noise
    sigma ``c = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]`` of the [0, 1] range;
    0: sigma 0, the pixels unchanged (the noise-free baseline).
    ``seed``: an int (or ``np.random.SeedSequence``) for one image, or for a batch a
    sequence of N ints, one per image (use :func:`noise_seed`), so each image's
    noise is the same whether it is processed alone or in a batch.

    Returns uint8 of the same shape: ``uint8(clip(x / 255 + N(0, c), 0, 1) * 255)``
    with truncation, as the reference code. Deterministic for given seeds.

    >>> x = np.full((2, 2, 3), 128, np.uint8)
    >>> y = gaussian_noise(x, 3, noise_seed("img0", 3))
    >>> y.dtype, y.shape
    (dtype('uint8'), (2, 2, 3))
    """
    return _add_noise(pixels, _check_severity(severity), seed)


def gaussian_noise_cifar(pixels: np.ndarray, severity: int, seed) -> np.ndarray:
    """CIFAR-10/100-C Gaussian noise: as :func:`gaussian_noise` with sigma
    ``[0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]`` (``make_cifar_c.py``); 0: no noise."""
    return _add_noise(pixels, _check_severity(severity, CIFAR_C_GAUSSIAN_NOISE_SIGMA), seed)


def _add_noise(pixels: np.ndarray, sigma: float, seed) -> np.ndarray:
    x = np.asarray(pixels)
    if x.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got {x.dtype}")
    if x.ndim == 3 and x.shape[-1] == 3:
        noise = _normal(seed, x.shape, sigma)
    elif x.ndim == 4 and x.shape[-1] == 3:
        seeds = _batch_seeds(seed, x.shape[0])
        noise = np.stack([_normal(s, x.shape[1:], sigma) for s in seeds]) if len(seeds) else np.zeros(x.shape)
    else:
        raise ValueError(f"pixels must have shape (H, W, 3) or (N, H, W, 3), got {x.shape}")
    out = np.clip(x / 255.0 + noise, 0.0, 1.0) * 255.0
    return out.astype(np.uint8)  # truncation, as np.uint8(img) in make_imagenet_c.py


def _normal(seed, shape, sigma: float) -> np.ndarray:
    if sigma == 0.0:
        return np.zeros(shape)
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, sigma, size=shape)


def _batch_seeds(seed, n: int) -> list:
    if isinstance(seed, (int, np.integer)):
        raise TypeError("a batch (N, H, W, 3) needs one seed per image (e.g. [noise_seed(id, s) for id in ids])")
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} images")
    return seeds


#: corruption name (a derived dataset's ``corruption``) -> function(pixels, severity, seed)
CORRUPTIONS = {"gaussian_noise": gaussian_noise, "gaussian_noise_cifar": gaussian_noise_cifar}


def corrupt_image(pixels: np.ndarray, image_id: str, severity: int, corruption: str = "gaussian_noise",
                  seed: Optional[int] = None) -> np.ndarray:
    """Corrupt one image by name; the seed defaults to ``noise_seed(image_id, severity)``."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unsupported corruption {corruption!r}; implemented: {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[corruption](pixels, severity, noise_seed(image_id, severity) if seed is None else seed)


def imagenet_c_crop(img):
    """ImageNet-C's geometry: torchvision ``Resize(256)`` (shorter side to 256, bilinear) then
    ``CenterCrop(224)``, on a PIL image (converted to RGB); returns a 224x224 PIL image."""
    from torchvision.transforms import CenterCrop, Compose, Resize

    return Compose([Resize(IMAGENET_C_RESIZE), CenterCrop(IMAGENET_C_CROP)])(img.convert("RGB"))


def jpeg_roundtrip(pixels: np.ndarray, quality: int = IMAGENET_C_JPEG_QUALITY) -> np.ndarray:
    """uint8 RGB pixels saved as JPEG (Pillow, ``quality``, ``optimize=True``, as ImageNet-C's
    files) and decoded again: the pixels a reader of the published files sees."""
    import io

    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality!r}")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="JPEG", quality=int(quality), optimize=True)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def corrupt_for_model(img, severity: int, seed, model_transform, geometry: str = "imagenet_c",
                      jpeg_quality: Optional[int] = IMAGENET_C_JPEG_QUALITY,
                      corruption: str = "gaussian_noise") -> np.ndarray:
    """The corrupted pixels a model sees for one image at one severity (uint8, H x W x 3).

    ``img``: the original PIL image; ``model_transform``: the model's resize and crop (PIL ->
    PIL, :func:`clipdyn.data.pixels.pil_transform`). ``geometry="imagenet_c"`` (default): noise on
    :func:`imagenet_c_crop`, the JPEG round trip (``jpeg_quality``, None = none), then the
    model's transform, as a model reading published ImageNet-C files. ``geometry="native"``: the
    same on the original image at its own size (CIFAR-10/100-C). ``geometry="model"``: noise on
    the model's own crop, then the JPEG round trip if any. ``corruption``: a name of
    :data:`CORRUPTIONS` (``gaussian_noise`` = ImageNet-C's sigmas, ``gaussian_noise_cifar`` =
    CIFAR-C's).
    """
    from PIL import Image

    if geometry not in GEOMETRIES:
        raise ValueError(f"corruption geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unsupported corruption {corruption!r}; implemented: {sorted(CORRUPTIONS)}")
    if geometry == "imagenet_c":
        base = imagenet_c_crop(img)
    elif geometry == "native":
        base = img.convert("RGB")
    else:
        base = model_transform(img.convert("RGB"))
    x = CORRUPTIONS[corruption](np.asarray(base, dtype=np.uint8), severity, seed)
    if jpeg_quality is not None:
        x = jpeg_roundtrip(x, jpeg_quality)
    if geometry != "model":
        x = np.asarray(model_transform(Image.fromarray(x)), dtype=np.uint8)
    return x
