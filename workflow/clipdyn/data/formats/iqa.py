"""``iqa_tid2013``, ``iqa_kadid10k``: full-reference IQA sets as IQA-PyTorch (pyiqa) ships them.

Sources on the Hub (read by ``pyiqa.data.dataset_api.load_dataset``):

* ``chaofengc/IQA-PyTorch-Datasets``: one archive per dataset, ``tid2013.tgz`` and
  ``kadid10k.tgz``, which unpack to ``tid2013/reference_images/``,
  ``tid2013/distorted_images/`` and ``kadid10k/images/`` (references and
  distorted images side by side);
* ``chaofengc/IQA-PyTorch-Datasets-metainfo``: the pair lists
  ``meta_info_TID2013Dataset.csv`` (``ref_name,dist_name,mos,std``) and
  ``meta_info_KADID10kDataset.csv`` (``ref_name,dist_name,dmos,std``).

The adapter takes a root holding the CSV and either the unpacked folders (pyiqa's
``datasets/`` layout) or the archive, which it unpacks once with
:func:`clipdyn.hub.archives.safe_extract` into ``extract_dir`` (default
``<root>/_extracted/<dataset>``). Folders and files are found anywhere up to
three levels below the root.

TID2013 file names. The CSV names references ``I01.BMP`` ... ``I24.BMP`` and
``i25.bmp``, and distorted images mostly ``i01_01_1.bmp`` but some ``I01_01_1.bmp``
or ``I01_11_1.BMP``: whatever the disk had where the CSV was made. File names are
therefore matched to the folder listing case-insensitively (an exact match wins).

Scores. ``score_type`` says which way a score points: ``"mos"`` = higher means
better quality, ``"dmos"`` = higher means worse. TID2013's ``mos`` is a MOS in
[0, 9]. KADID-10k's column is *named* ``dmos`` (after the dataset's own
``dmos.csv``) but holds degradation-category ratings in [1, 5] with higher =
better (5 = imperceptible; pyiqa's ``DATASET_INFO`` lists it as ``mos``), so
its rows carry ``score_type="mos"``; ``info["score_column"]`` keeps the
original column name.

``images``: unique references then distorted images; ``image_id`` = ``ref/<file>`` or
``dist/<file>``, ``role`` ("ref"/"dist"). ``trials``: ``ref_id, dist_id, score,
score_type``, one row per CSV row, in CSV order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from ...hub import archives
from . import DatasetFormatError, DatasetTables, register
from ._common import as_root, find, images_frame, option_path, read_csv, require_columns


@dataclass(frozen=True)
class IQASpec:
    name: str
    meta: str            # pyiqa metainfo CSV
    archive: str         # file in chaofengc/IQA-PyTorch-Datasets
    ref_dir: str         # folder of the references
    dist_dir: str        # folder of the distorted images
    score_column: str    # CSV column with the human score
    score_type: str      # "mos" (higher = better) or "dmos" (higher = worse)
    score_range: tuple


SPECS = {
    "tid2013": IQASpec("tid2013", "meta_info_TID2013Dataset.csv", "tid2013.tgz",
                       "reference_images", "distorted_images", "mos", "mos", (0.0, 9.0)),
    "kadid10k": IQASpec("kadid10k", "meta_info_KADID10kDataset.csv", "kadid10k.tgz",
                        "images", "images", "dmos", "mos", (1.0, 5.0)),
}

META_REPO = "chaofengc/IQA-PyTorch-Datasets-metainfo"
DATA_REPO = "chaofengc/IQA-PyTorch-Datasets"


def _listing(folder: Path) -> dict:
    """exact name -> name, plus lower-case name -> name where unambiguous."""
    names = [e.name for e in os.scandir(folder) if e.is_file()]
    out = {n: n for n in names}
    lower = {}
    for n in names:
        lower.setdefault(n.lower(), []).append(n)
    for key, group in lower.items():
        if len(group) == 1 and key not in out:
            out[key] = group[0]
    return out


def _resolve(name: str, listing: dict) -> Optional[str]:
    return listing.get(name) or listing.get(name.lower())


def _find_dist_dir(bases, spec: IQASpec, first_dist: str) -> Optional[Path]:
    """The ``dist_dir`` folder (any depth <= 3) that holds the CSV's first distorted image."""
    for base in bases:
        if base is None or not Path(base).is_dir():
            continue
        level = [Path(base)]
        for _ in range(4):
            nxt = []
            for folder in level:
                try:
                    entries = sorted((e for e in os.scandir(folder) if e.is_dir()), key=lambda e: e.name)
                except OSError:
                    continue
                for e in entries:
                    if e.name.startswith("."):
                        continue
                    if e.name.lower() == spec.dist_dir.lower() and _resolve(first_dist, _listing(Path(e.path))):
                        return Path(e.path)
                    nxt.append(Path(e.path))
            level = nxt
    return None


def read_iqa(spec: IQASpec, root, meta_info=None, archive=None, extract_dir=None, **options) -> DatasetTables:
    if options:
        raise DatasetFormatError(
            f"iqa_{spec.name}: unknown option(s) {sorted(options)}; known: meta_info, archive, extract_dir")
    root = as_root(root)
    meta_path = option_path(root, meta_info) if meta_info else find([root], spec.meta, kind="file")
    if meta_path is None or not meta_path.is_file():
        raise DatasetFormatError(
            f"{root}: no {spec.meta} (looked up to 3 levels down). It is in the Hub dataset repo {META_REPO}; "
            "add it to the dataset's files or set the 'meta_info' option")
    meta = read_csv(meta_path)
    require_columns(meta, ["ref_name", "dist_name", spec.score_column], meta_path,
                    hint=f"expected the pyiqa metainfo CSV of {spec.name} ({META_REPO})")
    if meta.empty:
        raise DatasetFormatError(f"{meta_path}: no rows")
    score = pd.to_numeric(meta[spec.score_column], errors="coerce")
    if score.isna().any():
        bad = int(score.isna().idxmax())
        raise DatasetFormatError(
            f"{meta_path}: column {spec.score_column!r} has a missing or non-numeric value in data row {bad + 1}")

    dest = option_path(root, extract_dir) if extract_dir else root / "_extracted" / spec.name
    first = str(meta["dist_name"].iloc[0])
    dist_dir = _find_dist_dir([root, dest], spec, first)
    if dist_dir is None:
        arch = option_path(root, archive) if archive else find([root], spec.archive, kind="file", max_depth=2)
        if arch is None or not arch.is_file():
            raise DatasetFormatError(
                f"{root}: found neither a '{spec.dist_dir}/' folder holding {first} nor the archive "
                f"{spec.archive} (from {DATA_REPO}); add '{spec.archive}' to the dataset's files "
                "or set the 'archive' option")
        archives.safe_extract(arch, dest)
        dist_dir = _find_dist_dir([dest], spec, first)
        if dist_dir is None:
            raise DatasetFormatError(
                f"{arch}: after extraction to {dest} there is no '{spec.dist_dir}/' folder holding {first}")
    ref_dir = dist_dir if spec.ref_dir == spec.dist_dir else _sibling(dist_dir, spec.ref_dir)
    if ref_dir is None:
        raise DatasetFormatError(f"{dist_dir.parent}: no '{spec.ref_dir}/' folder next to '{dist_dir.name}/'")

    ref_list, dist_list = _listing(ref_dir), _listing(dist_dir)
    refs, dists, missing = [], [], []
    for r, d in zip(meta["ref_name"].astype(str), meta["dist_name"].astype(str)):
        rr, dd = _resolve(r, ref_list), _resolve(d, dist_list)
        if rr is None:
            missing.append(str(ref_dir / r))
        if dd is None:
            missing.append(str(dist_dir / d))
        refs.append(rr)
        dists.append(dd)
    if missing:
        raise DatasetFormatError(
            f"{meta_path}: {len(missing)} image(s) listed in the CSV are not on disk, e.g. {missing[:3]}; "
            f"the archive or folders are incomplete")

    rows = []
    for role, folder, names in (("ref", ref_dir, refs), ("dist", dist_dir, dists)):
        for n in dict.fromkeys(names):  # unique, in CSV order
            rows.append({"image_id": f"{role}/{n}", "path": str(folder / n), "member": "", "role": role})
    images = images_frame(rows, ["role"])
    trials = pd.DataFrame({
        "ref_id": ["ref/" + n for n in refs],
        "dist_id": ["dist/" + n for n in dists],
        "score": score.astype("float64").to_numpy(),
        "score_type": spec.score_type,
    })
    return DatasetTables(images=images, trials=trials, info={
        "format": f"iqa_{spec.name}", "meta_info": str(meta_path), "score_column": spec.score_column,
        "score_type": spec.score_type, "score_range": list(spec.score_range)})


def _sibling(folder: Path, name: str) -> Optional[Path]:
    for e in os.scandir(folder.parent):
        if e.is_dir() and e.name.lower() == name.lower():
            return Path(e.path)
    return None


@register("iqa_tid2013")
def read_tid2013(root, **options) -> DatasetTables:
    """TID2013 from pyiqa's files. Options: ``meta_info``, ``archive``, ``extract_dir`` (paths)."""
    return read_iqa(SPECS["tid2013"], root, **options)


@register("iqa_kadid10k")
def read_kadid10k(root, **options) -> DatasetTables:
    """KADID-10k from pyiqa's files. Options: ``meta_info``, ``archive``, ``extract_dir`` (paths)."""
    return read_iqa(SPECS["kadid10k"], root, **options)
