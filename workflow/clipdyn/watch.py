"""Keep a study current while a model trains: rerun the workflow every N minutes.

``python -m clipdyn.watch --every 10 -- snakemake --cores 8 --configfile my-run.yaml``

Each round runs the command to its end (rounds never overlap), then waits. The workflow
itself does the rest: the listing is refreshed at every invocation, so a new epoch adds
exactly its own jobs and the figures, which depend on every metric, are redrawn; a
checkpoint still being written is skipped and taken by a later round. A second watcher on
the same lock file refuses to start. SIGINT (Ctrl-C) or SIGTERM stops cleanly: while a
round runs, it is interrupted once with SIGINT (Snakemake then stops its jobs and removes
their incomplete outputs) and waited for; between rounds the watcher exits at once.
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
        if stop.is_set():
            return
        stop.set()
        p = child[0]
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
            # its own session: a Ctrl-C in the terminal reaches the watcher only, which interrupts the round once
            child[0] = subprocess.Popen(list(cmd), start_new_session=True)
            rc = child[0].wait()
            child[0] = None
            log(f"[watch {_now()}] round {n} ended (exit status {rc}) after {time.time() - t0:.0f} s")
            if stop.is_set() or (rounds is not None and n >= rounds) or done_before:
                break
            stop.wait(every_s)
    finally:
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
