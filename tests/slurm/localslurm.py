"""A throw-away single-node SLURM cluster for tests (munged + slurmctld + slurmd).

Everything lives under one temporary directory: slurm.conf, gres.conf, the munge
key and socket, state, spool, logs and pid files. Nothing is written outside it
and nothing is installed: the Debian packages come from ``tests/slurm/install.sh``.
The daemons run in the foreground as children of this process, so they are
stopped by pid, and only those.

The node has the machine's real CPU count and memory (read with ``slurmd -C``)
and ``fake_gpus`` GPU GRES backed by empty files under the temporary directory.
SLURM hands those out like real GPUs (``--gpus=1`` is satisfied and the job sees
``CUDA_VISIBLE_DEVICES``, ``SLURM_JOB_GPUS``, ...); CUDA finds no device behind
them, so the workload runs on the CPU, which is what the tests want.

Accounting is off (no slurmdbd), so job status comes from ``squeue``/``scontrol``
for ``MinJobAge`` seconds after a job ends; ``sacct`` does not work here.

Usable outside pytest for debugging::

    .venv/bin/python tests/slurm/localslurm.py /tmp/slurm-debug
    # prints `export SLURM_CONF=...; export PATH=...`, Ctrl-C stops the daemons
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
# Every client command the plugin or a job may call gets a wrapper that pins
# SLURM_CONF: the jobstep executor of snakemake-executor-plugin-slurm removes
# SLURM_* variables (SLURM_CONF included) from the environment of the inner
# `srun`, which then reads the compiled-in /etc/slurm/slurm.conf.
WRAPPED = CLIENTS + ("sacct", "sshare", "sacctmgr")


# measured durations (seconds) that the test session prints in its summary
TIMINGS: dict[str, float] = {}


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be brought up here; the message says precisely why."""


def missing_prerequisites() -> list[str]:
    """Reasons this machine cannot run the test cluster (empty: it can)."""
    reasons = []
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        reasons.append("not root (slurmd and munged must run as root)")
    for tool in DAEMONS + CLIENTS:
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            reasons.append(f"`{tool}` not found (run tests/slurm/install.sh)")
    return reasons


def _which(tool: str) -> str:
    path = shutil.which(tool) or str(Path("/usr/sbin", tool))
    if not Path(path).exists():
        raise ClusterUnavailable(f"`{tool}` not found (run tests/slurm/install.sh)")
    return path


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def node_hardware() -> dict[str, str]:
    """The node line fields as slurmd itself detects them (`slurmd -C`)."""
    out = subprocess.run(
        [_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30
    )
    if out.returncode != 0:
        raise ClusterUnavailable(f"`slurmd -C` failed: {out.stderr.strip()}")
    first = out.stdout.splitlines()[0]
    fields = dict(kv.split("=", 1) for kv in first.split() if "=" in kv)
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
            "ThreadsPerCore", "RealMemory")
    return {k: fields[k] for k in keep if k in fields}


def _fake_gpu_device(path: Path, index: int) -> None:
    """A character device node like /dev/nvidiaN (major 195) with no driver
    behind it: slurmd only stat()s GRES files and wants a char/block device.
    Falls back to a link to /dev/null where mknod is not permitted."""
    if path.exists() or path.is_symlink():
        return
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(195, index))
    except OSError:
        path.symlink_to("/dev/null")


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not readable)"
    return "\n".join(lines[-n:])


@dataclass
class SlurmCluster:
    root: Path
    partition: str = "debug"
    cluster_name: str = "clipdyn-test"
    fake_gpus: int = 2
    min_job_age: int = 3600
    startup_timeout: float = 60.0
    # filled by start()
    nodename: str = ""
    cpus: int = 0
    memory_mb: int = 0
    ports: tuple[int, int] = (0, 0)
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    # ------------------------------------------------------------------ paths
    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.socket"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def slurmctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.log_dir / "slurmd.log"

    # ------------------------------------------------------------- lifecycle
    def start(self) -> "SlurmCluster":
        reasons = missing_prerequisites()
        if reasons:
            raise ClusterUnavailable("; ".join(reasons))
        t0 = time.monotonic()
        try:
            self._write_files()
            self._start_munged()
            self._start_slurm()
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        self.timings["daemon_start_s"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Cancel our jobs, then stop slurmd, slurmctld and munged (by pid)."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            self.run(["scancel", "--full", "--quiet", f"--partition={self.partition}"],
                     check=False, timeout=15)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                q = self.run(["squeue", "-h", "-t", "all", "-o", "%i %T"],
                             check=False, timeout=15)
                active = [line for line in q.stdout.splitlines()
                          if line.split()[-1] in ("RUNNING", "PENDING", "COMPLETING",
                                               "CONFIGURING", "SUSPENDED")]
                if q.returncode != 0 or not active:
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --------------------------------------------------------------- clients
    def run(self, cmd: list[str], check: bool = True, timeout: float = 60,
            **kw) -> subprocess.CompletedProcess:
        """Run a command in the cluster's client environment."""
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                             timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def sbatch(self, *args: str) -> str:
        """Submit with `sbatch --parsable ARGS`; return the job id."""
        out = self.run(["sbatch", "--parsable", f"--partition={self.partition}", *args])
        return out.stdout.strip().split(";")[0]

    def job_state(self, jobid: str) -> str:
        """State from squeue (works without accounting for MinJobAge seconds)."""
        out = self.run(["squeue", "-h", "-t", "all", "-j", jobid, "-o", "%T"],
                       check=False)
        state = out.stdout.strip()
        if state:
            return state
        out = self.run(["scontrol", "show", "job", "-o", jobid], check=False)
        m = re.search(r"JobState=(\S+)", out.stdout)
        return m.group(1) if m else "UNKNOWN"

    def wait_job(self, jobid: str, timeout: float = 120) -> str:
        """Wait until the job leaves PENDING/RUNNING; return its final state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(jobid)
            if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING",
                             "UNKNOWN"):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {jobid} still {state} after {timeout}s")
            time.sleep(0.2)

    def logs_tail(self, n: int = 25) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{_tail(p, n)}"
            for p in sorted(self.log_dir.glob("*.log")))

    # -------------------------------------------------------------- internals
    def _write_files(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # munged demands an executable (o+x) path to its socket
        self.root.chmod(0o755)
        for sub in ("etc", "bin", "run", "log", "state/ctld", "state/d", "dev",
                    "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "run").chmod(0o755)
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)

        hw = node_hardware()
        self.cpus = int(hw.get("CPUs", os.cpu_count() or 1))
        self.memory_mb = int(hw.get("RealMemory", 1024))
        self.nodename = socket.gethostname().split(".")[0]
        ctld_port, d_port = _free_ports(2)
        self.ports = (ctld_port, d_port)

        gres = ""
        if self.fake_gpus > 0:
            for i in range(self.fake_gpus):
                _fake_gpu_device(self.root / "dev" / f"fakegpu{i}", i)
            last = self.fake_gpus - 1
            gpu_files = (f"{self.root}/dev/fakegpu[0-{last}]" if last
                         else f"{self.root}/dev/fakegpu0")
            (self.root / "etc" / "gres.conf").write_text(
                "AutoDetect=off\n"
                f"NodeName={self.nodename} Name=gpu File={gpu_files}\n")
            gres = f" Gres=gpu:{self.fake_gpus}"

        hwline = " ".join(f"{k}={v}" for k, v in hw.items())
        r = self.root
        self.conf.write_text(f"""\
# written by tests/slurm/localslurm.py; throw-away single-node cluster
ClusterName={self.cluster_name}
SlurmctldHost={self.nodename}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state/ctld
SlurmdSpoolDir={r}/state/d
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={self.slurmctld_log}
SlurmdLogFile={self.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# finished jobs stay visible to squeue/scontrol this long (no slurmdbd here)
MinJobAge={self.min_job_age}
InactiveLimit=0
KillWait=5
Waittime=0
{"GresTypes=gpu" if gres else ""}
NodeName={self.nodename} NodeAddr=127.0.0.1 {hwline}{gres} State=UNKNOWN
PartitionName={self.partition} Nodes={self.nodename} Default=YES MaxTime=INFINITE State=UP
""")

        for tool in WRAPPED:
            real = shutil.which(tool)
            if real is None:
                continue
            w = self.bin / tool
            w.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {real} "$@"\n')
            w.chmod(0o755)

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_"))}
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        self.env = env

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.log_dir / f"{name}.stdout", "wb")
        self._procs[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, start_new_session=True)
        out.close()

    def _start_munged(self) -> None:
        r = self.root
        self._spawn("munged", [
            _which("munged"), "--foreground", f"--socket={self.munge_socket}",
            f"--key-file={r}/munge/munge.key", f"--log-file={r}/log/munged.log",
            f"--pid-file={r}/run/munged.pid", f"--seed-file={r}/munge/munged.seed",
        ])
        self._wait(lambda: self.munge_socket.exists(), "munged socket", "munged")

    def _start_slurm(self) -> None:
        t = time.monotonic()
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.run(["scontrol", "ping"], check=False,
                                    timeout=10).returncode == 0,
                   "slurmctld to answer `scontrol ping`", "slurmctld")
        self.timings["slurmctld_up_s"] = time.monotonic() - t
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])

    def _wait_idle(self) -> None:
        def idle() -> bool:
            self._check_alive()
            out = self.run(["sinfo", "-h", "-N", "-o", "%N %T"], check=False,
                           timeout=10)
            return any(line.split()[-1] == "idle" for line in out.stdout.splitlines()
                       if line.strip())
        self._wait(idle, f"node {self.nodename} to be idle in sinfo", "slurmd")

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ClusterUnavailable(
                    f"{name} exited with {proc.returncode} during startup\n"
                    + self.logs_tail())

    def _wait(self, cond, what: str, daemon: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if cond():
                return
            time.sleep(0.2)
        raise ClusterUnavailable(
            f"timed out after {self.startup_timeout}s waiting for {what}\n"
            + self.logs_tail())


REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "workflow" / "profiles" / "slurm"


def slurm_snakemake(cluster: SlurmCluster, workdir: Path, *args: str,
                    snakefile: Path | None = None, timeout: float = 1800,
                    env: dict[str, str] | None = None,
                    log_name: str = "snakemake-slurm.log") -> subprocess.CompletedProcess:
    """Run `snakemake --profile workflow/profiles/slurm` against the test cluster.

    Adds what a cluster without slurmdbd and with few cores needs: squeue for job
    status (MinJobAge is long enough), a first status check 6 s after a submission
    (the test jobs take 2-5 s; the plugin waits 10 s longer after every round that
    finds nothing finished, so a check that comes too early costs a job 10 s),
    threads capped at the node's CPUs, SLURM logs kept. stdout+stderr go to
    workdir/log_name."""
    cmd = [sys.executable, "-m", "snakemake",
           "--profile", str(PROFILE),
           "--directory", str(workdir),
           "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "6",
           "--slurm-keep-successful-logs",
           "--max-threads", str(cluster.cpus),
           "--jobs", "8"]
    if snakefile is not None:
        cmd += ["--snakefile", str(snakefile)]
    cmd += list(args)
    run_env = dict(cluster.env)
    run_env.update(env or {})
    log = Path(workdir) / log_name
    Path(workdir).mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, env=run_env, stdout=fh, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout, cwd=workdir)
    proc.stdout = log.read_text(errors="replace")
    return proc


def submitted_jobs(snakemake_log: str) -> dict[str, list[str]]:
    """rule name -> SLURM job ids, from snakemake's `Job N has been submitted with
    SLURM jobid M (log: .../rule_<rule>/...)` lines."""
    out: dict[str, list[str]] = {}
    pat = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/(?:rule|group)_(\w+?)/")
    for m in pat.finditer(snakemake_log):
        out.setdefault(m.group(2), []).append(m.group(1))
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "/tmp/clipdyn-slurm").resolve()
    cluster = SlurmCluster(root)
    with cluster:
        print(f"# up in {cluster.timings['daemon_start_s']:.2f}s; paste into a shell:")
        print(f"export SLURM_CONF={cluster.conf}")
        print(f"export PATH={cluster.bin}:$PATH")
        print("# Ctrl-C stops the daemons", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
