"""The workflow online, end to end, against the local Hub server (clipdyn.fixtures.hubserver) from an
empty Hugging Face cache: HfApi listings, hf_hub_download of every checkpoint,
snapshot_download of the dataset, all through the unmodified huggingface_hub client.

One listing per invocation, none per job: the server counts the listing requests
(repo info + tree of each model repo). A top-level run lists each model once; a job process
(what a SLURM job runs: the same Snakefile with --mode remote --target-jobs) and --report,
--unlock, --lint list nothing; they read results/checkpoints/listing.json. Publishing two
more epochs while the server runs makes the next run list once and run only the new epochs' jobs.
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from clipdyn.fixtures.hubserver import HubServer
from clipdyn.fixtures.localhub import LocalHub
from clipdyn.fixtures.studies import build_tiny_study, parse_job_counts, publish_epochs

pytestmark = pytest.mark.workflow

MODEL_REPOS = {"clipdyn-test/tiny-a", "clipdyn-test/tiny-b"}


def listings(server, repos=MODEL_REPOS) -> dict:
    """{repo: (repo-info requests, tree requests)} for the model repos."""
    return {r: (server.count("info", r), server.count("tree", r)) for r in sorted(repos)}


@pytest.fixture(scope="module")
def online():
    root = Path(tempfile.mkdtemp(prefix="clipdyn-online-"))  # lives for the module (not pytest's tmp_path)
    study = build_tiny_study(root, n_epochs=2)
    with HubServer(study.hub) as server:
        cache = root / "empty-cache"
        env = {k: v for k, v in study.env.items() if k not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
        env.update(HF_ENDPOINT=server.url, HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_TELEMETRY="1",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        study.env_override = env
        yield study, server, cache
    shutil.rmtree(root, ignore_errors=True)


def run(study, *args, check=True):
    proc = subprocess.run(study.cmd(*args), env=study.env_override, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-5000:]}")
    return proc


def test_online_run_from_an_empty_cache_lists_each_model_once(online):
    study, server, cache = online
    assert not cache.exists()
    run(study)
    assert listings(server) == {r: (1, 1) for r in MODEL_REPOS}
    # everything came over HTTP into the empty cache: checkpoints via the CDN redirect, the dataset snapshot
    assert server.count("resolve") > 0 and server.count("cdn") >= 4
    assert (cache / "models--clipdyn-test--tiny-a" / "blobs").is_dir()
    assert (cache / "datasets--clipdyn-test--wds_tiny" / "snapshots").is_dir()
    m = pd.read_parquet(study.workdir / "results" / "metrics.parquet")
    assert sorted(m["model"].unique()) == ["tiny_a", "tiny_b"] and sorted(m["epoch"].unique()) == [1, 2]
    record = json.loads((study.workdir / "results" / "checkpoints" / "listing.json").read_text())
    assert sorted(e["model"] for e in record["entries"].values()) == ["tiny_a", "tiny_b"]
    a = next(e for e in record["entries"].values() if e["model"] == "tiny_a")
    assert a["key"]["repo"] == "clipdyn-test/tiny-a" and sorted(int(e) for e in a["resolved"]["files"]) == [1, 2]


def test_report_unlock_lint_and_job_processes_list_nothing(online):
    study, server, _ = online
    server.clear()
    run(study, "--unlock")
    run(study, "--report", str(study.workdir / "report.html"))
    run(study, "--lint", check=False)  # lints may be printed; the point is what it asks the Hub
    assert (study.workdir / "report.html").stat().st_size > 0
    # a job process, as the SLURM executor starts it: re-parses the Snakefile, runs one job
    run(study, "--target-jobs", "compute_metric:model=tiny_a,metric=zeroshot", "--allowed-rules",
        "compute_metric", "--force", "--nolock", "--no-hooks", "--mode", "remote")
    assert listings(server) == {r: (0, 0) for r in MODEL_REPOS}


def test_a_job_without_the_record_says_what_to_do(online):
    study, server, _ = online
    record = study.workdir / "results" / "checkpoints" / "listing.json"
    saved = record.read_bytes()
    record.unlink()
    try:
        proc = run(study, "--target-jobs", "compute_metric:model=tiny_a,metric=zeroshot", "--allowed-rules",
                   "compute_metric", "--force", "--nolock", "--no-hooks", "--mode", "remote", check=False)
        assert proc.returncode != 0
        assert "found no listing" in proc.stderr + proc.stdout and "top-level" in proc.stderr + proc.stdout
    finally:
        record.write_bytes(saved)


def test_new_epochs_published_while_serving_run_only_their_jobs(online):
    study, server, _ = online
    publish_epochs(LocalHub(study.hub), "tiny-a", [3, 4], seed=0, scratch=study.root / "scratch")
    server.clear()
    dry = run(study, "-n", "--quiet", "rules")
    jobs = parse_job_counts(dry.stdout + dry.stderr)
    # one fetch per new checkpoint (clipdyn.hub.checkpoints), read by its embedding and its classifier
    assert jobs.get("embed_images") == 2 and jobs.get("text_classifier") == 2, jobs
    assert jobs.get("fetch_checkpoint") == 2, jobs
    assert listings(server) == {r: (1, 1) for r in MODEL_REPOS}  # the dry run lists once too
    server.clear()
    run(study)
    assert listings(server) == {r: (1, 1) for r in MODEL_REPOS}
    downloaded = {r.get("file") for r in server.requests
                  if r["kind"] == "resolve" and r.get("repo") == "clipdyn-test/tiny-a"}
    assert downloaded == {"full_checkpoints/tiny-a/epoch_3.pt", "full_checkpoints/tiny-a/epoch_4.pt"}
    m = pd.read_parquet(study.workdir / "results" / "metrics.parquet")
    assert sorted(m.loc[m["model"] == "tiny_a", "epoch"].unique()) == [1, 2, 3, 4]
    record = json.loads((study.workdir / "results" / "checkpoints" / "listing.json").read_text())
    a = next(e for e in record["entries"].values() if e["model"] == "tiny_a")
    assert sorted(int(e) for e in a["resolved"]["files"]) == [1, 2, 3, 4]


def test_a_download_job_process_downloads_without_listing(online):
    study, server, cache = online
    server.clear()
    run(study, "--target-jobs", "fetch_checkpoint:model=tiny_b,epoch=2",
        "--allowed-rules", "fetch_checkpoint", "--force", "--nolock", "--no-hooks", "--mode", "remote")
    assert listings(server) == {r: (0, 0) for r in MODEL_REPOS}
    assert server.count("resolve", "clipdyn-test/tiny-b") == 1  # it asked for the file, by the recorded listing
