"""A procedural image-caption world for the offline demo ("shape world").

Everything here is rendered with numpy from a seed; nothing is downloaded. The
world has :data:`SHAPES` (the classes) filled with :data:`TEXTURES` in
:data:`COLOURS` on a plain, slightly noisy background. Each class has a
characteristic texture (:data:`CLASS_TEXTURE`) that fills its shape in a fraction
``p_texture`` (default 0.75) of the training images; otherwise the texture is drawn
uniformly from the others. So both cues predict the class, the shape perfectly and
the texture in most images, and a model can learn either. Colour is a nuisance.

Images are uint8 arrays of shape (H, W, 3), rendered at 2x and averaged down, so
edges are anti-aliased. The default size is 32 px, the image size of the demo
models (``clipdyn-demo-*.json``).

What is rendered:

- :func:`training_pairs`: images and captions ("a dotted triangle", "a photo of a
  circle", now and then with the colour) for contrastive training;
- :func:`classification_set`: held-out images of the training distribution with
  class labels (zero-shot accuracy, calibration, noise sensitivity), or, with the
  texture independent of the class, a shifted set;
- :func:`cue_conflict_set`: the shape of class A filled with the characteristic
  texture of class B, for every (A, B) including A == B, as in Geirhos et al.
  (2019); the texture label is B's class name;
- :func:`ood_set`: shapes and textures never seen in training, and smooth noise
  blobs (out-of-distribution detection);
- :func:`iqa_set`, :func:`nights_set`, :func:`saliency_set`: stand-ins for the
  human-judgement datasets. **The "human" judgements there are SYNTHETIC**: opinion
  scores, 2AFC votes, saliency maps and fixations are computed from the stated
  rules in those functions' docstrings (:data:`SYNTHETIC_RULES`), not collected
  from people. They exercise the code paths; alignment numbers computed on them
  say nothing about human perception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import fft as _fft
from scipy import ndimage as _ndi

#: the classes, in class-index order (sorted, so an image-folder layout numbers them alike)
SHAPES: Tuple[str, ...] = ("circle", "crescent", "cross", "diamond", "heart", "square", "star", "triangle")

#: texture name -> the adjective used in captions
TEXTURES: Dict[str, str] = {
    "striped": "striped",
    "diagonal": "diagonally striped",
    "dotted": "dotted",
    "checkered": "checkered",
    "grid": "gridded",
    "zigzag": "zigzag",
    "ringed": "ringed",
    "speckled": "speckled",
}

#: each class's characteristic texture (the texture cue)
CLASS_TEXTURE: Dict[str, str] = {
    "circle": "striped", "crescent": "ringed", "cross": "grid", "diamond": "zigzag",
    "heart": "speckled", "square": "diagonal", "star": "checkered", "triangle": "dotted",
}

#: colour name -> RGB in [0, 1]
COLOURS: Dict[str, Tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.12, 0.75, 0.20),
    "blue": (0.15, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.60, 0.20, 0.80),
    "orange": (0.98, 0.55, 0.05),
    "pink": (0.98, 0.45, 0.70),
    "cyan": (0.10, 0.85, 0.90),
}

#: out-of-distribution shapes and textures: never drawn by the training sampler
OOD_SHAPES: Tuple[str, ...] = ("ring", "arrow", "hourglass", "blob")
OOD_TEXTURES: Tuple[str, ...] = ("marbled", "gradient", "bricks")

#: zero-shot prompt templates shipped with the classification set
TEMPLATES: Tuple[str, ...] = ("a photo of a {c}.", "a {c}.", "a picture of a {c}.", "a drawing of a {c}.")

#: IQA distortion types in the order of their TID/KADID-style index, and levels 1..5
IQA_DISTORTIONS: Tuple[str, ...] = ("blur", "noise", "jpeg", "contrast")
IQA_LEVELS = 5
#: weight of each distortion type in the synthetic opinion-score rule
IQA_WEIGHTS: Dict[str, float] = {"blur": 0.9, "noise": 1.0, "jpeg": 0.75, "contrast": 0.55}

#: the rules behind every synthetic "human" judgement, as text (also written to
#: the demo manifest and the dataset repos)
SYNTHETIC_RULES: Dict[str, str] = {
    "iqa": (
        "SYNTHETIC opinion score, not from people: MOS = clip(1 + 4 * (1 - w[type] * (level/5)**0.8) "
        "+ e, 1, 5) with w = {blur: 0.9, noise: 1.0, jpeg: 0.75, contrast: 0.55}, level in 1..5, "
        "e ~ Normal(0, 0.15) seeded; higher is better quality. The image content does not enter the rule."
    ),
    "nights": (
        "SYNTHETIC 2AFC votes, not from people: d(x) = RMS difference in [0, 1] units between the "
        "reference and x after a Gaussian blur (sigma 1 px) of both; P(a rater picks left as more "
        "similar) = sigmoid((d(right) - d(left)) / 0.02); each triplet has 7 raters, "
        "left_vote ~ Binomial(7, P) / 7 and right_vote = 1 - left_vote (fractions of raters)."
    ),
    "saliency": (
        "SYNTHETIC fixation density, not from eye tracking: density = 0.85 * Gaussian centred on the "
        "salient object (sigma = 0.6 * object radius) + 0.15 * Gaussian at the image centre "
        "(sigma = W/4), scaled to max 1; 16 fixations per image drawn from the density (multinomial, seeded)."
    ),
}

Image = np.ndarray

#: how much darker the texture's dark parts are than the object colour (0 = invisible
#: texture). It sets how easy the texture cue is next to the shape cue: at 0.65 the demo
#: models rely on texture almost at once, at 0.35 they learn shape first.
TEXTURE_CONTRAST = 0.6


@dataclass(frozen=True)
class Scene:
    """Everything that determines one rendered object image (units: output pixels)."""

    shape: str
    texture: str
    colour: str
    cx: float
    cy: float
    radius: float
    angle: float  # radians
    period: float  # texture period, px
    phase: Tuple[float, float]
    background: Tuple[float, float, float]
    noise_seed: int  # seeds the background noise and the speckled / marbled textures

    def caption(self, template: str = "{texture} {colour} {shape}") -> str:
        return template.format(texture=TEXTURES.get(self.texture, self.texture), colour=self.colour,
                               shape=self.shape)


# --- geometry ---------------------------------------------------------------------------------

def _polygon(u: np.ndarray, v: np.ndarray, verts: Sequence[Tuple[float, float]]) -> np.ndarray:
    """Even-odd point-in-polygon test on coordinate grids."""
    inside = np.zeros(u.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % n]
        crosses = (y1 > v) != (y2 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < xint)
    return inside


_STAR = [p for k in range(5) for p in (
    (1.05 * math.cos(-math.pi / 2 + 2 * math.pi * k / 5), 1.05 * math.sin(-math.pi / 2 + 2 * math.pi * k / 5)),
    (0.45 * math.cos(-math.pi / 2 + 2 * math.pi * (k + 0.5) / 5),
     0.45 * math.sin(-math.pi / 2 + 2 * math.pi * (k + 0.5) / 5)))]
_TRIANGLE = [(0.0, -1.0), (0.95, 0.65), (-0.95, 0.65)]
_ARROW = [(-0.95, -0.25), (0.15, -0.25), (0.15, -0.7), (0.95, 0.0), (0.15, 0.7), (0.15, 0.25), (-0.95, 0.25)]
_HOURGLASS = [(-0.8, -0.95), (0.8, -0.95), (0.1, 0.0), (0.8, 0.95), (-0.8, 0.95), (-0.1, 0.0)]


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray, seed: int = 0) -> np.ndarray:
    """Inside-mask of ``shape`` on object coordinates (u right, v down, radius ~1)."""
    r2 = u * u + v * v
    if shape == "circle":
        return r2 <= 0.92 ** 2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.78
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.05
    if shape == "triangle":
        return _polygon(u, v, _TRIANGLE)
    if shape == "star":
        return _polygon(u, v, _STAR)
    if shape == "cross":
        return ((np.abs(u) <= 0.32) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.32) & (np.abs(u) <= 0.95))
    if shape == "crescent":
        return (r2 <= 0.95 ** 2) & ((u - 0.45) ** 2 + (v + 0.1) ** 2 > 0.72 ** 2)
    if shape == "heart":
        x, y = u * 1.2, -v * 1.2 + 0.25
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    if shape == "ring":
        return (r2 <= 0.95 ** 2) & (r2 >= 0.5 ** 2)
    if shape == "arrow":
        return _polygon(u, v, _ARROW)
    if shape == "hourglass":
        return _polygon(u, v, _HOURGLASS)
    if shape == "blob":
        rng = np.random.default_rng(seed)
        theta = np.arctan2(v, u)
        rad = 0.7 + sum(rng.uniform(0.05, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                        for k in (2, 3, 5))
        return np.sqrt(r2) <= rad
    raise ValueError(f"unknown shape {shape!r}")


# --- textures ---------------------------------------------------------------------------------

def texture_pattern(texture: str, x: np.ndarray, y: np.ndarray, scene: Scene, ss: int) -> np.ndarray:
    """Pattern in [0, 1] (1 = object colour, 0 = its dark shade) on image coordinates in px."""
    p = scene.period
    x = x + scene.phase[0]
    y = y + scene.phase[1]
    frac = lambda a: a - np.floor(a)  # noqa: E731
    if texture == "striped":
        return frac(y / p) < 0.5
    if texture == "diagonal":
        return frac((x + y) / (p * math.sqrt(2))) < 0.5
    if texture == "dotted":
        dx, dy = frac(x / p) - 0.5, frac(y / p) - 0.5
        return dx * dx + dy * dy > 0.28 ** 2
    if texture == "checkered":
        c = 0.55 * p
        return (np.floor(x / c) + np.floor(y / c)) % 2 == 0
    if texture == "grid":
        return (np.abs(frac(x / p) - 0.5) < 0.3) & (np.abs(frac(y / p) - 0.5) < 0.3)
    if texture == "zigzag":
        tri = np.abs(frac(x / p) - 0.5) * 2  # triangle wave in [0, 1]
        return frac((y + 0.5 * p * tri) / p) < 0.5
    if texture == "ringed":
        r = np.hypot(x - scene.phase[0] - scene.cx, y - scene.phase[1] - scene.cy)
        return frac(r / (0.8 * p)) < 0.5
    if texture in ("speckled", "marbled"):
        rng = np.random.default_rng(scene.noise_seed + 1)
        h, w = x.shape
        if texture == "speckled":
            cell = 2 * ss  # 2 px cells
            cells = rng.random((h // cell + 1, w // cell + 1)) < 0.5
            return np.kron(cells, np.ones((cell, cell), dtype=bool))[:h, :w]
        field = _ndi.gaussian_filter(rng.standard_normal((h, w)), sigma=2.5 * ss)
        return 0.5 + 0.5 * np.sin(field * 40)
    if texture == "gradient":
        return np.clip((x - scene.phase[0] - scene.cx) / (2 * scene.radius) + 0.5, 0, 1)
    if texture == "bricks":
        row = np.floor(y / (0.6 * p))
        xs = x + (row % 2) * 0.5 * p
        return (frac(y / (0.6 * p)) > 0.25) & (frac(xs / p) > 0.15)
    if texture == "solid":
        return np.ones_like(x, dtype=bool)
    raise ValueError(f"unknown texture {texture!r}")


# --- rendering --------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _grid(res: int, ss: int) -> Tuple[np.ndarray, np.ndarray]:
    c = (np.arange(res * ss) + 0.5) / ss
    x, y = np.meshgrid(c, c)  # x (columns), y (rows), in output px
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _downsample(img: np.ndarray, ss: int) -> np.ndarray:
    """Box-filter an (H*ss, W*ss, C) image down by ``ss``."""
    out = sum(img[i::ss, j::ss] for i in range(ss) for j in range(ss))
    return out / (ss * ss)


def _to_uint8(img: np.ndarray) -> Image:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def paint(canvas: np.ndarray, scene: Scene, ss: int) -> np.ndarray:
    """Paint the scene's object onto a float canvas rendered at ``ss`` x resolution (in place)."""
    h = canvas.shape[0]
    x, y = _grid(h // ss, ss)
    ca, sa = math.cos(scene.angle), math.sin(scene.angle)
    dx, dy = (x - scene.cx) / scene.radius, (y - scene.cy) / scene.radius
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    mask = shape_mask(scene.shape, u, v, seed=scene.noise_seed)
    pattern = texture_pattern(scene.texture, x, y, scene, ss)
    colour = np.asarray(COLOURS[scene.colour]) if scene.colour in COLOURS else np.asarray(scene.colour)
    shade = colour * (1 - TEXTURE_CONTRAST)
    p = np.broadcast_to(pattern, mask.shape)[mask].astype(np.float64)
    canvas[mask] = shade + p[:, None] * (colour - shade)
    return canvas


def render(scene: Scene, res: int = 32, ss: int = 2) -> Image:
    """Render one scene to a uint8 (res, res, 3) image."""
    rng = np.random.default_rng(scene.noise_seed)
    canvas = np.empty((res * ss, res * ss, 3))
    canvas[:] = scene.background
    paint(canvas, scene, ss)
    img = _downsample(canvas, ss)
    img = img + rng.normal(0, 0.02, img.shape)  # mild sensor noise on everything
    return _to_uint8(img)


def sample_scene(rng: np.random.Generator, shape: str, texture: str, colour: Optional[str] = None,
                 res: int = 32, radius: Tuple[float, float] = (0.28, 0.40)) -> Scene:
    """Random pose, size, colour and background for a given shape and texture.

    ``radius`` is the object's radius as a fraction of the image size.
    """
    colour = colour or str(rng.choice(list(COLOURS)))
    r = res * rng.uniform(*radius)
    margin = r * 0.95
    cx, cy = rng.uniform(margin, res - margin, size=2) if res - 2 * margin > 0 else (res / 2, res / 2)
    # a low-saturation background, light or dark, so the saturated object stands out
    grey = rng.choice([rng.uniform(0.10, 0.35), rng.uniform(0.65, 0.92)])
    tint = rng.normal(0, 0.04, 3)
    return Scene(
        shape=shape, texture=texture, colour=colour, cx=float(cx), cy=float(cy), radius=float(r),
        angle=float(rng.uniform(-0.25, 0.25)), period=float(rng.uniform(4.5, 6.5) * res / 32),
        phase=(float(rng.uniform(0, 10)), float(rng.uniform(0, 10))),
        background=tuple(float(c) for c in np.clip(grey + tint, 0, 1)),
        noise_seed=int(rng.integers(2 ** 31)),
    )


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per (seed, dataset), so datasets do not shift each other."""
    key = [int(seed)] + [ord(c) for c in stream]
    return np.random.default_rng(np.random.SeedSequence(key))


def _draw_texture(rng: np.random.Generator, shape: str, p_texture: float) -> str:
    if rng.random() < p_texture:
        return CLASS_TEXTURE[shape]
    return str(rng.choice([t for t in TEXTURES if t != CLASS_TEXTURE[shape]]))


# --- datasets ---------------------------------------------------------------------------------

#: caption templates for training pairs, with their sampling weights
#: (colour, the easiest cue, is named rarely: when most captions name it, the tiny models
#: spend the first epochs on colour and the class cues come late)
CAPTION_TEMPLATES: Tuple[Tuple[str, float], ...] = (
    ("a {texture} {shape}", 0.40),
    ("a {shape} with a {texture} pattern", 0.20),
    ("a photo of a {texture} {shape}", 0.20),
    ("a photo of a {shape}", 0.10),
    ("a {texture} {colour} {shape}", 0.10),
)


def training_pairs(n: int, seed: int = 0, p_texture: float = 0.75, res: int = 32
                   ) -> Tuple[np.ndarray, List[str], np.ndarray]:
    """``n`` training images (n, res, res, 3) uint8, their captions, and class labels.

    Classes are balanced up to rounding; the class texture fills the shape with
    probability ``p_texture``.
    """
    rng = _rng(seed, "train")
    labels = rng.permutation(np.arange(n) % len(SHAPES))
    templates = [t for t, _ in CAPTION_TEMPLATES]
    weights = np.array([w for _, w in CAPTION_TEMPLATES])
    images = np.empty((n, res, res, 3), dtype=np.uint8)
    captions = []
    for i, k in enumerate(labels):
        shape = SHAPES[k]
        scene = sample_scene(rng, shape, _draw_texture(rng, shape, p_texture), res=res)
        images[i] = render(scene, res)
        captions.append(scene.caption(templates[rng.choice(len(templates), p=weights / weights.sum())]))
    return images, captions, labels.astype(np.int64)


def classification_set(n_per_class: int, seed: int = 0, p_texture: float = 0.75, res: int = 32,
                       stream: str = "classification") -> Tuple[np.ndarray, np.ndarray]:
    """Held-out images and their class labels (index into SHAPES).

    With the default ``p_texture`` they follow the training distribution. With
    ``p_texture=1/8`` the texture is uniform over all textures, independent of the
    class: a distribution shift that costs a texture-reliant model (the demo's
    "shifted" set). ``stream`` separates independent sets drawn with the same seed.
    """
    rng = _rng(seed, stream)
    labels = np.repeat(np.arange(len(SHAPES)), n_per_class)
    images = np.stack([render(sample_scene(rng, SHAPES[k], _draw_texture(rng, SHAPES[k], p_texture), res=res),
                              res) for k in labels])
    return images, labels.astype(np.int64)


def cue_conflict_set(n_per_pair: int, seed: int = 0, res: int = 32) -> List[Tuple[str, str, Image]]:
    """(shape class, texture class, image) for every ordered pair of classes, A == B included.

    The texture class B means: filled with B's characteristic texture.
    """
    rng = _rng(seed, "cue-conflict")
    items = []
    for a in SHAPES:
        for b in SHAPES:
            for _ in range(n_per_pair):
                items.append((a, b, render(sample_scene(rng, a, CLASS_TEXTURE[b], res=res), res)))
    return items


def ood_set(n_per_class: int, seed: int = 0, res: int = 32) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Out-of-distribution images: unseen shapes with unseen textures; "blob" is a smooth noise blob.

    Returns images, labels (index into the returned class names, OOD_SHAPES) and class names.
    """
    rng = _rng(seed, "ood")
    labels = np.repeat(np.arange(len(OOD_SHAPES)), n_per_class)
    images = []
    for k in labels:
        shape = OOD_SHAPES[k]
        texture = "marbled" if shape == "blob" else str(rng.choice(OOD_TEXTURES))
        images.append(render(sample_scene(rng, shape, texture, res=res), res))
    return np.stack(images), labels.astype(np.int64), list(OOD_SHAPES)


# --- distortions (IQA, NIGHTS) ----------------------------------------------------------------

def distort(img: Image, kind: str, level: int, rng: np.random.Generator) -> Image:
    """Apply distortion ``kind`` at ``level`` (1 = mild .. 5 = strong) to a uint8 image."""
    f = img.astype(np.float64) / 255
    if kind == "blur":
        out = _ndi.gaussian_filter(f, sigma=(0.35 * level, 0.35 * level, 0))
    elif kind == "noise":
        out = f + rng.normal(0, 0.03 * level, f.shape)
    elif kind == "jpeg":
        # JPEG-like: 8x8 block DCT with coefficients quantised more coarsely at higher levels
        h, w = f.shape[:2]
        ph, pw = (-h) % 8, (-w) % 8
        g = np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge")
        blocks = g.reshape(g.shape[0] // 8, 8, g.shape[1] // 8, 8, 3)
        coef = _fft.dctn(blocks, axes=(1, 3), norm="ortho")
        fy, fx = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
        q = (0.02 * level) * (1 + (fx + fy))[None, :, None, :, None]
        coef = np.round(coef / q) * q
        out = _fft.idctn(coef, axes=(1, 3), norm="ortho").reshape(g.shape)[:h, :w]
    elif kind == "contrast":
        m = f.mean(axis=(0, 1), keepdims=True)
        out = m + (f - m) * (1 - 0.17 * level)
    else:
        raise ValueError(f"unknown distortion {kind!r}")
    return _to_uint8(out)


def synthetic_mos(kind: str, level: int, rng: np.random.Generator) -> float:
    """SYNTHETIC opinion score in [1, 5] (higher = better), see ``SYNTHETIC_RULES['iqa']``."""
    clean = 1 - IQA_WEIGHTS[kind] * (level / IQA_LEVELS) ** 0.8
    return float(np.clip(1 + 4 * clean + rng.normal(0, 0.15), 1, 5))


def iqa_set(n_refs: int, seed: int = 0, res: int = 32, stream: str = "iqa"
            ) -> Tuple[List[Image], List[Tuple[int, int, int, Image, float]]]:
    """Reference images and their distorted versions with a SYNTHETIC opinion score.

    Returns ``refs`` (list of images) and ``dists``: (ref index, distortion type index
    into :data:`IQA_DISTORTIONS`, level 1..5, image, score in [1, 5], higher = better),
    every type at every level for each reference. File names and score scales of the
    published layouts are the caller's business (``clipdyn.demo.build``). Score rule:
    :data:`SYNTHETIC_RULES` ``["iqa"]``. ``stream`` separates independent sets.
    """
    rng = _rng(seed, stream)
    refs, dists = [], []
    for i in range(n_refs):
        shape = SHAPES[i % len(SHAPES)]
        ref = render(sample_scene(rng, shape, _draw_texture(rng, shape, 0.75), res=res), res)
        refs.append(ref)
        for t, kind in enumerate(IQA_DISTORTIONS):
            for level in range(1, IQA_LEVELS + 1):
                dists.append((i, t, level, distort(ref, kind, level, rng), synthetic_mos(kind, level, rng)))
    return refs, dists


def _blurred_rms(a: Image, b: Image) -> float:
    fa = _ndi.gaussian_filter(a.astype(np.float64) / 255, sigma=(1, 1, 0))
    fb = _ndi.gaussian_filter(b.astype(np.float64) / 255, sigma=(1, 1, 0))
    return float(np.sqrt(np.mean((fa - fb) ** 2)))


NIGHTS_RATERS = 7


def _variation(rng: np.random.Generator, scene: Scene, res: int) -> Image:
    """A variation of a scene: one attribute changed, or a pixel distortion."""
    what = rng.choice(["colour", "texture", "shape", "pose", "distortion"])
    if what == "colour":
        scene = replace(scene, colour=str(rng.choice([c for c in COLOURS if c != scene.colour])))
    elif what == "texture":
        scene = replace(scene, texture=str(rng.choice([t for t in TEXTURES if t != scene.texture])))
    elif what == "shape":
        scene = replace(scene, shape=str(rng.choice([s for s in SHAPES if s != scene.shape])))
    elif what == "pose":
        scene = replace(scene, cx=scene.cx + rng.normal(0, 2), cy=scene.cy + rng.normal(0, 2),
                        radius=scene.radius * rng.uniform(0.85, 1.15), angle=scene.angle + rng.normal(0, 0.2))
    img = render(scene, res)
    if what == "distortion":
        img = distort(img, str(rng.choice(IQA_DISTORTIONS)), int(rng.integers(1, 4)), rng)
    return img


def nights_set(n: int, seed: int = 0, res: int = 32, val_fraction: float = 0.2) -> List[dict]:
    """NIGHTS-style triplets (ref, left, right) with SYNTHETIC 2AFC votes.

    Each dict has ``ref``, ``left``, ``right`` (images), ``left_vote``, ``right_vote``
    (fractions of 7 synthetic raters who found that side more similar to ``ref``),
    ``split`` ("val" or "test"), ``is_imagenet`` (False) and ``prompt`` (the reference's
    caption). Vote rule: :data:`SYNTHETIC_RULES` ``["nights"]``.
    """
    rng = _rng(seed, "nights")
    out = []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        scene = sample_scene(rng, shape, _draw_texture(rng, shape, 0.75), res=res)
        ref = render(scene, res)
        left, right = _variation(rng, scene, res), _variation(rng, scene, res)
        p_left = 1 / (1 + math.exp(-(_blurred_rms(ref, right) - _blurred_rms(ref, left)) / 0.02))
        left_vote = int(rng.binomial(NIGHTS_RATERS, p_left)) / NIGHTS_RATERS
        out.append({
            "ref": ref, "left": left, "right": right,
            "left_vote": left_vote, "right_vote": 1 - left_vote,
            "split": "val" if rng.random() < val_fraction else "test",
            "is_imagenet": False, "prompt": scene.caption("a {texture} {colour} {shape}"),
        })
    return out


SALIENCY_FIXATIONS = 16


def saliency_set(n: int, seed: int = 0, res: int = 64
                 ) -> Tuple[Dict[str, Image], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Objects on clutter, with a SYNTHETIC fixation density map and fixations.

    Returns images, density maps (float32 (res, res) in [0, 1], max 1) and fixation
    maps (bool (res, res)), keyed by image name. Rule: :data:`SYNTHETIC_RULES`
    ``["saliency"]``. The clutter is many small, desaturated shapes; the salient
    object is one large, saturated, textured shape.
    """
    rng = _rng(seed, "saliency")
    images, maps, fixations = {}, {}, {}
    ss = 2
    x, y = np.meshgrid(np.arange(res) + 0.5, np.arange(res) + 0.5)
    centre = np.exp(-((x - res / 2) ** 2 + (y - res / 2) ** 2) / (2 * (res / 4) ** 2))
    for i in range(n):
        canvas = np.empty((res * ss, res * ss, 3))
        canvas[:] = rng.uniform(0.35, 0.6)
        for _ in range(int(rng.integers(25, 45))):
            s = sample_scene(rng, str(rng.choice(SHAPES)), "solid", res=res, radius=(0.03, 0.07))
            grey = rng.uniform(0.25, 0.75)
            muted = tuple(float(c) for c in np.clip(grey + rng.normal(0, 0.05, 3), 0, 1))
            paint(canvas, replace(s, colour=muted, cx=float(rng.uniform(0, res)), cy=float(rng.uniform(0, res))), ss)
        shape = str(rng.choice(SHAPES))
        obj = sample_scene(rng, shape, CLASS_TEXTURE[shape], res=res, radius=(0.14, 0.22))
        paint(canvas, obj, ss)
        name = f"sal{i:04d}"
        images[name] = _to_uint8(_downsample(canvas, ss) + rng.normal(0, 0.02, (res, res, 3)))
        sigma = 0.6 * obj.radius
        blob = np.exp(-((x - obj.cx) ** 2 + (y - obj.cy) ** 2) / (2 * sigma ** 2))
        density = 0.85 * blob / blob.max() + 0.15 * centre
        density = (density / density.max()).astype(np.float32)
        maps[name] = density
        idx = rng.choice(res * res, size=SALIENCY_FIXATIONS, p=(density / density.sum()).ravel())
        fix = np.zeros(res * res, dtype=bool)
        fix[idx] = True
        fixations[name] = fix.reshape(res, res)
    return images, maps, fixations
