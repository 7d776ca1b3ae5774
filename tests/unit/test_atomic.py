"""Results readable by the group: everything written atomically (temp file + rename) gets the mode a
plain ``open()`` (or ``mkdir``) would give it under the umask, not a temp file's private 0600/0700."""

import io
import os
import stat
import tarfile

import numpy as np
import pandas as pd
import pytest

from clipdyn import atomic


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def plain_file_mode(folder) -> int:
    """What ``open(path, "w")`` gives a new file here (the reference, not a formula)."""
    p = folder / "plain-open.txt"
    p.write_text("x")
    m = mode(p)
    p.unlink()
    return m


def plain_dir_mode(folder) -> int:
    p = folder / "plain-mkdir"
    p.mkdir()
    m = mode(p)
    p.rmdir()
    return m


def test_current_umask_reads_the_umask_without_changing_it(umask, monkeypatch):
    assert atomic.current_umask() == umask
    assert os.umask(umask) == umask  # unchanged by the read

    def no_proc(*a, **k):  # not Linux: the set-and-restore fallback
        raise OSError("no /proc")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    assert atomic.current_umask() == umask
    assert os.umask(umask) == umask


def test_atomic_path_gives_plain_open_permissions(umask, tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic.atomic_path(target) as tmp:
        assert mode(tmp) == 0o600  # mkstemp's private file while it is being written
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert mode(target) == plain_file_mode(tmp_path) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_path_leaves_the_old_file_and_no_temp_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_publish_a_symlink_leaves_its_target_alone(umask, tmp_path):
    blob = tmp_path / "blob"
    blob.write_text("x")
    os.chmod(blob, 0o444)  # as huggingface_hub leaves a cache blob
    link = tmp_path / ".link.tmp"
    link.symlink_to(blob)
    atomic.publish(link, tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and mode(blob) == 0o444


def test_parquet_artifacts_get_plain_open_permissions(umask, tmp_path):
    from clipdyn.io import provenance, write_classifier, write_embeddings, write_frame

    X = np.ones((3, 4), np.float32)
    write_embeddings(tmp_path / "emb.parquet", ["a", "b", "c"], X, provenance(model="m", epoch=1))
    write_classifier(tmp_path / "cls.parquet", X / 2, ["x", "y", "z"], 100.0, provenance(model="m", epoch=1))
    write_frame(pd.DataFrame({"a": [1]}), tmp_path / "metric.parquet", {"metric": "m"})
    for name in ("emb.parquet", "cls.parquet", "metric.parquet"):
        assert mode(tmp_path / name) == plain_file_mode(tmp_path), name


def test_pixel_caches_get_plain_open_permissions(umask, tmp_path):
    from PIL import Image

    from clipdyn.config.specs import Preprocess
    from clipdyn.data.pixels import build_pixel_cache

    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(p)
        rows.append({"image_id": f"i{i}", "path": str(p), "member": ""})
    rows.append({"image_id": "gone", "path": str(tmp_path / "missing.png"), "member": ""})  # the compaction path
    pp = Preprocess(16, "bicubic", "shortest")
    build_pixel_cache(pd.DataFrame(rows), pp, tmp_path / "px.npy", tmp_path / "px.parquet", on_bad_image="skip")
    for name in ("px.npy", "px.parquet"):
        assert mode(tmp_path / name) == plain_file_mode(tmp_path), name
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_extracted_archive_folder_gets_plain_mkdir_permissions(umask, tmp_path):
    from clipdyn.hub.archives import safe_extract

    arc = tmp_path / "a.tar"
    with tarfile.open(arc, "w") as tf:
        info = tarfile.TarInfo("data/x.txt")
        info.size = 1
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(b"x"))
    dest = safe_extract(arc, tmp_path / "extracted")
    assert mode(dest) == plain_dir_mode(tmp_path) == 0o777 & ~umask  # mkdtemp made it 0700


def test_figures_and_tables_get_plain_open_permissions(umask, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clipdyn.figures.style import save

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    written = save(fig, tmp_path / "f.pdf", tmp_path / "f.png")
    plt.close(fig)
    assert written and all(mode(p) == plain_file_mode(tmp_path) for p in written)


def test_local_hub_blobs_and_demo_manifest_get_plain_open_permissions(umask, tmp_path):
    from clipdyn.demo.build import _write_manifest
    from clipdyn.fixtures.localhub import LocalHub

    hub = LocalHub(tmp_path / "hub")
    src = tmp_path / "weights.bin"
    src.write_bytes(b"w" * 10)
    hub.publish("org/run", {"a.txt": b"bytes", "w.bin": src})
    blobs = list((tmp_path / "hub").rglob("blobs/*"))
    refs = list((tmp_path / "hub").rglob("refs/main"))
    assert len(blobs) == 2 and len(refs) == 1
    assert all(mode(b) == plain_file_mode(tmp_path) for b in blobs + refs)
    _write_manifest(tmp_path, {"k": 1})
    assert mode(tmp_path / "demo-manifest.json") == plain_file_mode(tmp_path)


def test_test_checkpoints_get_plain_open_permissions(umask, tmp_path):
    from clipdyn.fixtures.studies import make_checkpoint

    make_checkpoint(tmp_path / "run" / "epoch_1.pt", 1, seed=0)
    assert mode(tmp_path / "run" / "epoch_1.pt") == plain_file_mode(tmp_path)


def test_metric_collection_and_dataset_snapshot_get_plain_open_permissions(umask, tmp_path):
    from clipdyn.data.manifests import fetch_dataset
    from clipdyn.io import metric_frame, write_frame
    from clipdyn.metrics.compute import collect_metrics

    rows = metric_frame([{"measure": "acc", "dataset": "d", "value": 0.5, "n": 3}], "m", 1, "zs")
    write_frame(rows, tmp_path / "m1.parquet")
    collect_metrics([str(tmp_path / "m1.parquet")], str(tmp_path / "metrics.parquet"), str(tmp_path / "metrics.csv"))
    (tmp_path / "images").mkdir()
    fetch_dataset(path=str(tmp_path / "images"), repo=None, repo_type="dataset", revision="main", files=[],
                  extra_files={}, out=str(tmp_path / "snapshot.json"))
    for name in ("metrics.parquet", "metrics.csv", "snapshot.json"):
        assert mode(tmp_path / name) == plain_file_mode(tmp_path), name


def test_http_downloads_get_plain_open_permissions(umask, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from archive_server import ArchiveServer

    from clipdyn.hub.downloads import Archive, download

    with ArchiveServer({"/data.csv": b"a,b\n1,2\n"}) as srv:
        got = download(Archive(srv.url("/data.csv")), tmp_path / "dl", base_delay=0.0, progress_s=0.0, log=print)
    files = sorted((tmp_path / "dl").iterdir())
    assert got in files and len(files) == 4  # the file, its .ok record, its trust-on-first-use .sha256, its .lock
    assert all(mode(f) == plain_file_mode(tmp_path) for f in files), [(f.name, oct(mode(f))) for f in files]


def test_listing_record_and_hash_cache_get_plain_open_permissions(umask, tmp_path):
    from clipdyn.hub.listing import Listings
    from clipdyn.hub.sources import HashCache

    Listings(tmp_path / "listing.json", mode="top").save()
    cache = HashCache(tmp_path / "local-sha256.json")
    f = tmp_path / "ckpt.pt"
    f.write_bytes(b"x")
    cache.put(f, f.stat(), "0" * 64)
    cache.save()
    for name in ("listing.json", "local-sha256.json"):
        assert mode(tmp_path / name) == plain_file_mode(tmp_path), name
