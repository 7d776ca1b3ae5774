"""The ``iqa_tid2013`` / ``iqa_kadid10k`` adapters (pyiqa's archives + metainfo CSVs) and the writer."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from clipdyn.data.formats import DatasetFormatError, read_dataset
from clipdyn.data.images import open_image
from clipdyn.fixtures.writers import write_iqa
from clipdyn.hub import archives


def _img(seed, fmt):
    arr = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return arr, buf.getvalue()


def _tgz(path, files):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


# First rows of pyiqa's meta_info_TID2013Dataset.csv, verbatim (note the mixed case
# of I01_01_1.bmp / i01_01_2.bmp / I01_11_1.BMP and the lower-case reference i25.bmp).
TID_CSV = """ref_name,dist_name,mos,std
I01.BMP,I01_01_1.bmp,5.51429,0.13013
I01.BMP,i01_01_2.bmp,5.56757,0.16008
I01.BMP,I01_11_1.BMP,5.91429,0.16349
i25.bmp,i25_01_1.bmp,5.0,0.1
"""


@pytest.fixture
def tid_snapshot(tmp_path):
    """The two Hub repos' files side by side: tid2013.tgz and the metainfo CSV. On disk the
    archive has i01_01_1.bmp in lower case although the CSV says I01_01_1.bmp."""
    root = tmp_path / "snapshot"
    root.mkdir()
    (root / "meta_info_TID2013Dataset.csv").write_text(TID_CSV)
    arrays = {}
    files = []
    for k, (folder, name) in enumerate([("reference_images", "I01.BMP"), ("reference_images", "i25.bmp"),
                                        ("distorted_images", "i01_01_1.bmp"), ("distorted_images", "i01_01_2.bmp"),
                                        ("distorted_images", "I01_11_1.BMP"), ("distorted_images", "i25_01_1.bmp")]):
        arrays[name], data = _img(k, "BMP")
        files.append((f"tid2013/{folder}/{name}", data))
    files.append(("tid2013/mos_with_names.txt", b"5.51429 I01_01_1.bmp\n"))
    _tgz(root / "tid2013.tgz", files)
    return root, arrays


def test_tid2013_from_archive_with_case_quirks(tid_snapshot, monkeypatch):
    root, arrays = tid_snapshot
    t = read_dataset("iqa_tid2013", root)
    assert t.images["image_id"].tolist() == ["ref/I01.BMP", "ref/i25.bmp", "dist/i01_01_1.bmp", "dist/i01_01_2.bmp",
                                             "dist/I01_11_1.BMP", "dist/i25_01_1.bmp"]
    assert t.images["role"].tolist() == ["ref"] * 2 + ["dist"] * 4
    tr = t.trials
    assert list(tr.columns) == ["ref_id", "dist_id", "score", "score_type"]
    assert tr["dist_id"].tolist()[0] == "dist/i01_01_1.bmp"  # CSV I01_01_1.bmp resolved case-insensitively
    assert tr["ref_id"].tolist() == ["ref/I01.BMP"] * 3 + ["ref/i25.bmp"]
    np.testing.assert_allclose(tr["score"], [5.51429, 5.56757, 5.91429, 5.0])
    assert set(tr["score_type"]) == {"mos"}
    for row in t.images.itertuples():
        np.testing.assert_array_equal(np.asarray(open_image(row.path)), arrays[row.image_id.split("/", 1)[1]])
    assert (root / "_extracted" / "tid2013" / archives.MARKER).is_file()
    # second read: no new extraction
    monkeypatch.setattr(archives, "safe_extract", lambda *a, **k: pytest.fail("extracted twice"))
    assert read_dataset("iqa_tid2013", root).trials.equals(tr)


def test_tid2013_extract_dir_option(tid_snapshot, tmp_path):
    root, _ = tid_snapshot
    t = read_dataset("iqa_tid2013", root, extract_dir=str(tmp_path / "elsewhere"))
    assert t.images["path"].iloc[0].startswith(str(tmp_path / "elsewhere"))


# First rows of pyiqa's meta_info_KADID10kDataset.csv, verbatim.
KADID_CSV = """ref_name,dist_name,dmos,std
I01.png,I01_01_01.png,4.57,0.496
I01.png,I01_01_02.png,4.33,0.869
I02.png,I02_01_01.png,4.5,0.719
"""


def test_kadid10k_from_archive(tmp_path):
    root = tmp_path / "snapshot"
    root.mkdir()
    (root / "meta_info_KADID10kDataset.csv").write_text(KADID_CSV)
    files = [(f"kadid10k/images/{n}", _img(k, "PNG")[1])
             for k, n in enumerate(["I01.png", "I02.png", "I01_01_01.png", "I01_01_02.png", "I02_01_01.png"])]
    files.append(("kadid10k/dmos.csv", b"dist_img,ref_img,dmos,var\n"))
    _tgz(root / "kadid10k.tgz", files)
    t = read_dataset("iqa_kadid10k", root)
    assert t.images["image_id"].tolist() == ["ref/I01.png", "ref/I02.png", "dist/I01_01_01.png",
                                             "dist/I01_01_02.png", "dist/I02_01_01.png"]
    assert t.images["path"].iloc[0] == str(root / "_extracted" / "kadid10k" / "kadid10k" / "images" / "I01.png")
    # KADID's column is named dmos but higher is better: it is a MOS
    assert set(t.trials["score_type"]) == {"mos"} and t.info["score_column"] == "dmos"
    np.testing.assert_allclose(t.trials["score"], [4.57, 4.33, 4.5])


@pytest.mark.parametrize("kind,refs,dists", [
    ("tid2013", ["I01.BMP", "i25.bmp"], ["i01_01_1.bmp", "I01_11_1.BMP", "i25_24_5.bmp"]),
    ("kadid10k", ["I01.png", "I81.png"], ["I01_01_01.png", "I81_25_05.png", "I81_03_02.png"]),
])
@pytest.mark.parametrize("archive", [True, False])
def test_writer_round_trip(tmp_path, kind, refs, dists, archive):
    rng = np.random.default_rng(1)
    ref_imgs = {r: rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for r in refs}
    rows = [(refs[min(i, 1)] if i < 2 else refs[1], d, rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), 1.5 + i)
            for i, d in enumerate(dists)]
    write_iqa(tmp_path / kind, kind, ref_imgs, rows, archive=archive)
    t = read_dataset(f"iqa_{kind}", tmp_path / kind)
    assert t.trials["dist_id"].tolist() == [f"dist/{d}" for d in dists]
    assert t.trials["ref_id"].tolist() == [f"ref/{r}" for r, *_ in rows]
    np.testing.assert_allclose(t.trials["score"], [1.5, 2.5, 3.5])
    by_id = dict(zip(t.images["image_id"], t.images["path"]))
    for r, d, img, _ in rows:
        np.testing.assert_array_equal(np.asarray(open_image(by_id[f"dist/{d}"])), img)
        np.testing.assert_array_equal(np.asarray(open_image(by_id[f"ref/{r}"])), ref_imgs[r])
    if archive:
        assert (tmp_path / kind / f"{kind}.tgz").is_file()


def test_errors(tid_snapshot, tmp_path):
    root, _ = tid_snapshot
    (root / "meta_info_TID2013Dataset.csv").write_text(TID_CSV.replace("mos,std", "score,std"))
    with pytest.raises(DatasetFormatError, match=r"meta_info_TID2013Dataset.csv: missing column\(s\) \['mos'\]"):
        read_dataset("iqa_tid2013", root)
    (root / "meta_info_TID2013Dataset.csv").write_text(TID_CSV + "I01.BMP,i01_99_9.bmp,1.0,0.1\n")
    with pytest.raises(DatasetFormatError, match="1 image.*not on disk.*i01_99_9.bmp"):
        read_dataset("iqa_tid2013", root)
    (root / "meta_info_TID2013Dataset.csv").write_text(TID_CSV + "I01.BMP,i01_01_3.bmp,n/a,0.1\n")
    with pytest.raises(DatasetFormatError, match="column 'mos' has a missing or non-numeric value in data row 5"):
        read_dataset("iqa_tid2013", root)
    (root / "meta_info_TID2013Dataset.csv").unlink()
    with pytest.raises(DatasetFormatError, match="no meta_info_TID2013Dataset.csv.*IQA-PyTorch-Datasets-metainfo"):
        read_dataset("iqa_tid2013", root)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "meta_info_TID2013Dataset.csv").write_text(TID_CSV)
    with pytest.raises(DatasetFormatError, match="nor the archive tid2013.tgz"):
        read_dataset("iqa_tid2013", bare)
