"""The ``saliency`` adapter (SALICON-style folders, MIT1003) and its writer."""

import numpy as np
import pytest
from PIL import Image

from clipdyn.data.formats import DatasetFormatError, read_dataset
from clipdyn.data.images import open_image
from clipdyn.fixtures.writers import write_saliency


def _data(n=3, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"COCO_val2014_{k:012d}" for k in range(n)]
    images = {nm: rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for nm in names}
    maps = {nm: rng.random((6, 8)) for nm in names}
    fix = {nm: rng.random((6, 8)) > 0.8 for nm in names}
    return images, maps, fix


@pytest.mark.parametrize("split", [None, "val"])
def test_writer_round_trip(tmp_path, split):
    images, maps, fix = _data()
    write_saliency(tmp_path / "s", images, maps, fix, split=split)
    t = read_dataset("saliency", tmp_path / "s", **({"split": split} if split else {}))
    assert t.images["image_id"].tolist() == sorted(images)
    for row in t.images.itertuples():
        assert open_image(row.path).size == (8, 6)
        m = np.asarray(Image.open(row.map_path), dtype=float)
        expected = np.round(maps[row.image_id] / maps[row.image_id].max() * 255)
        np.testing.assert_array_equal(m, expected)
        np.testing.assert_array_equal(np.asarray(Image.open(row.fixation_path)) > 0, fix[row.image_id])
    assert t.info["has_fixations"] is True


def test_without_fixations(tmp_path):
    images, maps, _ = _data()
    write_saliency(tmp_path / "s", images, maps)
    t = read_dataset("saliency", tmp_path / "s")
    assert t.images["fixation_path"].tolist() == ["", "", ""]


@pytest.fixture
def mit1003(tmp_path):
    """MIT1003 as unzipped from ALLSTIMULI.zip and ALLFIXATIONMAPS.zip."""
    root = tmp_path / "mit1003"
    (root / "ALLSTIMULI").mkdir(parents=True)
    (root / "ALLFIXATIONMAPS").mkdir()
    for name in ("i05june05_static_street_boston_p1010764", "istatic_submitted_chris_by_Alex_Goldberg_0048"):
        Image.new("RGB", (8, 6)).save(root / "ALLSTIMULI" / f"{name}.jpeg", format="JPEG")
        Image.new("L", (8, 6), 40).save(root / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg", format="JPEG")
        Image.new("L", (8, 6), 0).save(root / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", format="JPEG")
    (root / "ALLSTIMULI" / "Thumbs.db").write_bytes(b"junk")
    return root


def test_mit1003_layout(mit1003):
    t = read_dataset("saliency", mit1003)
    row = t.images.iloc[0]
    assert row.image_id == "i05june05_static_street_boston_p1010764"
    assert row.path.endswith("ALLSTIMULI/i05june05_static_street_boston_p1010764.jpeg")
    assert row.map_path.endswith("_fixMap.jpg") and row.fixation_path.endswith("_fixPts.jpg")
    assert t.info["layout"] == "mit1003"


def test_errors(tmp_path, mit1003):
    images, maps, fix = _data()
    write_saliency(tmp_path / "s", images, maps, fix)
    first = sorted(images)[0]
    (tmp_path / "s" / "maps" / f"{first}.png").unlink()
    with pytest.raises(DatasetFormatError, match=f"no density map for 1 image.*{first}"):
        read_dataset("saliency", tmp_path / "s")
    write_saliency(tmp_path / "s", images, maps, fix)
    (tmp_path / "s" / "fixations" / f"{first}.png").unlink()
    with pytest.raises(DatasetFormatError, match="fixation maps exist but 1 image"):
        read_dataset("saliency", tmp_path / "s")
    with pytest.raises(DatasetFormatError, match="no folder images/train/"):
        read_dataset("saliency", tmp_path / "s", split="train")
    (mit1003 / "ALLFIXATIONMAPS" / "i05june05_static_street_boston_p1010764_fixMap.jpg").unlink()
    with pytest.raises(DatasetFormatError, match="no density map"):
        read_dataset("saliency", mit1003)
