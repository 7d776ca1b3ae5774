#!/usr/bin/env python
"""What bootstrap intervals cost: every metric job of a finished run, computed with intervals off and on.

Reads a finished run's results folder (embeddings, classifiers, dataset manifests; e.g. the demo's,
after ``make demo``) and its config, and runs each (model, metric) job's computation
(:func:`clipdyn.metrics.compute.compute_metric`, every epoch, into a fresh folder so nothing is
reused) once with ``intervals: {enabled: false}`` and once with the given settings (default: the
defaults of :class:`clipdyn.config.specs.IntervalSettings`), alternating, ``--repeat`` times; prints per
metric and in total the median seconds of each and the overhead. Two timings:

- ``compute``: the computation alone, in this process (an upper bound of the overhead);
- ``--process``: each job as its own Python process, as the workflow runs it (interpreter start-up,
  imports, computation, writing), the metric jobs' total time less Snakemake's own bookkeeping.

Target: intervals add at most 20% to the metric jobs' total time.

Usage::

    python benchmarks/bench_intervals.py --results results-demo --config config/demo.yaml
    python benchmarks/bench_intervals.py --results results-demo --config config/demo.yaml --method bca
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "workflow"))  # this checkout's clipdyn, installed or not

from clipdyn.config.specs import IntervalSettings, MetricSpec  # noqa: E402
from clipdyn.metrics import registry  # noqa: E402
from clipdyn.metrics.compute import compute_metric  # noqa: E402


def metric_jobs(results: Path, config: dict) -> list:
    """The (model, metric) jobs of a finished run, with the files each reads (as the workflow's
    ``metric_files``: one manifest and trials file per dataset, embeddings and classifiers per epoch)."""
    jobs = []
    for model_dir in sorted((results / "embeddings").iterdir()):
        epochs = sorted(int(p.name.split("_", 1)[1]) for p in model_dir.glob("epoch_*"))
        for name, raw in config["metrics"].items():
            m = MetricSpec.from_config(name, raw)
            kind = registry.get(m.kind)
            files = {"tables": {d: {"manifest": str(results / "data" / d / "manifest.parquet"),
                                    "trials": str(results / "data" / d / "trials.parquet")} for d in m.datasets},
                     "embeddings": {e: {d: str(model_dir / f"epoch_{e}" / f"{d}.parquet") for d in m.datasets}
                                    for e in epochs},
                     "classifiers": ({e: str(results / "text" / model_dir.name / f"epoch_{e}" / f"{m.classset}.parquet")
                                      for e in epochs} if kind.needs_classset else {})}
            jobs.append(dict(files=files, kind=m.kind, roles=m.inputs, options=m.options,
                             spatial=m.datasets if kind.spatial_maps else [], model=model_dir.name, metric=name,
                             code="bench"))
    return jobs


_JOB = """
import json, sys
from clipdyn.metrics.compute import compute_metric
j = json.loads(sys.argv[1])
done = compute_metric(**j["job"], out=j["out"], intervals=j["intervals"])
assert not done["reused"], done
"""


def run(job: dict, intervals: dict, tmp: Path, process: bool = False) -> float:
    out = Path(tempfile.mkdtemp(dir=tmp)) / "metrics" / job["model"] / f"{job['metric']}.parquet"
    if process:
        arg = json.dumps({"job": job, "out": str(out), "intervals": intervals})
        env = dict(os.environ, PYTHONPATH=str(HERE.parent / "workflow"))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _JOB, arg], check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        done = compute_metric(**job, out=str(out), intervals=intervals)
    elapsed = time.perf_counter() - t0
    assert not done["reused"], done
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="a finished run's results folder")
    ap.add_argument("--config", required=True, help="its config (the metrics: section is read)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--resamples", type=int, default=IntervalSettings.resamples)
    ap.add_argument("--method", default=IntervalSettings.method, choices=["percentile", "bca"])
    ap.add_argument("--process", action="store_true", help="time each job as its own Python process")
    args = ap.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    jobs = metric_jobs(Path(args.results), config)
    on = dict(IntervalSettings(resamples=args.resamples, method=args.method).as_dict())
    off = dict(on, enabled=False)
    times = {(j["model"], j["metric"]): {"off": [], "on": []} for j in jobs}
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:  # warm-up: imports, file cache
            run(job, off, Path(tmp))
        for _ in range(args.repeat):
            for job in jobs:
                for mode, settings in (("off", off), ("on", on)):
                    times[(job["model"], job["metric"])][mode].append(run(job, settings, Path(tmp), args.process))
    print(f"{len(jobs)} metric jobs ({'each its own process' if args.process else 'computation only'}); "
          f"intervals: {args.resamples} resamples, {args.method}; median of {args.repeat} runs each")
    print(f"{'metric':<22}{'off (s)':>10}{'on (s)':>10}{'overhead':>10}")
    by_metric: dict = {}
    for (model, metric), t in times.items():
        agg = by_metric.setdefault(metric, {"off": 0.0, "on": 0.0})
        agg["off"] += statistics.median(t["off"])
        agg["on"] += statistics.median(t["on"])
    for metric, t in sorted(by_metric.items()):
        print(f"{metric:<22}{t['off']:>10.2f}{t['on']:>10.2f}{(t['on'] / t['off'] - 1):>+10.0%}")
    off_total = sum(t["off"] for t in by_metric.values())
    on_total = sum(t["on"] for t in by_metric.values())
    print(f"{'total':<22}{off_total:>10.2f}{on_total:>10.2f}{(on_total / off_total - 1):>+10.0%}")


if __name__ == "__main__":
    main()
