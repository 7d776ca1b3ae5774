"""workflow/profiles/slurm through snakemake-executor-plugin-slurm, on a stand-in
workflow (tests/slurm/toy/Snakefile: clipdyn's rule names and resource shapes,
no torch), so the profile and the plugin are checked apart from clipdyn itself."""

import shutil
import time
from pathlib import Path

import pytest
from localslurm import TIMINGS, slurm_snakemake, submitted_jobs

pytestmark = pytest.mark.slurm

TOY = Path(__file__).parent / "toy" / "Snakefile"


def _record(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split())


@pytest.fixture(scope="module")
def toy_run(slurm_executor, slurm_cluster):
    """The toy workflow run once on the cluster, the partition through the profile's environment
    placeholder (the command-line override, --default-resources, is what test_slurm_workflow uses)."""
    wd = slurm_cluster.root / "toy"
    wd.mkdir()
    shutil.copy(TOY, wd / "Snakefile")
    t0 = time.monotonic()
    proc = slurm_snakemake(slurm_cluster, wd,
                           env={"CLIPDYN_SLURM_PARTITION": slurm_cluster.partition})
    TIMINGS["toy_workflow_on_slurm_s"] = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + slurm_cluster.logs_tail()
    return wd, proc


def test_profile_runs_toy_workflow_through_sbatch(toy_run, slurm_cluster):
    wd, proc = toy_run
    jobs = submitted_jobs(proc.stdout)
    assert {r: len(ids) for r, ids in jobs.items()} == {
        "download_checkpoint": 2, "pixel_cache": 1, "embed_images": 2,
        "compute_metric": 2}
    ctld = slurm_cluster.slurmctld_log.read_text()
    for ids in jobs.values():
        for jobid in ids:
            assert f"JobId={jobid} " in ctld or f"JobId={jobid}\n" in ctld
            assert slurm_cluster.job_state(jobid) == "COMPLETED"
    # the profile's slurm_partition placeholder reached sbatch
    part = slurm_cluster.run(["squeue", "-h", "-t", "all", "-o", "%P", "-j",
                              ",".join(i for ids in jobs.values() for i in ids)])
    assert set(part.stdout.split()) == {slurm_cluster.partition}

    rows = [_record(line) for line in (wd / "results" / "metrics.tsv").read_text().splitlines()]
    by_rule = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r)
    # GPU rule: gpu=1 -> --gpus=1 -> a (fake) GPU with CUDA_VISIBLE_DEVICES set
    for r in by_rule["embed_images"]:
        assert r["job"] in jobs["embed_images"]
        assert r["cuda"] in {str(i) for i in range(slurm_cluster.fake_gpus)}
    # CPU rule: no GPU
    for r in by_rule["compute_metric"]:
        assert r["job"] in jobs["compute_metric"]
        assert r["cuda"] == "none"
    # localrule: ran in the snakemake process, not in a SLURM job
    assert by_rule["collect_metrics"] == [{"rule": "collect_metrics", "job": "none"}]
    # the SLURM logs of every job are where the plugin puts them
    logs = list((wd / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == sum(len(ids) for ids in jobs.values())


def test_profile_resources_reach_sbatch(toy_run, slurm_cluster):
    """mem_mb/runtime from the rules and the profile's per-rule expressions, and the GPU gres,
    as SLURM recorded them for the jobs (scontrol show job)."""
    _, proc = toy_run
    jobs = submitted_jobs(proc.stdout)

    def show(jobid):
        out = slurm_cluster.run(["scontrol", "show", "job", "-o", jobid]).stdout
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    embed = show(jobs["embed_images"][0])
    # 3,000,000-byte checkpoint: the rule's own requests, 3000 + 3 MiB -> 3003 MB and 30 min
    assert embed["TimeLimit"] == "00:30:00"
    assert embed["MinMemoryNode"] == "3003M"
    assert embed.get("TresPerJob") == "gres:gpu:1"
    pixels = show(jobs["pixel_cache"][0])
    assert pixels["TimeLimit"] == "04:00:00"
    assert pixels["MinMemoryNode"] == "8000M"
    # threads: 4 in the rule, capped at the node's CPUs by --max-threads
    assert pixels["NumCPUs"] == str(min(4, slurm_cluster.cpus))
    assert "gpu" not in pixels.get("TresPerJob", "")
