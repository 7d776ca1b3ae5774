"""``image_folder``: one folder per class, ``<root>/<class>/<image>`` (torchvision ImageFolder).

Classes are the sub-folders of ``root``, sorted by name; an image's ``label`` is its
folder's index in that sorted list (images in nested folders below a class
folder belong to that class, as in torchvision). Image files are recognised by
suffix (jpg, jpeg, png, ppm, bmp, pgm, tif, tiff, webp; any case).

WordNet ids. When the folders are WordNet ids (``n01440764``...), the sorted list
is the ImageNet-1k class order, so labels equal ImageNet-1k indices **only when
all 1000 classes are present**. For a subset of ImageNet classes pass
``wnids=<file>`` listing the 1000 wnids in ImageNet order (one per line): labels
are then indices in that list. A ``classnames`` file whose length differs from
the number of label slots is refused rather than silently misaligned.

Options:
    ``classnames``: optional file (absolute or relative to root), one name per line
        in label order; ``class_name`` is then taken from it. Without it,
        ``class_name`` is the folder name.
    ``wnids``: optional file of WordNet ids defining the label order (see above).

``images``: ``image_id`` = path relative to root (``<class>/<file>``), ``label``
(int), ``class_name`` (str), ``folder`` (str, the class folder's name).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import DatasetFormatError, DatasetTables, register
from ._common import as_root, images_frame, is_image, option_path, posix_rel, read_lines

WNID = re.compile(r"^n\d{8}$")


def class_folders(root: Path) -> list:
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not folders:
        raise DatasetFormatError(f"{root}: no class folders (expected <root>/<class>/<image>)")
    return folders


def list_images(folder: Path) -> list:
    """Image files below ``folder``, recursively, in sorted order (as torchvision)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if is_image(f) and not f.startswith("."))
    return out


def label_map(folders: list, root: Path, wnids=None, source: str = "") -> tuple:
    """folder -> label, and the size of the label space."""
    if wnids is None:
        return {f: i for i, f in enumerate(folders)}, len(folders)
    wnids_file = option_path(root, wnids)
    order = read_lines(wnids_file, "WordNet ids")
    index = {w: i for i, w in enumerate(order)}
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise DatasetFormatError(
            f"{source or root}: class folder(s) {unknown[:5]} are not listed in {wnids_file}")
    return {f: index[f] for f in folders}, len(order)


@register("image_folder")
def read(root, classnames=None, wnids=None, **options) -> DatasetTables:
    """Read ``<root>/<class>/<image>``. Options: ``classnames`` (file), ``wnids`` (file)."""
    if options:
        raise DatasetFormatError(f"image_folder: unknown option(s) {sorted(options)}; known: classnames, wnids")
    root = as_root(root)
    folders = class_folders(root)
    labels, n_labels = label_map(folders, root, wnids)
    names = None
    if classnames is not None:
        names_file = option_path(root, classnames)
        names = read_lines(names_file, "class names")
        if len(names) != n_labels:
            hint = ("; the folders look like WordNet ids: pass the 'wnids' option (the 1000 ImageNet wnids "
                    "in order) so labels index the full ImageNet class list"
                    if wnids is None and all(WNID.match(f) for f in folders) else "")
            raise DatasetFormatError(
                f"{names_file}: {len(names)} class names for {n_labels} labels "
                f"({len(folders)} class folders in {root}){hint}")
    rows = []
    for folder in folders:
        files = list_images(root / folder)
        label = labels[folder]
        name = names[label] if names is not None else folder
        for f in files:
            rows.append({"image_id": posix_rel(f, root), "path": str(f), "member": "",
                         "label": label, "class_name": name, "folder": folder})
    if not rows:
        raise DatasetFormatError(f"{root}: the class folders hold no image files")
    images = images_frame(rows, ["label", "class_name", "folder"], {"label": "int64"})
    return DatasetTables(images=images, classnames=names,
                         info={"format": "image_folder", "n_classes": len(folders), "n_labels": n_labels,
                               "wordnet_ids": all(WNID.match(f) for f in folders)})
