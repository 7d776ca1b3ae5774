"""The ``webdataset`` adapter (clip-benchmark wds_* layout) and its writer."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from clipdyn.data.formats import DatasetFormatError, read_dataset
from clipdyn.data.images import open_image
from clipdyn.fixtures.writers import write_webdataset


def _imgs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for _ in range(n)]


def _add(tf, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _webp(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="webp", lossless=True)
    return buf.getvalue()


@pytest.fixture
def handmade(tmp_path):
    """A split as clip_benchmark's convert_dataset writes it (webdataset.ShardWriter):
    keys s%07d over the split, <key>.webp then <key>.cls, shards 0.tar 1.tar, nshards.txt."""
    root = tmp_path / "wds_imagenet1k"
    (root / "test").mkdir(parents=True)
    (root / "classnames.txt").write_text("tench\ngoldfish\ngreat white shark\n")
    (root / "zeroshot_classification_templates.txt").write_text("a bad photo of a {c}.\na photo of many {c}.\n")
    arrays = _imgs(5)
    labels = [2, 0, 1, 1, 0]
    for shard, idx in ((0, [0, 1, 2]), (1, [3, 4])):
        with tarfile.open(root / "test" / f"{shard}.tar", "w") as tf:
            for i in idx:
                _add(tf, f"s{i:07d}.webp", _webp(arrays[i]))
                _add(tf, f"s{i:07d}.cls", str(labels[i]).encode())
    (root / "test" / "nshards.txt").write_text("2\n")
    return root, arrays, labels


def test_reads_handmade_clip_benchmark_split(handmade):
    root, arrays, labels = handmade
    t = read_dataset("webdataset", root)
    assert list(t.images.columns[:3]) == ["image_id", "path", "member"]
    assert t.images["image_id"].tolist() == ["0/s0000000", "0/s0000001", "0/s0000002", "1/s0000003", "1/s0000004"]
    assert t.images["member"].tolist() == [f"s{i:07d}.webp" for i in range(5)]
    assert t.images["label"].tolist() == labels and t.images["label"].dtype == np.int64
    assert t.images["path"].iloc[3] == str(root / "test" / "1.tar")
    assert t.classnames == ["tench", "goldfish", "great white shark"]
    assert t.templates == ["a bad photo of a {c}.", "a photo of many {c}."]
    assert t.trials is None
    row = t.images.iloc[4]
    np.testing.assert_array_equal(np.asarray(open_image(row.path, row.member)), arrays[4])


def test_writer_round_trip(tmp_path):
    arrays = _imgs(7, seed=1)
    labels = [0, 1, 2, 3, 0, 1, 2]
    names = ["cat", "dog", "bird", "fish"]
    write_webdataset(tmp_path / "w", arrays, labels, names, ["a photo of a {c}."], split="test", shard_size=3)
    assert sorted(p.name for p in (tmp_path / "w" / "test").iterdir()) == ["0.tar", "1.tar", "2.tar", "nshards.txt"]
    t = read_dataset("webdataset", tmp_path / "w")
    assert t.images["label"].tolist() == labels
    assert t.images["image_id"].iloc[3] == "1/s0000003"
    assert t.classnames == names and t.templates == ["a photo of a {c}."]
    for row, arr in zip(t.images.itertuples(), arrays):
        np.testing.assert_array_equal(np.asarray(open_image(row.path, row.member)), arr)


def test_other_split_and_png(tmp_path):
    write_webdataset(tmp_path / "w", _imgs(2), [1, 0], ["a", "b"], None, split="train", image_format="png")
    t = read_dataset("webdataset", tmp_path / "w", split="train")
    assert t.images["member"].tolist() == ["s0000000.png", "s0000001.png"] and t.templates is None
    with pytest.raises(DatasetFormatError, match="no split folder 'test'.*train"):
        read_dataset("webdataset", tmp_path / "w")


def test_without_nshards_sorts_numerically(tmp_path):
    write_webdataset(tmp_path / "w", _imgs(12), list(range(12)), [str(i) for i in range(12)], None, shard_size=1)
    (tmp_path / "w" / "test" / "nshards.txt").unlink()
    t = read_dataset("webdataset", tmp_path / "w")
    assert t.images["label"].tolist() == list(range(12))  # 0,1,...,10,11, not 0,1,10,11,2


def test_errors_name_the_file(handmade):
    root, _, _ = handmade
    (root / "test" / "nshards.txt").write_text("3\n")
    with pytest.raises(DatasetFormatError, match=r"nshards.txt says 3 shards.*2.tar"):
        read_dataset("webdataset", root)
    (root / "test" / "nshards.txt").write_text("2\n")
    (root / "classnames.txt").write_text("tench\ngoldfish\n")
    with pytest.raises(DatasetFormatError, match=r"0.tar: s0000000.cls = 2 is outside 0..1"):
        read_dataset("webdataset", root)
    (root / "classnames.txt").unlink()
    with pytest.raises(DatasetFormatError, match="classnames.txt is missing"):
        read_dataset("webdataset", root)
    with pytest.raises(DatasetFormatError, match="unknown option"):
        read_dataset("webdataset", root, subset=10)


def test_sample_without_cls_or_image(tmp_path):
    root = tmp_path / "w"
    (root / "test").mkdir(parents=True)
    (root / "classnames.txt").write_text("a\n")
    with tarfile.open(root / "test" / "0.tar", "w") as tf:
        _add(tf, "s0000000.webp", _webp(_imgs(1)[0]))
    with pytest.raises(DatasetFormatError, match=r"0.tar: sample 's0000000' has no s0000000.cls"):
        read_dataset("webdataset", root)
    with tarfile.open(root / "test" / "0.tar", "w") as tf:
        _add(tf, "s0000000.cls", b"0")
    with pytest.raises(DatasetFormatError, match="has no image member"):
        read_dataset("webdataset", root)
    with tarfile.open(root / "test" / "0.tar", "w") as tf:
        _add(tf, "s0000000.cls", b"zero")
    with pytest.raises(DatasetFormatError, match="integer class index"):
        read_dataset("webdataset", root)


def test_retrieval_sets_are_refused(handmade):
    root, _, _ = handmade
    (root / "dataset_type.txt").write_text("retrieval\n")
    with pytest.raises(DatasetFormatError, match="retrieval"):
        read_dataset("webdataset", root)
