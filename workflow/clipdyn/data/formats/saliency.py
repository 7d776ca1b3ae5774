"""``saliency``: images with human fixation-density maps (and optional binary fixation maps).

Two layouts are recognised.

SALICON-style folders, as used by the SALICON training code in the community
(e.g. samyak0210/saliency's ``SaliconDataset``: ``images/<split>/<id>.jpg``,
``maps/<split>/<id>.png``, ``fixations/<split>/<id>.png``) and by this workflow's
own writer without a split::

    <root>/images/[<split>/]<name>.jpg|.jpeg|.png
    <root>/maps/[<split>/]<name>.png|.jpg          fixation-density (saliency) maps, grey
    <root>/fixations/[<split>/]<name>.png          optional: binary fixation maps (> 0 = fixated)

MIT1003 as published by Judd et al. (ALLSTIMULI.zip, ALLFIXATIONMAPS.zip)::

    <root>/ALLSTIMULI/<name>.jpeg
    <root>/ALLFIXATIONMAPS/<name>_fixMap.jpg       density maps
    <root>/ALLFIXATIONMAPS/<name>_fixPts.jpg       fixation points

Options: ``split`` (e.g. "val"; default: none, or the MIT1003 layout when
``ALLSTIMULI/`` exists). Every image must have a density map; a missing fixation
map is allowed only if the dataset has no fixation maps at all.

``images``: ``image_id`` = ``<name>``, ``map_path`` (str), ``fixation_path`` (str, "" if none).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from . import DatasetFormatError, DatasetTables, register
from ._common import as_root, images_frame, is_image

MAP_SUFFIXES = (".png", ".jpg", ".jpeg")


def _by_stem(folder: Path, strip: str = "") -> dict:
    out = {}
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if not e.is_file() or e.name.startswith(".") or not is_image(e.name):
            continue
        stem = Path(e.name).stem
        if strip:
            if not stem.endswith(strip):
                continue
            stem = stem[: -len(strip)]
        if stem in out:
            raise DatasetFormatError(f"{folder}: two files for {stem!r}: {Path(out[stem]).name} and {e.name}")
        out[stem] = e.path
    return out


def _sub(root: Path, name: str, split: Optional[str]) -> Path:
    return root / name / split if split else root / name


@register("saliency")
def read(root, split: Optional[str] = None, **options) -> DatasetTables:
    """Read a saliency dataset (SALICON-style folders or MIT1003). Options: ``split``."""
    if options:
        raise DatasetFormatError(f"saliency: unknown option(s) {sorted(options)}; known: split")
    root = as_root(root)
    if (root / "ALLSTIMULI").is_dir() and split is None:
        layout = "mit1003"
        img_dir, map_dir = root / "ALLSTIMULI", root / "ALLFIXATIONMAPS"
        if not map_dir.is_dir():
            raise DatasetFormatError(f"{root}: ALLSTIMULI/ without ALLFIXATIONMAPS/ (unzip ALLFIXATIONMAPS.zip here)")
        images, maps, fixes = _by_stem(img_dir), _by_stem(map_dir, "_fixMap"), _by_stem(map_dir, "_fixPts")
    else:
        layout = "folders"
        img_dir, map_dir, fix_dir = (_sub(root, n, split) for n in ("images", "maps", "fixations"))
        for d, what in ((img_dir, "images"), (map_dir, "density maps")):
            if not d.is_dir():
                raise DatasetFormatError(
                    f"{root}: no folder {d.relative_to(root)}/ for the {what} "
                    "(expected images/, maps/ and optional fixations/, each with an optional <split>/ level; "
                    "or MIT1003's ALLSTIMULI/ and ALLFIXATIONMAPS/)")
        images, maps = _by_stem(img_dir), _by_stem(map_dir)
        fixes = _by_stem(fix_dir) if fix_dir.is_dir() else {}
    if not images:
        raise DatasetFormatError(f"{img_dir}: no image files")
    no_map = [n for n in images if n not in maps]
    if no_map:
        raise DatasetFormatError(
            f"{map_dir}: no density map for {len(no_map)} image(s), e.g. {no_map[:3]} (expected <name>.png)")
    if fixes:
        no_fix = [n for n in images if n not in fixes]
        if no_fix:
            raise DatasetFormatError(
                f"{root}: fixation maps exist but {len(no_fix)} image(s) have none, e.g. {no_fix[:3]}")
    rows = [{"image_id": n, "path": p, "member": "", "map_path": maps[n], "fixation_path": fixes.get(n, "")}
            for n, p in images.items()]
    table = images_frame(rows, ["map_path", "fixation_path"])
    return DatasetTables(images=table, info={"format": "saliency", "layout": layout, "split": split,
                                             "has_fixations": bool(fixes)})
