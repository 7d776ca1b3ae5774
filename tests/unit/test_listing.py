"""The listing record: the top-level process lists and records; job processes and readers read it."""

import json

import pytest

from clipdyn.hub import CheckpointFile
from clipdyn.listing import ListingMissing, Listings, invocation, source_key
from clipdyn.sources import Resolved

KEY = {"repo": "org/run", "repo_type": "model", "revision": "main", "checkpoint": "c/epoch_{epoch}.pt"}
FOUND = Resolved("hub_files", {1: CheckpointFile(1, "c/epoch_1.pt", "a" * 40, "b" * 64, 123),
                               2: CheckpointFile(2, "c/epoch_2.pt", "a" * 40, "c" * 64, 456)},
                 repo="org/run", revision="main")


@pytest.mark.parametrize("main, argv, mode", [
    (True, ["snakemake", "--cores", "2"], "top"),
    (True, ["snakemake", "-n"], "top"),
    (True, ["snakemake", "--report", "r.html"], "reader"),
    (True, ["snakemake", "--report=r.html"], "reader"),
    (True, ["snakemake", "--unlock"], "reader"),
    (True, ["snakemake", "--lint", "json"], "reader"),
    (True, ["snakemake", "-S"], "reader"),
    (False, ["snakemake", "--target-jobs", "x:a=1", "--mode", "remote"], "job"),
    (False, ["snakemake", "--report"], "job"),
])
def test_invocation(main, argv, mode):
    assert invocation(main, argv) == mode


def test_top_level_lists_once_per_source_and_records_on_save(tmp_path):
    path = tmp_path / "results" / "checkpoints" / "listing.json"
    calls = []
    top = Listings(path, "top")
    assert top.get("a", KEY, lambda: calls.append(1) or FOUND) == FOUND
    assert top.get("a_again", KEY, lambda: calls.append(1) or FOUND) == FOUND  # same run: listed once
    assert len(calls) == 1 and not path.exists()  # nothing written before the run starts (onstart)
    top.save()
    entry = json.loads(path.read_text())["entries"]
    assert [e["key"] for e in entry.values()] == [KEY]


def test_jobs_and_readers_read_the_record(tmp_path):
    path = tmp_path / "listing.json"
    top = Listings(path, "top")
    top.get("a", KEY, lambda: FOUND)
    top.save()

    def must_not_list():
        raise AssertionError("listed")

    assert Listings(path, "job").get("a", KEY, must_not_list) == FOUND
    assert Listings(path, "reader").get("a", KEY, must_not_list) == FOUND
    other = dict(KEY, revision="v2")
    with pytest.raises(ListingMissing, match=r"models\.a: this job process found no listing.*top-level"):
        Listings(path, "job").get("a", other, must_not_list)
    reader = Listings(path, "reader", log=lambda m: None)
    assert reader.get("a", other, lambda: FOUND) == FOUND and reader.calls == 1  # a study never run
    reader.save()  # readers never write
    assert Listings(path, "job").get("a", KEY, must_not_list) == FOUND


def test_a_damaged_record_says_what_to_do(tmp_path):
    path = tmp_path / "listing.json"
    path.write_text("{not json")
    with pytest.raises(ListingMissing, match="damaged.*delete it"):
        Listings(path, "job").get("a", KEY, lambda: FOUND)


def test_the_key_is_what_the_listing_depends_on():
    m = dict(KEY, epochs={"auto": True, "step": 8}, label="B/16", arch="ViT-B-16")
    assert source_key(m) == KEY  # selecting other epochs or relabelling reuses the listing
    assert source_key(dict(m, revisions="epoch-{epoch}")) != KEY
