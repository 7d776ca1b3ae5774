"""Fixtures for the SLURM tests: a throw-away local cluster (see localslurm.py).

``slurm_cluster`` (session scope) yields a started :class:`localslurm.SlurmCluster`:

- ``.env``        environment for every client call (SLURM_CONF, PATH with wrappers)
- ``.conf``       the slurm.conf path; ``.partition`` ("debug", the default one)
- ``.run(cmd)``   run a command in that environment (CompletedProcess)
- ``.sbatch(*args) -> jobid``, ``.job_state(jobid)``, ``.wait_job(jobid)``
- ``.slurmctld_log``, ``.slurmd_log``, ``.logs_tail()``
- ``.cpus``, ``.memory_mb``, ``.fake_gpus``, ``.timings`` (seconds)

``slurm_tmp`` is a fresh directory for one test under the cluster's directory
(not pytest's tmp_path: concurrent pytest sessions on one machine prune each
other's old basetemps). ``slurm_executor`` skips unless Snakemake's SLURM
executor plugin is importable.

It installs nothing. Where it cannot run (not root, packages missing, a daemon
fails to start) every test using it is skipped with the precise reason;
``tests/slurm/install.sh`` installs the packages. Set CLIPDYN_SLURM_KEEP=1 to keep
the cluster's directory (config, logs) after the session.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from localslurm import TIMINGS, ClusterUnavailable, SlurmCluster, missing_prerequisites  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster():
    reasons = missing_prerequisites()
    if reasons:
        pytest.skip("no local SLURM: " + "; ".join(reasons))
    # Not under pytest's tmp_path: munged wants o+x on every directory above its
    # socket, and pytest-of-<user> is 0700. A short path also keeps the unix
    # socket path below its 108-byte limit.
    root = Path(tempfile.mkdtemp(prefix="clipdyn-slurm-"))
    cluster = SlurmCluster(root)
    try:
        cluster.start()
    except ClusterUnavailable as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"local SLURM did not start: {e}")
    TIMINGS.update(cluster.timings)
    try:
        yield cluster
    finally:
        cluster.stop()
        if os.environ.get("CLIPDYN_SLURM_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm_tmp(slurm_cluster, request):
    name = re.sub(r"[^\w.-]", "_", request.node.name)[:60]
    path = slurm_cluster.root / "tests" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def slurm_executor():
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed in this Python "
                    f"({sys.executable}); pip install -r tests/slurm/requirements.txt")


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "local SLURM timings")
        for key, value in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {value:.2f}s")
