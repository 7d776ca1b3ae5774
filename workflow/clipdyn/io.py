"""Reading and writing the workflow's Parquet artifacts.

Every Parquet file carries its provenance as JSON under the schema metadata key
``clipdyn`` (model, epoch, checkpoint revision and blob, dataset revision,
preprocessing, library version). Writes are atomic (:mod:`clipdyn.atomic`): a
file is written next to its target and renamed into place, so a killed job never
leaves a file that a later job would trust, and it gets the permissions a plain
``open()`` would give it. A file that is there but cannot be parsed (truncated by an
interrupted copy, say) raises :class:`DamagedFileError`, which names it and the fix; a
file-system error while reading it (EIO, ESTALE) is raised as itself, naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .atomic import atomic_path

META_KEY = b"clipdyn"

#: Columns of every metric row, in order: ``metric`` is the config's ``metrics:`` entry that computed the
#: row (e.g. ``texture_shape``), ``measure`` the quantity (e.g. ``texture_bias``; declared with its metric
#: kind in :mod:`clipdyn.metrics.registry`).
METRIC_COLUMNS = ["model", "epoch", "metric", "measure", "dataset", "variant", "value", "n"]

#: Columns a metric row carries after :data:`METRIC_COLUMNS`: the bootstrap standard error and interval
#: of ``value`` (:mod:`clipdyn.metrics.intervals`; NaN where intervals are off or undefined).
INTERVAL_COLUMNS = ["se", "ci_low", "ci_high"]

#: Column of a metric job's rows holding the bootstrap replicates of ``value`` (float32 list, resample k
#: drawing the same units at every epoch; empty where intervals are off). Kept in the metric files and
#: metrics.parquet (Table 1 reads them), left out of metrics.csv.
REPLICATES_COLUMN = "replicates"


@dataclass
class EmbeddingTable:
    """Image embeddings of one (model, epoch, dataset).

    ``X`` is float32 of shape (N, D), as returned by ``model.encode_image``
    (not normalised). ``spatial`` is float32 (N, G, G) per-patch maps when the
    dataset asked for them, else None.
    """

    ids: np.ndarray
    X: np.ndarray
    spatial: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)


@dataclass
class Classifier:
    """A zero-shot classifier: L2-normalised class weights (C, D), class names, and the
    checkpoint's learned logit scale (the multiplier itself, ``exp(logit_scale)``, ~100
    for a trained CLIP)."""

    W: np.ndarray
    classnames: list
    logit_scale: float
    meta: dict = field(default_factory=dict)


class DamagedFileError(ValueError):
    """A file an earlier job wrote is there but cannot be read (truncated by an interrupted copy,
    overwritten, or not written by this workflow). Deleting it makes Snakemake recompute it."""

    def __init__(self, path: os.PathLike, reason: str):
        self.path = str(path)
        super().__init__(f"{path} cannot be read ({reason}). It is a result of an earlier run, damaged (for example "
                         "truncated by an interrupted copy) or not written by this workflow: delete it and run the "
                         "workflow again, which recomputes it.")


@contextlib.contextmanager
def reading(path: os.PathLike) -> Iterator[None]:
    """Turn a failure to parse ``path`` inside the block into a :class:`DamagedFileError` naming it.

    Only a failure of the content is damage. A missing or unreadable (permissions) file keeps its own
    error, which says so already; so does every error the operating system reports with an errno (EIO,
    ESTALE on NFS, ENOSPC, ...): the file may be fine and the next run may read it, so it is never
    called damaged (which would tell the user to delete it). Such an error is raised as what it is, with
    ``path`` named."""
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError, DamagedFileError):
        raise
    except OSError as err:
        if err.errno is None:  # an OSError of a parser (pyarrow: "Couldn't deserialize thrift"): the content
            raise DamagedFileError(path, f"{type(err).__name__}: {err}") from err
        if err.filename is not None:
            raise
        raise OSError(err.errno, f"{err.strerror or err} while reading it (the file system failed, not "
                      "necessarily the file: check the disk or the network mount, then run again)",
                      str(path)) from err
    except (pa.ArrowException, EOFError, ValueError, KeyError) as err:  # ArrowInvalid is a ValueError
        raise DamagedFileError(path, f"{type(err).__name__}: {err}") from err


def provenance(**fields: Any) -> dict:
    """Provenance dict with the library version added."""
    out = {k: v for k, v in fields.items() if v is not None}
    out["clipdyn_version"] = __version__
    return out


def _meta_of(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read_meta(path: os.PathLike) -> dict:
    """The ``clipdyn`` provenance of a Parquet file (empty dict if none)."""
    with reading(path):
        return _meta_of(pq.read_schema(path))


def read_frame(path: os.PathLike) -> Tuple[pd.DataFrame, dict]:
    """A Parquet file as a DataFrame, with its ``clipdyn`` provenance (one read)."""
    with reading(path):
        table = pq.read_table(path)
        return table.to_pandas(), _meta_of(table.schema)


def write_table_atomic(table: pa.Table, path: os.PathLike, meta: Optional[Mapping] = None) -> None:
    """Write ``table`` to ``path`` with provenance ``meta``, atomically (tmp + rename)."""
    if meta is not None:
        md = dict(table.schema.metadata or {})
        md[META_KEY] = json.dumps(dict(meta), sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(md)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_frame(df: pd.DataFrame, path: os.PathLike, meta: Optional[Mapping] = None) -> None:
    """Write a DataFrame as Parquet, atomically, with provenance."""
    write_table_atomic(pa.Table.from_pandas(df, preserve_index=False), path, meta)


def _fixed_list(X: np.ndarray) -> pa.FixedSizeListArray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])


def _from_fixed_list(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)


def embeddings_to_table(ids: Sequence[str], X: np.ndarray, spatial: Optional[np.ndarray] = None) -> pa.Table:
    """Arrow table: ``image_id``, ``embedding`` (fixed-size list of float32), optional ``spatial_map``."""
    cols = {"image_id": pa.array(list(map(str, ids)), pa.string()), "embedding": _fixed_list(X)}
    if spatial is not None:
        cols["spatial_map"] = _fixed_list(spatial.reshape(len(spatial), -1))
    return pa.table(cols)


def write_embeddings(path: os.PathLike, ids: Sequence[str], X: np.ndarray, meta: Mapping,
                     spatial: Optional[np.ndarray] = None) -> None:
    """Write an embedding file after checking it: finite values, one row per id."""
    X = np.asarray(X)
    if X.ndim != 2 or len(X) != len(ids):
        raise ValueError(f"{path}: {len(ids)} image ids but embeddings of shape {X.shape}")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ValueError(f"{path}: {bad} of {len(X)} embeddings are not finite (NaN or inf); "
                         "the checkpoint or the precision setting is broken, nothing was written")
    meta = dict(meta)
    meta.setdefault("embedding_dim", int(X.shape[1]))
    if spatial is not None:
        meta["grid"] = list(spatial.shape[1:])
    write_table_atomic(embeddings_to_table(ids, X, spatial), path, meta)


def read_embeddings(path: os.PathLike, spatial: bool = False) -> EmbeddingTable:
    """Read an embedding file; ``spatial=True`` also reads the per-patch maps."""
    cols = ["image_id", "embedding"] + (["spatial_map"] if spatial else [])
    with reading(path):
        t = pq.read_table(path, columns=cols)
        meta = _meta_of(t.schema)
        sp = None
        if spatial:
            grid = meta["grid"]
            sp = _from_fixed_list(t.column("spatial_map")).reshape(-1, *grid)
        return EmbeddingTable(ids=t.column("image_id").to_numpy(zero_copy_only=False),
                              X=_from_fixed_list(t.column("embedding")), spatial=sp, meta=meta)


def write_classifier(path: os.PathLike, W: np.ndarray, classnames: Sequence[str], logit_scale: float,
                     meta: Mapping) -> None:
    """Write a zero-shot classifier (C, D) with the checkpoint's logit scale in the metadata."""
    W = np.asarray(W, dtype=np.float32)
    if not np.isfinite(W).all() or not np.isfinite(logit_scale):
        raise ValueError(f"{path}: classifier weights or logit scale are not finite; nothing was written")
    t = pa.table({"class_index": pa.array(np.arange(len(W)), pa.int32()),
                  "classname": pa.array(list(classnames), pa.string()),
                  "weight": _fixed_list(W)})
    meta = dict(meta, logit_scale=float(logit_scale), embedding_dim=int(W.shape[1]))
    write_table_atomic(t, path, meta)


def read_classifier(path: os.PathLike) -> Classifier:
    """Read a zero-shot classifier written by :func:`write_classifier`."""
    with reading(path):
        t = pq.read_table(path)
        meta = _meta_of(t.schema)
        return Classifier(W=_from_fixed_list(t.column("weight")),
                          classnames=t.column("classname").to_pylist(),
                          logit_scale=float(meta["logit_scale"]), meta=meta)


def metric_frame(rows: Sequence[Mapping] | pd.DataFrame, model: str, epoch: int, metric: str) -> pd.DataFrame:
    """Tidy metric rows with the columns :data:`METRIC_COLUMNS` and checked types: an evaluator's rows
    (:data:`clipdyn.metrics.result.ROW_COLUMNS`) of ``model`` at ``epoch``, computed by the ``metrics:``
    entry ``metric``."""
    df = pd.DataFrame(rows).copy()
    df["model"] = model
    df["epoch"] = int(epoch)
    df["metric"] = metric
    if "variant" not in df:
        df["variant"] = ""
    missing = set(METRIC_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"metric rows lack columns {sorted(missing)}")
    for col in INTERVAL_COLUMNS:
        if col not in df:
            df[col] = np.nan
    df = df[METRIC_COLUMNS + INTERVAL_COLUMNS + ([REPLICATES_COLUMN] if REPLICATES_COLUMN in df else [])]
    return df.astype({"model": str, "epoch": "int64", "metric": str, "measure": str, "dataset": str,
                      "variant": str, "value": "float64", "n": "int64", "se": "float64", "ci_low": "float64",
                      "ci_high": "float64"})
