"""The listing record: the top-level process lists and records; job processes and readers read it."""

import json
import os

import pytest

from clipdyn.hub.client import CheckpointFile
from clipdyn.hub.listing import ENV, ListingMissing, Listings, invocation, source_key
from clipdyn.hub.sources import Resolved

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
    assert len(calls) == 1
    own = top.save()
    entry = json.loads(path.read_text())["entries"]
    assert [e["key"] for e in entry.values()] == [KEY]
    assert own.parent == path.parent / "listings" and own.read_text() == path.read_text()


@pytest.fixture(autouse=True)
def _no_inherited_record(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)  # save() names its record in the environment, for job processes


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


NEW = Resolved("hub_files", {**FOUND.files, 3: CheckpointFile(3, "c/epoch_3.pt", "d" * 40, "e" * 64, 789)},
               repo="org/run", revision="main")


def test_a_job_reads_its_own_invocations_record_not_a_later_one(tmp_path, monkeypatch):
    """Invocation A runs; B (another working directory or --nolock, same results folder) lists a new epoch.
    A's job processes, which inherit A's environment, still see A's listing; B's see B's."""
    path = tmp_path / "results" / "checkpoints" / "listing.json"

    def must_not_list():
        raise AssertionError("listed")

    a = Listings(path, "top")
    a.get("m", KEY, lambda: FOUND)
    a_record = a.save()
    env_a = {ENV: str(a_record.resolve())}
    assert os.environ[ENV] == env_a[ENV]  # what A's job processes inherit
    b = Listings(path, "top")
    b.get("m", KEY, lambda: NEW)
    b_record = b.save()
    assert b_record != a_record and a_record.exists()  # B never overwrites A's record
    monkeypatch.setenv(ENV, env_a[ENV])
    assert sorted(Listings(path, "job").get("m", KEY, must_not_list).files) == [1, 2]
    monkeypatch.setenv(ENV, str(b_record))
    assert sorted(Listings(path, "job").get("m", KEY, must_not_list).files) == [1, 2, 3]
    monkeypatch.delenv(ENV)  # readers, and a job started by hand: the latest
    assert sorted(Listings(path, "reader").get("m", KEY, must_not_list).files) == [1, 2, 3]
    monkeypatch.setenv(ENV, str(tmp_path / "gone.json"))
    with pytest.raises(ListingMissing, match="gone.json.*invocation that started this job"):
        Listings(path, "job").get("m", KEY, must_not_list)
