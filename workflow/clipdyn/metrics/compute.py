"""The metric step: one metric of one model at every epoch, from cached embeddings, with a per-epoch memo;
and the collection of every metric's rows into one table."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Dict, Sequence

import pandas as pd

from ..io import metric_frame, read_classifier, read_embeddings, read_frame, read_meta, write_frame
from ..io import provenance as prov


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_tables(manifest: str, trials: str):
    from ..datasets import DatasetTables

    meta = read_meta(manifest)
    tr = pd.read_parquet(trials)
    return DatasetTables(images=pd.read_parquet(manifest), trials=tr if len(tr.columns) else None,
                         classnames=meta.get("classnames"), templates=meta.get("templates"), info=meta)


def epoch_input_key(name: str, epoch: int) -> str:
    """Input name of a per-epoch file of a metric job (``emb__<dataset>__<epoch>``, ``classifier__<epoch>``)."""
    return f"{name}__{epoch}"


def _file_state(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def metric_memo_paths(out: str, metric: str, epoch: int):
    """Where one epoch's rows and details of a metric are kept, next to the metric's file."""
    d = Path(out).parent / f"epoch_{epoch}"
    return d / f"{metric}.parquet", d / f"{metric}.details.parquet"


def compute_metric(*, inputs: Dict[str, str], epochs: Sequence[int], kind: str, roles: dict, options: dict,
                   spatial: Sequence[str], code: str, model: str, metric: str, out: str) -> dict:
    """One metric of one model at every epoch, from cached embeddings; rows of all epochs to ``out``.

    Each epoch's result is also kept as its own Parquet file (``metric_memo_paths``) carrying a key:
    the metric's kind, options, inputs and code hash, and the size and mtime of every file the epoch's
    result is computed from (embeddings, classifier, manifests). An epoch whose key is unchanged is read
    back instead of recomputed, so when a new epoch arrives only the new epoch is computed, and when the
    metric's code or options change every epoch is. Returns ``{"computed": [...], "reused": [...]}``.
    """
    from .registry import evaluate

    datasets = sorted({k.split("__")[1] for k in inputs if k.startswith("manifest__")})
    options = dict(options or {})
    tables: dict = {}

    def table(d):
        if d not in tables:
            tables[d] = load_tables(inputs[f"manifest__{d}"], inputs[f"trials__{d}"])
        return tables[d]

    if options.get("category_mapping") and not Path(options["category_mapping"]).is_absolute():
        # a file shipped with the cue-conflict dataset (the demo's category mapping)
        src = read_meta(inputs[f"manifest__{roles['dataset']}"]).get("source_folder", "")
        options["category_mapping"] = str(Path(src) / options["category_mapping"])
    shared = {k: _file_state(v) for k, v in inputs.items() if k.startswith(("manifest__", "trials__"))}
    frames, done = [], {"computed": [], "reused": []}
    for epoch in epochs:
        files = {d: inputs[epoch_input_key(f"emb__{d}", epoch)] for d in datasets}
        clf = inputs.get(epoch_input_key("classifier", epoch))
        key = hashlib.sha256(json.dumps({
            "kind": kind, "roles": roles, "options": options, "spatial": sorted(spatial), "code": code,
            "model": model, "epoch": int(epoch), "metric": metric, "shared": shared,
            "files": {d: _file_state(f) for d, f in files.items()},
            "classifier": _file_state(clf) if clf else None,
        }, sort_keys=True, default=str).encode()).hexdigest()
        rows_path, details_path = metric_memo_paths(out, metric, epoch)
        if rows_path.exists() and details_path.exists():
            kept, kept_meta = read_frame(rows_path)
            if kept_meta.get("memo_key") == key:
                frames.append(kept)
                done["reused"].append(int(epoch))
                continue
        embeddings = {d: read_embeddings(f, spatial=d in spatial) for d, f in files.items()}
        result = evaluate(kind, embeddings=embeddings, tables={d: table(d) for d in datasets},
                          classifier=read_classifier(clf) if clf else None, inputs=roles, options=options)
        rows = metric_frame(result.rows, model, int(epoch), metric)
        meta = prov(model=model, epoch=int(epoch), metric=metric, kind=kind, memo_key=key,
                    inputs={d: e.meta for d, e in embeddings.items()})
        for _, r in rows.iterrows():
            _log(f"epoch {epoch}: {r['measure']} {r['dataset']} {r['variant']}: {r['value']:.4f} (n={r['n']})")
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


def _ranges(xs: Sequence[int]) -> str:
    xs = sorted(xs)
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ", ".join(out)


def collect_metrics(paths: Sequence[str], out_parquet: str, out_csv: str) -> int:
    frames = [pd.read_parquet(p) for p in paths]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        df = df.sort_values(["model", "metric", "measure", "dataset", "variant", "epoch"]).reset_index(drop=True)
    write_frame(df, out_parquet, prov(n_files=len(paths)))
    tmp = Path(out_csv).with_name(f".{Path(out_csv).name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out_csv)
    return len(df)
