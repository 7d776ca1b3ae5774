"""checkpoint_budget on the local Hub (clipdyn.fixtures.hubserver), online: the run's store holds at most N
checkpoints while it runs and none after; a checkpoint the user has in the HF cache is read in place
and never removed (also one downloaded between two runs); a dataset added later runs only its own
jobs; two model entries with the same bytes share one blob; two runs started together over one HF
cache and one downloads/ folder both finish, with nothing of the user's removed."""

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from clipdyn.fixtures.hubserver import HubServer
from clipdyn.fixtures.studies import build_tiny_study, parse_job_counts

pytestmark = pytest.mark.workflow


def _held(store: Path) -> int:
    """Checkpoints in the run's store now (complete or being downloaded)."""
    return sum(1 for p in store.glob("*") if p.is_dir()) if store.is_dir() else 0


def _cache_blobs(cache: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in cache.glob("models--*/blobs/*") if not p.name.endswith(".incomplete")}


class _Peak:
    """The most checkpoints held in the stores at any moment, sampled every 20 ms."""

    def __init__(self, *stores):
        self.stores, self.value, self._stop = stores, 0, threading.Event()
        self._t = threading.Thread(target=self._watch)

    def _watch(self):
        while not self._stop.is_set():
            self.value = max(self.value, *(_held(s) for s in self.stores))
            time.sleep(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _user_download(server_url: str, cache: Path, repo: str, filename: str) -> Path:
    """What `hf download` does: the file into the user's HF cache."""
    code = ("import sys; from huggingface_hub import hf_hub_download; "
            "print(hf_hub_download(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3]))")
    env = {"HF_ENDPOINT": server_url, "HF_HUB_DISABLE_XET": "1", "PATH": "/usr/bin:/bin",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    out = subprocess.run([sys.executable, "-c", code, repo, filename,
                          str(cache)], env=env, capture_output=True, text=True, check=True, timeout=120)
    return Path(out.stdout.strip().splitlines()[-1])


def _hub_env(study, server, cache):
    env = dict(study.env, HF_HUB_CACHE=str(cache), HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.pop("HF_HUB_OFFLINE")
    return env


def test_budget_holds_at_most_n_in_its_store_and_never_removes_the_users_files():
    root = Path(tempfile.mkdtemp(prefix="clipdyn-budget-"))
    try:
        study = build_tiny_study(root, n_models=1, n_epochs=3)
        cfg = study.read_config()
        cfg["checkpoint_budget"] = 1
        cfg["figures"]["enabled"] = False
        study.write_config(cfg)
        model = next(iter(cfg["models"].values()))
        cache, store = root / "user-cache", study.workdir / "results" / "checkpoint_store"
        with HubServer(study.hub) as server:
            env = _hub_env(study, server, cache)

            def snakemake(*args):
                proc = subprocess.run(study.cmd(*args), env=env, capture_output=True, text=True, timeout=900)
                assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
                return proc.stdout + proc.stderr

            files = sorted(p.relative_to(_snapshot(study.hub, model["repo"])).as_posix()
                           for p in _snapshot(study.hub, model["repo"]).rglob("epoch_*.pt"))
            assert len(files) == 3
            # the user has epoch 2 already (their own `hf download`)
            mine = _user_download(server.url, cache, model["repo"], files[1])
            before = _cache_blobs(cache)
            with _Peak(store) as peak:
                snakemake()
            assert peak.value == 1  # one checkpoint at a time (the budget), and the store was used
            assert _held(store) == 0 and (store / "released.json").exists()  # none left after the run
            assert _cache_blobs(cache) == before and mine.exists()  # the user's cache: read, untouched
            logs = {p.name: p.read_text() for p in (study.workdir / "results/logs/fetch_checkpoint").rglob("*.log")}
            assert len(logs) == 3
            assert "the Hugging Face cache (kept)" in logs["epoch_2.log"]
            assert all("the run's store" in t for n, t in logs.items() if n != "epoch_2.log")

            assert "Nothing to be done" in snakemake("-n")  # a finished study, though its store is empty

            # between two runs the user downloads epoch 1 too; then a dataset is added
            mine1 = _user_download(server.url, cache, model["repo"], files[0])
            before = _cache_blobs(cache)
            cfg["datasets"]["tiny_imagenet_all"] = dict(cfg["datasets"]["tiny_imagenet"], subset=None)
            cfg["metrics"]["zeroshot_all"] = {"kind": "zeroshot_accuracy",
                                              "inputs": {"dataset": "tiny_imagenet_all"}, "classset": "tiny"}
            study.write_config(cfg)
            counts = parse_job_counts(snakemake("-n", "--quiet", "rules"))
            # its embeddings, and the fetches chained behind them; no existing embedding or classifier
            assert counts.get("embed_images") == 3 and counts.get("fetch_checkpoint") == 2, counts
            assert "text_classifier" not in counts and counts.get("release_checkpoints") == 1, counts
            with _Peak(store) as peak:
                snakemake()
            assert peak.value <= 1 and _held(store) == 0
            assert _cache_blobs(cache) == before and mine.exists() and mine1.exists()
            assert "Nothing to be done" in snakemake("-n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _snapshot(hub: Path, repo: str) -> Path:
    snaps = sorted((hub / f"models--{repo.replace('/', '--')}" / "snapshots").iterdir(),
                   key=lambda p: p.stat().st_mtime)
    return snaps[-1]


def test_two_runs_together_over_one_cache_and_downloads_folder_with_shared_blobs():
    root = Path(tempfile.mkdtemp(prefix="clipdyn-budget2-"))
    try:
        study = build_tiny_study(root, n_models=1, n_epochs=2)
        cfg = study.read_config()
        cfg["checkpoint_budget"] = 1
        cfg["figures"]["enabled"] = False
        cfg["download_dir"] = str(root / "downloads")  # one downloads/ folder for both runs
        name, model = next(iter(cfg["models"].items()))
        cfg["models"][f"{name}_again"] = dict(model)  # the same weights under a second name: shared blobs
        study.write_config(cfg)
        other = dataclasses.replace(study, config=root / "config-b.yaml", workdir=root / "work-b")
        other.workdir.mkdir()
        cfg_b = dict(cfg, models={name: model})
        other.write_config(cfg_b)
        cache = root / "user-cache"
        with HubServer(study.hub) as server:
            snap = _snapshot(study.hub, model["repo"])
            first = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("epoch_*.pt"))[0]
            mine = _user_download(server.url, cache, model["repo"], first)
            before = _cache_blobs(cache)
            env = _hub_env(study, server, cache)
            stores = [s.workdir / "results" / "checkpoint_store" for s in (study, other)]
            with _Peak(*stores) as peak:
                procs = [subprocess.Popen(s.cmd(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True) for s in (study, other)]
                outs = [p.communicate(timeout=1200)[0] for p in procs]
            for p, out in zip(procs, outs):
                assert p.returncode == 0, out[-4000:]
            assert peak.value == 1  # each run's store held one checkpoint at a time
            assert all(_held(s) == 0 for s in stores)
            assert _cache_blobs(cache) == before and mine.exists()  # nothing of the user's removed or changed
            for s in (study, other):
                assert (s.workdir / "results" / "metrics.parquet").exists()
            # the shared blob was read by both model entries of the first run
            emb = sorted((study.workdir / "results" / "embeddings").glob("*/epoch_*/*.parquet"))
            assert {p.parts[-3] for p in emb} == {name, f"{name}_again"}
    finally:
        shutil.rmtree(root, ignore_errors=True)
