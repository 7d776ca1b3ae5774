"""Helpers shared by the format adapters (not an adapter itself)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import pandas as pd

from . import DatasetFormatError

#: file suffixes treated as images (lower case), as torchvision's IMG_EXTENSIONS plus webp
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

IMAGE_COLUMNS = ["image_id", "path", "member"]


def as_root(root) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetFormatError(f"dataset root {root} is not a folder "
                                 "(check the dataset's repo and files in the config)")
    return root.absolute()


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def option_path(root: Path, value) -> Path:
    """An option naming a file: absolute, or relative to the dataset root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def read_lines(path: Path, what: str) -> List[str]:
    """Non-empty stripped lines of a text file (class names, templates, wnids)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetFormatError(f"{what} file {path} does not exist") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if any(not line for line in lines):
        raise DatasetFormatError(f"{path}: blank line inside the {what} list (one entry per line expected)")
    if not lines:
        raise DatasetFormatError(f"{path}: the {what} file is empty")
    return lines


def find(bases: Iterable[Path], name: str, *, kind: str = "file", max_depth: int = 3) -> Optional[Path]:
    """First path called ``name`` (case-insensitive) under any of ``bases``, breadth first.

    ``kind`` is "file" or "dir". Hidden folders are skipped except the bases themselves.
    """
    want = name.lower()
    for base in bases:
        if base is None or not Path(base).is_dir():
            continue
        level = [Path(base)]
        for _ in range(max_depth + 1):
            nxt = []
            for folder in level:
                try:
                    entries = sorted(os.scandir(folder), key=lambda e: e.name)
                except OSError:
                    continue
                for e in entries:
                    is_dir = e.is_dir()
                    if e.name.lower() == want and (is_dir if kind == "dir" else e.is_file()):
                        return Path(e.path)
                    if is_dir and not e.name.startswith("."):
                        nxt.append(Path(e.path))
            level = nxt
    return None


def require_columns(df: pd.DataFrame, columns: Sequence[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}" + (f". {hint}" if hint else ""))


def read_csv(path: Path, hint: str = "", **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise DatasetFormatError(f"{path} does not exist" + (f". {hint}" if hint else "")) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: not a readable CSV ({e})") from None


def images_frame(rows: list, task_columns: Sequence[str] = (), dtypes: Optional[dict] = None) -> pd.DataFrame:
    """The canonical ``images`` table from row dicts, with unique ``image_id``."""
    cols = IMAGE_COLUMNS + list(task_columns)
    df = pd.DataFrame(rows, columns=cols)
    for c in IMAGE_COLUMNS:
        df[c] = df[c].astype(str)
    for c, t in (dtypes or {}).items():
        df[c] = df[c].astype(t)
    dup = df["image_id"][df["image_id"].duplicated()]
    if len(dup):
        raise DatasetFormatError(f"duplicate image_id {dup.iloc[0]!r} ({len(dup)} duplicates)")
    return df.reset_index(drop=True)


def posix_rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
