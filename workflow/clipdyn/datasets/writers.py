"""Write small datasets in the real published layouts, for tests and the offline demo.

Each ``write_*`` function writes files under ``root`` (created) in exactly the
layout its adapter reads from the Hub or a download, and returns nothing.
Images are uint8 (H, W, 3) arrays or PIL images. Output is deterministic: the
same arguments give byte-identical files (tar members carry a fixed mtime).

=====================  =================================================================
writer                 layout (see the adapter module for the source of each)
=====================  =================================================================
write_webdataset       clip-benchmark ``wds_*``: <split>/{0..N-1}.tar, nshards.txt,
                       classnames.txt, zeroshot_classification_templates.txt
write_image_folder     <classname>/<00000>.png
write_cue_conflict     <shape>/<shape><i>-<texture><j>.png
write_imagenet_c       <corruption>/<severity>/<wnid>/ILSVRC2012_val_<n>.JPEG
write_iqa              pyiqa: tid2013.tgz / kadid10k.tgz + meta_info_*Dataset.csv
write_nights           data.csv, ref/000/000.png, distort/000/000_{0,1}.png
write_saliency         images/<name>.jpg, maps/<name>.png, fixations/<name>.png
=====================  =================================================================
"""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .cue_conflict import CATEGORIES
from .iqa import SPECS

__all__ = ["write_webdataset", "write_image_folder", "write_cue_conflict", "write_iqa", "write_nights",
           "write_saliency", "write_imagenet_c"]

_MTIME = 1_600_000_000  # fixed, so archives are byte-reproducible


def _pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"images must be uint8 (H, W, 3) arrays or PIL images, got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr, "RGB")


def _encode(image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    _pil(image).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


_FORMATS = {"webp": ("WEBP", {"lossless": True}), "png": ("PNG", {}), "jpg": ("JPEG", {"quality": 95}),
            "jpeg": ("JPEG", {"quality": 95})}


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _MTIME
    info.mode = 0o444
    tf.addfile(info, io.BytesIO(data))


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    # clip-benchmark writes print(*lines, sep="\n", end="\n")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_webdataset(root, images, labels, classnames, templates, split: str = "test", shard_size: int = 64,
                     image_format: str = "webp") -> None:
    """clip-benchmark webdataset layout (``clip-benchmark/wds_imagenet1k`` and siblings).

    Writes ``root/<split>/{0..N-1}.tar`` with ``shard_size`` samples per shard, each
    sample ``s%07d.<image_format>`` + ``s%07d.cls`` (label as decimal text), keys
    counted over the whole split as ``convert_dataset`` does; ``<split>/nshards.txt``;
    ``classnames.txt`` and (if ``templates``) ``zeroshot_classification_templates.txt``.
    ``image_format``: "webp" (lossless, clip-benchmark's default), "png" or "jpg".
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    fmt, kwargs = _FORMATS[image_format]
    root = Path(root)
    split_dir = root / split
    split_dir.mkdir(parents=True, exist_ok=True)
    _write_lines(root / "classnames.txt", list(classnames))
    if templates:
        _write_lines(root / "zeroshot_classification_templates.txt", list(templates))
    n_shards = max(1, -(-len(images) // shard_size))
    for s in range(n_shards):
        with tarfile.open(split_dir / f"{s}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
            for index in range(s * shard_size, min(len(images), (s + 1) * shard_size)):
                key = "s%07d" % index
                _add_bytes(tf, f"{key}.{image_format}", _encode(images[index], fmt, **kwargs))
                _add_bytes(tf, f"{key}.cls", str(int(labels[index])).encode())
    (split_dir / "nshards.txt").write_text(f"{n_shards}\n")


def write_image_folder(root, images, labels, classnames) -> None:
    """``<root>/<classnames[label]>/<nnnnn>.png``.

    The adapter numbers classes by sorted folder name, so labels read back equal
    ``labels`` only when ``classnames`` is sorted (true for WordNet ids).
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    root = Path(root)
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = root / str(classnames[int(label)])
        folder.mkdir(parents=True, exist_ok=True)
        _pil(img).save(folder / f"{i:05d}.png")


def write_cue_conflict(root, items: Sequence[Tuple[str, str, object]]) -> None:
    """Geirhos cue-conflict layout: ``<shape>/<shape><i>-<texture><j>.png``.

    ``items``: (shape, texture, image) with shape and texture among the 16 categories.
    ``i`` numbers the items of each shape (1, 2, ...), ``j`` those of each texture.
    """
    root = Path(root)
    i_count: Dict[str, int] = {}
    j_count: Dict[str, int] = {}
    for shape, texture, img in items:
        for c in (shape, texture):
            if c not in CATEGORIES:
                raise ValueError(f"{c!r} is not one of the 16 cue-conflict categories")
        i_count[shape] = i_count.get(shape, 0) + 1
        j_count[texture] = j_count.get(texture, 0) + 1
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        _pil(img).save(folder / f"{shape}{i_count[shape]}-{texture}{j_count[texture]}.png")


def write_iqa(root, kind: str, refs: Dict[str, object], dists: List[Tuple[str, str, object, float]],
              archive: bool = True) -> None:
    """pyiqa's TID2013 or KADID-10k files.

    ``kind``: "tid2013" or "kadid10k". ``refs``: reference file name -> image (TID2013
    names like ``I01.BMP``, KADID-10k ``I01.png``). ``dists``: (ref name, distorted
    file name, image, score) rows, in CSV order; images are saved in the format
    their suffix names (BMP or PNG).

    With ``archive=True`` (default) the root mimics the two Hub repos together:
    ``root/<kind>.tgz`` (as in ``chaofengc/IQA-PyTorch-Datasets``, holding
    ``tid2013/reference_images/``, ``tid2013/distorted_images/`` or
    ``kadid10k/images/``) and ``root/meta_info_<Name>Dataset.csv`` (as in
    ``chaofengc/IQA-PyTorch-Datasets-metainfo``). With ``archive=False`` it is
    pyiqa's unpacked ``datasets/`` folder: ``root/<kind>/...`` and
    ``root/meta_info/meta_info_<Name>Dataset.csv``.
    """
    if kind not in SPECS:
        raise ValueError(f"kind must be one of {sorted(SPECS)}, got {kind!r}")
    spec = SPECS[kind]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files: List[Tuple[str, bytes]] = []
    for name, img in refs.items():
        files.append((f"{kind}/{spec.ref_dir}/{name}", _encode_by_suffix(img, name)))
    for ref, name, img, _ in dists:
        if ref not in refs:
            raise ValueError(f"distorted image {name!r} names an unknown reference {ref!r}")
        files.append((f"{kind}/{spec.dist_dir}/{name}", _encode_by_suffix(img, name)))
    rows = [["ref_name", "dist_name", spec.score_column, "std"]]
    rows += [[ref, name, f"{float(score):.5f}", "0.10000"] for ref, name, _, score in dists]
    if archive:
        meta = root / spec.meta
        # gzip with a fixed mtime in its header, so the same input gives the same archive bytes
        with gzip.GzipFile(root / spec.archive, "wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for d in sorted({str(Path(n).parent) for n, _ in files} | {kind}):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _MTIME
                tf.addfile(info)
            for name, data in files:
                _add_bytes(tf, name, data)
    else:
        meta = root / "meta_info" / spec.meta
        for name, data in files:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    meta.parent.mkdir(parents=True, exist_ok=True)
    with open(meta, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _encode_by_suffix(img, name: str) -> bytes:
    suffix = Path(name).suffix.lower()
    fmt = {".bmp": "BMP", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix)
    if fmt is None:
        raise ValueError(f"{name}: unsupported image suffix {suffix!r}")
    return _encode(img, fmt)


def write_nights(root, triplets: Sequence[dict]) -> None:
    """NIGHTS layout: ``data.csv``, ``ref/<xxx>/<yyy>.png``, ``distort/<xxx>/<yyy>_{0,1}.png``.

    Each triplet: ``ref``, ``left``, ``right`` (images), ``left_vote``, ``right_vote``
    (shares of observers, summing to 1), ``split`` ("train"/"val"/"test"),
    ``is_imagenet`` (bool), ``prompt`` (str), and optionally ``votes`` (number of
    observers, default 6) and ``id`` (default: the row number). Triplet ``k`` goes to
    folder ``k // 1000`` and file ``k % 1000``, both zero-padded to 3 digits.
    """
    root = Path(root)
    header = ["id", "left_vote", "right_vote", "votes", "ref_path", "left_path", "right_path", "split",
              "is_imagenet", "prompt"]
    rows = [header]
    for k, t in enumerate(triplets):
        xxx, yyy = f"{k // 1000:03d}", f"{k % 1000:03d}"
        ref, left, right = f"ref/{xxx}/{yyy}.png", f"distort/{xxx}/{yyy}_0.png", f"distort/{xxx}/{yyy}_1.png"
        for rel, key in ((ref, "ref"), (left, "left"), (right, "right")):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            _pil(t[key]).save(root / rel)
        rows.append([t.get("id", k), t["left_vote"], t["right_vote"], t.get("votes", 6), ref, left, right,
                     t["split"], bool(t["is_imagenet"]), t.get("prompt", "")])
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "data.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def write_saliency(root, images: Dict[str, object], density_maps: Dict[str, np.ndarray],
                   fixations: Optional[Dict[str, np.ndarray]] = None, split: Optional[str] = None) -> None:
    """SALICON-style folders: ``images/<name>.jpg``, ``maps/<name>.png``, ``fixations/<name>.png``.

    ``density_maps``: float (H, W) arrays, stored as 8-bit grey scaled so the
    maximum is 255 (as published maps are). ``fixations``: bool (H, W) arrays,
    stored as 0/255. ``split`` adds a ``<split>/`` level under each folder.
    """
    root = Path(root)
    dirs = {n: (root / n / split if split else root / n) for n in ("images", "maps", "fixations")}
    for name, img in images.items():
        if name not in density_maps:
            raise ValueError(f"no density map for image {name!r}")
        dirs["images"].mkdir(parents=True, exist_ok=True)
        _pil(img).save(dirs["images"] / f"{name}.jpg", quality=95)
        m = np.asarray(density_maps[name], dtype=np.float64)
        if m.ndim != 2 or not np.isfinite(m).all() or m.min() < 0:
            raise ValueError(f"density map {name!r} must be a finite non-negative (H, W) array")
        peak = m.max()
        grey = np.zeros(m.shape, np.uint8) if peak == 0 else np.round(m / peak * 255).astype(np.uint8)
        dirs["maps"].mkdir(parents=True, exist_ok=True)
        Image.fromarray(grey, "L").save(dirs["maps"] / f"{name}.png")
        if fixations is not None:
            fx = np.asarray(fixations[name]).astype(bool)
            dirs["fixations"].mkdir(parents=True, exist_ok=True)
            Image.fromarray(fx.astype(np.uint8) * 255, "L").save(dirs["fixations"] / f"{name}.png")


def write_imagenet_c(root, images, labels, wnids, severities=(1, 2, 3, 4, 5),
                     corruption: str = "gaussian_noise") -> None:
    """ImageNet-C layout: ``<corruption>/<severity>/<wnid>/ILSVRC2012_val_<n>.JPEG``.

    ``images`` are clean uint8 images; each is corrupted at every severity with
    :func:`clipdyn.corruptions.gaussian_noise` (seed ``noise_seed(<file name>,
    severity)``) and saved as JPEG quality 85, as ``make_imagenet_c.py`` does.
    ``labels`` index ``wnids``; file ``n`` is the 1-based position in ``images``.
    """
    from ..corruptions import corrupt_image

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    root = Path(root)
    for i, (img, label) in enumerate(zip(images, labels)):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        pixels = np.asarray(_pil(img))
        for s in severities:
            folder = root / corruption / str(int(s)) / wnids[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            out = corrupt_image(pixels, name, int(s), corruption)
            Image.fromarray(out, "RGB").save(folder / name, quality=85, optimize=True)
