"""clipdyn itself on SLURM: the tiny study (clipdyn.fixtures.studies) run with
`--executor slurm --profile workflow/profiles/slurm` on the local test cluster, online against
the local Hub server (clipdyn.fixtures.hubserver) from an empty Hugging Face cache. It must
submit every non-local job through sbatch (GPU rules with a GPU gres), produce the same
results/metrics.parquet as a local offline run of the same study, and make one Hub listing per
invocation, none per SLURM job: every SLURM job re-parses the Snakefile; the server counts the
listing requests (repo info + tree of each model repo): one per model from the top-level
process, zero from the jobs, zero from --report afterwards. The downloads run in local jobs on
the node that runs snakemake (it has the network), over HTTP."""

import os
import re
import time

import pandas as pd
import pytest
from localslurm import REPO, TIMINGS, slurm_snakemake, submitted_jobs

from clipdyn.fixtures.hubserver import HubServer
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
    """Build the study, run it locally (offline, its own HF cache), then on SLURM in a second
    workdir, online against the Hub server from an empty HF cache. The server runs for the module."""
    build_tiny_study, parse_job_counts = _study_builder()
    root = slurm_cluster.root / "tiny-study"
    study = build_tiny_study(root, n_models=1, n_epochs=2)

    t0 = time.monotonic()
    local = study.snakemake()
    TIMINGS["tiny_study_local_s"] = time.monotonic() - t0

    with HubServer(study.hub) as server:
        # the study's own variables (seeds, lock dir) on top of the cluster's client environment,
        # made online; sbatch --export=ALL hands them to the jobs
        env = {k: v for k, v in study.env.items() if os.environ.get(k) != v}
        env.update(HF_ENDPOINT=server.url, HF_HUB_CACHE=str(root / "empty-cache"), HF_HUB_OFFLINE="0",
                   HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        slurm_wd = root / "work-slurm"
        args = ("--snakefile", str(REPO / "workflow" / "Snakefile"), "--configfile", str(study.config),
                "--default-resources", f"slurm_partition={slurm_cluster.partition}")
        t0 = time.monotonic()
        proc = slurm_snakemake(slurm_cluster, slurm_wd, *args, env=env, timeout=1800)
        TIMINGS["tiny_study_on_slurm_s"] = time.monotonic() - t0
        if proc.returncode != 0:
            pytest.fail("snakemake on SLURM failed:\n" + proc.stdout[-6000:]
                        + "\n" + slurm_cluster.logs_tail())
        repos = {m["repo"] for m in study.read_config()["models"].values()}
        requests = {(kind, repo): server.count(kind, repo) for repo in repos for kind in ("info", "tree")}
        yield {"study": study, "local_log": local.stdout + local.stderr,
               "log": proc.stdout, "workdir": slurm_wd, "env": env, "args": args,
               "parse_job_counts": parse_job_counts, "server": server, "requests": requests,
               "downloads": server.count("cdn"), "repos": repos}


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
    proc = slurm_snakemake(
        slurm_cluster, slurm_run["workdir"], "-n", *slurm_run["args"],
        env=slurm_run["env"], timeout=600, log_name="snakemake-slurm-dryrun.log")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Nothing to be done" in proc.stdout, proc.stdout[-3000:]


def test_slurm_jobs_make_no_listing_call(slurm_run, slurm_cluster):
    jobs = submitted_jobs(slurm_run["log"])
    assert {"embed_images", "compute_metric"} <= set(jobs), sorted(jobs)
    # downloads are local rules: the node running snakemake has the network
    assert not {"fetch_checkpoint", "download_dataset"} & set(jobs), sorted(jobs)
    assert sum(len(v) for v in jobs.values()) >= 5  # every one of them parsed the Snakefile again
    assert slurm_run["requests"] == {(kind, repo): 1 for repo in slurm_run["repos"] for kind in ("info", "tree")}
    # the checkpoints came over HTTP, downloaded by the local fetch_checkpoint jobs
    assert slurm_run["downloads"] >= 2 * len(slurm_run["repos"])
    assert (slurm_run["workdir"] / "results" / "metrics.parquet").exists()


def test_report_on_slurm_makes_no_listing_call(slurm_run, slurm_cluster):
    server, wd = slurm_run["server"], slurm_run["workdir"]
    server.clear()
    rep = slurm_snakemake(slurm_cluster, wd, *slurm_run["args"], "--report", str(wd / "report.html"),
                          env=slurm_run["env"], timeout=600, log_name="snakemake-report.log")
    assert rep.returncode == 0, rep.stdout[-3000:]
    assert (wd / "report.html").stat().st_size > 0
    assert all(server.count("info", r) == server.count("tree", r) == 0 for r in slurm_run["repos"]), server.requests
