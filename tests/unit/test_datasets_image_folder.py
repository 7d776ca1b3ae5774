"""The ``image_folder`` adapter (<class>/<image>) and its writer."""

import numpy as np
import pytest
from PIL import Image

from clipdyn.data.formats import DatasetFormatError, read_dataset
from clipdyn.data.images import open_image
from clipdyn.fixtures.writers import write_image_folder


def _imgs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (6, 7, 3), dtype=np.uint8) for _ in range(n)]


def test_writer_round_trip(tmp_path):
    arrays = _imgs(6)
    labels = [0, 2, 1, 2, 0, 1]
    names = ["bird", "cat", "dog"]  # sorted, so folder order = label order
    write_image_folder(tmp_path / "f", arrays, labels, names)
    t = read_dataset("image_folder", tmp_path / "f")
    got = {r.image_id: r for r in t.images.itertuples()}
    assert len(got) == 6
    for i, (arr, label) in enumerate(zip(arrays, labels)):
        row = got[f"{names[label]}/{i:05d}.png"]
        assert row.label == label and row.class_name == names[label] and row.member == ""
        np.testing.assert_array_equal(np.asarray(open_image(row.path)), arr)
    assert t.classnames is None and t.trials is None


@pytest.fixture
def imagenet_like(tmp_path):
    """ImageNet val in class folders, as torchvision/ImageNet tooling leaves it: wnid
    folders, upper-case .JPEG files, stray non-image files."""
    root = tmp_path / "val"
    for wnid, files in (("n01530575", ["ILSVRC2012_val_00000002.JPEG"]),
                        ("n01440764", ["ILSVRC2012_val_00000293.JPEG", "ILSVRC2012_val_00002138.JPEG"]),
                        ("n01443537", ["ILSVRC2012_val_00000236.JPEG"])):
        (root / wnid).mkdir(parents=True)
        for f in files:
            Image.new("RGB", (5, 4), (10, 20, 30)).save(root / wnid / f, format="JPEG")
    (root / "n01440764" / "Thumbs.db").write_bytes(b"junk")
    (root / "LOC_synset_mapping.txt").write_text("not a class folder\n")
    return root


def test_wordnet_folders_sorted_index(imagenet_like):
    t = read_dataset("image_folder", imagenet_like)
    assert t.images["image_id"].tolist() == [
        "n01440764/ILSVRC2012_val_00000293.JPEG", "n01440764/ILSVRC2012_val_00002138.JPEG",
        "n01443537/ILSVRC2012_val_00000236.JPEG", "n01530575/ILSVRC2012_val_00000002.JPEG"]
    assert t.images["label"].tolist() == [0, 0, 1, 2]
    assert t.images["class_name"].tolist() == ["n01440764", "n01440764", "n01443537", "n01530575"]
    assert t.info["wordnet_ids"] is True


def test_classnames_must_match_label_space(imagenet_like, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("tench\ngoldfish\nbrambling\n")
    t = read_dataset("image_folder", imagenet_like, classnames=str(names))
    assert t.images["class_name"].tolist() == ["tench", "tench", "goldfish", "brambling"]
    assert t.classnames == ["tench", "goldfish", "brambling"]
    # a 1000-class name list against 3 wnid folders would silently misalign labels
    names.write_text("\n".join(f"class{i}" for i in range(1000)) + "\n")
    with pytest.raises(DatasetFormatError, match="1000 class names for 3 labels.*wnids"):
        read_dataset("image_folder", imagenet_like, classnames=str(names))


def test_wnids_option_gives_full_imagenet_indices(imagenet_like, tmp_path):
    order = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041",
             "n01514668", "n01514859", "n01518878", "n01530575"]
    (tmp_path / "wnids.txt").write_text("\n".join(order) + "\n")
    (tmp_path / "names.txt").write_text("\n".join(f"c{i}" for i in range(len(order))) + "\n")
    t = read_dataset("image_folder", imagenet_like, wnids=str(tmp_path / "wnids.txt"),
                     classnames=str(tmp_path / "names.txt"))
    assert t.images["label"].tolist() == [0, 0, 1, 10]
    assert t.images["class_name"].tolist() == ["c0", "c0", "c1", "c10"]
    (tmp_path / "wnids.txt").write_text("n01440764\n")
    with pytest.raises(DatasetFormatError, match="not listed in"):
        read_dataset("image_folder", imagenet_like, wnids=str(tmp_path / "wnids.txt"))


def test_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no class folders"):
        read_dataset("image_folder", tmp_path / "empty")
    (tmp_path / "empty" / "cat").mkdir()
    with pytest.raises(DatasetFormatError, match="no image files"):
        read_dataset("image_folder", tmp_path / "empty")
    with pytest.raises(DatasetFormatError, match="not a folder"):
        read_dataset("image_folder", tmp_path / "missing")
    with pytest.raises(DatasetFormatError, match="does not exist"):
        read_dataset("image_folder", tmp_path / "empty", classnames="nope.txt")
