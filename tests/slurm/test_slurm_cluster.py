"""The local test cluster itself: sbatch runs a job, status comes without sacct."""

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from localslurm import TIMINGS

pytestmark = pytest.mark.slurm


def test_node_idle_with_real_hardware(slurm_cluster):
    out = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %T %c %m %G"]).stdout.split()
    assert out[0] == slurm_cluster.nodename
    assert out[1] == "idle"
    assert int(out[2]) == slurm_cluster.cpus
    assert int(out[3]) == slurm_cluster.memory_mb
    assert out[4] == f"gpu:{slurm_cluster.fake_gpus}"


def test_sbatch_hostname_completes(slurm_cluster, slurm_tmp):
    log = slurm_tmp / "hostname.out"
    t0 = time.monotonic()
    jobid = slurm_cluster.sbatch("--output", str(log), "--wrap", "hostname")
    state = slurm_cluster.wait_job(jobid)
    TIMINGS["sbatch_hostname_latency_s"] = time.monotonic() - t0
    assert state == "COMPLETED", slurm_cluster.logs_tail()
    assert log.read_text().strip() == slurm_cluster.nodename
    assert f"JobId={jobid}" in slurm_cluster.slurmctld_log.read_text()


def test_status_without_accounting(slurm_cluster):
    """No slurmdbd: squeue keeps finished jobs for MinJobAge, sacct has nothing.

    This is why the snakemake SLURM profile's test run uses
    `--slurm-status-command squeue`."""
    ok = slurm_cluster.sbatch("--output", "/dev/null", "--wrap", "true")
    bad = slurm_cluster.sbatch("--output", "/dev/null", "--wrap", "exit 3")
    assert slurm_cluster.wait_job(ok) == "COMPLETED"
    assert slurm_cluster.wait_job(bad) == "FAILED"
    # the exact query the plugin's squeue status command makes, by job name
    named = slurm_cluster.sbatch("--output", "/dev/null", "--job-name", "probe-123",
                                 "--wrap", "true")
    slurm_cluster.wait_job(named)
    q = slurm_cluster.run(["squeue", "--format=%i|%T", "--states=all", "--noheader",
                           "--name", "probe-123"]).stdout.split()
    assert q == [f"{named}|COMPLETED"]
    sacct = slurm_cluster.run(["sacct", "-X", "-n", "-j", ok], check=False)
    assert sacct.returncode != 0 or not sacct.stdout.strip()


def test_gpu_gres_sets_cuda_visible_devices(slurm_cluster, slurm_tmp):
    """`--gpus=1` (what the plugin emits for resource gpu=1) is satisfied by the
    fake GPUs, and the job sees the variables a real GPU job sees."""
    log = slurm_tmp / "gpu.out"
    jobid = slurm_cluster.sbatch(
        "--gpus=1", "--output", str(log), "--wrap",
        "env | grep -E '^(CUDA_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL|SLURM_JOB_GPUS"
        "|SLURM_GPUS|SLURM_GPUS_ON_NODE)=' | sort")
    assert slurm_cluster.wait_job(jobid) == "COMPLETED"
    env = dict(line.split("=", 1) for line in log.read_text().split())
    assert env["CUDA_VISIBLE_DEVICES"] == env["SLURM_JOB_GPUS"]
    assert env["CUDA_VISIBLE_DEVICES"] in {str(i) for i in range(slurm_cluster.fake_gpus)}
    assert env["SLURM_GPUS_ON_NODE"] == "1"


def test_missing_prerequisites_are_named(monkeypatch):
    """What the fixture's skip message says on a machine that cannot run it."""
    import localslurm

    monkeypatch.setattr(localslurm.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(localslurm.shutil, "which", lambda tool: None)
    monkeypatch.setattr(localslurm, "Path", lambda *a: type("P", (), {"exists": lambda s: False})())
    reasons = localslurm.missing_prerequisites()
    assert reasons[0].startswith("not root")
    assert any("`slurmd` not found (run tests/slurm/install.sh)" == r for r in reasons)


def test_failed_start_raises_with_logs_and_stops_daemons():
    """A daemon that dies during startup: ClusterUnavailable with the logs' tail,
    and the daemons already started (munged) are stopped."""
    import localslurm

    if localslurm.missing_prerequisites():
        pytest.skip("; ".join(localslurm.missing_prerequisites()))
    root = Path(tempfile.mkdtemp(prefix="clipdyn-slurm-fail-"))
    cluster = localslurm.SlurmCluster(root, startup_timeout=20)
    real_spawn = cluster._spawn

    def spawn(name, cmd):
        if name == "slurmctld":
            cmd = cmd + ["--no-such-option"]
        real_spawn(name, cmd)

    cluster._spawn = spawn
    started = {}
    real_munged = cluster._start_munged

    def start_munged():
        real_munged()
        started["munged"] = cluster._procs["munged"]

    cluster._start_munged = start_munged
    try:
        with pytest.raises(localslurm.ClusterUnavailable, match="slurmctld exited"):
            cluster.start()
        assert started["munged"].poll() is not None  # stopped, not left behind
        assert cluster._procs == {}
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
