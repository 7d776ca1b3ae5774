"""Keep a study current while a model trains: rerun the workflow every N minutes.

``python -m clipdyn.watch --every 10 -- snakemake --cores 8 --configfile my-run.yaml``

Each round runs the command to its end (rounds never overlap), then waits. The workflow
itself does the rest: the listing is refreshed at every invocation, so a new epoch adds
exactly its own jobs and the figures, which depend on every metric, are redrawn; a
checkpoint still being written is skipped and taken by a later round. A second watcher on
the same lock file refuses to start. SIGINT (Ctrl-C) or SIGTERM stops cleanly: while a
round runs, it is interrupted once with SIGINT (Snakemake then stops its jobs and removes
their incomplete outputs) and waited for; between rounds the watcher exits at once. A
second SIGINT or SIGTERM stops the round at once: SIGTERM to its whole process group
(Snakemake and every job it started), SIGKILL to the group if it is still there 10 s later.

A round never outlives its watcher: it runs in its own process group (so a Ctrl-C in the
terminal reaches the watcher, which interrupts the round once), the kernel sends it SIGTERM
when the watcher dies, even by SIGKILL (Linux's ``PR_SET_PDEATHSIG``), and a watcher that
exits any other way (an exception) ends the round's group first.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

#: seconds between SIGTERM and SIGKILL to a round's process group when the watcher stops it hard
KILL_AFTER_S = 10.0


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the round gets SIGTERM when the watcher dies (Linux; elsewhere the watcher's own
    handlers and ``finally`` are all there is)."""
    def preexec() -> None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the watcher died before the prctl: do not start
            os._exit(1)
    return preexec


def _stop_group(p: subprocess.Popen, kill_after_s: float) -> None:
    """SIGTERM the round's process group, SIGKILL it if it is still there ``kill_after_s`` later."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(kill_after_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # the leader gone, its jobs may remain: the group goes too
    except ProcessLookupError:
        pass


class WatchError(RuntimeError):
    """The watcher cannot start; the message says why and what to do."""


def _now() -> str:
    return time.strftime("%H:%M:%S")


def watch(cmd: Sequence[str], every_s: float, lock: os.PathLike = ".clipdyn-watch.lock",
          rounds: Optional[int] = None, until: Optional[os.PathLike] = None,
          log: Callable[[str], None] = lambda s: print(s, flush=True)) -> int:
    """Run ``cmd`` now and then every ``every_s`` seconds after each round ends.

    Stops after ``rounds`` rounds, after the first round that started once the file ``until``
    existed (a trainer's "done" marker), or on SIGINT/SIGTERM. Returns the last round's exit
    status (0 if stopped before any round ended).
    """
    if not cmd:
        raise WatchError("no command to run: give it after `--`, e.g. -- snakemake --cores 8")
    lock_file = open(lock, "a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        raise WatchError(f"another watcher holds {os.path.abspath(lock)} ({lock_file.read().strip() or 'pid ?'}); "
                         "rounds must not overlap. Stop it first, or give this one its own --lock.") from None
    lock_file.truncate(0)
    lock_file.write(f"pid {os.getpid()}\n")
    lock_file.flush()

    stop = threading.Event()
    child: List[Optional[subprocess.Popen]] = [None]

    def on_signal(signum, _frame):
        p = child[0]
        if stop.is_set():  # the second one: stop the round now
            if p is not None and p.poll() is None:
                log(f"[watch {_now()}] {signal.Signals(signum).name} again: stopping the round (SIGTERM to its "
                    f"process group, SIGKILL after {KILL_AFTER_S:.0f} s)")
                threading.Thread(target=_stop_group, args=(p, KILL_AFTER_S), daemon=True).start()
            return
        stop.set()
        log(f"[watch {_now()}] {signal.Signals(signum).name}: stopping"
            + (" after interrupting the running round" if p is not None and p.poll() is None else ""))
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    rc, n = 0, 0
    try:
        while not stop.is_set():
            done_before = until is not None and Path(until).exists()
            n += 1
            t0 = time.time()
            log(f"[watch {_now()}] round {n}: {' '.join(cmd)}")
            # its own session: a Ctrl-C in the terminal reaches the watcher only, which interrupts the round once;
            # and it dies with the watcher
            child[0] = subprocess.Popen(list(cmd), start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
            rc = child[0].wait()
            child[0] = None
            log(f"[watch {_now()}] round {n} ended (exit status {rc}) after {time.time() - t0:.0f} s")
            if stop.is_set() or (rounds is not None and n >= rounds) or done_before:
                break
            stop.wait(every_s)
    finally:
        p = child[0]
        if p is not None and p.poll() is None:  # leaving while a round runs (an exception): it goes too
            _stop_group(p, KILL_AFTER_S)
        for s, h in old.items():
            signal.signal(s, h)
        lock_file.close()
    log(f"[watch {_now()}] stopped after {n} round(s)")
    return 0 if stop.is_set() else rc  # a requested stop is a clean one


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipdyn.watch", description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s [--every MIN] [--lock FILE] [--rounds N] [--until FILE] "
                                           "-- COMMAND ...")
    parser.add_argument("--every", type=float, default=10.0, help="minutes between the end of a round and the next")
    parser.add_argument("--lock", default=".clipdyn-watch.lock", help="lock file (default: in this folder)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after N rounds")
    parser.add_argument("--until", default=None, help="stop after the first round that starts once FILE exists")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the workflow command, after --")
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return watch(cmd, args.every * 60, args.lock, args.rounds, args.until)
    except WatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
