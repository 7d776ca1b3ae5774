"""clipdyn itself on SLURM: the tiny local-hub study (clipdyn.fixtures.studies)
run with `--executor slurm --profile workflow/profiles/slurm` on the local test
cluster must submit every non-local job through sbatch (GPU rules with a GPU gres)
and produce the same results/metrics.parquet as a local run of the same study."""

import os
import re
import time

import pandas as pd
import pytest
from localslurm import REPO, TIMINGS, slurm_snakemake, submitted_jobs

from clipdyn.io import METRIC_COLUMNS

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

GPU_RULES = {"embed_images", "text_classifier"}
# rules that must run as SLURM jobs in the tiny study (the rest may be localrules)
CLUSTER_RULES = GPU_RULES | {"prepare_manifest", "pixel_cache", "compute_metric"}


def _study_builder():
    from clipdyn.fixtures.studies import build_tiny_study, parse_job_counts

    return build_tiny_study, parse_job_counts


@pytest.fixture(scope="module")
def slurm_run(slurm_executor, slurm_cluster):
    """Build the study, run it locally, then run it on SLURM in a second workdir."""
    build_tiny_study, parse_job_counts = _study_builder()
    root = slurm_cluster.root / "tiny-study"
    study = build_tiny_study(root, n_models=1, n_epochs=2)

    t0 = time.monotonic()
    local = study.snakemake()
    TIMINGS["tiny_study_local_s"] = time.monotonic() - t0

    # the study's own variables (offline HF cache, seeds, lock dir) on top of the
    # cluster's client environment; sbatch --export=ALL hands them to the jobs
    extra = {k: v for k, v in study.env.items() if os.environ.get(k) != v}
    slurm_wd = root / "work-slurm"
    t0 = time.monotonic()
    proc = slurm_snakemake(
        slurm_cluster, slurm_wd,
        "--snakefile", str(REPO / "workflow" / "Snakefile"),
        "--configfile", str(study.config),
        "--default-resources", f"slurm_partition={slurm_cluster.partition}",
        env=extra, timeout=1800)
    TIMINGS["tiny_study_on_slurm_s"] = time.monotonic() - t0
    if proc.returncode != 0:
        pytest.fail("snakemake on SLURM failed:\n" + proc.stdout[-6000:]
                    + "\n" + slurm_cluster.logs_tail())
    return {"study": study, "local_log": local.stdout + local.stderr,
            "log": proc.stdout, "workdir": slurm_wd, "env": extra,
            "parse_job_counts": parse_job_counts}


def test_cluster_jobs_went_through_sbatch(slurm_run, slurm_cluster):
    log = slurm_run["log"]
    stats = slurm_run["parse_job_counts"](log)
    jobs = submitted_jobs(log)
    local_rules = set(re.findall(r"^localrule (\w+):", log, re.M))
    assert CLUSTER_RULES <= set(jobs), (sorted(jobs), log[-3000:])
    for rule, ids in jobs.items():
        assert len(ids) == stats[rule], rule
    assert set(stats) == set(jobs) | local_rules
    ctld = slurm_cluster.slurmctld_log.read_text()
    for rule, ids in jobs.items():
        for jobid in ids:
            assert re.search(rf"JobId={jobid}\b", ctld), (rule, jobid)
            assert slurm_cluster.job_state(jobid) == "COMPLETED", (rule, jobid)
            assert (slurm_run["workdir"] / ".snakemake" / "slurm_logs"
                    / f"rule_{rule}").is_dir()


def test_gpu_rules_got_a_gpu_gres(slurm_run, slurm_cluster):
    jobs = submitted_jobs(slurm_run["log"])
    for rule, ids in jobs.items():
        for jobid in ids:
            out = slurm_cluster.run(["scontrol", "show", "job", "-o", jobid]).stdout
            tres = re.search(r"TresPerJob=(\S*)", out)
            has_gpu = bool(tres) and "gpu" in tres.group(1)
            assert has_gpu == (rule in GPU_RULES), (rule, jobid, out)
            assert re.search(r"Partition=(\S+)", out).group(1) == slurm_cluster.partition


def test_metrics_equal_local_run(slurm_run):
    local = pd.read_parquet(slurm_run["study"].workdir / "results" / "metrics.parquet")
    on_slurm = pd.read_parquet(slurm_run["workdir"] / "results" / "metrics.parquet")
    assert len(local) > 0
    keys = [c for c in METRIC_COLUMNS if c not in ("value", "n")]  # a row's identity
    local = local.sort_values(keys, ignore_index=True)
    on_slurm = on_slurm.sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(local, on_slurm, check_exact=True)


def test_rerun_on_slurm_has_nothing_to_do(slurm_run, slurm_cluster):
    """What the jobs recorded (params, code hashes, mtimes) agrees with the DAG the
    submit host builds: a second run submits nothing."""
    study = slurm_run["study"]
    proc = slurm_snakemake(
        slurm_cluster, slurm_run["workdir"], "-n",
        "--snakefile", str(REPO / "workflow" / "Snakefile"),
        "--configfile", str(study.config),
        "--default-resources", f"slurm_partition={slurm_cluster.partition}",
        env=slurm_run["env"], timeout=600, log_name="snakemake-slurm-dryrun.log")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Nothing to be done" in proc.stdout, proc.stdout[-3000:]
