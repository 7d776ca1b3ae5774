"""4. Peak memory of one embedding job.

``/usr/bin/time -v`` on a ``snakemake`` run of exactly one ``embed_images`` job (part 1's model
and images), plus each process's own peak RSS (VmHWM, anonymous vs file-backed pages) sampled
from /proc: the job's script, its embedding worker, snakemake.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .common import MODEL_CONFIGS, log, make_checkpoints, make_image_folder, run_smk, smk_env, table


class ProcWatcher(threading.Thread):
    """Samples /proc for every descendant of ``pid``: peak VmHWM / RssAnon / RssFile per command."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every, self.stop, self.peaks = pid, every, threading.Event(), {}

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for pr in procs:
                try:
                    status = Path(f"/proc/{pr.pid}/status").read_text()
                    cmd = " ".join(pr.cmdline())
                except (OSError, psutil.Error):
                    continue
                vals = {k: int(v) / 1024 for k, v in re.findall(r"^(VmHWM|VmRSS|RssAnon|RssFile):\s+(\d+) kB",
                                                               status, re.M)}
                kind = ("embed_images job" if "embed_images" in cmd
                        else "embedding worker" if "clipdyn.embed.worker" in cmd
                        else "snakemake" if "snakemake" in cmd
                        else "time" if cmd.startswith("/usr/bin/time") else cmd[:60])
                cur = self.peaks.setdefault(kind, {})
                for k, v in vals.items():
                    cur[k] = max(cur.get(k, 0.0), v)
            self.stop.wait(self.every)


def run(args, wd: Path, repo: Path, dev) -> dict:
    from clipdyn.config.study import preprocess_of
    from clipdyn.fixtures.localhub import LocalHub
    from clipdyn.fixtures.studies import TinyStudy

    arch, n = args.p1_model, args.p4_images
    log(f"part 4: one embed_images job through snakemake ({arch}, {n} images)")
    root = wd / "mem"
    shutil.rmtree(root, ignore_errors=True)
    hub = LocalHub(root / "hub")
    ck = make_checkpoints(wd / "ckpt" / arch, arch, 1)[0]
    hub.publish("clipdyn-bench/run", {"full_checkpoints/run/epoch_1.pt": ck})
    folder = make_image_folder(wd / f"images_{n}", n)
    hub.publish_folder("clipdyn-bench/images", folder, repo_type="dataset")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    cfg = {
        "model_configs": [str(MODEL_CONFIGS)],
        "models": {"m": {"arch": arch, "repo": "clipdyn-bench/run", "revision": "main",
                         "checkpoint": "full_checkpoints/run/epoch_{epoch}.pt", "epochs": "auto"}},
        "datasets": {"imgs": {"repo": "clipdyn-bench/images", "format": "image_folder", "files": ["*"]}},
        "classsets": {"c": {"source": "names", "names": names, "templates": "simple"}},
        "metrics": {"zs": {"kind": "zeroshot_accuracy", "inputs": {"dataset": "imgs"}, "classset": "c"}},
        "embedding": {"batch_size": args.batch_size, "threads": args.threads, "decode_workers": args.workers,
                      "mem_mb": 8000},
        "figures": {"enabled": False},
    }
    study = TinyStudy(root=root, hub=root / "hub", config=root / "config.yaml", workdir=root / "work")
    study.workdir.mkdir(parents=True, exist_ok=True)
    study.write_config(cfg)
    pp = preprocess_of(arch, [str(MODEL_CONFIGS)]).id
    r = "results"
    run_smk(study, repo, f"{r}/data/imgs/pixels_{pp}.npy", f"{r}/checkpoints/m/epoch_1.pt", "--notemp")
    target = f"{r}/embeddings/m/epoch_1/imgs.parquet"
    timefile = root / "time-v.txt"
    prefix = ["/usr/bin/time", "-v", "-o", str(timefile)] if Path("/usr/bin/time").exists() else []
    t = time.perf_counter()
    env = smk_env(study, repo)
    env["CLIPDYN_WORKER_DIR"] = tempfile.mkdtemp(prefix="cw")  # a fresh worker, started by this job
    proc = subprocess.Popen([*prefix, *study.cmd(target, repo=repo)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = ProcWatcher(proc.pid)
    watcher.start()
    text, _ = proc.communicate()
    watcher.stop.set()
    watcher.join()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {target} failed:\n{text[-4000:]}")
    jobs = re.findall(r"^(?:local)?rule (\w+):", text, re.M)
    res = {"model": arch, "images": n, "image_size": int(pp.split("px")[0]), "wall_s": wall, "jobs_run": jobs,
           "peaks_mb": watcher.peaks,
           "pixel_cache_mb": (study.workdir / f"{r}/data/imgs/pixels_{pp}.npy").stat().st_size / 1e6,
           "checkpoint_mb": ck.stat().st_size / 1e6, "device": str(dev)}
    if prefix and timefile.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timefile.read_text())
        res["time_v_max_rss_mb"] = int(m.group(1)) / 1024 if m else None
    logf = study.workdir / f"{r}/logs/embed_images/m/epoch_1/imgs.log"
    res["job_log_tail"] = logf.read_text()[-800:] if logf.exists() else ""
    return res


def report(r: dict) -> None:
    job = r["peaks_mb"].get("embed_images job", {})
    wrk = r["peaks_mb"].get("embedding worker", {})
    smk = r["peaks_mb"].get("snakemake", {})
    print(table(f"4. peak memory of one embed_images job ({r['model']}, {r['images']} images of {r['image_size']} px, "
                f"pixel cache {r['pixel_cache_mb']:.0f} MB, checkpoint {r['checkpoint_mb']:.0f} MB, {r['device']})",
                ["process", "peak RSS MB (VmHWM)", "anon MB", "file-backed MB"],
                [["embed_images job (the rule's script)", job.get("VmHWM", float("nan")),
                  job.get("RssAnon", float("nan")), job.get("RssFile", float("nan"))],
                 ["its embedding worker (clipdyn.embed.worker: torch, model, batches)", wrk.get("VmHWM", float("nan")),
                  wrk.get("RssAnon", float("nan")), wrk.get("RssFile", float("nan"))],
                 ["snakemake (scheduler)", smk.get("VmHWM", float("nan")), smk.get("RssAnon", float("nan")),
                  smk.get("RssFile", float("nan"))]]))
    if r.get("time_v_max_rss_mb"):
        print(f"/usr/bin/time -v on the snakemake run: Maximum resident set size {r['time_v_max_rss_mb']:.0f} MB "
              f"(the largest single process); wall {r['wall_s']:.1f} s; jobs run: {', '.join(r['jobs_run'])}")
