"""3. DAG scale: dry runs of the study's size, where their time goes, and a no-op on a finished study.

A local hub with the study's three runs (ViT-B-16 171, ViT-L-14 160, ViT-H-14 256 epochs; dummy
checkpoint files, which a dry run never opens) and every dataset and metric of the study
(``clipdyn.fixtures.studies.build_tiny_study(full=True)``); times ``snakemake -n`` (target <= 30 s for
~10,000 jobs), also with the shipped ``config/config.yaml``, and profiles it; then a no-op
``snakemake -n`` on a finished small study (target <= 5 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO, log, med, run_smk, smk_env, table

STUDY_RUNS = (("vit_b_16", "ViT-B-16", 171), ("vit_l_14", "ViT-L-14", 160), ("vit_h_14", "ViT-H-14", 256))


def build_dag_study(root: Path, runs) -> object:
    """build_tiny_study(full=True)'s datasets, class sets and metrics, with the study's three runs."""
    from clipdyn.fixtures.localhub import LocalHub
    from clipdyn.fixtures.studies import build_tiny_study

    study = build_tiny_study(root, n_models=1, n_epochs=1, full=True)
    hub = LocalHub(study.hub)
    cfg = study.read_config()
    models = {}
    for name, arch, n_ep in runs:
        run = f"{arch}-laion2b-s34b-b88k"
        files = {f"full_checkpoints/{run}/epoch_{e}.pt": f"dummy checkpoint {name} epoch {e}\n".encode()
                 for e in range(1, n_ep + 1)}
        hub.publish(f"clipdyn-bench/{run}", files)
        models[name] = {"arch": arch, "repo": f"clipdyn-bench/{run}", "revision": "main",
                        "checkpoint": f"full_checkpoints/{run}/epoch_{{epoch}}.pt", "epochs": "auto",
                        "label": arch, "total_epochs": n_ep}
    cfg["models"] = models
    cfg["figures"] = {"base_model": runs[0][0], "scale_models": [r[0] for r in runs]}
    study.write_config(cfg)
    return study


def shipped_config(study, path: Path):
    """config/config.yaml as shipped, its models pointed at the local hub's runs (``epochs: auto``)."""
    import yaml

    from clipdyn.fixtures.studies import TinyStudy

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    models = study.read_config()["models"]
    cfg["models"] = models
    figs = dict(cfg.get("figures", {}))
    figs.pop("reference_curves", None)
    figs.update(base_model=next(iter(models)), scale_models=list(models))
    cfg["figures"] = figs
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return TinyStudy(root=study.root, hub=study.hub, config=path, workdir=study.workdir)


def run(args, wd: Path, repo: Path) -> dict:
    import pstats

    from clipdyn.fixtures.studies import build_tiny_study, parse_job_counts

    runs = STUDY_RUNS if not args.quick else tuple((n, a, 10) for n, a, _ in STUDY_RUNS)
    res = {"runs": [list(r) for r in runs], "dry_runs": []}
    studies = {}
    scales = [(0.1, 1), (1.0, args.dag_repeats)] if not args.quick else [(1.0, args.dag_repeats)]
    for scale, reps in scales:
        sruns = tuple((n, a, max(1, round(e * scale))) for n, a, e in runs)
        log(f"part 3: local hub with {sum(r[2] for r in sruns)} checkpoints of {len(sruns)} runs; dry runs")
        root = wd / f"dag_{scale:g}"
        shutil.rmtree(root, ignore_errors=True)
        study = build_dag_study(root, sruns)
        studies[scale] = study
        variants = [("snakemake -n", ())] + ([("snakemake -n --quiet rules", ("--quiet", "rules"))]
                                             if scale == 1.0 else [])
        for label, extra in variants:
            times, cpus = [], []
            for _ in range(reps if not extra else 1):
                p, dt, cpu = run_smk(study, repo, "-n", *extra)
                times.append(dt)
                cpus.append(cpu)
            counts = parse_job_counts(p.stdout + p.stderr)
            row = {"command": label, "epochs": sum(r[2] for r in sruns), "s": times, "median_s": med(times),
                   "cpu_s": cpus, "median_cpu_s": med(cpus), "jobs": sum(counts.values()), "by_rule": counts}
            res["dry_runs"].append(row)
            log(f"  {label}: {med(times):.1f} s wall, {med(cpus):.1f} s CPU (median of {len(times)}), "
                f"{row['jobs']} jobs")
    # the shipped config/config.yaml (its 11 datasets, 8 metrics, class set), every epoch of the three runs
    shipped = shipped_config(studies[1.0], wd / "shipped.yaml")
    times, cpus = [], []
    for _ in range(args.dag_repeats):
        p, dt, cpu = run_smk(shipped, repo, "-n")
        times.append(dt)
        cpus.append(cpu)
    counts = parse_job_counts(p.stdout + p.stderr)
    res["shipped"] = {"command": "snakemake -n (config/config.yaml, every epoch)", "epochs": sum(r[2] for r in runs),
                      "s": times, "median_s": med(times), "cpu_s": cpus, "median_cpu_s": med(cpus),
                      "jobs": sum(counts.values()), "by_rule": counts}
    log(f"  shipped config, every epoch: {med(times):.1f} s wall, {med(cpus):.1f} s CPU, {sum(counts.values())} jobs")
    full = [d for d in res["dry_runs"] if d["command"] == "snakemake -n"]
    res["jobs"] = full[-1]["jobs"]
    res["by_rule"] = full[-1]["by_rule"]
    res["dry_run_s"] = full[-1]["median_s"]
    res["dry_run_target_holds"] = max(res["dry_run_s"], res["shipped"]["median_s"]) <= 30
    if len(full) > 1:  # linear model: seconds = fixed + per_job * jobs (from CPU time, less load-sensitive)
        a, b = full[0], full[-1]
        per_job = (b["median_cpu_s"] - a["median_cpu_s"]) / (b["jobs"] - a["jobs"])
        res["cpu_ms_per_job"] = 1000 * per_job
        res["cpu_fixed_s"] = b["median_cpu_s"] - per_job * b["jobs"]
    if args.profile:  # per-job costs are linear in the job count, so a tenth of the DAG shows where time goes
        scale = 1.0 if args.profile_full else min(studies)
        prof = wd / "dag_dry_run.prof"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof),
                        *studies[scale].cmd("-n", "--quiet", "rules", repo=repo)[1:]],
                       env=smk_env(studies[scale], repo), capture_output=True, text=True, check=True)
        res["profiled_s"] = time.perf_counter() - t
        res["profiled_jobs"] = next(d["jobs"] for d in res["dry_runs"] if d["epochs"] == sum(
            max(1, round(e * scale)) for _, _, e in runs))
        res["profile"] = summarize_profile(pstats.Stats(str(prof)), str(repo) + os.sep)
        res["profile_file"] = str(prof)
    # no-op on a finished small study
    if args.noop:
        log("part 3: tiny study (1 model x 2 epochs), full run, then no-op dry runs")
        shutil.rmtree(wd / "small", ignore_errors=True)  # a fresh study: the full run runs every job
        small = build_tiny_study(wd / "small", n_models=1, n_epochs=2)
        _, t_full, _ = run_smk(small, repo)
        times, cpus, outs = [], [], []
        for _ in range(args.dag_repeats):
            p, dt, cpu = run_smk(small, repo, "-n")
            times.append(dt)
            cpus.append(cpu)
            outs.append(p.stdout + p.stderr)
        nothing = all("Nothing to be done" in o for o in outs)
        res["noop"] = {"full_run_s": t_full, "s": times, "median_s": med(times), "median_cpu_s": med(cpus),
                       "nothing_to_do": nothing}
        res["noop_target_holds"] = nothing and med(times) <= 5
        if not nothing:
            res["noop"]["dry_run_tail"] = outs[-1][-3000:]
    return res


_PHASES = [  # (label, file suffix, function): snakemake's phases of a dry run (cumulative times)
    ("whole run", "snakemake/cli.py", "main"),
    ("DAG: dependency resolution (dag.update: rule matching, input functions, Job objects)",
     "snakemake/dag.py", "update"),
    ("DAG: needrun (which outputs exist, mtimes, params/code changes)", "snakemake/dag.py", "update_needrun"),
    ("DAG: per-job params evaluation (update_conda_envs -> job.params)", "snakemake/dag.py", "update_conda_envs"),
    ("DAG: script checks per job (ScriptProcessor -> script.get_source)", "snakemake/dag.py", "process"),
    ("dry-run listing: per-job log_info (resources evaluation, formatting)", "snakemake/jobs.py", "log_info"),
]


def summarize_profile(st, ours_prefix: str) -> dict:
    rows = []
    for (fn, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        key = f"{_short(fn)}:{line}({func})"
        rows.append((key, nc, tt, ct))
    total = max((r[3] for r in rows), default=0.0)
    plumbing = ("runpy", "asyncio/", "importlib", "<string>", "builtins.exec", "contextvars", "__main__.py",
                "cli.py", "api.py")
    by_cum = sorted((r for r in rows if not any(x in r[0] for x in plumbing)), key=lambda r: -r[3])
    by_tot = sorted(rows, key=lambda r: -r[2])
    top_cum = [{"function": k, "calls": nc, "tottime_s": tt, "cumtime_s": ct} for k, nc, tt, ct in by_cum[:40]]
    top_tot = [{"function": k, "calls": nc, "tottime_s": tt, "cumtime_s": ct} for k, nc, tt, ct in by_tot[:20]]
    phases = []
    for label, suffix, name in _PHASES:
        ct = max((v[3] for (fn, _l, f), v in st.stats.items() if f == name and fn.endswith(suffix)), default=0.0)
        phases.append({"phase": label, "cumtime_s": ct})
    # our code: functions in the workflow copy (workflow/Snakefile, rules, clipdyn) entered from snakemake
    ours = 0.0
    for (fn, _l, _f), (_cc, _nc, _tt, ct, callers) in st.stats.items():
        if fn.startswith(ours_prefix) and not any(c[0].startswith(ours_prefix) for c in callers):
            ours += ct
    phases.append({"phase": "of all the above: clipdyn code (Snakefile parse incl. Study, input functions, "
                             "params lambdas, code hashes)", "cumtime_s": ours})
    return {"total_s": total, "phases": phases, "top_cumulative": top_cum, "top_self": top_tot}


def _short(fn: str) -> str:
    for marker in ("site-packages/", "/workflow/", "lib/python3"):
        if marker in fn:
            return fn.split(marker, 1)[1]
    return fn


def report(r: dict) -> None:
    rows = [[d["command"], d["epochs"], d["jobs"], d["median_s"], d["median_cpu_s"],
             ", ".join(f"{x:.1f}" for x in d["s"])] for d in r["dry_runs"]]
    runs = ", ".join(f"{a} {n}" for _, a, n in r["runs"])
    tenth = "; first row: a tenth of the epochs" if len(r["dry_runs"]) > 2 else ""
    print(table(f"3. DAG scale: dry run of the study ({runs} epochs; every dataset and metric of the study{tenth})",
                ["command", "epochs", "jobs", "median s", "CPU s", "runs s"], rows))
    print("jobs by rule: " + ", ".join(f"{k} {v}" for k, v in r["by_rule"].items()))
    if "shipped" in r:
        sh = r["shipped"]
        print(table("3a. the shipped config/config.yaml with every epoch of the three runs",
                    ["command", "epochs", "jobs", "median s", "CPU s", "runs s"],
                    [[sh["command"], sh["epochs"], sh["jobs"], sh["median_s"], sh["median_cpu_s"],
                      ", ".join(f"{x:.1f}" for x in sh["s"])]]))
        print("jobs by rule: " + ", ".join(f"{k} {v}" for k, v in sh["by_rule"].items()))
    if "cpu_ms_per_job" in r:
        print(f"cost model (CPU): {r['cpu_fixed_s']:.1f} s fixed + {r['cpu_ms_per_job']:.2f} ms per job")
    print(f"dry-run target <= 30 s: {'HOLDS' if r['dry_run_target_holds'] else 'MISSED'} "
          f"({r['dry_run_s']:.1f} s for {r['jobs']} jobs"
          + (f"; shipped config {r['shipped']['median_s']:.1f} s for {r['shipped']['jobs']} jobs)" if "shipped" in r
             else ")"))
    if "profile" in r:
        p = r["profile"]
        whole = p["phases"][0]["cumtime_s"] or 1.0
        print(table(f"3b. where a dry run's time goes (cProfile, {r['profiled_jobs']} jobs; phases overlap only "
                    "where noted)", ["phase", "s", "share"],
                    [[x["phase"], x["cumtime_s"], f"{100 * x['cumtime_s'] / whole:.0f}%"] for x in p["phases"]]))
        print(table(f"3c. cProfile of `snakemake -n --quiet rules`, {r['profiled_jobs']} jobs "
                    f"({r['profiled_s']:.1f} s under the profiler; "
                    f"{r['profile_file']}), top by cumulative time", ["function", "calls", "self s", "cum s"],
                    [[x["function"][-90:], x["calls"], x["tottime_s"], x["cumtime_s"]]
                     for x in p["top_cumulative"][:25]]))
        print(table("3d. top by self time", ["function", "calls", "self s", "cum s"],
                    [[x["function"][-90:], x["calls"], x["tottime_s"], x["cumtime_s"]] for x in p["top_self"][:15]]))
    if "noop" in r:
        n = r["noop"]
        print(table("3e. no-op on a finished small study (tiny study, 1 model x 2 epochs, after a full run)",
                    ["command", "nothing to do", "median s", "CPU s", "runs s"],
                    [["snakemake -n", n["nothing_to_do"], n["median_s"], n["median_cpu_s"],
                      ", ".join(f"{x:.1f}" for x in n["s"])]]))
        print(f"(the full run before it took {n['full_run_s']:.0f} s) no-op target <= 5 s: "
              f"{'HOLDS' if r['noop_target_holds'] else 'MISSED'}")
