"""The extraction benchmark's measurements, one module each (``bench_extraction.py`` runs them).

Each module has ``run(args, wd, ...) -> dict`` (the figures, JSON-ready) and ``report(result)``
(prints them as tables). What they share is in :mod:`extraction.common`; the tiny studies come
from :mod:`clipdyn.fixtures.studies`, as in the tests.
"""
