"""A dataset given as HTTP archives runs through the real workflow: download_dataset downloads it
from a 127.0.0.1 server into `download_dir`, prepare_manifest reads it; a bad archive fails the job
with the URL in its log and leaves no snapshot."""

import io
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from clipdyn.fixtures.studies import build_tiny_study

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))

from archive_server import ArchiveServer  # noqa: E402

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def study():
    root = Path(tempfile.mkdtemp(prefix="clipdyn-archives-"))
    yield build_tiny_study(root, n_models=1, n_epochs=1)
    shutil.rmtree(root, ignore_errors=True)


def _nights_zip(tmp: Path) -> bytes:
    from clipdyn.fixtures.writers import write_nights

    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # noqa: E731
    write_nights(tmp / "nights", [dict(ref=img(), left=img(), right=img(), left_vote=0.5, right_vote=0.5,
                                       split="test", is_imagenet=True) for _ in range(2)])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted((tmp / "nights").rglob("*")):
            zf.write(p, str(p.relative_to(tmp)))
    return buf.getvalue()


def test_archive_dataset_downloads_and_reads(study, tmp_path):
    data = _nights_zip(tmp_path)
    with ArchiveServer({"/nights/nights.zip": data, "/moved.zip": data}, modes={"/moved.zip": "html"}) as srv:
        cfg = study.read_config()
        cfg["download_dir"] = str(study.root / "dl")
        cfg["datasets"]["nights"] = {"archives": [{"url": srv.url("/nights/nights.zip")}], "root": "nights",
                                     "format": "nights"}
        cfg["datasets"]["moved"] = {"archives": [{"url": srv.url("/moved.zip")}], "format": "nights"}
        study.write_config(cfg)
        study.snakemake("results/data/nights/manifest.parquet")
        import pandas as pd

        assert len(pd.read_parquet(study.workdir / "results/data/nights/trials.parquet")) == 2
        assert (study.root / "dl" / "nights" / "nights.zip.sha256").is_file()  # trust on first use
        log = (study.workdir / "results/logs/download_dataset/nights.log").read_text()
        assert "downloaded in" in log and "no checksum is published" in log

        proc = study.snakemake("results/data/moved/manifest.parquet", check=False)
        assert proc.returncode != 0
        log = (study.workdir / "results/logs/download_dataset/moved.log").read_text()
        assert srv.url("/moved.zip") in log and "HTML page, not the archive" in log
        assert not (study.workdir / "results/datasets/moved/snapshot.json").exists()
        assert not (study.workdir / "results/datasets/moved/files").exists()
