"""What a job says in its log: timestamped lines, and epoch lists written as ranges."""

from __future__ import annotations

import time
from typing import Iterable


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
