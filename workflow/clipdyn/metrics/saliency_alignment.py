"""Saliency alignment: model saliency maps vs human fixations (MIT saliency benchmark metrics).

The benchmark (cvzoya/saliency ``code_forMetrics``: ``CC.m``, ``NSS.m``, ``AUC_Judd.m``) scores a
model map at the human map's resolution: the model map is enlarged with MATLAB's
``imresize`` (bicubic by default) to the size of the fixation (density) map, then compared.
A CLIP model sees only part of the photograph (the centre crop of a ``shortest`` resize), or a
letterboxed version of it (``longest``), or all of it squashed (``squash``): :func:`model_map_on_human`
places the model's map on the part of the human map the model saw (:data:`CROPS`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import pandas as pd

from ._join import join_images
from .intervals import ratio_of_sums
from .result import MetricResult, metric_row, rows_frame
from .zeroshot import l2_normalize

__all__ = ["resize_map", "imresize", "pearson_cc", "nss", "auc_judd", "patch_similarity_map", "center_crop",
           "CROPS", "crop_for_resize_mode", "human_region", "model_map_on_human", "INTERPOLATIONS",
           "CC_RESOLUTIONS", "saliency_scores"]

#: how a model map lies on the human map: ``center`` = the central square (open_clip's
#: ``shortest`` resize + centre crop), ``none`` = the whole image (``squash``),
#: ``letterbox`` = the whole image padded to a square (``longest`` resize + pad).
CROPS = ("center", "none", "letterbox")

#: how the model map is enlarged to the human map: ``bicubic`` = MATLAB ``imresize``'s default, as in
#: the MIT benchmark code; ``bilinear`` a named variant
INTERPOLATIONS = ("bicubic", "bilinear")

#: where CC is computed: ``map`` = at the human map's resolution (MIT benchmark ``CC.m``);
#: ``patch_grid`` = the human map shrunk (anti-aliased) to the model's G x G grid (coarse variant)
CC_RESOLUTIONS = ("map", "patch_grid")

#: open_clip ``resize_mode`` -> the region of the image the model saw
_CROP_OF_RESIZE_MODE = {"shortest": "center", "squash": "none", "longest": "letterbox"}


def resize_map(saliency_map: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map to ``shape`` = (rows, cols) with bilinear interpolation (float64).

    PIL's bilinear filter on a float32 image: a tent filter whose support widens by the
    reduction factor when shrinking, so a large human density map reduced to a 7 x 7 or
    14 x 14 model grid is anti-aliased (every input pixel contributes) rather than
    point-sampled; enlarging is plain bilinear. Pixel centres are aligned. This equals
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=True)`` to float32 precision.

    Example:
        >>> resize_map(np.arange(16.0).reshape(4, 4), (2, 2)).round(2)
        array([[ 3.57,  5.14],
               [ 9.86, 11.43]])
    """
    from PIL import Image

    m = np.asarray(saliency_map, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D, got shape {m.shape}")
    rows, cols = int(shape[0]), int(shape[1])
    if m.shape == (rows, cols):
        return m.astype(np.float64)
    img = Image.fromarray(np.ascontiguousarray(m), mode="F")
    return np.asarray(img.resize((cols, rows), Image.BILINEAR), dtype=np.float64)


def center_crop(saliency_map: np.ndarray) -> np.ndarray:
    """The central square of a 2-D map (side = the shorter side), as a center-cropping
    preprocessing sees the image.

    Example:
        >>> center_crop(np.arange(6).reshape(2, 3))
        array([[0, 1],
               [3, 4]])
    """
    m = np.asarray(saliency_map)
    rows, cols = human_region(m.shape, "center")
    return m[rows, cols]


def crop_for_resize_mode(resize_mode: str) -> str:
    """The :data:`CROPS` entry matching open_clip's ``resize_mode`` (what the model saw).

    Example:
        >>> crop_for_resize_mode("shortest"), crop_for_resize_mode("squash"), crop_for_resize_mode("longest")
        ('center', 'none', 'letterbox')
    """
    try:
        return _CROP_OF_RESIZE_MODE[resize_mode]
    except KeyError:
        raise ValueError(f"unknown open_clip resize_mode {resize_mode!r} "
                         f"(one of {sorted(_CROP_OF_RESIZE_MODE)})") from None


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``imresize`` 'bicubic', PIL BICUBIC)."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.clip(1 - np.abs(x), 0, None)


_KERNELS = {"bicubic": (_cubic, 4.0), "bilinear": (_triangle, 2.0)}


def _resize_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """(n_out, n_in) interpolation weights along one axis, as MATLAB ``imresize`` builds them:
    output pixel x (1-based) samples the input at u = x / s + (1 - 1 / s) / 2 (pixel centres
    aligned, s = n_out / n_in); when shrinking the kernel is widened by 1 / s (antialiasing);
    each row of weights sums to one; indices beyond the border are mirrored (symmetric
    padding, the edge pixel repeated)."""
    kernel, width = _KERNELS[method]
    s = n_out / n_in
    if s < 1:
        width = width / s
        k = lambda d: s * kernel(s * d)  # noqa: E731
    else:
        k = kernel
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / s + 0.5 * (1 - 1 / s)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices
    w = k(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # 0-based, period 2 * n_in
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.repeat(np.arange(n_out), taps), cols.ravel()), w.ravel())
    return out


def imresize(saliency_map: np.ndarray, shape: Tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize a 2-D map to ``shape`` = (rows, cols) as MATLAB's ``imresize(map, shape)`` does
    (float64; ``method`` ``bicubic``, MATLAB's default, or ``bilinear``).

    This is how the MIT saliency benchmark brings a model map to the fixation map's size
    (``CC.m``, ``NSS.m``, ``AUC_Judd.m``). Separable: rows then columns, each a
    :func:`_resize_matrix` product. Bicubic may overshoot the input's range slightly.

    Example:
        >>> imresize(np.array([[0.0, 1.0]]), (1, 4)).round(4)
        array([[-0.0938,  0.2031,  0.7969,  1.0938]])
    """
    m = np.asarray(saliency_map, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D, got shape {m.shape}")
    if method not in _KERNELS:
        raise ValueError(f"unknown interpolation {method!r} (one of {sorted(_KERNELS)})")
    rows, cols = int(shape[0]), int(shape[1])
    if m.shape == (rows, cols):
        return m.copy()
    if m.size and (m == m.flat[0]).all():  # exact: rounding noise would give a constant map a spurious std
        return np.full((rows, cols), m.flat[0])
    return _resize_matrix(m.shape[0], rows, method) @ m @ _resize_matrix(m.shape[1], cols, method).T


def human_region(shape: Tuple[int, int], crop: str) -> Tuple[slice, slice]:
    """The part of a human map of ``shape`` that the model map covers (``crop`` from
    :data:`CROPS`): the central square for ``center``, all of it otherwise.

    Example:
        >>> human_region((768, 1024), "center")
        (slice(0, 768, None), slice(128, 896, None))
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r} (one of {', '.join(CROPS)})")
    h, w = int(shape[0]), int(shape[1])
    if crop != "center":
        return slice(0, h), slice(0, w)
    s = min(h, w)
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    return slice(top, top + s), slice(left, left + s)


def model_map_on_human(pred: np.ndarray, shape: Tuple[int, int], crop: str,
                       interpolation: str = "bicubic") -> np.ndarray:
    """The model map ``pred`` (G, G) enlarged onto the human map's pixels.

    ``shape`` is the human map's full shape; the result has the shape of
    ``human_region(shape, crop)``: for ``center`` and ``none`` the model map is resized to
    that region (:func:`imresize`); for ``letterbox`` it is resized to the padded square
    (side = the longer side) and the image's central band is cut out of it.

    Example:
        >>> model_map_on_human(np.eye(2), (2, 4), "letterbox", "bilinear").shape
        (2, 4)
    """
    rs, cs = human_region(shape, crop)
    h, w = rs.stop - rs.start, cs.stop - cs.start
    if crop != "letterbox":
        return imresize(pred, (h, w), interpolation)
    side = max(h, w)
    big = imresize(pred, (side, side), interpolation)
    top, left = int(round((side - h) / 2.0)), int(round((side - w) / 2.0))
    return big[top:top + h, left:left + w]


def _standardize(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.full_like(x, np.nan)


def pearson_cc(pred: np.ndarray, human: np.ndarray) -> float:
    """Linear correlation coefficient (CC) between a predicted and a human saliency map.

    Definition (MIT saliency benchmark): Pearson's r over pixels of two maps of the same
    shape. Range [-1, 1], higher is better. NaN when either map is constant.

    Example:
        >>> pearson_cc(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[0.0, 2.0], [4.0, 6.0]]))
        1.0
    """
    p = np.asarray(pred, dtype=np.float64)
    h = np.asarray(human, dtype=np.float64)
    if p.shape != h.shape:
        raise ValueError(f"maps must have the same shape: {p.shape} vs {h.shape}; resize first")
    return float(np.mean(_standardize(p.ravel()) * _standardize(h.ravel())))


def nss(pred: np.ndarray, fixations: np.ndarray) -> float:
    """Normalised scanpath saliency.

    Definition (Peters et al. 2005; MIT benchmark): standardise the predicted map to zero
    mean and unit standard deviation (population std, ddof=0, over all pixels), and average
    it over the fixated locations. ``fixations`` is either (K, 2) integer (row, col)
    coordinates into ``pred`` (a location fixated twice counts twice) or a fixation map of
    ``pred``'s shape whose nonzero pixels are fixations (each counted once).

    Range: (-inf, inf); 0 = chance, higher is better. NaN for a constant map or no
    fixations.

    Example:
        >>> round(nss(np.array([[0.0, 0.0], [0.0, 4.0]]), np.array([[1, 1]])), 4)   # (4 - 1) / sqrt(3)
        1.7321
    """
    p = np.asarray(pred, dtype=np.float64)
    f = np.asarray(fixations)
    if p.ndim != 2:
        raise ValueError(f"pred must be a 2-D map, got {p.shape}")
    if f.shape == p.shape:
        values = p[f != 0]
        z = _standardize(p)[f != 0]
    elif f.ndim == 2 and f.shape[1] == 2:
        rows, cols = f[:, 0].astype(np.int64), f[:, 1].astype(np.int64)
        if len(f) and (rows.min() < 0 or cols.min() < 0 or rows.max() >= p.shape[0] or cols.max() >= p.shape[1]):
            raise ValueError(f"fixation coordinates fall outside the {p.shape} map")
        values = p[rows, cols]
        z = _standardize(p)[rows, cols]
    else:
        raise ValueError(f"fixations must be (K, 2) coordinates or a map of shape {p.shape}; got {f.shape}")
    if values.size == 0:
        return float("nan")
    return float(np.mean(z))


def auc_judd(pred: np.ndarray, fixation_map: np.ndarray) -> float:
    """AUC-Judd: area under the ROC curve of the map as a classifier of fixated pixels.

    Definition (Judd et al. 2009; MIT benchmark ``AUC_Judd.m``): positives are the fixated
    pixels (nonzero in ``fixation_map``, same shape as ``pred``), negatives all other
    pixels. Thresholds are the distinct predicted values at fixated pixels, from high to
    low; at each threshold ``t`` the true-positive rate is the fraction of fixated pixels
    with value >= t and the false-positive rate the fraction of non-fixated pixels with
    value >= t. The curve runs from (0, 0) through these points to (1, 1) and its area is
    taken by the trapezoid rule. Where the MIT code breaks ties with random jitter, ties
    are handled deterministically here by counting them (identical to the MIT loop when
    the fixated values are distinct). Equals ``sklearn.metrics.roc_auc_score`` when every
    non-fixated value also occurs at a fixated pixel; otherwise a non-fixated pixel
    between two fixation thresholds earns half a step more than in the exact ROC.

    Range: [0, 1]; 0.5 = chance, higher is better. NaN when there are no fixated or no
    non-fixated pixels.

    Example:
        >>> auc_judd(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([[1, 0], [0, 0]]))
        1.0
    """
    p = np.asarray(pred, dtype=np.float64)
    f = np.asarray(fixation_map) != 0
    if p.shape != f.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and fixation map {f.shape} must be 2-D of the same shape")
    pos, neg = p[f], p[~f]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    thresholds = np.unique(pos)[::-1]
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    tp = (pos.size - np.searchsorted(pos_sorted, thresholds, side="left")) / pos.size
    fp = (neg.size - np.searchsorted(neg_sorted, thresholds, side="left")) / neg.size
    tp = np.concatenate([[0.0], tp, [1.0]])
    fp = np.concatenate([[0.0], fp, [1.0]])
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]) / 2.0))


def patch_similarity_map(patch_tokens: np.ndarray, image_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity of each patch token with the image embedding, as a (G, G) map.

    ``patch_tokens`` (G*G, D) in row-major patch order (as a ViT lays them out, class token
    removed) and ``image_emb`` (D,) in the same space. Range [-1, 1]; higher = the patch
    looks more like the whole image, read as the model's saliency.

    Example:
        >>> patch_similarity_map(np.array([[1.0, 0], [0, 1], [1, 1], [-1, 0]]), np.array([1.0, 0]))
        array([[ 1.        ,  0.        ],
               [ 0.70710678, -1.        ]])
    """
    t = np.asarray(patch_tokens, dtype=np.float64)
    e = np.asarray(image_emb, dtype=np.float64)
    if t.ndim != 2 or e.shape != (t.shape[1],):
        raise ValueError(f"patch tokens {t.shape} must be (G*G, D) and the image embedding (D,), got {e.shape}")
    g = int(round(np.sqrt(len(t))))
    if g * g != len(t):
        raise ValueError(f"{len(t)} patch tokens do not form a square grid")
    return (l2_normalize(t) @ l2_normalize(e)).reshape(g, g)


def saliency_scores(pred: np.ndarray, density: np.ndarray, fixations: Optional[np.ndarray] = None,
                    crop: str = "center", interpolation: str = "bicubic", cc_resolution: str = "map") -> dict:
    """CC, NSS and AUC-Judd of one model map against one image's human maps, as the MIT
    saliency benchmark computes them, on the part of the image the model saw.

    ``pred`` (G, G) model map; ``density`` the human fixation density map (any shape);
    ``fixations`` an optional boolean fixation map (nonzero = fixated pixel), the shape of
    the image. ``crop`` (:data:`CROPS`) says where the model map lies on the human maps
    (:func:`model_map_on_human`); both human maps are cut to :func:`human_region` and the
    model map is enlarged onto them with ``interpolation`` (:data:`INTERPOLATIONS`), as
    ``CC.m``/``NSS.m``/``AUC_Judd.m`` do with ``imresize``. With ``cc_resolution:
    patch_grid`` CC is instead computed on the model's grid: the human region (for
    ``letterbox``, zero-padded to the square the model saw) shrunk to G x G with
    :func:`resize_map`. Returns ``{"cc", "nss", "auc_judd"}``; NSS and AUC-Judd are NaN
    without fixations.

    Example:
        >>> d = np.zeros((6, 8)); d[2:4, 3:5] = 1.0          # fixations in the central square
        >>> s = saliency_scores(imresize(d[:, 1:7], (3, 3), "bilinear"), d, d > 0)
        >>> round(s["cc"], 2), round(s["auc_judd"], 2)
        (0.89, 1.0)
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r} (one of {', '.join(INTERPOLATIONS)})")
    if cc_resolution not in CC_RESOLUTIONS:
        raise ValueError(f"unknown cc_resolution {cc_resolution!r} (one of {', '.join(CC_RESOLUTIONS)})")
    pred = np.asarray(pred, dtype=np.float64)
    density = np.asarray(density, dtype=np.float64)
    rs, cs = human_region(density.shape, crop)
    human = density[rs, cs]
    if cc_resolution == "map":
        cc = pearson_cc(model_map_on_human(pred, density.shape, crop, interpolation), human)
    else:
        if crop == "letterbox":
            side = max(human.shape)
            square = np.zeros((side, side))
            top, left = (side - human.shape[0]) // 2, (side - human.shape[1]) // 2
            square[top:top + human.shape[0], left:left + human.shape[1]] = human
            human = square
        cc = pearson_cc(pred, resize_map(human, pred.shape))
    out = {"cc": cc, "nss": float("nan"), "auc_judd": float("nan")}
    if fixations is not None:
        fix = np.asarray(fixations) != 0
        frs, fcs = human_region(fix.shape, crop)
        up = model_map_on_human(pred, fix.shape, crop, interpolation)
        fix = fix[frs, fcs]
        if fix.any():
            out["nss"] = nss(up, fix)
            out["auc_judd"] = auc_judd(up, fix)
    return out


# ----------------------------------------------------------------------------- evaluator

def _read_gray(path: str) -> np.ndarray:
    """A grayscale image as float64 (8- or 16-bit, or float)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
            im = im.convert("L")
        return np.asarray(im, dtype=np.float64)


def _fixation_mask(fixation_map: np.ndarray) -> np.ndarray:
    """Fixated pixels: above half the map's maximum. For a binary map (0/1, 0/255) that is
    every nonzero pixel; for a JPEG-compressed point map (MIT1003 ``_fixPts.jpg``) it
    drops the compression noise around the points."""
    top = fixation_map.max() if fixation_map.size else 0
    return fixation_map > top / 2.0 if top > 0 else np.zeros(fixation_map.shape, dtype=bool)


def saliency_alignment_task(*, embeddings, tables, classifier, inputs, options) -> MetricResult:
    """Agreement of the model's spatial maps (N, G, G) with human saliency, as the MIT
    saliency benchmark scores it (:func:`saliency_scores`).

    ``cc`` against the human density map (``images.map_path``); ``nss``/``auc_judd``
    against the fixations (``fixation_path``; fixated = above half the map's maximum, i.e.
    the nonzero pixels of a binary map). The model map is enlarged to the human map's
    resolution (``options["interpolation"]``: ``bicubic``, MATLAB ``imresize``'s default as
    in the benchmark code, or ``bilinear``), placed on the part of the image the model saw.
    ``options["crop"]``: ``auto`` (default) derives it from the preprocessing recorded in
    the embedding file (``shortest`` resize -> ``center``, ``squash`` -> ``none``, ``longest``
    -> ``letterbox``; open_clip's default ``shortest`` when the file records none), or one of
    :data:`CROPS`. ``options["cc_resolution"]: patch_grid`` computes CC on the model's grid
    instead (coarse variant). Each value is the mean over images where it is defined (a
    constant map has no CC/NSS); ``n`` counts those images.
    """
    name = inputs["dataset"]
    crop = options.get("crop", "auto")
    if crop not in ("auto",) + CROPS:
        raise ValueError(f"saliency_alignment option crop must be one of auto, {', '.join(CROPS)}; got {crop!r}")
    interpolation = options.get("interpolation", "bicubic")
    cc_resolution = options.get("cc_resolution", "map")
    emb = embeddings[name]
    if emb.spatial is None:
        raise ValueError(f"dataset {name!r}: the embeddings have no spatial maps; embed it with spatial "
                         "maps for saliency_alignment")
    if crop == "auto":  # what the model saw, as its embedding file records it
        crop = crop_for_resize_mode(str((emb.meta or {}).get("preprocess", "shortest")).rsplit("-", 1)[-1])
    _, images, spatial = join_images(name, embeddings, tables, ["map_path"])
    no_map = ~images["map_path"].map(lambda v: isinstance(v, str) and bool(v))
    if no_map.any():
        raise ValueError(f"dataset {name!r}: {int(no_map.sum())} image(s) have no 'map_path' (e.g. "
                         f"{images.loc[no_map, 'image_id'].iloc[0]!r})")
    has_fix = "fixation_path" in images.columns
    out = {"cc": [], "nss": [], "auc_judd": []}
    for i, row in enumerate(images.itertuples(index=False)):
        fix_path = getattr(row, "fixation_path", None) if has_fix else None
        fix = _fixation_mask(_read_gray(fix_path)) if isinstance(fix_path, str) and fix_path else None
        scores = saliency_scores(spatial[i], _read_gray(row.map_path), fix, crop=crop,
                                 interpolation=interpolation, cc_resolution=cc_resolution)
        for k in out:
            out[k].append(scores[k])
    rows, stats = [], []
    for variant, values in out.items():
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v)
        if variant != "cc" and not ok.any():
            continue
        rows.append(metric_row("saliency_alignment", name, variant, v[ok].mean() if ok.any() else np.nan, ok.sum()))
        # interval over the images (an image without a score, e.g. no fixations for NSS, weighs 0)
        stats.append(ratio_of_sums(np.where(ok, v, 0.0), ok, name))
    details = pd.DataFrame({"image_id": images["image_id"], **{k: np.asarray(v) for k, v in out.items()}})
    return MetricResult(rows_frame(rows), details, stats)
