"""Reliability and security tests: bad input, faults and untrusted files.

Library-level tests are fast; the workflow-level ones run the real ``snakemake``
on the tiny fixtures of tests/workflow (one model, one epoch). The stress run is
``@pytest.mark.slow`` and runs only with ``CLIPDYN_SLOW=1``.
"""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # hubclient, runs


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long stress runs; skipped unless CLIPDYN_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CLIPDYN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow stress run: set CLIPDYN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """A good open_clip training checkpoint of the tiny architecture (as open_clip_train writes it)."""
    from runs import own_tmp

    from clipdyn.fixtures.studies import make_checkpoint

    with own_tmp("ckpt") as root:
        path = root / "epoch_1.pt"
        make_checkpoint(path, 1, seed=0)
        yield path
