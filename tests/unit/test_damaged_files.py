"""A cached artifact that can no longer be read fails its readers with a message naming the file and
the fix (delete it, run again), not a bare pyarrow/NumPy traceback."""

import os

import numpy as np
import pandas as pd
import pytest

from clipdyn.config.specs import Preprocess
from clipdyn.data.pixels import build_pixel_cache, open_pixels
from clipdyn.io import (
    DamagedFileError,
    provenance,
    read_classifier,
    read_embeddings,
    read_frame,
    read_meta,
    write_classifier,
    write_embeddings,
    write_frame,
)


def truncate(path, keep: float = 0.5) -> None:
    """What an interrupted copy leaves: the first part of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def assert_names_file_and_fix(err: pytest.ExceptionInfo, path) -> None:
    msg = str(err.value)
    assert str(path) in msg and "delete it and run the workflow again" in msg, msg
    assert err.value.path == str(path)


@pytest.fixture
def artifacts(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    ids = [f"i{k}" for k in range(40)]
    write_embeddings(tmp_path / "emb.parquet", ids, X, provenance(model="m", epoch=1),
                     spatial=np.zeros((40, 2, 2), np.float32))
    write_classifier(tmp_path / "cls.parquet", X[:5], list("abcde"), 100.0, provenance(model="m", epoch=1))
    write_frame(pd.DataFrame({"v": np.arange(40.0)}), tmp_path / "rows.parquet", {"metric": "x"})
    return tmp_path


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_truncated_embeddings_name_the_file_and_the_fix(artifacts, keep):
    path = artifacts / "emb.parquet"
    assert read_embeddings(path, spatial=True).X.shape == (40, 8)  # readable before
    truncate(path, keep)
    with pytest.raises(DamagedFileError) as err:
        read_embeddings(path)
    assert_names_file_and_fix(err, path)
    assert "Parquet" in str(err.value)  # the underlying reason is kept, after the file name


def test_corrupted_pages_name_the_file(artifacts):
    path = artifacts / "emb.parquet"
    data = bytearray(path.read_bytes())
    data[8:len(data) // 2] = bytes(len(data) // 2 - 8)  # footer intact, data pages zeroed
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as err:
        read_embeddings(path, spatial=True)
    assert_names_file_and_fix(err, path)


@pytest.mark.parametrize("reader,name", [(read_classifier, "cls.parquet"), (read_frame, "rows.parquet"),
                                         (read_meta, "rows.parquet")])
def test_other_parquet_readers_name_the_file(artifacts, reader, name):
    path = artifacts / name
    reader(path)
    truncate(path)
    with pytest.raises(DamagedFileError) as err:
        reader(path)
    assert_names_file_and_fix(err, path)


def test_spatial_maps_asked_of_a_file_without_them_name_the_file(artifacts):
    path = artifacts / "plain.parquet"
    write_embeddings(path, ["a"], np.ones((1, 3), np.float32), provenance(model="m", epoch=1))
    with pytest.raises(DamagedFileError) as err:
        read_embeddings(path, spatial=True)
    assert_names_file_and_fix(err, path)


def test_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_embeddings(tmp_path / "nope.parquet")


@pytest.fixture
def pixel_cache(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(p)
        rows.append({"image_id": f"i{i}", "path": str(p), "member": ""})
    npy, idx = tmp_path / "pixels.npy", tmp_path / "pixels.parquet"
    build_pixel_cache(pd.DataFrame(rows), Preprocess(16, "bicubic", "shortest"), npy, idx)
    assert open_pixels(npy, idx)[0].shape == (6, 16, 16, 3)
    return npy, idx


@pytest.mark.parametrize("keep", [0.0, 0.05, 0.6])  # empty, inside the header, inside the pixels
def test_truncated_pixel_cache_names_the_file_and_the_fix(pixel_cache, keep):
    npy, idx = pixel_cache
    truncate(npy, keep)
    with pytest.raises(DamagedFileError) as err:
        open_pixels(npy, idx)
    assert_names_file_and_fix(err, npy)


def test_truncated_pixel_index_names_the_index(pixel_cache):
    npy, idx = pixel_cache
    truncate(idx)
    with pytest.raises(DamagedFileError) as err:
        open_pixels(npy, idx)
    assert_names_file_and_fix(err, idx)


@pytest.mark.parametrize("code", ["EIO", "ESTALE"])
@pytest.mark.parametrize("reader", [read_embeddings, read_classifier, read_frame, read_meta])
def test_a_failing_file_system_is_not_called_damage(artifacts, monkeypatch, reader, code):
    """An OSError from the file system (EIO, ESTALE on NFS) says what it is and names the file; it never
    tells the user to delete a result that may be fine."""
    import errno

    import pyarrow.parquet as pq

    path = artifacts / {read_embeddings: "emb", read_classifier: "cls"}.get(reader, "rows")
    path = path.with_suffix(".parquet")

    def failing(source, *a, **k):
        with open(source, "rb") as f:  # the real file opens; reading it fails
            f.read(1)
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(pq, "read_table", failing)
    monkeypatch.setattr(pq, "read_schema", failing)
    with pytest.raises(OSError) as err:
        reader(path)
    assert not isinstance(err.value, DamagedFileError)
    assert err.value.errno == getattr(errno, code) and str(path) in str(err.value)
    assert "delete" not in str(err.value)


def test_a_failing_file_system_under_the_pixel_cache_is_not_called_damage(pixel_cache, monkeypatch):
    import errno

    npy, index = pixel_cache

    def failing(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(np, "load", failing)
    with pytest.raises(OSError) as err:
        open_pixels(npy, index)
    assert not isinstance(err.value, DamagedFileError) and err.value.errno == errno.EIO
    assert str(npy) in str(err.value)
