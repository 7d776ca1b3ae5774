"""The ``cue_conflict`` adapter on the real published sample and on writer output."""


import numpy as np
import pytest

from clipdyn.data.formats import DatasetFormatError, read_dataset
from clipdyn.data.formats.cue_conflict import CATEGORIES
from clipdyn.data.images import open_image
from clipdyn.fixtures.studies import shared_data
from clipdyn.fixtures.writers import write_cue_conflict

SAMPLE = shared_data("cue-conflict-sample")


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"the published cue-conflict sample is not at {SAMPLE} "
                                                "(../shared/data beside the repository, or $CLIPDYN_SHARED_DATA)")
def test_real_published_sample():
    t = read_dataset("cue_conflict", SAMPLE)
    im = t.images
    assert len(im) == 80
    assert sorted(im["shape"].unique()) == sorted(CATEGORIES)
    assert im.groupby("shape").size().eq(5).all()
    same = im[im["shape"] == im["texture"]]
    assert len(same) == 16 and same["shape"].is_unique  # one shape==texture image per class
    assert set(im["texture"]) <= set(CATEGORIES)
    row = im[im["image_id"] == "airplane/airplane1-bicycle2"].iloc[0]
    assert (row["shape"], row["texture"]) == ("airplane", "bicycle")
    assert row.path == str(SAMPLE / "airplane" / "airplane1-bicycle2.png") and row.member == ""
    assert open_image(row.path).size == (224, 224)  # the files are 224x224 (the data README says 512)
    assert t.info["n_conflicting"] == 64


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    items = [("cat", "dog", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)),
             ("cat", "cat", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)),
             ("knife", "dog", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))]
    write_cue_conflict(tmp_path / "cc", items)
    assert sorted(p.name for p in (tmp_path / "cc" / "cat").iterdir()) == ["cat1-dog1.png", "cat2-cat1.png"]
    t = read_dataset("cue_conflict", tmp_path / "cc")
    assert list(zip(t.images["shape"], t.images["texture"])) == [("cat", "dog"), ("cat", "cat"), ("knife", "dog")]
    for row, (_, _, arr) in zip(t.images.itertuples(), items):
        np.testing.assert_array_equal(np.asarray(open_image(row.path)), arr)


def _copy(tmp_path, n=2):
    dst = tmp_path / "cc"
    for c in ("airplane", "bear")[:n]:
        (dst / c).mkdir(parents=True)
    return dst


def test_folder_and_name_checks(tmp_path):
    root = _copy(tmp_path)
    (root / "airplane" / "bear1-cat2.png").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="shape 'bear'.*differs from its folder 'airplane'"):
        read_dataset("cue_conflict", root)
    (root / "airplane" / "bear1-cat2.png").unlink()
    (root / "airplane" / "airplane1_cat2.png").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="airplane1_cat2.png: file name is not"):
        read_dataset("cue_conflict", root)
    (root / "airplane" / "airplane1_cat2.png").unlink()
    (root / "airplane" / "airplane1-zebra2.png").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="texture 'zebra'"):
        read_dataset("cue_conflict", root)
    (root / "zebra").mkdir()
    with pytest.raises(DatasetFormatError, match=r"folder\(s\) \['zebra'\]"):
        read_dataset("cue_conflict", root)


def test_writer_rejects_unknown_category(tmp_path):
    with pytest.raises(ValueError, match="zebra"):
        write_cue_conflict(tmp_path, [("zebra", "cat", np.zeros((2, 2, 3), np.uint8))])
