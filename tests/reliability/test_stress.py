"""Load: the spine study at many epochs (3 tiny models x 40 epochs, figures on) completes with
``--cores 2``, while a second snakemake in the same folder is refused by Snakemake's lock.

Slow (tens of minutes on 2 cores): runs only with ``CLIPDYN_SLOW=1``. Prints the job count and
the wall time, and writes them as JSON to ``$CLIPDYN_STRESS_REPORT`` if that is set.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from runs import TokenStudy, own_tmp, wait_for

from clipdyn.fixtures.studies import build_tiny_study, parse_job_counts

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

N_MODELS, N_EPOCHS = 3, 40


@pytest.fixture
def root():
    with own_tmp("stress") as root:
        yield root


def test_many_epochs_complete_on_two_cores_and_a_second_run_is_locked_out(root):
    tmp_path = root
    t0 = time.time()
    s = build_tiny_study(tmp_path, n_models=N_MODELS, n_epochs=N_EPOCHS)
    shutil.rmtree(tmp_path / "scratch")  # the checkpoints now live in the local hub only
    study = TokenStudy(root=s.root, hub=s.hub, config=s.config, workdir=s.workdir)
    built = time.time() - t0

    log = tmp_path / "stress.log"
    t1 = time.time()
    run = study.start(log=log)
    locks = study.workdir / ".snakemake" / "locks"
    assert wait_for(lambda: locks.is_dir() and any(locks.iterdir()), 300, run)
    second = subprocess.run(study.cmd("--rerun-incomplete"), env=study.env, capture_output=True, text=True,
                            timeout=600)
    rc = run.wait(4 * 3600)
    wall = time.time() - t1
    text = log.read_text()
    assert rc == 0, text[-6000:]
    assert second.returncode != 0 and "Directory cannot be locked" in second.stdout + second.stderr

    jobs = parse_job_counts(text)
    total = sum(jobs.values())
    n = N_MODELS * N_EPOCHS
    assert jobs["embed_images"] == n and jobs["text_classifier"] == n
    assert jobs["compute_metric"] == N_MODELS  # one per (model, metric), over all epochs
    metrics = pd.read_parquet(study.workdir / "results" / "metrics.parquet")
    assert len(metrics) == n * 2 and metrics["value"].notna().all()
    assert metrics.groupby("model")["epoch"].nunique().tolist() == [N_EPOCHS] * N_MODELS
    for f in ("fig1.png", "fig2.png", "fig3.png", "robustness.png", "table1.csv"):
        assert (study.workdir / "results" / "figures" / f).stat().st_size > 0
    # nothing left to do (code/params triggers left out: others may edit the library meanwhile)
    again = study.snakemake("-n", "--rerun-triggers", "mtime", "input")
    assert "Nothing to be done" in again.stdout + again.stderr

    report = {"models": N_MODELS, "epochs": N_EPOCHS, "jobs": total, "jobs_by_rule": jobs,
              "wall_s": round(wall, 1), "build_fixture_s": round(built, 1), "cores": 2,
              "jobs_per_min": round(total / wall * 60, 1)}
    print("STRESS", json.dumps(report))
    if os.environ.get("CLIPDYN_STRESS_REPORT"):
        Path(os.environ["CLIPDYN_STRESS_REPORT"]).write_text(json.dumps(report, indent=2))
