"""``cue_conflict``: the texture-shape cue-conflict stimuli of Geirhos et al. (ICLR 2019).

Published layout (rgeirhos/texture-vs-shape, ``stimuli/style-transfer-preprocessed-512``)::

    <root>/<shape>/<shape><i>-<texture><j>.png      e.g. airplane/airplane1-bicycle2.png

16 folders (the 16 entry-level categories) of 80 PNGs each (1,280 in all; 224x224 RGB). ``<shape>``
is the class of the content image, ``<texture>`` the class of the style image;
``i``/``j`` number the source images. Stimuli whose shape and texture classes are
equal are kept here (``images`` lists every file); shape-bias metrics leave them out.

``images``: ``image_id`` = ``<shape>/<file stem>``, ``shape``, ``texture`` (str, one of
the 16 categories). The file name's shape must match its folder.
"""

from __future__ import annotations

import os
import re

from . import DatasetFormatError, DatasetTables, register
from ._common import as_root, images_frame

#: the 16 entry-level categories of the cue-conflict experiments
CATEGORIES = ("airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair",
              "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck")

NAME = re.compile(r"^(?P<shape>[a-z]+)(?P<i>\d+)-(?P<texture>[a-z]+)(?P<j>\d+)\.png$")


@register("cue_conflict")
def read(root, **options) -> DatasetTables:
    """Read the cue-conflict folder. No options."""
    if options:
        raise DatasetFormatError(f"cue_conflict: unknown option(s) {sorted(options)}; it takes none")
    root = as_root(root)
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    unknown = [f for f in folders if f not in CATEGORIES]
    if unknown:
        raise DatasetFormatError(
            f"{root}: folder(s) {unknown} are not cue-conflict categories {list(CATEGORIES)}")
    if not folders:
        raise DatasetFormatError(f"{root}: no category folders (expected <root>/<shape>/<shape><i>-<texture><j>.png)")
    rows = []
    for folder in folders:
        for name in sorted(os.listdir(root / folder)):
            if name.startswith(".") or not (root / folder / name).is_file():
                continue
            m = NAME.match(name)
            if m is None:
                raise DatasetFormatError(
                    f"{root / folder / name}: file name is not <shape><i>-<texture><j>.png")
            shape, texture = m["shape"], m["texture"]
            if shape != folder:
                raise DatasetFormatError(
                    f"{root / folder / name}: shape {shape!r} in the file name differs from its folder {folder!r}")
            if texture not in CATEGORIES:
                raise DatasetFormatError(
                    f"{root / folder / name}: texture {texture!r} is not one of the 16 categories")
            rows.append({"image_id": f"{folder}/{name[:-4]}", "path": str(root / folder / name), "member": "",
                         "shape": shape, "texture": texture})
    if not rows:
        raise DatasetFormatError(f"{root}: the category folders hold no PNG stimuli")
    images = images_frame(rows, ["shape", "texture"])
    conflicting = int((images["shape"] != images["texture"]).sum())
    return DatasetTables(images=images, info={"format": "cue_conflict", "categories": list(CATEGORIES),
                                              "n_conflicting": conflicting})
