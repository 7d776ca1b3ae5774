"""The ``imagenet_c`` adapter (<corruption>/<severity>/<wnid>/<file>) and its writer."""

import numpy as np
import pytest
from PIL import Image

from clipdyn.data.formats import DatasetFormatError, read_dataset
from clipdyn.data.images import open_image
from clipdyn.fixtures.writers import write_imagenet_c


def test_writer_round_trip(tmp_path):
    clean = [np.full((32, 32, 3), v, np.uint8) for v in (90, 128, 160)]
    write_imagenet_c(tmp_path / "c", clean, [1, 0, 1], ["n01440764", "n01443537"], severities=(1, 5))
    t = read_dataset("imagenet_c", tmp_path / "c")
    im = t.images
    assert len(im) == 6 and sorted(im["severity"].unique()) == [1, 5]
    row = im[(im["severity"] == 5) & (im["wnid"] == "n01443537")].iloc[0]
    assert row.image_id == "gaussian_noise/5/n01443537/ILSVRC2012_val_00000001.JPEG"
    assert row.label == 1 and row.corruption == "gaussian_noise"
    # the stored JPEGs carry the noise of their severity (JPEG at quality 85 smooths some of it)
    spread = {}
    for s in (1, 5):
        r = im[(im["severity"] == s) & (im["image_id"].str.endswith("00000002.JPEG"))].iloc[0]
        spread[s] = (np.asarray(open_image(r.path)).astype(float) - 128).std()
    assert 5 < spread[1] < spread[5]
    # deterministic: writing again gives the same files
    write_imagenet_c(tmp_path / "d", clean, [1, 0, 1], ["n01440764", "n01443537"], severities=(1, 5))
    assert (tmp_path / "d" / row.image_id).read_bytes() == (tmp_path / "c" / row.image_id).read_bytes()
    only5 = read_dataset("imagenet_c", tmp_path / "c", severities=[5])
    assert only5.images["severity"].unique().tolist() == [5]


@pytest.fixture
def downloaded(tmp_path):
    """What noise.tar unpacks to: gaussian_noise/1..5/<wnid>/ILSVRC2012_val_*.JPEG (and shot_noise/...)."""
    root = tmp_path / "imagenet-c"
    for corruption in ("gaussian_noise", "shot_noise"):
        for s in range(1, 6):
            for wnid, n in (("n01440764", 2), ("n15075141", 1)):
                d = root / corruption / str(s) / wnid
                d.mkdir(parents=True)
                for k in range(n):
                    Image.new("RGB", (4, 4)).save(d / f"ILSVRC2012_val_{k + 1:08d}.JPEG", format="JPEG")
    return root


def test_reads_downloaded_layout(downloaded):
    t = read_dataset("imagenet_c", downloaded)
    assert len(t.images) == 15
    assert t.images.groupby("severity").size().tolist() == [3] * 5
    assert t.images[t.images["wnid"] == "n15075141"]["label"].unique().tolist() == [1]
    t2 = read_dataset("imagenet_c", downloaded, corruption="shot_noise", severities=[5])
    assert t2.images["image_id"].iloc[0] == "shot_noise/5/n01440764/ILSVRC2012_val_00000001.JPEG"


def test_errors(downloaded):
    with pytest.raises(DatasetFormatError, match="no folder for corruption 'snow'.*gaussian_noise"):
        read_dataset("imagenet_c", downloaded, corruption="snow")
    with pytest.raises(DatasetFormatError, match=r"severity folder\(s\) \[6\]"):
        read_dataset("imagenet_c", downloaded, severities=[1, 6])
    import shutil
    shutil.rmtree(downloaded / "gaussian_noise" / "4" / "n15075141")
    with pytest.raises(DatasetFormatError, match="different class folders"):
        read_dataset("imagenet_c", downloaded)
    (downloaded / "gaussian_noise" / "extra").mkdir()
    with pytest.raises(DatasetFormatError, match="not severities"):
        read_dataset("imagenet_c", downloaded)
