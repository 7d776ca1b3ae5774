"""checkpoint_budget on the local Hub (clipdyn.hubserver), online, from an empty cache: the number of
checkpoint blobs in the cache during the run stays within the budget, none remain after it, and a
dataset added later runs only its own jobs (no existing embedding reruns)."""

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from clipdyn.hubserver import HubServer
from clipdyn.testing import build_tiny_study, parse_job_counts

pytestmark = pytest.mark.workflow


def _blobs(cache: Path) -> int:
    return sum(1 for p in cache.glob("models--*/blobs/*") if not p.name.endswith(".incomplete"))


def test_budget_holds_at_most_n_checkpoints_and_none_after():
    root = Path(tempfile.mkdtemp(prefix="clipdyn-budget-"))
    try:
        study = build_tiny_study(root, n_models=1, n_epochs=3)
        cfg = study.read_config()
        cfg["checkpoint_budget"] = 1
        cfg["figures"]["enabled"] = False
        study.write_config(cfg)
        cache = root / "empty-cache"
        with HubServer(study.hub) as server:
            env = dict(study.env, HF_HUB_CACHE=str(cache), HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1")
            env.pop("HF_HUB_OFFLINE")

            def snakemake(*args):
                proc = subprocess.run(study.cmd(*args), env=env, capture_output=True, text=True, timeout=900)
                assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
                return proc

            peak, stop = [0], threading.Event()

            def watch():
                while not stop.is_set():
                    peak[0] = max(peak[0], _blobs(cache))
                    time.sleep(0.02)

            t = threading.Thread(target=watch)
            t.start()
            try:
                snakemake()
            finally:
                stop.set()
                t.join()
            assert peak[0] == 1  # one checkpoint at a time (the budget), and it was there
            assert _blobs(cache) == 0  # none left after the run
            logs = sorted((study.workdir / "results/logs/download_checkpoint").rglob("*.log"))
            assert len(logs) == 6  # 3 checkpoints x (embedding + classifier): one lease each
            assert all("1 checkpoint(s) of this study in the HF cache now" in p.read_text() for p in logs)
            done = sorted((study.workdir / "results/logs/checkpoint_done").rglob("*.log"))
            assert len(done) == 3 and all("removed" in p.read_text() for p in done)

            # nothing to do on a finished study, though the checkpoints are gone
            assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake("-n"))

            # a dataset added later: its embeddings (and the re-fetches they need), nothing existing
            cfg["datasets"]["tiny_imagenet_all"] = dict(cfg["datasets"]["tiny_imagenet"], subset=None)
            cfg["metrics"]["zeroshot_all"] = {"kind": "zeroshot_accuracy", "inputs": {"dataset": "tiny_imagenet_all"},
                                              "classset": "tiny"}
            study.write_config(cfg)
            dry = snakemake("-n", "--quiet", "rules")
            counts = parse_job_counts(dry.stdout + dry.stderr)
            assert counts.get("embed_images") == 3, dry.stdout + dry.stderr
            assert counts.get("download_checkpoint") == 3 and counts.get("checkpoint_done") == 3
            assert "text_classifier" not in counts
            peak[0], stop = 0, threading.Event()
            t = threading.Thread(target=watch)
            t.start()
            try:
                snakemake()
            finally:
                stop.set()
                t.join()
            assert peak[0] == 1 and _blobs(cache) == 0
            assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake("-n"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
