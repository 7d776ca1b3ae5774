#!/usr/bin/env python
"""Where a job's wall time goes, on the demo: the workflow end to end, one embedding job taken
apart, and a no-op run of the finished study.

1. ``make demo``'s workflow from an empty results folder (a snapshot of the workflow, the demo's
   local hub, offline): wall time, jobs per rule, each rule's summed job time (Snakemake's own
   start/end records), and what is left of ``cores x wall`` once the jobs' time is taken away:
   Snakemake's bookkeeping between jobs (scheduling, metadata, starting a job's process).
   Targets: <= 200 s and <= 350 jobs.
2. One ``embed_images`` job's parts, each timed alone, median of 5: opening the checkpoint by its
   record; the worker round trip (a no-op step through a warm worker); the step's work in the
   worker (model cached) and, within it, the Parquet write. For comparison, what a ``script:`` job
   pays before its first line of work (the embedding jobs are ``run:`` jobs in snakemake's threads
   and pay none of it): a Python process start, Snakemake's script preamble, clipdyn's imports.
3. A no-op ``snakemake`` (not a dry run) on the finished demo. Target <= 3 s.

The full study's dry run (``epochs: auto``, 587 checkpoints): ``bench_extraction.py --parts 3``.

Usage::

    python benchmarks/bench_job_overhead.py [--hub demo-hub] [--json out.json] [--scheduler greedy]

Needs the demo hub (``make demo-hub``); run it alone on an idle machine (the load is printed).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


def _load() -> str:
    return open("/proc/loadavg").read().split()[0]


def _med(fn, n=5):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _py(code: str, env: dict) -> None:
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def job_records(workdir: Path) -> dict:
    """{(rule, job_hash): (start, end)} from Snakemake's metadata records of a run."""
    out = {}
    for f in (workdir / ".snakemake" / "metadata").glob("*"):
        try:
            d = json.loads(f.read_text())
        except ValueError:
            continue
        if d.get("starttime") and d.get("endtime"):
            out[(d["rule"], d["job_hash"])] = (d["starttime"], d["endtime"])
    return out


def workflow_run(repo: Path, hub: Path, work: Path, cores: int, extra: list) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub), PYTHONPATH=str(repo / "workflow"))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(work),
           "--cores", str(cores), "--resources", "gpu=1", "--configfile", str(repo / "config" / "demo.yaml"),
           *extra]
    load0 = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    jobs = job_records(work)
    per = collections.defaultdict(list)
    for (rule, _), (s, e) in jobs.items():
        per[rule].append(e - s)
    busy = sum(e - s for s, e in jobs.values())
    t_noop = _med(lambda: subprocess.run(cmd, env=env, check=True, capture_output=True), n=3)
    return {"wall_s": wall, "jobs": len(jobs), "load_before": load0, "load_after": _load(), "cores": cores,
            "job_time_s": busy, "between_jobs_s": cores * wall - busy, "noop_run_s": t_noop,
            "per_rule": {r: {"n": len(v), "sum_s": sum(v), "mean_s": sum(v) / len(v)} for r, v in per.items()},
            "env": env, "work": str(work)}


def embed_job_parts(run: dict) -> dict:
    """Time each part of one embedding job of the finished demo, alone."""
    env, work = run["env"], Path(run["work"])
    res = work / "results-demo"
    emb = sorted((res / "embeddings").glob("*/epoch_*/shapes.parquet"))[0]
    model, epoch, dataset = emb.parts[-3], int(emb.parts[-2].split("_")[1]), emb.stem
    record = res / "checkpoints" / model / f"epoch_{epoch}.json"
    out = {}
    out["script job only: python start_s"] = _med(lambda: _py("pass", env))
    out["script job only: snakemake preamble_s"] = _med(lambda: _py("import snakemake.script", env))
    out["script job only: clipdyn imports_s"] = _med(lambda: _py(
        "import clipdyn.hub.checkpoints, clipdyn.embed.worker", env))
    os.environ.update({k: v for k, v in env.items() if k.startswith(("HF_", "PYTHONPATH"))})
    os.chdir(work)
    from clipdyn.embed.worker import run_step
    from clipdyn.hub.checkpoints import open_checkpoint

    def opened():
        with open_checkpoint(record):
            pass

    out["open_checkpoint_by_record_s"] = _med(opened)
    run_step("os:getpid", {}, idle_s=60)  # start a worker
    out["worker_round_trip_s"] = _med(lambda: run_step("os:getpid", {}, idle_s=60))
    from clipdyn.io import read_meta

    meta = read_meta(emb)
    pixels = res / "data" / dataset / f"pixels_{meta['preprocess']}.npy"
    with open_checkpoint(record) as ck:
        kwargs = dict(checkpoint=str(ck), pixels=str(pixels), pixel_index=str(pixels.with_suffix(".parquet")),
                      out=str(work / "bench-emb.parquet"), arch=meta.get("arch"), allow_pickle=False,
                      spatial=False, batch_size=256, precision="auto", compile=False,
                      model_configs=[], provenance={"model": model, "epoch": epoch, "dataset": dataset},
                      threads=2)
        run_step("clipdyn.embed.step:embed_images", kwargs, idle_s=60)  # the model into the worker
        out["step_in_worker_model_cached_s"] = _med(lambda: run_step("clipdyn.embed.step:embed_images",
                                                                     kwargs, idle_s=60))
    import numpy as np
    import pandas as pd

    from clipdyn.io import write_embeddings

    frame = pd.read_parquet(emb)
    X = np.stack(frame["embedding"].to_numpy()) if "embedding" in frame else None
    if X is not None:
        out["parquet_write_s"] = _med(lambda: write_embeddings(work / "bench-w.parquet", frame["image_id"], X,
                                                               meta))
    out["images"] = len(frame)
    out["per_job_mean_s (workflow)"] = run["per_rule"]["embed_images"]["mean_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hub", default=str(REPO / "demo-hub"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--scheduler", default=None, help="pass --scheduler to snakemake (ilp, greedy)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    hub = Path(a.hub).resolve()
    if not (hub / "demo-manifest.json").exists():
        raise SystemExit(f"no demo hub at {hub}: run `make demo-hub` first")
    from clipdyn.fixtures.studies import copy_workflow

    wd = Path(tempfile.mkdtemp(prefix="clipdyn-bench-jobs-"))
    try:
        repo = copy_workflow(wd / "repo")
        work = wd / "work"
        work.mkdir()
        extra = ["--scheduler", a.scheduler] if a.scheduler else []
        print(f"load before: {_load()} on {os.cpu_count()} cores", flush=True)
        run = workflow_run(repo, hub, work, a.cores, extra)
        print(f"\n1. make demo's workflow from empty results: {run['wall_s']:.1f} s, {run['jobs']} jobs "
              f"(targets: <= 200 s, <= 350 jobs); load {run['load_before']} -> {run['load_after']}")
        print(f"   job time summed {run['job_time_s']:.1f} s; {run['cores']} cores x wall - job time = "
              f"{run['between_jobs_s']:.1f} s between jobs ({run['between_jobs_s'] / run['jobs']:.2f} s per job)")
        print(f"   {'rule':22s} {'jobs':>5s} {'sum s':>8s} {'mean s':>7s}")
        for r, v in sorted(run["per_rule"].items(), key=lambda kv: -kv[1]["sum_s"]):
            print(f"   {r:22s} {v['n']:5d} {v['sum_s']:8.1f} {v['mean_s']:7.2f}")
        parts = embed_job_parts(run)
        print("\n2. one embed_images job, its parts (median of 5):")
        for k, v in parts.items():
            print(f"   {k:40s} {v:8.3f}" if isinstance(v, float) else f"   {k:40s} {v}")
        print(f"\n3. no-op snakemake on the finished demo: {run['noop_run_s']:.2f} s (target <= 3 s)")
        print(f"load after: {_load()}")
        if a.json:
            run.pop("env")
            Path(a.json).write_text(json.dumps({"workflow": run, "embed_job": parts}, indent=2))
    finally:
        subprocess.run([sys.executable, "-c", "pass"])
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
