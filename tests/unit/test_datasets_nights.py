"""The ``nights`` adapter (DreamSim's NIGHTS data.csv + ref/ + distort/) and its writer."""

import numpy as np
import pytest
from PIL import Image

from clipdyn.data.formats import DatasetFormatError, read_dataset
from clipdyn.data.images import open_image
from clipdyn.fixtures.writers import write_nights

HEADER = "id,left_vote,right_vote,votes,ref_path,left_path,right_path,split,is_imagenet,prompt"


@pytest.fixture
def unzipped(tmp_path):
    """nights.zip unpacked: <tmp>/nights/{data.csv, ref/000/000.png, distort/000/000_0.png, ...}."""
    root = tmp_path / "nights"
    rows = [HEADER,
            "0,0.0,1.0,6,ref/000/000.png,distort/000/000_0.png,distort/000/000_1.png,train,True,An image of a tench",
            "1,1.0,0.0,7,ref/000/001.png,distort/000/001_0.png,distort/000/001_1.png,test,False,"
            "\"An image of a cat, sitting\"",
            "2,0.5,0.5,6,ref/000/001.png,distort/000/001_1.png,distort/000/002_1.png,test,False,An image of a cat"]
    for rel in ("ref/000/000.png", "ref/000/001.png", "distort/000/000_0.png", "distort/000/000_1.png",
                "distort/000/001_0.png", "distort/000/001_1.png", "distort/000/002_1.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (len(rel), 0, 0)).save(root / rel)
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root


def test_reads_unzipped_folder_or_its_parent(unzipped):
    for where in (unzipped, unzipped.parent):
        t = read_dataset("nights", where)
        assert t.images["image_id"].tolist() == ["ref/000/000.png", "ref/000/001.png", "distort/000/000_0.png",
                                                 "distort/000/001_0.png", "distort/000/001_1.png",
                                                 "distort/000/000_1.png", "distort/000/002_1.png"]
        assert t.images["path"].iloc[0] == str(unzipped / "ref/000/000.png")
        tr = t.trials
        assert list(tr.columns) == ["id", "ref_id", "left_id", "right_id", "left_vote", "right_vote", "votes",
                                    "split", "is_imagenet", "prompt"]
        assert tr["ref_id"].tolist() == ["ref/000/000.png", "ref/000/001.png", "ref/000/001.png"]
        assert tr["right_vote"].tolist() == [1.0, 0.0, 0.5] and tr["votes"].tolist() == [6, 7, 6]
        assert tr["is_imagenet"].tolist() == [True, False, False] and tr["is_imagenet"].dtype == bool
        assert tr["split"].tolist() == ["train", "test", "test"]
        assert tr["prompt"].iloc[1] == "An image of a cat, sitting"
        assert set(tr[["ref_id", "left_id", "right_id"]].to_numpy().ravel()) == set(t.images["image_id"])
        assert t.info["vote_scale"] == "share"


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    im = lambda: rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)  # noqa: E731
    triplets = [dict(ref=im(), left=im(), right=im(), left_vote=1 / 3, right_vote=2 / 3, split="test",
                     is_imagenet=bool(k % 2), prompt=f"An image of a thing {k}", votes=6) for k in range(3)]
    write_nights(tmp_path / "n", triplets)
    assert (tmp_path / "n" / "data.csv").read_text().splitlines()[0] == HEADER
    t = read_dataset("nights", tmp_path / "n")
    tr = t.trials
    assert tr["left_id"].tolist() == [f"distort/000/00{k}_0.png" for k in range(3)]
    np.testing.assert_allclose(tr["right_vote"], 2 / 3)
    assert tr["is_imagenet"].tolist() == [False, True, False]
    paths = dict(zip(t.images["image_id"], t.images["path"]))
    for k, trip in enumerate(triplets):
        for key, col in (("ref", "ref_id"), ("left", "left_id"), ("right", "right_id")):
            np.testing.assert_array_equal(np.asarray(open_image(paths[tr[col].iloc[k]])), trip[key])


def test_errors(unzipped):
    csv = unzipped / "data.csv"
    text = csv.read_text()
    csv.write_text(text.replace("is_imagenet,prompt", "imagenet,prompt"))
    with pytest.raises(DatasetFormatError, match=r"data.csv: missing column\(s\) \['is_imagenet'\]"):
        read_dataset("nights", unzipped)
    csv.write_text(text)
    (unzipped / "distort/000/002_1.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"1 image\(s\) named in the CSV are missing.*002_1.png"):
        read_dataset("nights", unzipped)
    csv.write_text(text.replace("0,0.0,1.0,6,", "0,0.0,one,6,"))
    with pytest.raises(DatasetFormatError, match="column 'right_vote' row 1"):
        read_dataset("nights", unzipped)
    csv.write_text(text.replace("ref/000/000.png,", "../000.png,", 1))
    with pytest.raises(DatasetFormatError, match="not a path inside"):
        read_dataset("nights", unzipped)
    csv.unlink()
    with pytest.raises(DatasetFormatError, match="no data.csv"):
        read_dataset("nights", unzipped)
