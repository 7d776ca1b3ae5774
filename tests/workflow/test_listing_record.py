"""The listing record is written while the Snakefile is parsed, one record per listing (clipdyn.hub.listing).

With --no-hooks, Snakemake runs no onstart hook: a record written there was never written, and
job processes read an older one. And a second invocation over the same results folder must not
change the record the first one's job processes read.
"""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from clipdyn.fixtures.localhub import LocalHub
from clipdyn.fixtures.studies import build_tiny_study, publish_epochs

pytestmark = pytest.mark.workflow


def _epochs(record: Path) -> dict:
    entries = json.loads(record.read_text())["entries"].values()
    return {e["model"]: sorted(int(k) for k in e["resolved"]["files"]) for e in entries}


def test_record_written_with_no_hooks_and_kept_per_invocation():
    root = Path(tempfile.mkdtemp(prefix="clipdyn-listing-"))
    try:
        study = build_tiny_study(root, n_epochs=2)
        checkpoints = study.workdir / "results" / "checkpoints"
        study.snakemake("-n", "--no-hooks")
        first = sorted((checkpoints / "listings").glob("*.json"))
        assert len(first) == 1 and _epochs(first[0]) == {"tiny_a": [1, 2], "tiny_b": [1, 2]}
        assert (checkpoints / "listing.json").read_text() == first[0].read_text()
        saved = first[0].read_text()
        # a new epoch, listed by a second invocation over the same results folder
        publish_epochs(LocalHub(study.hub), "tiny-a", [3], seed=0, scratch=study.root / "scratch")
        study.snakemake("-n", "--no-hooks", "--nolock")
        records = sorted((checkpoints / "listings").glob("*.json"))
        assert len(records) == 2 and first[0] in records and first[0].read_text() == saved  # the first's is kept
        (second,) = [r for r in records if r != first[0]]
        assert _epochs(second) == {"tiny_a": [1, 2, 3], "tiny_b": [1, 2]}
        assert _epochs(checkpoints / "listing.json") == _epochs(second)  # readers: the latest
    finally:
        shutil.rmtree(root, ignore_errors=True)
