"""Format adapters: each reads one published dataset layout into canonical tables.

An adapter is a function ``read(root: Path, **options) -> DatasetTables``. ``root``
is the folder the Hub snapshot (or an extracted archive) lives in. It never
decodes pixels; it lists images and the task's labels or judgements, and fails
with :class:`DatasetFormatError` naming the file and column when the layout is
not what it expects.

Canonical tables
----------------
``images`` (one row per image, written to ``data/{dataset}/manifest.parquet``):
    ``image_id`` (str, unique within the dataset), ``path`` (str, absolute path of
    the image file, or of the tar shard that holds it), ``member`` (str, the member
    name inside the tar shard, "" for plain files), plus task columns, for example
    ``label`` (int, class index), ``shape``/``texture`` (str, cue-conflict classes),
    ``severity`` (int), ``map_path``/``fixation_path`` (str, saliency).
``trials`` (pairs or triplets that refer to ``image_id``; IQA and NIGHTS only,
    else None; written to ``data/{dataset}/trials.parquet``).
``classnames``/``templates``: when the dataset ships them (clip-benchmark layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import pandas as pd


class DatasetFormatError(ValueError):
    """The files on disk do not have the layout the adapter expects."""


@dataclass
class DatasetTables:
    images: pd.DataFrame
    trials: Optional[pd.DataFrame] = None
    classnames: Optional[List[str]] = None
    templates: Optional[List[str]] = None
    info: dict = field(default_factory=dict)


#: format name (the ``format`` key of a dataset in the config) -> adapter
ADAPTERS: Dict[str, Callable[..., DatasetTables]] = {}


def register(name: str):
    def deco(fn):
        ADAPTERS[name] = fn
        return fn
    return deco


def read_dataset(fmt: str, root, **options) -> DatasetTables:
    """Run the adapter registered for ``fmt`` on ``root``."""
    from . import known  # noqa: F401  (registers the adapters)
    if fmt not in ADAPTERS:
        raise DatasetFormatError(f"unknown dataset format {fmt!r}; known formats: {sorted(ADAPTERS)}")
    return ADAPTERS[fmt](root, **options)
