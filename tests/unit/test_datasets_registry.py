"""The adapter registry: every format is registered and shares the contract's failure modes."""

import pytest

from clipdyn.data.formats import ADAPTERS, DatasetFormatError, DatasetTables, read_dataset

FORMATS = ["webdataset", "image_folder", "cue_conflict", "imagenet_c", "iqa_tid2013", "iqa_kadid10k", "nights",
           "saliency"]


def test_all_formats_registered():
    import clipdyn.data.formats.known  # noqa: F401  (registers every adapter)

    assert set(FORMATS) <= set(ADAPTERS)


def test_unknown_format():
    with pytest.raises(DatasetFormatError, match="unknown dataset format 'tfds'.*webdataset"):
        read_dataset("tfds", ".")


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_root_and_unknown_options(fmt, tmp_path):
    with pytest.raises(DatasetFormatError, match="not a folder"):
        read_dataset(fmt, tmp_path / "nope")
    with pytest.raises(DatasetFormatError, match="unknown option"):
        read_dataset(fmt, tmp_path, subset=100)  # subsetting is the workflow's job, not an adapter's


def test_tables_type():
    import pandas as pd

    t = DatasetTables(images=pd.DataFrame())
    assert t.trials is None and t.info == {}
