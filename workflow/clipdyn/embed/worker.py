"""A persistent worker for the embedding rules: torch and open_clip are imported once.

Every Snakemake job is a fresh Python process. For an embedding job that means importing
torch and open_clip (about 4 s of CPU here, more with CUDA initialisation) and loading the
checkpoint again, for every (model, epoch, dataset). With many small datasets that start-up
cost, not the embedding, is what the workflow spends its time on.

So the ``embed_images`` and ``text_classifier`` job scripts hand their work to a worker
process that stays up between jobs: the job script (which imports neither torch nor numpy)
takes a free worker *slot* (an exclusive ``flock``), connects to that slot's worker over a
Unix socket, starting it if it is not running, sends the step's name and keyword arguments,
and waits for the answer. The worker runs the step exactly as the job would have, with its
stdout/stderr sent to the job's log, and keeps the last model it loaded, so the next job on
the same checkpoint (another dataset of the same epoch) does not load it again.

Guarantees:

- one job at a time per worker (the slot lock); as many workers as concurrent jobs;
- if the job script dies (Snakemake interrupted, job killed), its worker exits within 0.2 s,
  and the outputs, written under temporary names and renamed by the job script only after
  success, never appear behind Snakemake's back;
- if the worker dies (out of memory, a crash), the job fails with the worker's log named;
- a worker serves only jobs from the same Python, the same clipdyn source (a hash of the
  package's files: edited code gets a new worker) and the same ``CUDA_VISIBLE_DEVICES``;
- an idle worker exits after ``idle_s`` seconds (``embedding: worker_idle_s`` in the config).

``mode`` ``"auto"`` (the default) uses the worker except inside a SLURM job that sees at most
one GPU, where each job has its own allocation and nothing could be shared (a SLURM allocation
with several GPUs running the local executor does use workers); ``"off"`` runs the step in the job's own
process, as a plain script would.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Optional

from ..atomic import publish
from ..codeid import worker_hash  # hashes the package's files without importing them
from ..config.specs import EmbeddingSettings

MODES = ("auto", "on", "off")
MAX_SLOTS = 64
START_TIMEOUT_S = 300.0


class WorkerError(RuntimeError):
    """A step failed in the worker, or the worker could not be started or died."""


# ----------------------------------------------------------------------------- client side


def use_worker(mode: str = "auto") -> bool:
    """Whether jobs hand their work to a persistent worker. ``auto``: yes, except in a SLURM job
    that sees at most one GPU (a job of the SLURM executor: its own allocation, nothing to share);
    an allocation with several GPUs running the local executor (``CUDA_VISIBLE_DEVICES=0,1``) runs
    many jobs that share the workers and claim the GPUs one each."""
    if mode not in MODES:
        raise ValueError(f"embedding: worker must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        from .devices import visible_gpus  # reads the environment only (no torch in the job script)

        return not os.environ.get("SLURM_JOB_ID") or len(visible_gpus() or []) > 1
    return mode == "on"


def worker_key(python: Optional[str] = None) -> str:
    """Which jobs may share a worker: same Python, same clipdyn code in the same place (a worker
    imports lazily from its checkout), same visible GPUs."""
    parts = [python or sys.executable, str(Path(__file__).resolve().parent), worker_hash(),
             os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), os.environ.get("CLIPDYN_GPU_LOCK_DIR", "")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def worker_dir() -> Path:
    """Sockets, slot locks and worker logs (short path: Unix socket paths are limited to ~107 bytes)."""
    d = Path(os.environ.get("CLIPDYN_WORKER_DIR") or Path(tempfile.gettempdir()) / f"clipdyn-workers-{os.getuid()}")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def _claim_slot(d: Path, key: str):
    from .devices import try_claim  # the same exclusive-flock slots as the GPU claims

    got = try_claim([f"{key}-{slot}" for slot in range(MAX_SLOTS)], d)
    if got is not None:
        return got
    raise WorkerError(f"all {MAX_SLOTS} clipdyn worker slots in {d} are busy; run with `embedding: worker: off`")


def _connect(path: Path) -> Optional[Connection]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        return None
    return Connection(s.detach())


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _start(sock: Path, lock: Path, wlog: Path, idle_s: float, python: Optional[str] = None) -> Connection:
    if sock.exists():
        sock.unlink()  # stale: its worker is gone (we hold the slot, and nothing answered)
    pkg_parent = str(Path(__file__).resolve().parents[2])  # workflow/: where clipdyn is importable from
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with open(wlog, "ab") as out:
        proc = subprocess.Popen([python or sys.executable, "-m", "clipdyn.embed.worker", str(sock), str(lock),
                                 str(idle_s)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd="/")
    t0 = time.monotonic()
    while True:
        conn = _connect(sock) if sock.exists() else None
        if conn is not None:
            return conn
        if proc.poll() is not None:
            raise WorkerError(f"the clipdyn worker exited while starting (status {proc.returncode}); "
                              f"its log {wlog}:\n{_tail(wlog)}")
        if time.monotonic() - t0 > START_TIMEOUT_S:
            proc.kill()
            raise WorkerError(f"the clipdyn worker did not start within {START_TIMEOUT_S:.0f} s; its log: {wlog}")
        time.sleep(0.02)


def run_step(step: str, kwargs: dict, *, log: Optional[str] = None, mode: str = "auto",
             idle_s: float = EmbeddingSettings.worker_idle_s, outputs: tuple = ("out",),
             isolated: bool = False, python: Optional[str] = None) -> Any:
    """Run ``step`` (``"module:function"``, e.g. ``"clipdyn.embed.step:embed_images"``) with
    ``kwargs`` in a persistent worker, or in this process when the worker is off. Returns what the
    function returns; raises :class:`WorkerError` carrying the step's error and traceback.

    ``log``: file that receives the step's stdout and stderr (appended to). Relative paths in
    ``kwargs`` are resolved against this process's working directory. ``outputs``: the keyword
    arguments that are output paths; the worker writes them under temporary names and this process
    renames them into place once the step succeeded, so an output never appears for a job that was
    killed, even if its worker finished the step a moment later. ``isolated``: with the worker off,
    run the step in a process of its own (a caller that is a thread of snakemake, a ``run:`` job,
    must not import torch into snakemake), its output sent to ``log``; returns None then.
    ``python``: the interpreter of the worker or process (a rule's conda environment under
    ``--sdm conda``; default this one).
    """
    if not use_worker(mode):
        if isolated:
            return _run_in_process(step, kwargs, log, python)
        return _resolve(step)(**kwargs)
    kwargs = dict(kwargs)
    final = {}
    for name in outputs:
        if kwargs.get(name):
            p = Path(kwargs[name])
            final[name] = p
            kwargs[name] = str(p.with_name(f".{p.name}.worker-{os.getpid()}.tmp{p.suffix}"))
    try:
        value = _run_in_worker(step, kwargs, log, idle_s, python)
        for name, p in final.items():
            publish(kwargs[name], p)
        return value
    finally:
        for name in final:
            Path(kwargs[name]).unlink(missing_ok=True)


def _run_in_process(step: str, kwargs: dict, log: Optional[str], python: Optional[str] = None) -> None:
    """Run ``step`` once in a fresh interpreter (``python -m clipdyn.embed.worker --once``)."""
    import json

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = open(log, "ab") if log else None
    try:
        proc = subprocess.run([python or sys.executable, "-m", "clipdyn.embed.worker", "--once", step,
                               json.dumps(kwargs)],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
                              env=env)
    finally:
        if out:
            out.close()
    if proc.returncode:
        raise WorkerError(f"{step} failed (exit status {proc.returncode}); its log: {log}")


def _run_in_worker(step: str, kwargs: dict, log: Optional[str], idle_s: float, python: Optional[str] = None) -> Any:
    d = worker_dir()
    key = worker_key(python)
    slot, lock_f = _claim_slot(d, key)
    try:
        sock = d / f"{key}-{slot}.sock"
        wlog = d / f"{key}-{slot}.log"
        conn = _connect(sock) if sock.exists() else None
        if conn is None:
            conn = _start(sock, d / f"{key}-{slot}.lock", wlog, idle_s, python)
        with conn:
            conn.send({"step": step, "kwargs": kwargs, "cwd": os.getcwd(),
                       "log": os.path.abspath(log) if log else None})
            try:
                reply = conn.recv()
            except (EOFError, ConnectionResetError):
                raise WorkerError(f"the clipdyn worker died while running {step} (killed for memory?); "
                                  f"its log {wlog}:\n{_tail(wlog)}") from None
        if reply["ok"]:
            return reply["value"]
        raise WorkerError(f"{reply['error']}\n(raised in the clipdyn worker, pid {reply['pid']}; traceback:\n"
                          f"{reply['traceback']})")
    finally:
        fcntl.flock(lock_f, fcntl.LOCK_UN)
        lock_f.close()


# ----------------------------------------------------------------------------- worker side


def _resolve(step: str):
    module, _, func = step.partition(":")
    if not module or not func:
        raise ValueError(f"step must be 'module:function', not {step!r}")
    return getattr(importlib.import_module(module), func)


class _Redirect:
    """Send fds 1 and 2 (and sys.stdout/err) to ``path`` for the duration of one request."""

    def __init__(self, path: Optional[str]):
        self.path = path

    def __enter__(self):
        if not self.path:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        self.f = open(self.path, "a", buffering=1)
        self.saved = (os.dup(1), os.dup(2), sys.stdout, sys.stderr)
        os.dup2(self.f.fileno(), 1)
        os.dup2(self.f.fileno(), 2)
        sys.stdout = sys.stderr = self.f
        return self

    def __exit__(self, *exc):
        if not self.path:
            return False
        self.f.flush()
        out, err, sys.stdout, sys.stderr = self.saved
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        self.f.close()
        return False


def _handle(conn: Connection) -> None:
    req = conn.recv()
    box: dict = {}

    def work():
        try:
            os.chdir(req["cwd"])
            with _Redirect(req.get("log")):
                try:
                    box["reply"] = {"ok": True, "value": _resolve(req["step"])(**req["kwargs"]), "pid": os.getpid()}
                except BaseException as err:  # noqa: BLE001 - everything goes back to the job
                    traceback.print_exc()
                    box["reply"] = {"ok": False, "error": f"{type(err).__name__}: {err}",
                                    "traceback": traceback.format_exc(), "pid": os.getpid()}
        except BaseException as err:  # noqa: BLE001 - the log could not be opened, cwd is gone
            box["reply"] = {"ok": False, "error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc(), "pid": os.getpid()}

    t = threading.Thread(target=work, daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.2)
        if t.is_alive() and conn.poll(0):
            # the job script sends nothing more: readable means it closed the connection (it was
            # killed). Exit now, before the step writes an output Snakemake no longer expects.
            print(f"[worker {os.getpid()}] the job running {req['step']} went away; exiting", flush=True)
            os._exit(3)
    try:
        conn.send(box["reply"])
    except (BrokenPipeError, ConnectionResetError):
        pass


def serve(sock_path: str, lock_path: str, idle_s: float) -> None:
    from . import step

    step.enable_model_cache()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(4)
    print(f"[worker {os.getpid()}] serving on {sock_path} (idle exit after {idle_s:g} s)", flush=True)
    last = time.monotonic()
    while True:
        ready, _, _ = select.select([srv], [], [], 1.0)
        if ready:
            c, _ = srv.accept()
            with Connection(c.detach()) as conn:
                try:
                    _handle(conn)
                except (EOFError, ConnectionResetError):
                    pass
            last = time.monotonic()
        elif time.monotonic() - last > idle_s:
            # exit only while no job holds this slot (a job holds it from before it connects)
            with open(lock_path, "a+") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    last = time.monotonic()
                    continue
                os.unlink(sock_path)
                srv.close()
                print(f"[worker {os.getpid()}] idle for {idle_s:g} s; exiting", flush=True)
                return


if __name__ == "__main__":
    if sys.argv[1] == "--once":  # one step in this process: run_step(isolated=True) with the worker off
        import json

        _resolve(sys.argv[2])(**json.loads(sys.argv[3]))
    else:
        serve(sys.argv[1], sys.argv[2], float(sys.argv[3]))
