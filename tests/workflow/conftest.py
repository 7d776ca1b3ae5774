import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from study_fixture import TinyStudy, build_tiny_study  # noqa: E402


@pytest.fixture(scope="module")
def spine_study(tmp_path_factory) -> TinyStudy:
    """Two tiny models x three epochs, one ImageNet-style set, run once end to end."""
    study = build_tiny_study(tmp_path_factory.mktemp("spine"))
    cfg = study.read_config()
    # a second, unsubsetted view of the same repo: for "only that dataset's jobs rerun"
    cfg["datasets"]["tiny_imagenet_all"] = dict(cfg["datasets"]["tiny_imagenet"], subset=None)
    cfg["metrics"]["zeroshot_all"] = {"kind": "zeroshot_accuracy", "inputs": {"dataset": "tiny_imagenet_all"},
                                      "classset": "tiny"}
    study.write_config(cfg)
    study.snakemake()
    return study


@pytest.fixture(scope="module")
def full_study(tmp_path_factory) -> TinyStudy:
    """Every dataset kind and metric, one tiny model x two epochs, run once end to end."""
    study = build_tiny_study(tmp_path_factory.mktemp("full"), n_models=1, n_epochs=2, full=True)
    study.snakemake()
    return study
