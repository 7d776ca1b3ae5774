"""``webdataset``: the clip-benchmark layout of the ``clip-benchmark/wds_*`` Hub repos.

Layout, as written by ``clip_benchmark.webdataset_builder.convert_dataset`` and read
by ``clip_benchmark.datasets.builder.build_wds_dataset``::

    <root>/
        classnames.txt                          one class name per line, in label order
        zeroshot_classification_templates.txt   one template per line, with "{c}"
        dataset_type.txt                        optional; absent or "classification"
        <split>/                                "test" (default), "train", ...
            nshards.txt                         number of shards N
            0.tar, 1.tar, ... (N-1).tar         webdataset shards

Each shard holds samples as consecutive members ``<key>.<ext>``: the image
(``webp`` by default, or ``png``/``jpg``/``jpeg``; keys are ``s0000000``,
``s0000001``, ... over the whole split) and ``<key>.cls``, the class index as
decimal text. As in webdataset, the key is the member name up to the first dot
of its base name.

Only member headers and the tiny ``.cls`` members are read, never pixels.
``images``: ``image_id`` = ``<shard stem>/<key>`` (e.g. ``0/s0000042``), ``path`` =
the shard, ``member`` = the image member, ``label`` (int).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from . import DatasetFormatError, DatasetTables, register
from ._common import as_root, images_frame, read_lines

#: image extensions clip-benchmark accepts, in its order of preference
IMAGE_EXTS = ("webp", "png", "jpg", "jpeg", "0.webp")


def _split_key(name: str):
    """webdataset's base_plus_ext: key up to the first dot of the base name."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return None, None
    return name[:dot], name[dot + 1:]


def _shards(split_dir: Path) -> list:
    nshards_file = split_dir / "nshards.txt"
    if nshards_file.is_file():
        text = nshards_file.read_text().strip()
        try:
            n = int(text)
        except ValueError:
            raise DatasetFormatError(f"{nshards_file}: expected an integer number of shards, got {text!r}") from None
        shards = [split_dir / f"{i}.tar" for i in range(n)]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise DatasetFormatError(
                f"{split_dir}: nshards.txt says {n} shards but {missing[:5]} are missing "
                f"({len(missing)} in all); download all '{split_dir.name}/*.tar' files of the repo")
        return shards
    shards = [p for p in split_dir.glob("*.tar")]
    # clip-benchmark names shards 0.tar, 1.tar, ...: order numerically where possible
    shards.sort(key=lambda p: (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem))
    if not shards:
        raise DatasetFormatError(f"{split_dir}: no nshards.txt and no *.tar shards")
    return shards


def _read_shard(shard: Path):
    """(key, image member, label) for every sample of one shard."""
    samples = {}
    order = []
    try:
        with tarfile.open(shard, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, ext = _split_key(m.name)
                if key is None:
                    continue
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                ext = ext.lower()
                if ext == "cls":
                    raw = tf.extractfile(m).read().decode("utf-8", "replace").strip()
                    try:
                        samples[key]["cls"] = int(raw)
                    except ValueError:
                        raise DatasetFormatError(
                            f"{shard}: member {m.name} should hold an integer class index, got {raw[:40]!r}") from None
                elif ext in IMAGE_EXTS:
                    samples[key].setdefault("images", {})[ext] = m.name
    except tarfile.TarError as e:
        raise DatasetFormatError(f"{shard}: not a readable tar shard ({e}); re-download it") from None
    out = []
    for key in order:
        s = samples[key]
        imgs = s.get("images", {})
        image = next((imgs[e] for e in IMAGE_EXTS if e in imgs), None)
        if image is None:
            raise DatasetFormatError(
                f"{shard}: sample {key!r} has no image member (.{', .'.join(IMAGE_EXTS)})")
        if "cls" not in s:
            raise DatasetFormatError(f"{shard}: sample {key!r} has no {key}.cls member (class index)")
        out.append((key, image, s["cls"]))
    return out


@register("webdataset")
def read(root, split: str = "test", **options) -> DatasetTables:
    """Read a clip-benchmark webdataset split. Options: ``split`` (default "test")."""
    if options:
        raise DatasetFormatError(f"webdataset: unknown option(s) {sorted(options)}; known: split")
    root = as_root(root)
    type_file = root / "dataset_type.txt"
    if type_file.is_file():
        kind = type_file.read_text().strip().lower()
        if kind not in ("", "classification"):
            raise DatasetFormatError(
                f"{type_file}: dataset type {kind!r} is not supported; only classification sets can be read")
    classnames_file = root / "classnames.txt"
    if not classnames_file.is_file():
        raise DatasetFormatError(
            f"{classnames_file} is missing: clip-benchmark classification repos ship it at the top level; "
            "add 'classnames.txt' to the dataset's files in the config")
    classnames = read_lines(classnames_file, "class names")
    templates_file = root / "zeroshot_classification_templates.txt"
    templates = read_lines(templates_file, "templates") if templates_file.is_file() else None

    split_dir = root / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise DatasetFormatError(f"{root}: no split folder {split!r}; found {have}. Set the 'split' option")

    rows = []
    for shard in _shards(split_dir):
        path = str(shard.absolute())
        for key, image, label in _read_shard(shard):
            if not 0 <= label < len(classnames):
                raise DatasetFormatError(
                    f"{shard}: {key}.cls = {label} is outside 0..{len(classnames) - 1} "
                    f"({len(classnames)} names in {classnames_file.name})")
            rows.append({"image_id": f"{shard.stem}/{key}", "path": path, "member": image, "label": label})
    if not rows:
        raise DatasetFormatError(f"{split_dir}: the shards hold no samples")
    images = images_frame(rows, ["label"], {"label": "int64"})
    return DatasetTables(images=images, classnames=classnames, templates=templates,
                         info={"format": "webdataset", "split": split, "n_shards": int(images["path"].nunique())})
