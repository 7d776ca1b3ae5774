"""Helpers for the workflow-level reliability tests: tiny studies with broken inputs, snakemake
runs with a (fake) HF token in the environment, runs that are started and killed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipdyn.fixtures.studies import TinyStudy, build_tiny_study, tiny_image

#: looks like a real token; must never appear in any file the workflow writes
TOKEN = "hf_test_secret_" + "Zq7RkX2mVw9LpT4yNc8B"


@dataclass
class TokenStudy(TinyStudy):
    """A tiny study whose snakemake runs see HF_TOKEN (as a gated-repo study would)."""

    @property
    def env(self) -> dict:
        env = TinyStudy.env.fget(self)
        env["HF_TOKEN"] = TOKEN
        return env

    def start(self, *args, log: Path) -> subprocess.Popen:
        """Start snakemake in its own process group (so the whole group can be killed)."""
        out = open(log, "w")
        return subprocess.Popen(self.cmd(*args), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@contextlib.contextmanager
def own_tmp(name: str):
    """A temp folder for a fixture that lives for a whole module or session: not pytest's
    tmp_path, which a concurrent pytest session may prune (it keeps only the last 3)."""
    root = Path(tempfile.mkdtemp(prefix=f"clipdyn-rel-{name}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def token_study(root: Path, **kw) -> TokenStudy:
    s = build_tiny_study(root, **kw)
    study = TokenStudy(root=s.root, hub=s.hub, config=s.config, workdir=s.workdir)
    cfg = study.read_config()
    cfg["figures"]["enabled"] = False  # figures are tested elsewhere; keep these runs short
    study.write_config(cfg)
    return study


def add_broken_datasets(study: TokenStudy) -> dict:
    """An image-folder dataset with one corrupt and one missing image, used twice (on_bad_image
    error / skip), and an IQA dataset whose archive has a member that escapes the folder."""
    from clipdyn.fixtures import writers
    from clipdyn.fixtures.localhub import LocalHub, repo_folder

    hub = LocalHub(study.hub)
    rng = np.random.default_rng(7)
    folder = study.root / "scratch" / "broken"
    classes = ["c0", "c1", "c2", "c3", "c4", "c5"]
    labels = [k % 6 for k in range(12)]
    writers.write_image_folder(folder, [tiny_image(rng, lab) for lab in labels], labels, classes)
    corrupt = folder / "c0" / "00000.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # a truncated PNG
    hub.publish_folder("clipdyn-test/broken-images", folder, repo_type="dataset")
    # a partial snapshot: the link of c3/00003.png points at a blob that is not there
    root = repo_folder(study.hub, "clipdyn-test/broken-images", "dataset")
    snap = root / "snapshots" / (root / "refs" / "main").read_text().strip()
    missing = snap / "c3" / "00003.png"
    (missing.parent / os.readlink(missing)).resolve().unlink()
    # IQA archive with a path-traversal member
    iqa = study.root / "scratch" / "evil-iqa"
    ref = tiny_image(rng, 1, 48)
    writers.write_iqa(iqa, "tid2013", {"I01.BMP": ref}, [("I01.BMP", "i01_01_1.bmp", ref, 5.0)])
    with tarfile.open(iqa / "tid2013.tgz", "w:gz") as tf:
        for name in ("tid2013/reference_images/I01.BMP", "../../evil.sh"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, __import__("io").BytesIO(b"x\n"))
    hub.publish_folder("clipdyn-test/evil-iqa", iqa, repo_type="dataset")

    cfg = study.read_config()
    base = {"repo": "clipdyn-test/broken-images", "format": "image_folder", "files": ["*"]}
    cfg["datasets"]["bad_error"] = dict(base, on_bad_image="error")
    cfg["datasets"]["bad_skip"] = dict(base, on_bad_image="skip")
    cfg["datasets"]["evil_iqa"] = {"repo": "clipdyn-test/evil-iqa", "format": "iqa_tid2013", "files": ["*"]}
    for name in ("bad_error", "bad_skip"):
        cfg["metrics"][f"zs_{name}"] = {"kind": "zeroshot_accuracy", "inputs": {"dataset": name},
                                        "classset": "tiny"}
    cfg["metrics"]["iqa_evil"] = {"kind": "low_level_alignment", "inputs": {"datasets": ["evil_iqa"]}}
    study.write_config(cfg)
    return {"corrupt": "c0/00000.png", "missing": "c3/00003.png", "n_images": 12}


def wait_for(cond, timeout: float, proc: subprocess.Popen | None = None, poll: float = 0.2):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(poll)
    return False


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def files_under(*roots: Path):
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                yield p
