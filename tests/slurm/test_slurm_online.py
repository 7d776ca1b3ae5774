"""One Hub listing per invocation, none per SLURM job: the tiny study run online on the local
SLURM cluster against the local Hub server (clipdyn.fixtures.hubserver) from an empty Hugging Face
cache. Every SLURM job re-parses the Snakefile; the server counts the listing requests (repo
info + tree of each model repo): one per model from the top-level process, zero from the jobs,
zero from --report afterwards. The downloads themselves run in SLURM jobs, over HTTP."""

import os

import pytest
from localslurm import REPO, slurm_snakemake, submitted_jobs

from clipdyn.fixtures.hubserver import HubServer
from clipdyn.fixtures.studies import build_tiny_study

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]


def test_slurm_jobs_make_no_listing_call(slurm_executor, slurm_cluster):
    root = slurm_cluster.root / "online-study"
    study = build_tiny_study(root, n_models=2, n_epochs=1)
    repos = {m["repo"] for m in study.read_config()["models"].values()}
    with HubServer(study.hub) as server:
        env = {k: v for k, v in study.env.items() if os.environ.get(k) != v}
        env.update(HF_ENDPOINT=server.url, HF_HUB_CACHE=str(root / "empty-cache"), HF_HUB_DISABLE_TELEMETRY="1",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        # online: the jobs inherit this environment (sbatch --export=ALL)
        env["HF_HUB_OFFLINE"] = "0"
        wd = root / "work-slurm"
        args = ("--snakefile", str(REPO / "workflow" / "Snakefile"), "--configfile", str(study.config),
                "--default-resources", f"slurm_partition={slurm_cluster.partition}")
        proc = slurm_snakemake(slurm_cluster, wd, *args, env=env, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-6000:] + "\n" + slurm_cluster.logs_tail()
        jobs = submitted_jobs(proc.stdout)
        assert {"embed_images", "compute_metric"} <= set(jobs), sorted(jobs)
        # downloads are local rules: the node running snakemake has the network
        assert not {"fetch_checkpoint", "download_dataset"} & set(jobs), sorted(jobs)
        assert sum(len(v) for v in jobs.values()) >= 8  # every one of them parsed the Snakefile again
        for repo in repos:
            assert (server.count("info", repo), server.count("tree", repo)) == (1, 1), (repo, server.requests)
        # the checkpoints came over HTTP, downloaded by the local fetch_checkpoint jobs
        assert server.count("cdn") >= len(repos)
        assert (wd / "results" / "metrics.parquet").exists()
        server.clear()
        rep = slurm_snakemake(slurm_cluster, wd, *args, "--report", str(wd / "report.html"), env=env,
                              timeout=600, log_name="snakemake-report.log")
        assert rep.returncode == 0, rep.stdout[-3000:]
        assert all(server.count("info", r) == server.count("tree", r) == 0 for r in repos)
