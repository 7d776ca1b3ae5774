"""What a job says in its log: timestamped lines, epoch lists written as ranges, and download
progress (sizes, durations, a line every few seconds)."""

from __future__ import annotations

import sys
import threading
import time
from time import monotonic
from typing import Callable, Iterable, Optional

#: seconds between two progress lines of a download
PROGRESS_S = 10.0


def log(msg: str) -> None:
    """One line in the job's log, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ranges(xs: Iterable[int]) -> str:
    """``1, 2, 3, 5, 7, 8`` as ``"1-3, 5, 7-8"``."""
    xs = sorted(xs)
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ", ".join(out)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else (f"{s // 60} min {s % 60:02d} s" if s >= 60
                                                                          else f"{s} s")


class LogProgress:
    """A tqdm stand-in for huggingface_hub downloads that writes plain lines to the job log.

    huggingface_hub hides its progress bars when stderr is not a terminal (a job log), so a
    multi-GB checkpoint would log nothing until it is done. Passed as ``tqdm_class`` (a class
    that is not a tqdm subclass is used as given), it logs every ``every`` seconds, from its own
    thread (the library updates a bar once per 10 MB chunk, which on a slow link is rarer),
    the bytes so far, the rate and the time left, and one line when the file is complete.
    Only byte counters log: snapshot_download's file counter and its duplicate
    "Downloading bytes" counter stay quiet.
    """

    def __init__(self, *args, total=None, initial=0, desc=None, unit="it", label: str = "",
                 every: float = PROGRESS_S, log: Optional[Callable[[str], None]] = None, **kwargs):
        self.total, self.n, self.initial = total, initial or 0, initial or 0
        self.desc, self.unit, self.label, self.every = desc or "", unit, label or desc or "download", max(every, 0.05)
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._t0 = monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._quiet = unit != "B" or self.desc.startswith("Downloading bytes")
        if not self._quiet:
            threading.Thread(target=self._tick, daemon=True, name="hub-progress").start()

    # the parts of tqdm's interface huggingface_hub uses
    def update(self, n=1) -> None:
        with self._lock:
            self.n += n or 0

    def refresh(self, *args, **kwargs) -> None:
        pass

    def set_description(self, desc=None, refresh=True) -> None:
        self.desc = desc or ""

    set_description_str = set_description

    def set_postfix_str(self, s="", refresh=True) -> None:
        pass

    @property
    def format_dict(self) -> dict:
        return {"rate": self._rate(), "n": self.n, "total": self.total}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(complete=exc[0] is None)

    def close(self, complete: bool = True) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if not self._quiet and self.n > self.initial and complete:
            took = monotonic() - self._t0
            self._log(f"{self.label}: {human_bytes(self.n)} downloaded in {duration(took)} "
                      f"({human_bytes(self._rate())}/s)")

    # ------------------------------------------------------------------
    def _rate(self) -> float:
        return (self.n - self.initial) / max(monotonic() - self._t0, 1e-9)

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                done, total = self.n, self.total
            rate = self._rate()
            if total:
                left = duration((total - done) / rate) if rate > 0 else "unknown time"
                self._log(f"{self.label}: {human_bytes(done)} of {human_bytes(total)} ({100 * done / total:.0f}%), "
                          f"{human_bytes(rate)}/s, {left} left")
            else:
                self._log(f"{self.label}: {human_bytes(done)} so far, {human_bytes(rate)}/s")
