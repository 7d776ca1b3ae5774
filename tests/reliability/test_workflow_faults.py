"""The workflow under faults, run for real with snakemake on the tiny fixtures (1 model x 1 epoch,
figures off), with HF_TOKEN set in the environment:

* ``broken``: besides the tiny ImageNet-style set, an image folder with a corrupt and a missing
  image (used with ``on_bad_image: error`` and ``skip``) and an IQA set whose archive has a
  member that escapes its folder; run once with ``--keep-going``;
* ``killed``: a clean study whose snakemake is SIGKILLed (the whole process group) while an
  embedding job runs, after a second snakemake in the same folder was refused; then rerun.

The two studies run at the same time; the tests read what they left.
"""

import base64
import re
import subprocess
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from runs import TOKEN, add_broken_datasets, files_under, kill_group, own_tmp, token_study, wait_for

pytestmark = pytest.mark.workflow

PP = "32px-bicubic-shortest"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def broken_root():
    with own_tmp("broken") as root:
        yield root


@pytest.fixture(scope="module")
def killed_root():
    with own_tmp("killed") as root:
        yield root


@pytest.fixture(scope="module")
def broken(broken_root):
    """Started in the background (it mostly waits on job start-up), finished on first use."""
    study = token_study(broken_root, n_models=1, n_epochs=1)
    info = add_broken_datasets(study)
    log = study.root / "keep-going.log"
    proc = study.start("--keep-going", log=log)
    done = {}

    def result():
        if not done:
            rc = proc.wait(900)
            done["proc"] = subprocess.CompletedProcess(proc.args, rc, log.read_text(), "")
        return study, info, done["proc"]

    yield result
    if proc.poll() is None:
        kill_group(proc)


@pytest.fixture(scope="module")
def broken_run(broken, killed):
    """The --keep-going run, finished. (Depends on ``killed`` so that the two studies always run
    side by side, whichever test asks first: together they take little more than one.)"""
    return broken()


@pytest.fixture(scope="module")
def killed(killed_root, broken):
    """Start, get refused a second time, SIGKILL mid-embedding, then recover."""
    study = token_study(killed_root, n_models=1, n_epochs=1)
    # each job in its own process (embedding.worker: off): with the persistent worker the whole tiny
    # study finishes before it can be killed. Killing a job that uses the worker: tests/unit/test_worker.py
    cfg = study.read_config()
    cfg.setdefault("embedding", {})["worker"] = "off"
    study.write_config(cfg)
    w, r = study.workdir, study.workdir / "results"
    out = {"study": study}
    first = study.start(log=study.root / "first.log")
    try:
        locks = w / ".snakemake" / "locks"
        assert wait_for(lambda: locks.is_dir() and any(locks.iterdir()), 120, first), "first run never locked"
        # a second snakemake in the same folder while the first runs (with --rerun-incomplete it
        # would like to redo the first run's in-flight jobs: the lock must stop it)
        out["second"] = subprocess.run(study.cmd("--rerun-incomplete"), env=study.env, capture_output=True,
                                       text=True, timeout=300)
        out["first_alive_after_second"] = first.poll() is None
        emb_log = r / "logs" / "embed_images" / "tiny_a" / "epoch_1" / "tiny_imagenet.log"
        emb = r / "embeddings" / "tiny_a" / "epoch_1" / "tiny_imagenet.parquet"
        out["embedding_running"] = wait_for(lambda: emb_log.exists() and not emb.exists(), 300, first)
        time.sleep(0.5)  # well inside the job: model loading, embedding, writing
    finally:
        if first.poll() is None:
            kill_group(first)
            out["killed"] = True
        else:
            out["killed"] = False
    out["first_log"] = (study.root / "first.log").read_text()
    out["after_kill"] = {p.relative_to(w).as_posix() for p in r.rglob("*") if p.is_file() or p.is_symlink()}
    inc = w / ".snakemake" / "incomplete"
    out["incomplete_markers"] = sorted(base64.b64decode(p.name).decode() for p in inc.iterdir()) if inc.exists() else []
    out["rerun_locked"] = study.snakemake(check=False)
    out["unlock"] = study.snakemake("--unlock", check=False)
    # the same command as before, no --rerun-incomplete: workflow/profiles/default sets it
    out["rerun"] = study.snakemake(check=False)
    out["final_dry_run"] = study.snakemake("-n", check=False)
    return out


def _text(proc):
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- datasets


def test_bad_image_with_on_bad_image_error_fails_the_job_naming_the_file(broken_run):
    study, info, proc = broken_run
    assert proc.returncode != 0
    out = _text(proc)
    assert "Error in rule pixel_cache" in out and "dataset=bad_error" in out
    log = (study.workdir / f"results/logs/pixel_cache/bad_error/{PP}.log").read_text()
    assert re.search(r"BadImageError: bad image \S+/" + re.escape(info["corrupt"]) + r": corrupt or truncated image",
                     log), log[-2000:]
    r = study.workdir / "results"
    assert not (r / f"data/bad_error/pixels_{PP}.npy").exists()
    assert not list((r / "data" / "bad_error").glob(".pixels*"))  # no temporary left behind


def test_bad_images_with_on_bad_image_skip_are_listed_and_n_is_real(broken_run):
    from clipdyn.io import read_meta

    study, info, _ = broken_run
    r = study.workdir / "results"
    meta = read_meta(r / f"data/bad_skip/pixels_{PP}.parquet")
    skipped = {s["image_id"]: s["reason"] for s in meta["skipped"]}
    assert set(skipped) == {info["corrupt"], info["missing"]}
    assert "corrupt or truncated image" in skipped[info["corrupt"]]
    assert "cannot read file" in skipped[info["missing"]] and "No such file" in skipped[info["missing"]]
    assert meta["n_skipped"] == 2 and meta["n_images"] == info["n_images"] - 2
    rows = pd.read_parquet(r / "metrics/tiny_a/epoch_1/zs_bad_skip.parquet")
    assert set(rows["n"]) == {info["n_images"] - 2}
    emb_meta = read_meta(r / "embeddings/tiny_a/epoch_1/bad_skip.parquet")
    assert emb_meta["n_images"] == 10 and emb_meta["n_skipped"] == 2
    log = (r / f"logs/pixel_cache/bad_skip/{PP}.log").read_text()
    assert f"skipped {info['corrupt']}" in log and f"skipped {info['missing']}" in log


def test_unsafe_archive_in_a_dataset_repo_is_refused_by_the_workflow(broken_run):
    study, _, proc = broken_run
    assert "Error in rule prepare_manifest" in _text(proc) and "dataset=evil_iqa" in _text(proc)
    log = (study.workdir / "results/logs/prepare_manifest/evil_iqa.log").read_text()
    assert "UnsafeArchiveError" in log and "refusing member '../../evil.sh': path contains '..'" in log
    assert not list(study.root.rglob("evil.sh"))
    assert not (study.workdir / "results/data/evil_iqa/manifest.parquet").exists()


def test_keep_going_finishes_everything_that_does_not_depend_on_a_failure(broken_run):
    study, _, _ = broken_run
    r = study.workdir / "results"
    for f in ("metrics/tiny_a/epoch_1/zeroshot.parquet", "metrics/tiny_a/epoch_1/zs_bad_skip.parquet",
              "text/tiny_a/epoch_1/tiny.parquet", "embeddings/tiny_a/epoch_1/tiny_imagenet.parquet"):
        assert (r / f).exists(), f
    # what is left is exactly the failed jobs and what depends on them
    left = study.dry_run_jobs("--keep-going")
    assert left == {"prepare_manifest": 1, "pixel_cache": 2, "embed_images": 2, "compute_metric": 2,
                    "collect_metrics": 1, "all": 1}, left


# ---------------------------------------------------------------------------- kill, lock, rerun


def test_second_snakemake_in_the_same_folder_is_refused(killed):
    second = killed["second"]
    assert second.returncode != 0
    out = _text(second)
    assert "LockException" in out and "Directory cannot be locked" in out, out[-3000:]
    assert killed["first_alive_after_second"]


def test_sigkill_mid_embedding_leaves_no_embedding_file(killed):
    assert killed["killed"], "the first run ended before it could be killed"
    assert killed["embedding_running"]
    emb = "results/embeddings/tiny_a/epoch_1/tiny_imagenet.parquet"
    assert emb not in killed["after_kill"]
    assert not [f for f in killed["after_kill"] if f.startswith("results/embeddings/") and not
                f.rsplit("/", 1)[-1].startswith(".")]
    assert emb in killed["incomplete_markers"]  # snakemake knows the job did not finish


def test_rerun_after_kill_needs_unlock_then_reruns_the_killed_jobs(killed):
    locked = killed["rerun_locked"]
    assert locked.returncode != 0
    assert "Directory cannot be locked" in _text(locked) and "--unlock" in _text(locked)
    assert killed["unlock"].returncode == 0 and "Unlocked working directory" in _text(killed["unlock"])
    final = killed["rerun"]
    assert final.returncode == 0, _text(final)[-4000:]
    out = _text(final)
    assert "rule embed_images:" in out  # the killed job ran again
    assert "rule download_dataset:" not in out and "rule pixel_cache:" not in out  # finished jobs did not
    assert "Nothing to be done" in _text(killed["final_dry_run"])


def test_metrics_after_kill_and_rerun_equal_a_clean_runs(killed, broken_run):
    got = pd.read_parquet(killed["study"].workdir / "results" / "metrics.parquet")
    clean = pd.read_parquet(broken_run[0].workdir / "results/metrics/tiny_a/epoch_1/zeroshot.parquet")
    cols = ["model", "epoch", "metric", "measure", "dataset", "variant", "value", "n"]
    got = got[cols].sort_values(["measure"]).reset_index(drop=True)
    clean = clean[cols].sort_values(["measure"]).reset_index(drop=True)
    assert len(got) == 2
    pd.testing.assert_frame_equal(got, clean, check_exact=True)


# ---------------------------------------------------------------------------- secrets


def _parquet_text(path) -> str:
    t = pq.read_table(path)
    parts = [str(t.schema.metadata)]
    for col in t.column_names:
        if str(t.schema.field(col).type) in ("string", "large_string"):
            parts.extend(map(str, t.column(col).to_pylist()))
    return "\n".join(parts)


def test_hf_token_is_never_written(broken_run, killed):
    assert broken_run[0].env["HF_TOKEN"] == TOKEN  # the runs really had it
    needle = TOKEN.encode()
    checked = 0
    for study in (broken_run[0], killed["study"]):
        w = study.workdir
        for f in files_under(w / "results", w / ".snakemake"):
            data = f.read_bytes()
            assert needle not in data, f
            if f.suffix == ".parquet":
                assert TOKEN not in _parquet_text(f), f
            checked += 1
    for proc in (broken_run[2], killed["second"], killed["rerun_locked"], killed["rerun"]):
        assert TOKEN not in _text(proc)
    assert TOKEN not in killed["first_log"]
    assert checked > 50
