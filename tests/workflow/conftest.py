import shutil
import tempfile
from pathlib import Path

import pytest

from clipdyn.fixtures.studies import TinyStudy, build_tiny_study


def _own_tmp(name: str) -> Path:
    # not pytest's tmp_path: a concurrent pytest session prunes old pytest-N folders,
    # and these studies live for a whole module
    return Path(tempfile.mkdtemp(prefix=f"clipdyn-{name}-"))


@pytest.fixture(scope="module")
def spine_study() -> TinyStudy:
    """Two tiny models x three epochs, one ImageNet-style set, run once end to end."""
    root = _own_tmp("spine")
    study = build_tiny_study(root)
    cfg = study.read_config()
    # a second, unsubsetted view of the same repo: for "only that dataset's jobs rerun"
    cfg["datasets"]["tiny_imagenet_all"] = dict(cfg["datasets"]["tiny_imagenet"], subset=None)
    cfg["metrics"]["zeroshot_all"] = {"kind": "zeroshot_accuracy", "inputs": {"dataset": "tiny_imagenet_all"},
                                      "classset": "tiny"}
    study.write_config(cfg)
    study.snakemake()
    yield study
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")  # shared by test_full_study and test_code_identity (read-only there)
def full_study() -> TinyStudy:
    """Every dataset kind and metric, one tiny model x two epochs, run once end to end."""
    root = _own_tmp("full")
    study = build_tiny_study(root, n_models=1, n_epochs=2, full=True)
    study.snakemake()
    yield study
    shutil.rmtree(root, ignore_errors=True)
