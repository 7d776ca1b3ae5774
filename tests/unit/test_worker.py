"""The persistent embedding worker (clipdyn.embed.worker): same results, one process, clean failures."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clipdyn.embed import worker
from clipdyn.embed.worker import WorkerError, run_step

HERE = Path(__file__).resolve().parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def wdir(monkeypatch):
    d = tempfile.mkdtemp(prefix="cw")  # short: Unix socket paths are limited to ~107 bytes
    monkeypatch.setenv("CLIPDYN_WORKER_DIR", d)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    pids = []
    yield Path(d), pids
    for pid in pids:  # do not leave workers behind
        if _alive(pid):
            os.kill(pid, 9)
    shutil.rmtree(d, ignore_errors=True)


def test_steps_run_in_one_persistent_worker(wdir):
    d, pids = wdir
    (x, pid1) = run_step("_worker_steps:echo", {"x": [1, "a"]}, idle_s=30)
    (y, pid2) = run_step("_worker_steps:echo", {"x": {"k": 2}}, idle_s=30)
    pids.append(pid1)
    assert x == [1, "a"] and y == {"k": 2}
    assert pid1 == pid2 != os.getpid()
    assert _alive(pid1)


def test_off_runs_in_this_process(wdir):
    assert run_step("_worker_steps:echo", {"x": 1}, mode="off") == (1, os.getpid())
    with pytest.raises(ValueError, match="worker must be one of"):
        run_step("_worker_steps:echo", {"x": 1}, mode="sometimes")


def test_off_and_isolated_runs_in_a_process_of_its_own(wdir, tmp_path):
    """What a run: job (a thread of snakemake) does with the worker off: the step never runs in
    snakemake's own process; its output goes to the job's log, and a failure names the log."""
    out, log = tmp_path / "written", tmp_path / "job.log"
    assert run_step("_worker_steps:talk", {}, mode="off", isolated=True, log=str(log)) is None
    text = log.read_text()
    assert "from print" in text and "from fd 2" in text
    run_step("_worker_steps:slow_write", {"path": str(out), "seconds": 0}, mode="off", isolated=True)
    assert out.read_text() == "written"
    with pytest.raises(WorkerError, match="job.log"):
        run_step("_worker_steps:fail", {"n": 3}, mode="off", isolated=True, log=str(log))
    assert "bad value 3" in log.read_text()


def test_a_rules_conda_interpreter_runs_the_worker(wdir, tmp_path):
    """Under --sdm conda a run: job (snakemake's own Python) starts the worker with the rule's
    environment's interpreter: here a shim that records that it ran."""
    d, pids = wdir
    mark = tmp_path / "used"
    shim = tmp_path / "env" / "bin" / "python"
    shim.parent.mkdir(parents=True)
    shim.write_text(f"#!/bin/sh\necho $$ >> {mark}\nexec {sys.executable} \"$@\"\n")
    shim.chmod(0o755)
    from clipdyn.embed.jobs import python_of

    assert python_of(None) is None and python_of(str(tmp_path / "env")) == str(shim)
    x, pid = run_step("_worker_steps:echo", {"x": 5}, idle_s=30, python=str(shim))
    pids.append(pid)
    assert x == 5 and mark.exists()
    run_step("_worker_steps:slow_write", {"path": str(tmp_path / "w"), "seconds": 0}, mode="off", isolated=True,
             python=str(shim))
    assert (tmp_path / "w").read_text() == "written" and len(mark.read_text().split()) == 2


def test_auto_is_off_inside_a_slurm_job(wdir, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert run_step("_worker_steps:echo", {"x": 1}) == (1, os.getpid())


def test_auto_is_on_in_a_slurm_allocation_with_several_gpus(wdir, monkeypatch):
    # sbatch/salloc with --gpus=2 running the local executor: the jobs share workers, claim a GPU each
    d, pids = wdir
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert worker.use_worker("auto")
    x, pid = run_step("_worker_steps:echo", {"x": 1}, idle_s=30)
    pids.append(pid)
    assert x == 1 and pid != os.getpid()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # a CPU-only SLURM job
    assert not worker.use_worker("auto")


def test_error_reaches_the_job_with_traceback_and_worker_survives(wdir):
    d, pids = wdir
    with pytest.raises(WorkerError) as err:
        run_step("_worker_steps:fail", {"n": 7}, idle_s=30)
    msg = str(err.value)
    assert msg.startswith("ValueError: bad value 7")
    assert "_worker_steps.py" in msg and "raise ValueError" in msg  # the worker's traceback
    _, pid = run_step("_worker_steps:echo", {"x": 0}, idle_s=30)
    pids.append(pid)
    assert str(pid) in msg  # the same worker raised it and is still serving


def test_output_goes_to_the_job_log(wdir, tmp_path):
    d, pids = wdir
    log = tmp_path / "job.log"
    log.write_text("job started\n")
    pid = run_step("_worker_steps:talk", {}, log=str(log), idle_s=30)
    pids.append(pid)
    text = log.read_text()
    assert text.splitlines() == ["job started", "from print", "from sys.stderr", "from fd 2"]
    # the worker's own stdout is back to its log afterwards
    run_step("_worker_steps:echo", {"x": 1}, idle_s=30)
    assert log.read_text() == text


def test_relative_paths_resolve_in_the_jobs_directory(wdir, tmp_path, monkeypatch):
    d, pids = wdir
    monkeypatch.chdir(tmp_path)
    assert run_step("_worker_steps:cwd", {}, idle_s=30) == str(tmp_path)


def test_concurrent_jobs_get_separate_workers(wdir, tmp_path):
    d, pids = wdir
    out = {}

    def job(i):
        out[i] = run_step("_worker_steps:slow_write", {"path": str(tmp_path / f"f{i}"), "seconds": 1.5}, idle_s=30)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pids.extend(out.values())
    assert len(set(out.values())) == 2


def test_killed_job_stops_its_worker_before_it_writes(wdir, tmp_path):
    d, pids = wdir
    target = tmp_path / "late-output"
    code = ("import sys; sys.path.insert(0, %r); from clipdyn.embed.worker import run_step; "
            "run_step('_worker_steps:slow_write', {'path': %r, 'seconds': 4}, idle_s=30)"
            % (str(Path(worker.__file__).resolve().parents[2]), str(target)))
    client = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    # wait until the worker runs the step: a worker log appears and the socket accepts
    t0 = time.monotonic()
    while not list(d.glob("*.sock")) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    time.sleep(1.0)
    worker_pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_worker(int(p.name), d)]
    assert worker_pids, "no worker process found"
    pids.extend(worker_pids)
    client.kill()
    client.wait()
    assert all(_wait_gone(p) for p in worker_pids)
    time.sleep(4.5)
    assert not target.exists()


def _is_worker(pid: int, d: Path) -> bool:
    try:
        return str(d) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_worker_dying_fails_the_job_naming_its_log(wdir):
    with pytest.raises(WorkerError, match=r"worker died while running _worker_steps:die.*its log"):
        run_step("_worker_steps:die", {}, idle_s=30)
    # the next job starts a fresh worker
    _, pid = run_step("_worker_steps:echo", {"x": 1}, idle_s=30)
    wdir[1].append(pid)


def test_idle_worker_exits_and_removes_its_socket(wdir):
    d, pids = wdir
    _, pid = run_step("_worker_steps:echo", {"x": 1}, idle_s=1)
    pids.append(pid)
    assert _wait_gone(pid, timeout=20)
    assert not list(d.glob("*.sock"))
    _, pid2 = run_step("_worker_steps:echo", {"x": 1}, idle_s=1)  # a new one starts on demand
    pids.append(pid2)
    assert pid2 != pid


def test_edited_code_gets_a_new_worker(wdir, monkeypatch):
    d, pids = wdir
    _, pid1 = run_step("_worker_steps:echo", {"x": 1}, idle_s=30)
    monkeypatch.setattr(worker, "worker_hash", lambda: "something else")
    _, pid2 = run_step("_worker_steps:echo", {"x": 1}, idle_s=30)
    pids.extend([pid1, pid2])
    assert pid1 != pid2


def test_embeddings_through_the_worker_equal_in_process(wdir, tmp_path):
    """The real step: same embeddings either way; the second job on a checkpoint reuses the model."""
    import pandas as pd
    from PIL import Image

    from clipdyn.config.study import Preprocess
    from clipdyn.data.pixels import build_pixel_cache
    from clipdyn.fixtures.studies import make_checkpoint
    from clipdyn.io import read_embeddings

    d, pids = wdir
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(p)
        rows.append({"image_id": f"i{i}", "path": str(p), "member": "", "label": 0})
    build_pixel_cache(pd.DataFrame(rows), Preprocess(32), tmp_path / "px.npy", tmp_path / "px.parquet")
    ckpt = tmp_path / "epoch_1.pt"
    make_checkpoint(ckpt, 1, seed=3)
    kw = dict(checkpoint=str(ckpt), pixels=str(tmp_path / "px.npy"), pixel_index=str(tmp_path / "px.parquet"),
              arch="clipdyn-tiny", allow_pickle=False, spatial=True, batch_size=4, precision="auto",
              model_configs=[], provenance={"model": "t", "epoch": 1}, threads=1)
    step = "clipdyn.embed.step:embed_images"
    run_step(step, dict(kw, out=str(tmp_path / "direct.parquet")), mode="off")
    log = tmp_path / "w.log"
    run_step(step, dict(kw, out=str(tmp_path / "w1.parquet")), log=str(log), idle_s=30)
    run_step(step, dict(kw, out=str(tmp_path / "w2.parquet")), log=str(log), idle_s=30)
    a = read_embeddings(tmp_path / "direct.parquet", spatial=True)
    for name in ("w1", "w2"):
        b = read_embeddings(tmp_path / f"{name}.parquet", spatial=True)
        assert list(b.ids) == list(a.ids)
        np.testing.assert_array_equal(b.X, a.X)
        np.testing.assert_array_equal(b.spatial, a.spatial)
    assert log.read_text().count("reusing") == 1
    pids.extend(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_worker(int(p.name), d))


def test_outputs_are_renamed_into_place_by_the_job_only_after_success(wdir, tmp_path):
    d, pids = wdir
    out = tmp_path / "result.parquet"
    written = run_step("_worker_steps:write_out", {"out": str(out)}, idle_s=30)
    assert Path(written).name.startswith(".result.parquet.worker-") and out.read_text() == "result"
    bad = tmp_path / "bad.parquet"
    with pytest.raises(WorkerError, match="failed after writing"):
        run_step("_worker_steps:write_out", {"out": str(bad), "fail": True}, idle_s=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.parquet"]  # no temporary left
