#!/usr/bin/env python
"""Extraction benchmarks (issue 6): decode once, embed from the pixel cache, measured.

Four measurements, one module each in ``extraction/``, each printed as a table (``--json`` also
writes them to a JSON file):

1. ``forward_overhead``: end-to-end (pixel cache -> ``embed_pixels`` -> Parquet) vs the bare
   ``model.encode_image`` on the same normalised images. Targets: >= 0.9 on CPU with a small
   model, >= 0.7 on GPU for ViT-B-16 bf16.
2. ``versus_loop``: decode once + embed per checkpoint vs a CLIP_benchmark-style loop over E
   checkpoints (target >= 3x at 8 epochs on CPU); 2b: the fixed cost of ``load_model``.
3. ``dag_scale``: ``snakemake -n`` on a local hub with the study's three runs (~10,000 jobs,
   target <= 30 s), profiled; a no-op ``snakemake -n`` on a finished small study (target <= 5 s).
4. ``job_memory``: peak memory of one ``embed_images`` job run through snakemake.

Snakemake runs (parts 3 and 4) use a snapshot copy of the workflow (workflow/, config/, envs/), so
edits to the working tree while the benchmark runs cannot make a finished study look stale. The
tiny studies come from ``clipdyn.fixtures.studies``, as in the tests.

Usage::

    python benchmarks/bench_extraction.py                 # everything, CPU, ~10 min on 2 idle cores
    python benchmarks/bench_extraction.py --quick         # ~1 min smoke version
    python benchmarks/bench_extraction.py --device cuda   # on a GPU machine (ViT-B-16, bf16)
    python benchmarks/bench_extraction.py --parts 1,2 --json   # some parts; JSON next to this file
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "workflow"))  # this checkout's clipdyn, installed or not

from extraction import dag_scale, forward_overhead, job_memory, versus_loop  # noqa: E402
from extraction.common import T0, setup_torch, snapshot_repo  # noqa: E402

NANO = "bench-vit-nano-32"  # a 224 px ViT, 2 layers x 64 wide: decode dominates, as next to a GPU


def machine_info(args) -> dict:
    import open_clip
    import snakemake
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
            "snakemake": snakemake.__version__, "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    if args.device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--quick", action="store_true", help="~1 minute smoke version (small sizes, no finished-study run)")
    ap.add_argument("--parts", default="1,2,3,4", help="which parts to run, e.g. 1,2 (default all)")
    ap.add_argument("--json", nargs="?", const="", default=None, metavar="PATH",
                    help="also write the figures as JSON (default path: bench_extraction_<device>[_quick].json "
                         "next to this script)")
    ap.add_argument("--workdir", help="keep generated images/checkpoints/studies here (reused between runs); "
                    "default: a temporary folder, removed at the end")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--workers", type=int, default=None, help="decode processes for the pixel cache and the "
                    "DataLoader (default: cores, at most 8)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 64 on cpu, 256 on cuda")
    ap.add_argument("--precision", default="auto", help="embed_pixels precision (auto: bf16 on cuda, fp32 on cpu)")
    ap.add_argument("--repeats", type=int, default=None, help="part 1 repeats (default 3, quick 1)")
    ap.add_argument("--p1-model", default=None, help="part 1/4 model (default ViT-S-32-alt on cpu, ViT-B-16 on cuda)")
    ap.add_argument("--p1-images", type=int, default=None, help="part 1 images (default 256 cpu, 4096 cuda)")
    ap.add_argument("--p2-models", default=None,
                    help=f"part 2 models, comma-separated, each optionally :IMAGES (default cpu: "
                         f"'{NANO}:1000,ViT-S-32-alt:128'; cuda: 'ViT-B-16:2000')")
    ap.add_argument("--epochs", type=int, default=None, help="part 2 checkpoints (default 8, quick 4)")
    ap.add_argument("--load-archs", default=None, help="part 2b: models whose load_model cost is measured "
                    "(default: the part 1 model and ViT-B-16; quick: the part 1 model; '' for none)")
    ap.add_argument("--p4-images", type=int, default=None, help="part 4 images (default 256)")
    ap.add_argument("--dag-repeats", type=int, default=None, help="part 3 repeats of each dry run (default 3)")
    ap.add_argument("--no-profile", dest="profile", action="store_false", help="part 3: skip cProfile")
    ap.add_argument("--profile-full", action="store_true", help="part 3: profile the full DAG, not a tenth")
    ap.add_argument("--no-noop", dest="noop", action="store_false",
                    help="part 3: skip the full run + no-op dry run of a tiny study")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    q = args.quick
    args.workers = args.workers or min(8, os.cpu_count() or 1)
    args.batch_size = args.batch_size or (256 if cuda else 64)
    args.repeats = args.repeats or (1 if q else 3)
    args.p1_model = args.p1_model or ("ViT-B-16" if cuda else "ViT-S-32-alt")
    args.p1_images = args.p1_images or (1024 if q and cuda else 4096 if cuda else 64 if q else 256)
    args.p2_models = args.p2_models or ("ViT-B-16:2000" if cuda else f"{NANO}:200" if q
                                        else f"{NANO}:1000,ViT-S-32-alt:128")
    args.epochs = args.epochs or (4 if q else 8)
    if args.load_archs is None:
        args.load_archs = args.p1_model if q or args.p1_model == "ViT-B-16" else f"{args.p1_model},ViT-B-16"
    args.p4_images = args.p4_images or (64 if q else 256)
    args.dag_repeats = args.dag_repeats or (1 if q else 3)
    if q:
        args.noop = False
        args.profile = False
    parts = {int(p) for p in args.parts.split(",") if p.strip()}

    wd = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="clipdyn-bench-"))
    wd.mkdir(parents=True, exist_ok=True)
    results = {"argv": sys.argv[1:], "args": vars(args), "machine": machine_info(args)}
    m = results["machine"]
    print(f"# clipdyn extraction benchmark: {m.get('cpu', '?')}, {m['cpus']} cores"
          f"{', ' + m['gpu'] if 'gpu' in m else ''}; torch {m['torch']}, open_clip {m['open_clip']}, "
          f"snakemake {m['snakemake']}; load average at start {m.get('loadavg_start', ('?',))[0]}")
    try:
        dev = setup_torch(args)
        repo = snapshot_repo(wd) if parts & {3, 4} else None
        if 1 in parts:
            results["part1"] = forward_overhead.run(args, wd, dev)
            forward_overhead.report(results["part1"])
        if 2 in parts:
            results["part2"] = []
            for spec in args.p2_models.split(","):
                arch, _, n = spec.partition(":")
                r = versus_loop.run(args, wd, dev, arch.strip(), int(n or 1000), args.epochs)
                results["part2"].append(r)
                versus_loop.report(r)
            if args.load_archs:
                results["part2b"] = versus_loop.load_cost(args, wd, [a for a in args.load_archs.split(",") if a])
                versus_loop.report_load_cost(results["part2b"])
        if 3 in parts:
            results["part3"] = dag_scale.run(args, wd, repo)
            dag_scale.report(results["part3"])
        if 4 in parts:
            results["part4"] = job_memory.run(args, wd, repo, dev)
            job_memory.report(results["part4"])
    finally:
        results["wall_s"] = time.perf_counter() - T0
        try:
            results["machine"]["loadavg_end"] = os.getloadavg()
        except OSError:
            pass
        if args.json is not None:
            path = Path(args.json) if args.json else HERE / f"bench_extraction_{args.device.split(':')[0]}" \
                f"{'_quick' if q else ''}.json"
            path.write_text(json.dumps(results, indent=1, default=str))
            print(f"\nJSON: {path}")
        if not args.workdir:
            shutil.rmtree(wd, ignore_errors=True)
    print(f"\ntotal wall time {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
