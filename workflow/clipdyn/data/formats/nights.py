"""``nights``: the NIGHTS 2AFC perceptual-similarity triplets (DreamSim, Fu et al. 2023).

Layout of ``nights.zip`` (ssundaram21/dreamsim, ``dataset/README.md``; it unpacks to a
``nights/`` folder, and the adapter accepts either that folder or its parent)::

    <root>/data.csv
    <root>/ref/<xxx>/<yyy>.png
    <root>/distort/<xxx>/<yyy>_0.png, <yyy>_1.png

``data.csv`` columns: ``id, left_vote, right_vote, votes, ref_path, left_path,
right_path, split, is_imagenet, prompt``; paths are relative to the folder of
``data.csv``. DreamSim reads ``right_vote`` as the share of observers who found the
right image closer to the reference, a share in [0, 1] (its 2AFC score is
``(d_left < d_right) * (1 - right_vote) + (d_right < d_left) * right_vote``), keeps rows
with ``votes >= 6`` (``votes`` = number of observers), and splits the test set by
``is_imagenet``. So p(right) = ``right_vote``, not ``right_vote / votes``. The adapter
keeps every row and the values as published (``info["vote_scale"]`` is "share" when
both vote columns lie in [0, 1], else "count"); filtering is the metric's business.

``images``: every image named in the CSV once; ``image_id`` = its CSV path (e.g.
``ref/000/000.png``). ``trials``: ``id, ref_id, left_id, right_id, left_vote,
right_vote, votes, split, is_imagenet, prompt`` in CSV order (``prompt`` is "" if the
CSV has no such column).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import DatasetFormatError, DatasetTables, register
from ._common import as_root, images_frame, read_csv, require_columns

COLUMNS = ["id", "left_vote", "right_vote", "votes", "ref_path", "left_path", "right_path", "split", "is_imagenet"]

_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f"}


def _bool_column(values: pd.Series, path: Path) -> pd.Series:
    if values.dtype == bool:
        return values
    out = []
    for i, v in enumerate(values):
        s = str(v).strip().lower()
        if s in _TRUE:
            out.append(True)
        elif s in _FALSE:
            out.append(False)
        else:
            raise DatasetFormatError(f"{path}: column 'is_imagenet' row {i + 1} is {v!r}, not True/False")
    return pd.Series(out, index=values.index, dtype=bool)


@register("nights")
def read(root, **options) -> DatasetTables:
    """Read NIGHTS (``data.csv`` + ``ref/`` + ``distort/``). No options."""
    if options:
        raise DatasetFormatError(f"nights: unknown option(s) {sorted(options)}; it takes none")
    root = as_root(root)
    if not (root / "data.csv").is_file() and (root / "nights" / "data.csv").is_file():
        root = root / "nights"
    csv = root / "data.csv"
    if not csv.is_file():
        raise DatasetFormatError(f"{root}: no data.csv (NIGHTS: data.csv next to ref/ and distort/)")
    df = read_csv(csv, keep_default_na=False, dtype={"ref_path": str, "left_path": str, "right_path": str,
                                                     "split": str, "prompt": str})
    require_columns(df, COLUMNS, csv, hint="expected the NIGHTS data.csv of DreamSim")
    if df.empty:
        raise DatasetFormatError(f"{csv}: no rows")
    numbers = {}
    for c in ("left_vote", "right_vote", "votes"):
        numbers[c] = pd.to_numeric(df[c], errors="coerce")
        if numbers[c].isna().any():
            row = int(numbers[c].isna().to_numpy().argmax())
            raise DatasetFormatError(f"{csv}: column {c!r} row {row + 1} is {df[c].iloc[row]!r}, not a number")

    paths = pd.unique(pd.concat([df["ref_path"], df["left_path"], df["right_path"]], ignore_index=True))
    rows, missing = [], []
    for rel in paths:
        rel = str(rel).strip()
        p = root / rel
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DatasetFormatError(f"{csv}: image path {rel!r} is not a path inside the dataset folder")
        if not p.is_file():
            missing.append(rel)
        rows.append({"image_id": rel, "path": str(p), "member": ""})
    if missing:
        raise DatasetFormatError(
            f"{csv}: {len(missing)} image(s) named in the CSV are missing under {root}, e.g. {missing[:3]}")
    images = images_frame(rows)

    trials = pd.DataFrame({
        "id": df["id"].astype(str).to_numpy(),
        "ref_id": df["ref_path"].str.strip().to_numpy(),
        "left_id": df["left_path"].str.strip().to_numpy(),
        "right_id": df["right_path"].str.strip().to_numpy(),
        "left_vote": numbers["left_vote"].astype("float64").to_numpy(),
        "right_vote": numbers["right_vote"].astype("float64").to_numpy(),
        "votes": numbers["votes"].to_numpy(),
        "split": df["split"].astype(str).to_numpy(),
        "is_imagenet": _bool_column(df["is_imagenet"], csv).to_numpy(),
        "prompt": (df["prompt"].astype(str) if "prompt" in df.columns else pd.Series([""] * len(df))).to_numpy(),
    })
    lv, rv = trials["left_vote"], trials["right_vote"]
    # DreamSim uses right_vote directly as the probability that the right image is
    # closer, so the published votes are shares in [0, 1]; say so if a file differs.
    shares = bool(((lv >= 0) & (lv <= 1) & (rv >= 0) & (rv <= 1)).all())
    return DatasetTables(images=images, trials=trials, info={"format": "nights", "data_csv": str(csv),
                                                             "vote_scale": "share" if shares else "count"})
