"""Shared by the evaluators: embeddings joined to a dataset's images or trials on ``image_id``,
class labels checked against the classifier.

Images without an embedding (skipped at embedding time) are left out, and the evaluators' ``n``
says how many were used; embeddings of ids the manifest does not know are ignored with a warning.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # keep the import light: no pyarrow just to evaluate
    from clipdyn.io import EmbeddingTable


def as_list(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def require_columns(df: Optional[pd.DataFrame], columns: Sequence[str], dataset: str, table: str) -> None:
    if df is None:
        raise ValueError(f"dataset {dataset!r} has no {table} table; this metric needs one with "
                         f"columns {list(columns)}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"dataset {dataset!r}: the {table} table lacks column(s) {missing} "
                         f"(it has {list(df.columns)})")


def embedding_index(dataset: str, emb: "EmbeddingTable") -> pd.Series:
    """image_id -> row of ``emb.X``."""
    ids = pd.Index(np.asarray(emb.ids).astype(str))
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()[:5].tolist()
        raise ValueError(f"dataset {dataset!r}: the embeddings hold duplicate image ids, e.g. {dup}")
    if len(ids) != len(emb.X):
        raise ValueError(f"dataset {dataset!r}: {len(ids)} embedding ids but {len(emb.X)} embeddings")
    return pd.Series(np.arange(len(ids)), index=ids)


def join_images(dataset: str, embeddings: Mapping, tables: Mapping, columns: Sequence[str]
          ) -> Tuple[np.ndarray, pd.DataFrame, Optional[np.ndarray]]:
    """Embeddings (and spatial maps) aligned with the images of ``dataset`` that have one.

    Returns ``(X, images, spatial)`` in manifest order; ``images`` has a fresh index.
    """
    emb, tab = embeddings[dataset], tables[dataset]
    pos = embedding_index(dataset, emb)
    images = tab.images
    require_columns(images, ["image_id", *columns], dataset, "images")
    images = images.assign(image_id=images["image_id"].astype(str))
    if images["image_id"].duplicated().any():
        raise ValueError(f"dataset {dataset!r}: the images table repeats image ids")
    unknown = ~pos.index.isin(images["image_id"])
    if unknown.any():
        warnings.warn(f"dataset {dataset!r}: {int(unknown.sum())} embeddings have image ids the manifest "
                      f"does not list (e.g. {pos.index[unknown][:3].tolist()}); they are ignored", stacklevel=3)
    images = images[images["image_id"].isin(pos.index)].reset_index(drop=True)
    if images.empty:
        raise ValueError(f"dataset {dataset!r}: none of the {len(tab.images)} manifest images has an "
                         f"embedding ({len(pos)} embeddings)")
    rows = pos.loc[images["image_id"]].to_numpy()
    spatial = None if emb.spatial is None else np.asarray(emb.spatial)[rows]
    return np.asarray(emb.X)[rows], images, spatial


def need_classifier(kind: str, classifier) -> None:
    if classifier is None:
        raise ValueError(f"metric kind {kind!r} needs a zero-shot classifier, and none was given")



def class_labels(dataset: str, images: pd.DataFrame, n_classes: int) -> np.ndarray:
    labels = pd.to_numeric(images["label"], errors="raise").to_numpy()
    if np.any(labels != np.round(labels)):
        raise ValueError(f"dataset {dataset!r}: column 'label' must hold integer class indices")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"dataset {dataset!r}: column 'label' holds class indices in "
                         f"[{labels.min()}, {labels.max()}] but the classifier has {n_classes} classes")
    return labels
