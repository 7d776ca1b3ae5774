#!/usr/bin/env python
"""Zero-shot accuracy over the demo's checkpoints, side by side in one run: LAION CLIP_benchmark's
CLI (what a user would otherwise do, one process per checkpoint, two at a time) against clipdyn's
workflow restricted to the same metric, from an empty results folder.

What is installed, and how (``<workdir>/cb-venv``, made once and reused when ``--workdir`` is
given again; its set-up is not timed):

- ``python -m venv`` with the Python running this script;
- a ``.pth`` file in its site-packages naming this interpreter's site-packages, so that torch,
  torchvision, open_clip, scikit-learn, tqdm, Pillow and PyYAML come from clipdyn's environment
  (no multi-GB torch download; the venv's own packages come first on ``sys.path``);
- ``pip install --no-deps clip_benchmark==1.6.2 pycocoevalcap webdataset braceexpand``: the
  package and the pure-Python modules its CLI imports for zero-shot classification
  (``clip_benchmark.cli`` imports its captioning metric, hence pycocoevalcap; ``wds/`` datasets
  need webdataset and braceexpand; transformers is not needed to import);
- ``pip install --no-deps "numpy<2.4"``: CLIP_benchmark 1.6.2's ``accuracy()`` calls ``float()``
  on a one-element array, which NumPy 2.4 rejects (``TypeError: only 0-dimensional arrays can
  be converted to Python scalars``); NumPy 2.3 only warns. A user installing it today meets the
  same error and the same pin.

How CLIP_benchmark is run: ``clip_benchmark eval --dataset wds/shapes --dataset_root <the hub's
snapshot of clipdyn-demo/wds_shapes> --model <arch> --pretrained <checkpoint file> --task
zeroshot_classification --no_amp --output <json>``, one process per checkpoint, two at a time
(``xargs -P 2 -L 1``, the loop a user would write). The demo's dataset repo is already in the
layout CLIP_benchmark's ``wds/`` loader reads (``test/nshards.txt``, ``test/{0..n-1}.tar`` with
``webp``/``cls`` members, ``classnames.txt``, ``zeroshot_classification_templates.txt``), so
``--dataset_root`` points at the Hub cache's snapshot folder, no copy. ``--no_amp``: on a CPU,
CLIP_benchmark's default autocast computes in bfloat16; clipdyn computes in float32 there, and
the accuracies are compared. Everything else is CLIP_benchmark's default (``--batch_size 64``,
``--num_workers 4``; ``--cb-num-workers`` changes the latter). The one deviation from the CLI
itself: ``clip_benchmark_wrapper.py`` calls ``open_clip.add_model_config`` on the workflow's
model-config folder (the demo's architectures are custom open_clip configs) before CLIP_benchmark's
own ``main()``, and times CLIP_benchmark's functions (see its docstring).

How clipdyn is run: a config derived from ``config/demo.yaml`` with only the ``zeroshot`` metric
on ``shapes`` (its dataset and class set, nothing else) and ``figures: {enabled: false}``, the
rest as in the demo; ``snakemake --cores 2 --resources gpu=1 --configfile <derived>`` with the
top-level Snakefile of a snapshot of the workflow, ``HF_HUB_OFFLINE=1 HF_HUB_CACHE=<hub>``, from
an empty results folder. Its time per rule is each job's start to end summed, from Snakemake's
metadata records.

Both read the same checkpoint files; they are read once before either side starts, so both find
them in the page cache. The table: wall time of each, the ratio, where each spends its time, and
per checkpoint CLIP_benchmark's ``acc1`` against clipdyn's ``zeroshot_top1``.

Usage::

    python benchmarks/versus_clip_benchmark.py [--hub demo-hub] [--quick] [--json out.json]
        [--workdir DIR] [--cb-num-workers N]

Needs the demo hub (``make demo-hub``) and PyPI access the first time (the venv); run it alone
on an idle machine (the load is printed).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(HERE))

from bench_job_overhead import job_records  # noqa: E402

CB_VERSION = "1.6.2"
CB_PACKAGES = [f"clip_benchmark=={CB_VERSION}", "pycocoevalcap", "webdataset", "braceexpand", "numpy<2.4"]
QUICK = 4  # checkpoints in --quick: the first model's first epochs


def _load() -> str:
    return open("/proc/loadavg").read().split()[0]


def cb_venv(venv: Path) -> Path:
    """CLIP_benchmark's venv (see the module docstring); returns its python."""
    py = venv / "bin" / "python"
    if (venv / ".ready").exists():
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "clipdyn-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", *CB_PACKAGES], check=True)
    subprocess.run([str(py), "-c", "import clip_benchmark.cli, webdataset"], check=True)
    (venv / ".ready").write_text(" ".join(CB_PACKAGES) + "\n")
    return py


def _snapshot(hub: Path, repo_id: str, repo_type: str, revision: str) -> Path:
    return hub / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots" / revision


def demo_checkpoints(hub: Path, manifest: dict, quick: bool) -> list[dict]:
    out = []
    for name, m in manifest["models"].items():
        snap = _snapshot(hub, m["repo_id"], m["repo_type"], m["revision"])
        for e in m["epochs"]:
            out.append({"model": name, "arch": m["arch"], "epoch": e,
                        "file": snap / m["checkpoint"].format(epoch=e)})
    return out[:QUICK] if quick else out


def wds_root(hub: Path, manifest: dict) -> Path:
    d = manifest["datasets"]["shapes"]
    root = _snapshot(hub, d["repo_id"], d["repo_type"], d["revision"])
    need = ["test/nshards.txt", "classnames.txt", "zeroshot_classification_templates.txt"]
    missing = [n for n in need if not (root / n).exists()]
    if missing:
        raise SystemExit(f"{root} lacks {missing}: not the layout CLIP_benchmark's wds/ loader reads")
    n = int((root / "test" / "nshards.txt").read_text())
    if not all((root / "test" / f"{i}.tar").exists() for i in range(n)):
        raise SystemExit(f"{root}/test lacks some of 0..{n - 1}.tar")
    return root


def run_clip_benchmark(py: Path, ckpts: list, root: Path, work: Path, cores: int, num_workers: int) -> dict:
    work.mkdir(parents=True)
    lines = []
    for c in ckpts:
        tag = f"{c['model']}_epoch{c['epoch']}"
        c["cb_out"], c["cb_timing"] = work / f"{tag}.json", work / f"{tag}.timing.json"
        lines.append(" ".join([str(REPO / "workflow" / "clipdyn" / "embed" / "model_configs"), str(c["cb_timing"]),
                               "eval", "--dataset", "wds/shapes", "--dataset_root", str(root),
                               "--model", c["arch"], "--pretrained", str(c["file"]),
                               "--task", "zeroshot_classification", "--no_amp",
                               "--num_workers", str(num_workers), "--quiet", "--output", str(c["cb_out"])]))
    (work / "jobs.txt").write_text("\n".join(lines) + "\n")
    load0 = _load()
    t0 = time.perf_counter()
    with open(work / "jobs.txt") as jobs:
        proc = subprocess.run(["xargs", "-P", str(cores), "-L", "1", str(py), str(HERE / "clip_benchmark_wrapper.py")],
                              stdin=jobs, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit("CLIP_benchmark failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    parts = collections.Counter()
    acc = {}
    for c in ckpts:
        t = json.loads(c["cb_timing"].read_text())
        for k, v in t.items():
            if k.endswith("_s"):
                parts[k] += v
        acc[(c["model"], c["epoch"])] = json.loads(c["cb_out"].read_text())["metrics"]["acc1"]
    parts["other_in_process_s"] = parts["total_in_process_s"] - sum(
        parts[k] for k in ("start_imports_s", "model_load_s", "text_tower_s", "image_tower_s", "data_wait_s"))
    return {"wall_s": wall, "processes": len(ckpts), "load_before": load0, "load_after": _load(),
            "parts_summed_s": dict(parts), "acc1": acc}


def derived_config(quick_ckpts: list | None) -> dict:
    """config/demo.yaml with only the zeroshot metric on shapes, figures off."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    zs = {k: v for k, v in cfg["metrics"].items() if v["kind"] == "zeroshot_accuracy"}
    datasets = {v["inputs"]["dataset"] for v in zs.values()}
    classsets = {v["classset"] for v in zs.values()}
    cfg["metrics"] = zs
    cfg["datasets"] = {k: v for k, v in cfg["datasets"].items() if k in datasets}
    cfg["classsets"] = {k: v for k, v in cfg["classsets"].items() if k in classsets}
    cfg["figures"] = {"enabled": False}
    cfg["results"] = "results-bench"
    if quick_ckpts is not None:
        keep = collections.defaultdict(list)
        for c in quick_ckpts:
            keep[c["model"]].append(c["epoch"])
        cfg["models"] = {m: dict(cfg["models"][m], epochs=keep[m]) for m in keep}
    return cfg


def run_clipdyn(hub: Path, work: Path, cfg: dict, cores: int) -> dict:
    from clipdyn.fixtures.studies import copy_workflow

    repo = copy_workflow(work / "repo")
    wd = work / "work"
    wd.mkdir()
    cfgfile = work / "zeroshot-only.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub), PYTHONPATH=str(repo / "workflow"))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(wd),
           "--cores", str(cores), "--resources", "gpu=1", "--configfile", str(cfgfile)]
    load0 = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit("clipdyn failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    per = collections.defaultdict(list)
    for (rule, _), (s, e) in job_records(wd).items():
        per[rule].append(e - s)
    import pandas as pd

    m = pd.read_parquet(wd / cfg["results"] / "metrics.parquet")
    m = m[m["measure"] == "zeroshot_top1"]
    acc = {(r.model, int(r.epoch)): float(r.value) for r in m.itertuples()}
    busy = sum(sum(v) for v in per.values())
    return {"wall_s": wall, "jobs": sum(len(v) for v in per.values()), "load_before": load0, "load_after": _load(),
            "job_time_s": busy, "between_jobs_s": cores * wall - busy,
            "per_rule": {r: {"n": len(v), "sum_s": sum(v)} for r, v in per.items()}, "zeroshot_top1": acc}


def _warm(paths) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hub", default=str(REPO / "demo-hub"))
    ap.add_argument("--quick", action="store_true", help=f"the first {QUICK} checkpoints only (a smoke run)")
    ap.add_argument("--json", default=None, help="save the figures here")
    ap.add_argument("--workdir", default=None, help="keep the venv and the runs here (default: a temporary folder)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--cb-num-workers", type=int, default=4, help="CLIP_benchmark's --num_workers (its default: 4)")
    a = ap.parse_args()
    hub = Path(a.hub).resolve()
    manifest_file = hub / "demo-manifest.json"
    if not manifest_file.exists():
        raise SystemExit(f"no demo hub at {hub}: run `make demo-hub` first")
    manifest = json.loads(manifest_file.read_text())
    base = Path(a.workdir).resolve() if a.workdir else Path(tempfile.mkdtemp(prefix="clipdyn-vs-cb-"))
    base.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    try:
        py = cb_venv(base / "cb-venv")
        ckpts = demo_checkpoints(hub, manifest, a.quick)
        root = wds_root(hub, manifest)
        _warm([c["file"] for c in ckpts] + sorted((root / "test").glob("*.tar")))
        print(f"{len(ckpts)} checkpoints, dataset {root.name[:12]}; load before: {_load()} on {os.cpu_count()} cores",
              flush=True)
        cb = run_clip_benchmark(py, ckpts, root, run_dir / "cb", a.cores, a.cb_num_workers)
        print(f"CLIP_benchmark: {cb['wall_s']:.1f} s (load {cb['load_before']} -> {cb['load_after']})", flush=True)
        cd = run_clipdyn(hub, run_dir / "clipdyn", derived_config(ckpts if a.quick else None), a.cores)
        print(f"clipdyn: {cd['wall_s']:.1f} s (load {cd['load_before']} -> {cd['load_after']})", flush=True)
        report(cb, cd, ckpts, a.cores)
        if a.json:
            keyed = lambda d: {f"{m}/{e}": v for (m, e), v in d.items()}  # noqa: E731
            cb["acc1"], cd["zeroshot_top1"] = keyed(cb["acc1"]), keyed(cd["zeroshot_top1"])
            Path(a.json).write_text(json.dumps({"checkpoints": len(ckpts), "cores": a.cores,
                                                "clip_benchmark": cb, "clipdyn": cd,
                                                "ratio": cb["wall_s"] / cd["wall_s"]}, indent=2))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if not a.workdir:
            shutil.rmtree(base, ignore_errors=True)


def report(cb: dict, cd: dict, ckpts: list, cores: int) -> None:
    n = len(ckpts)
    ratio = cb["wall_s"] / cd["wall_s"]
    print(f"\nzero-shot top-1 on shapes, {n} checkpoints, {cores} cores")
    print(f"  {'':44s} {'wall s':>8s}")
    print(f"  {'CLIP_benchmark (' + str(n) + ' processes, ' + str(cores) + ' at a time)':44s} {cb['wall_s']:8.1f}")
    print(f"  {'clipdyn (' + str(cd['jobs']) + ' jobs)':44s} {cd['wall_s']:8.1f}")
    print(f"  ratio CLIP_benchmark / clipdyn: {ratio:.2f}x (target >= 3x)")
    print(f"\n  CLIP_benchmark, summed over its {n} processes (s):")
    labels = {"start_imports_s": "process start + imports", "model_load_s": "model load (create + checkpoint)",
              "text_tower_s": "text tower (classifier)", "data_wait_s": "dataset read + decode (loader wait)",
              "image_tower_s": "image tower (forward)", "other_in_process_s": "metrics, output, rest",
              "total_in_process_s": "total in process"}
    for k, label in labels.items():
        v = cb["parts_summed_s"][k]
        print(f"    {label:38s} {v:8.1f}  ({v / n:.2f} per process)")
    print(f"\n  clipdyn, job time summed per rule (s); {cores} cores x wall - job time = "
          f"{cd['between_jobs_s']:.1f} s outside jobs:")
    for r, v in sorted(cd["per_rule"].items(), key=lambda kv: -kv[1]["sum_s"]):
        print(f"    {r:28s} {v['n']:4d} jobs {v['sum_s']:8.1f}  ({v['sum_s'] / v['n']:.2f} per job)")
    print("\n  accuracy per checkpoint: CLIP_benchmark acc1 vs clipdyn zeroshot_top1")
    worst = 0.0
    for c in ckpts:
        key = (c["model"], c["epoch"])
        a1, z1 = cb["acc1"][key], cd["zeroshot_top1"].get(key, float("nan"))
        worst = max(worst, abs(a1 - z1)) if z1 == z1 else float("inf")
        print(f"    {c['model']:8s} epoch {c['epoch']:2d}  {a1:.6f}  {z1:.6f}  {a1 - z1:+.6f}")
    print(f"  largest difference: {worst:.6f}")


if __name__ == "__main__":
    main()
