"""The metric step: one metric of one model at every epoch, from cached embeddings, with a per-epoch memo;
and the collection of every metric's rows into one table."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pandas as pd

from ..atomic import atomic_path
from ..io import (
    REPLICATES_COLUMN,
    DamagedFileError,
    metric_frame,
    read_classifier,
    read_embeddings,
    read_frame,
    read_meta,
    write_frame,
)
from ..io import provenance as prov
from ..progress import log as _log
from ..progress import ranges as _ranges


def load_tables(manifest: str, trials: str):
    from ..data.formats import DatasetTables

    images, meta = read_frame(manifest)
    tr, _ = read_frame(trials)
    return DatasetTables(images=images, trials=tr if len(tr.columns) else None,
                         classnames=meta.get("classnames"), templates=meta.get("templates"), info=meta)


def _file_state(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def metric_memo_paths(out: str, metric: str, epoch: int):
    """Where one epoch's rows and details of a metric are kept, next to the metric's file."""
    d = Path(out).parent / f"epoch_{epoch}"
    return d / f"{metric}.parquet", d / f"{metric}.details.parquet"


def compute_metric(*, files: Mapping, kind: str, roles: dict, options: dict, spatial: Sequence[str], code: str,
                   model: str, metric: str, out: str, intervals: Optional[Mapping] = None) -> dict:
    """One metric of one model at every epoch, from cached embeddings; rows of all epochs to ``out``.

    ``files``: what the job reads, by what it is: ``tables``: dataset -> {``manifest``, ``trials``};
    ``embeddings``: epoch -> dataset -> Parquet file; ``classifiers``: epoch -> Parquet file (empty for
    kinds without a class set). ``roles``: the metric's inputs (role -> dataset or list of datasets).

    Each epoch's result is also kept as its own Parquet file (``metric_memo_paths``) carrying a key:
    the metric's kind, options, inputs and code hash, and the size and mtime of every file the epoch's
    result is computed from (embeddings, classifier, manifests). An epoch whose key is unchanged is read
    back instead of recomputed, so when a new epoch arrives only the new epoch is computed, and when the
    metric's code or options change every epoch is. Returns ``{"computed": [...], "reused": [...]}``.

    ``intervals``: the ``intervals:`` settings (:class:`clipdyn.config.specs.IntervalSettings` as a dict);
    each row gains ``se``, ``ci_low``, ``ci_high`` and its bootstrap ``replicates``
    (:func:`with_intervals`). They are part of the key: changing them recomputes every epoch.
    """
    from .registry import evaluate

    table_files = files["tables"]
    datasets = sorted(table_files)
    epochs = sorted(int(e) for e in files["embeddings"])
    options = dict(options or {})
    tables: dict = {}

    def table(d):
        if d not in tables:
            tables[d] = load_tables(table_files[d]["manifest"], table_files[d]["trials"])
        return tables[d]

    if options.get("category_mapping") and not Path(options["category_mapping"]).is_absolute():
        # a file shipped with the cue-conflict dataset (the demo's category mapping)
        src = read_meta(table_files[roles["dataset"]]["manifest"]).get("source_folder", "")
        options["category_mapping"] = str(Path(src) / options["category_mapping"])
    shared = {f"{d}/{what}": _file_state(path) for d, t in table_files.items() for what, path in t.items()}
    frames, done = [], {"computed": [], "reused": []}
    for epoch in epochs:
        emb_files = _per_epoch(files["embeddings"], epoch)
        clf = _per_epoch(files.get("classifiers") or {}, epoch, None)
        key = hashlib.sha256(json.dumps({
            "kind": kind, "roles": roles, "options": options, "spatial": sorted(spatial), "code": code,
            "model": model, "epoch": int(epoch), "metric": metric, "shared": shared,
            "intervals": dict(intervals or {}),
            "files": {d: _file_state(f) for d, f in emb_files.items()},
            "classifier": _file_state(clf) if clf else None,
        }, sort_keys=True, default=str).encode()).hexdigest()
        rows_path, details_path = metric_memo_paths(out, metric, epoch)
        if rows_path.exists() and details_path.exists():
            try:
                kept, kept_meta = read_frame(rows_path)
            except DamagedFileError:  # our own cache, not a Snakemake output: recompute it
                _log(f"epoch {epoch}: the kept result {rows_path} cannot be read; computing it again")
                kept_meta = {}
            if kept_meta.get("memo_key") == key:
                frames.append(kept)
                done["reused"].append(int(epoch))
                continue
        embeddings = {d: read_embeddings(f, spatial=d in spatial) for d, f in emb_files.items()}
        result = evaluate(kind, embeddings=embeddings, tables={d: table(d) for d in datasets},
                          classifier=read_classifier(clf) if clf else None, inputs=roles, options=options)
        rows = metric_frame(with_intervals(result, intervals), model, int(epoch), metric)
        meta = prov(model=model, epoch=int(epoch), metric=metric, kind=kind, memo_key=key,
                    inputs={d: e.meta for d, e in embeddings.items()})
        for _, r in rows.iterrows():
            _log(f"epoch {epoch}: {r['measure']} {r['dataset']} {r['variant']}: {r['value']:.4f} "
                 f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}] (n={r['n']})")
        details = result.details if result.details is not None else pd.DataFrame()
        write_frame(details, details_path, meta)
        write_frame(rows, rows_path, meta)  # last: a rows file with its key means both are complete
        frames.append(rows)
        done["computed"].append(int(epoch))
    _log(f"{metric}: computed epochs {_ranges(done['computed']) or 'none'}; "
         f"reused (unchanged inputs and code) epochs {_ranges(done['reused']) or 'none'}")
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_frame(df, out, prov(model=model, metric=metric, kind=kind, code=code, epochs=[int(e) for e in epochs],
                              **done))
    return done


def with_intervals(result, intervals: Optional[Mapping]) -> pd.DataFrame:
    """An evaluator's rows with the columns ``se``, ``ci_low``, ``ci_high`` and ``replicates`` of each
    row's statistic (:func:`clipdyn.metrics.intervals.interval_fields`); NaN and no replicates for a
    row without a statistic, or for every row when ``intervals`` is off (or None)."""
    from .intervals import interval_fields

    rows = result.rows.reset_index(drop=True)
    stats = list(result.stats) if result.stats is not None else [None] * len(rows)
    if len(stats) != len(rows):
        raise ValueError(f"the evaluator returned {len(rows)} rows but {len(stats)} statistics")
    fields = [interval_fields(s, intervals) for s in stats]
    out = rows.copy()
    for col in ("se", "ci_low", "ci_high"):
        out[col] = [f[col] for f in fields]
    out[REPLICATES_COLUMN] = [f["replicates"] for f in fields]
    return out


def _per_epoch(by_epoch: Mapping, epoch: int, *default):
    """``by_epoch[epoch]``; keys may be ints, or strings after a round trip through JSON."""
    for k in (epoch, str(epoch)):
        if k in by_epoch:
            return by_epoch[k]
    if default:
        return default[0]
    raise KeyError(f"no file for epoch {epoch} (have {sorted(by_epoch)})")



def collect_metrics(paths: Sequence[str], out_parquet: str, out_csv: str) -> int:
    """Every metric file's rows into one Parquet table (with the bootstrap replicates) and a CSV
    (without them)."""
    frames = [read_frame(p)[0] for p in paths]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        df = df.sort_values(["model", "metric", "measure", "dataset", "variant", "epoch"]).reset_index(drop=True)
    write_frame(df, out_parquet, prov(n_files=len(paths)))
    with atomic_path(out_csv) as tmp:
        df.drop(columns=[REPLICATES_COLUMN], errors="ignore").to_csv(tmp, index=False)
    return len(df)
