"""Data stage: from a downloaded snapshot to the canonical manifest (and trials) of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..io import provenance, read_meta, write_frame
from .formats import DatasetFormatError, read_dataset


def stratified_subset(images: pd.DataFrame, size: Optional[int], seed: int = 0,
                      by: str = "label") -> pd.DataFrame:
    """A deterministic class-stratified subset of ``size`` rows (all rows if None or larger).

    Each class keeps ``size / n_classes`` images (the remainder goes to the
    classes first in a seeded order); within a class the images are a seeded
    random choice. Row order of the result follows the input.
    """
    if size is None or size >= len(images):
        return images.reset_index(drop=True)
    if by not in images.columns:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(images), size, replace=False))
        return images.iloc[keep].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    groups = {k: np.asarray(v) for k, v in images.groupby(by, sort=True).indices.items()}
    keys = list(groups)
    order = rng.permutation(len(keys))
    quota = {keys[i]: size // len(keys) for i in range(len(keys))}
    for i in order[: size % len(keys)]:
        quota[keys[i]] += 1
    # a class smaller than its quota gives the rest to others, in the seeded order
    short = sum(max(0, quota[k] - len(groups[k])) for k in keys)
    for i in order:
        if short == 0:
            break
        k = keys[i]
        room = len(groups[k]) - quota[k]
        if room > 0:
            take = min(room, short)
            quota[k] += take
            short -= take
    keep = []
    for k in keys:
        idx = groups[k]
        n = min(quota[k], len(idx))
        keep.extend(rng.choice(idx, n, replace=False).tolist())
    return images.iloc[np.sort(keep)].reset_index(drop=True)



def fetch_dataset(*, path: Optional[str], repo: Optional[str], repo_type: str, revision: str,
                  files: Sequence[str], extra_files: dict, out: str, archives: Sequence[dict] = (),
                  download_dir: Optional[str] = None, dataset: str = "") -> dict:
    """Download a dataset (or take a local folder) and write ``snapshot.json`` saying where it is.

    ``extra_files``: adapter option -> {repo, file, ...}: single files from other repos
    (for example the IQA meta-info CSVs), downloaded and passed to the adapter as paths.
    ``archives``: [{url, sha256 | md5, file}]: a dataset that is not on the Hub, as HTTP
    archives (:mod:`clipdyn.hub.downloads`): downloaded into ``download_dir``, checked, and
    extracted next to ``out`` (``files/``, the folder the adapter reads).
    """
    import json

    from ..hub import client as hub

    if archives:
        from ..hub.downloads import fetch_archives

        folder, got = fetch_archives(archives, download_dir, Path(out).parent, dataset=dataset,
                                     log=lambda line: print(line, flush=True))
        record = {"path": str(folder.resolve()), "commit": None, "revision": None, "repo": None, "archives": got}
    elif path:
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise DatasetFormatError(f"dataset folder {folder} does not exist (the dataset's `path` in the config)")
        record = {"path": str(folder), "commit": None, "revision": None, "repo": None}
    else:
        folder, commit = hub.download_snapshot(repo, revision=revision, repo_type=repo_type,
                                               allow_patterns=list(files) or None)
        record = {"repo": repo, "repo_type": repo_type, "revision": revision, "commit": commit,
                  "files": list(files), "path": str(folder)}
    record["extra_files"] = {}
    for option, spec in (extra_files or {}).items():
        f = hub.download_file(spec["repo"], spec["file"], revision=str(spec.get("revision", "main")),
                              repo_type=spec.get("repo_type", "dataset"))
        record["extra_files"][option] = str(f)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return record


def prepare_manifest(*, snapshot: dict, fmt: str, root: str, extract: Sequence[str], extract_dir: str,
                     options: dict, subset: Optional[int], subset_seed: int, out_manifest: str,
                     out_trials: str, dataset: str) -> dict:
    """Run the format adapter on the snapshot (extracting archives first) and write the tables.

    ``subset`` keeps a deterministic class-stratified subset of the images; trials
    that refer to a dropped image are dropped with it.
    """
    base = Path(snapshot["path"])
    if extract:
        from ..hub.archives import safe_extract

        for rel in extract:
            archive = base / rel
            if not archive.exists():
                raise DatasetFormatError(f"dataset {dataset}: archive {rel!r} (datasets.{dataset}.extract) is not in "
                                         f"the downloaded files at {base}; add it to datasets.{dataset}.files")
            safe_extract(archive, Path(extract_dir) / Path(rel).name.split(".")[0])
        base = Path(extract_dir)
    folder = base / root if root else base
    if not folder.exists():
        raise DatasetFormatError(f"dataset {dataset}: folder {folder} does not exist "
                                 f"(datasets.{dataset}.root={root!r})")
    options = dict(options or {})
    options.update(snapshot.get("extra_files") or {})
    if fmt.startswith("iqa_"):  # archives are unpacked under results/, never inside the HF cache
        options.setdefault("extract_dir", str(Path(extract_dir).resolve()))
    tables = read_dataset(fmt, folder, **options)
    images = tables.images
    n_all = len(images)
    images = stratified_subset(images, subset, subset_seed, by="label" if "label" in images else "")
    trials = tables.trials
    if trials is not None and len(images) < n_all:
        keep = set(images["image_id"])
        id_cols = [c for c in trials.columns if c.endswith("_id")]
        trials = trials[trials[id_cols].isin(keep).all(axis=1)].reset_index(drop=True)
    meta = provenance(dataset=dataset, format=fmt, source_folder=str(folder), dataset_repo=snapshot.get("repo"),
                      dataset_revision=snapshot.get("revision"), dataset_commit=snapshot.get("commit"),
                      subset=subset, subset_seed=subset_seed, n_images_available=n_all,
                      classnames=tables.classnames, templates=tables.templates)
    write_frame(images, out_manifest, meta)
    write_frame(trials if trials is not None else pd.DataFrame(), out_trials, meta)
    return {"images": len(images), "available": n_all, "trials": 0 if trials is None else len(trials)}


def derive_manifest(source_manifest: str, corruption: str, severities: Sequence[int], out_manifest: str,
                    out_trials: str, dataset: str) -> int:
    """Every source image at every severity: ids ``<image_id>@s<k>``, columns of the source plus ``severity``."""
    src = pd.read_parquet(source_manifest)
    parts = []
    for s in severities:
        part = src.copy()
        part["source_id"] = part["image_id"]
        part["image_id"] = part["image_id"].astype(str) + f"@s{int(s)}"
        part["severity"] = int(s)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    meta = dict(read_meta(source_manifest), dataset=dataset, derived_from=read_meta(source_manifest).get("dataset"),
                corruption=corruption, severities=list(map(int, severities)))
    write_frame(out, out_manifest, meta)
    write_frame(pd.DataFrame(), out_trials, meta)
    return len(out)
