"""Steps the worker tests run in a clipdyn worker (importable there through PYTHONPATH)."""
import os
import sys
import time
from pathlib import Path


def echo(x):
    return x, os.getpid()


def fail(n):
    raise ValueError(f"bad value {n}")


def die():
    os._exit(9)


def talk():
    print("from print")
    print("from sys.stderr", file=sys.stderr)
    os.write(2, b"from fd 2\n")
    return os.getpid()


def slow_write(path, seconds):
    time.sleep(seconds)
    Path(path).write_text("written")
    return os.getpid()


def cwd():
    return os.getcwd()


def write_out(out, fail=False):
    Path(out).write_text("result")
    if fail:
        raise RuntimeError("failed after writing")
    return out
