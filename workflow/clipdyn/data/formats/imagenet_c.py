"""``imagenet_c``: the downloaded ImageNet-C layout (Hendrycks & Dietterich, ICLR 2019).

The released archives (``noise.tar``, ``blur.tar``, ``weather.tar``, ``digital.tar``)
unpack to::

    <root>/<corruption>/<severity>/<wnid>/<file>     e.g. gaussian_noise/3/n01440764/ILSVRC2012_val_00000293.JPEG

with severities 1..5 and the 1000 ImageNet validation wnids (50,000 JPEGs of
224x224 per corruption and severity), as written by ``make_imagenet_c.py``.

Options:
    ``corruption``: which corruption folder to read (default ``gaussian_noise``).
    ``severities``: optional list of severities to keep (default: every folder 1..5).
    ``wnids``: optional file of the 1000 wnids in ImageNet order, for a subset of
        classes (see ``image_folder``); by default the label is the index in the
        sorted wnid list, which is the ImageNet-1k index when all 1000 are present.

``images``: ``image_id`` = ``<corruption>/<severity>/<wnid>/<file>``, ``label`` (int),
``severity`` (int), ``wnid`` (str), ``corruption`` (str).
"""

from __future__ import annotations

import os

from . import DatasetFormatError, DatasetTables, register
from ._common import as_root, images_frame, posix_rel
from .image_folder import label_map, list_images


@register("imagenet_c")
def read(root, corruption: str = "gaussian_noise", severities=None, wnids=None, **options) -> DatasetTables:
    """Read one corruption of ImageNet-C. Options: ``corruption``, ``severities``, ``wnids``."""
    if options:
        raise DatasetFormatError(
            f"imagenet_c: unknown option(s) {sorted(options)}; known: corruption, severities, wnids")
    root = as_root(root)
    cdir = root / corruption
    if not cdir.is_dir():
        have = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        raise DatasetFormatError(
            f"{root}: no folder for corruption {corruption!r}; found {have}. "
            "Set the 'corruption' option or download the archive that holds it (gaussian_noise is in noise.tar)")
    found = sorted(int(e.name) for e in os.scandir(cdir) if e.is_dir() and e.name.isdigit())
    bad = [e.name for e in os.scandir(cdir) if e.is_dir() and not (e.name.isdigit() and 1 <= int(e.name) <= 5)]
    if bad:
        raise DatasetFormatError(f"{cdir}: folder(s) {sorted(bad)} are not severities 1..5")
    if severities is None:
        wanted = found
    else:
        wanted = sorted({int(s) for s in ([severities] if isinstance(severities, (int, str)) else severities)})
        missing = [s for s in wanted if s not in found]
        if missing:
            raise DatasetFormatError(f"{cdir}: severity folder(s) {missing} missing; found {found}")
    if not wanted:
        raise DatasetFormatError(f"{cdir}: no severity folders 1..5 (expected <corruption>/<severity>/<wnid>/<file>)")

    class_sets = {}
    for s in wanted:
        sdir = cdir / str(s)
        class_sets[s] = sorted(e.name for e in os.scandir(sdir) if e.is_dir() and not e.name.startswith("."))
        if not class_sets[s]:
            raise DatasetFormatError(f"{sdir}: no class (wnid) folders")
    reference = class_sets[wanted[0]]
    for s in wanted[1:]:
        if class_sets[s] != reference:
            diff = sorted(set(class_sets[s]) ^ set(reference))
            raise DatasetFormatError(
                f"{cdir}: severities {wanted[0]} and {s} have different class folders (e.g. {diff[:3]}); "
                "the download is incomplete")
    labels, n_labels = label_map(reference, root, wnids, source=str(cdir))

    rows = []
    for s in wanted:
        for wnid in reference:
            for f in list_images(cdir / str(s) / wnid):
                rows.append({"image_id": posix_rel(f, root), "path": str(f), "member": "",
                             "label": labels[wnid], "severity": s, "wnid": wnid, "corruption": corruption})
    if not rows:
        raise DatasetFormatError(f"{cdir}: no image files")
    images = images_frame(rows, ["label", "severity", "wnid", "corruption"], {"label": "int64", "severity": "int64"})
    return DatasetTables(images=images, info={"format": "imagenet_c", "corruption": corruption,
                                              "severities": wanted, "n_classes": len(reference),
                                              "n_labels": n_labels})
