"""clipdyn.watch: rounds in sequence, one watcher per lock, a clean stop on SIGINT/SIGTERM."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipdyn.watch import WatchError, watch

REPO = Path(__file__).resolve().parents[2]


def _round(tmp_path, sleep=0.2, extra=""):
    """A command that logs its start and end times to rounds.txt."""
    code = (f"import time, pathlib; p = pathlib.Path({str(tmp_path / 'rounds.txt')!r}); "
            f"t0 = time.time(); time.sleep({sleep}); {extra}"
            "p.open('a').write(f'{t0} {time.time()}\\n')")
    return [sys.executable, "-c", code]


def test_rounds_run_in_sequence_every_interval(tmp_path):
    logs = []
    rc = watch(_round(tmp_path), every_s=0.3, lock=tmp_path / "lock", rounds=3, log=logs.append)
    spans = [tuple(map(float, line.split())) for line in (tmp_path / "rounds.txt").read_text().splitlines()]
    assert rc == 0 and len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end + 0.25  # never overlapping, and the wait runs from the end of a round
    assert "round 3 ended (exit status 0)" in logs[-2] and "stopped after 3 round(s)" in logs[-1]


def test_until_file_stops_after_the_next_round(tmp_path):
    done = tmp_path / "done"
    # round 2 writes the marker (training finished); round 3 still runs (it may see the last epoch), then it stops
    extra = (f"n = len(p.read_text().splitlines()) if p.exists() else 0; "
             f"n == 1 and pathlib.Path({str(done)!r}).touch(); ")
    watch(_round(tmp_path, 0.05, extra), every_s=0.05, lock=tmp_path / "lock", until=done, log=lambda s: None)
    assert len((tmp_path / "rounds.txt").read_text().splitlines()) == 3


def test_a_second_watcher_refuses_to_start(tmp_path):
    lock = tmp_path / "lock"
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 12345\n")
        held.flush()
        with pytest.raises(WatchError, match=r"another watcher holds .*lock \(pid 12345\); rounds must not overlap"):
            watch(_round(tmp_path), every_s=1, lock=lock, rounds=1)
    assert not (tmp_path / "rounds.txt").exists()
    with pytest.raises(WatchError, match="no command"):
        watch([], every_s=1, lock=tmp_path / "other")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_interrupts_the_round_once_and_stops_cleanly(tmp_path, sig):
    started, interrupted = tmp_path / "started", tmp_path / "interrupted"
    child = (f"import pathlib, signal, sys, time\n"
             f"def stop(*a):\n    pathlib.Path({str(interrupted)!r}).write_text('SIGINT'); sys.exit(130)\n"
             f"signal.signal(signal.SIGINT, stop)\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    proc = subprocess.Popen([sys.executable, "-m", "clipdyn.watch", "--every", "0.001", "--lock",
                             str(tmp_path / "lock"), "--", sys.executable, "-c", child],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert interrupted.read_text() == "SIGINT"  # the running round was told to stop, and waited for
    assert f"{sig.name}: stopping after interrupting the running round" in out
    assert "round 1 ended (exit status 130)" in out and "round 2" not in out and "stopped after 1 round(s)" in out


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by whoever adopted it, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _watcher_with_stubborn_round(tmp_path, ignore_sigint=True):
    """A watcher subprocess whose round writes its pid, ignores SIGINT (a stuck round) and sleeps."""
    pid_file = tmp_path / "round.pid"
    child = ("import os, pathlib, signal, time\n"
             + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if ignore_sigint else "")
             + f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\ntime.sleep(120)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    proc = subprocess.Popen([sys.executable, "-m", "clipdyn.watch", "--every", "0.001", "--lock",
                             str(tmp_path / "lock"), "--", sys.executable, "-c", child],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    return proc, int(pid_file.read_text())


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_a_killed_watcher_does_not_leave_its_round_running(tmp_path):
    proc, pid = _watcher_with_stubborn_round(tmp_path, ignore_sigint=False)
    try:
        proc.kill()  # SIGKILL: no handler, no finally
        proc.communicate(timeout=30)
        assert _gone_within(pid, 10), "the round outlived its watcher"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_a_round_that_ignores_the_first(tmp_path, sig):
    proc, pid = _watcher_with_stubborn_round(tmp_path)
    try:
        proc.send_signal(sig)
        time.sleep(0.5)
        assert _alive(pid) and proc.poll() is None  # the first: the round is asked, and waited for
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        assert f"{sig.name} again: stopping the round" in out, out
        assert "stopped after 1 round(s)" in out and proc.returncode == 0
        assert _gone_within(pid, 5)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
