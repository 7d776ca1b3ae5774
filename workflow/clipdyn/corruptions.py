"""ImageNet-C corruptions generated on the fly, deterministically.

Only Gaussian noise is implemented: it is the corruption the study sweeps over
severities. The definition follows ``gaussian_noise`` in
``hendrycks/robustness`` (``ImageNet-C/create_c/make_imagenet_c.py``)::

    c = [.08, .12, 0.18, 0.26, 0.38][severity - 1]
    x = np.array(x) / 255.
    return np.clip(x + np.random.normal(size=x.shape, scale=c), 0, 1) * 255

and the caller there stores ``Image.fromarray(np.uint8(img))``: the float result
is **truncated** towards zero (``np.uint8`` of a non-negative float is its floor),
not rounded. We match that in float64. (The published ImageNet-C files were
then saved as JPEG at quality 85, on 224x224 centre crops; we hand the uint8
pixels straight to the model's preprocessing instead, so no JPEG loss is added.)

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

__all__ = ["GAUSSIAN_NOISE_SIGMA", "gaussian_noise", "noise_seed"]

#: noise standard deviation (in units of the [0, 1] intensity range) per severity 1..5
GAUSSIAN_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)


def noise_seed(image_id: str, severity: int, salt: str = "gaussian_noise") -> int:
    """A stable 63-bit seed for the noise of one image at one severity.

    Uses SHA-256 of ``"{salt}\\0{severity}\\0{image_id}"``; never Python's ``hash()``
    (salted per process).
    """
    digest = hashlib.sha256(f"{salt}\0{int(severity)}\0{image_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _check_severity(severity: int) -> float:
    if isinstance(severity, bool) or int(severity) != severity or not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    return GAUSSIAN_NOISE_SIGMA[int(severity) - 1]


def gaussian_noise(pixels: np.ndarray, severity: int, seed) -> np.ndarray:
    """ImageNet-C Gaussian noise on uint8 RGB pixels.

    ``pixels``: uint8, shape (H, W, 3) or (N, H, W, 3). ``severity``: 1..5, noise
    sigma ``c = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]`` of the [0, 1] range.
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
    sigma = _check_severity(severity)
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
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, sigma, size=shape)


def _batch_seeds(seed, n: int) -> list:
    if isinstance(seed, (int, np.integer)):
        raise TypeError("a batch (N, H, W, 3) needs one seed per image (e.g. [noise_seed(id, s) for id in ids])")
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} images")
    return seeds


def corrupt_image(pixels: np.ndarray, image_id: str, severity: int, corruption: str = "gaussian_noise",
                  seed: Optional[int] = None) -> np.ndarray:
    """Corrupt one image by name; the seed defaults to ``noise_seed(image_id, severity)``."""
    if corruption != "gaussian_noise":
        raise ValueError(f"unsupported corruption {corruption!r}; only 'gaussian_noise' is implemented")
    return gaussian_noise(pixels, severity, noise_seed(image_id, severity) if seed is None else seed)
