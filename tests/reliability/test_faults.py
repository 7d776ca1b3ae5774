"""Faults inside a job, at library level: a process killed with SIGKILL in the middle of writing
leaves no target file a later job would trust (and an older target stays intact); non-finite
embeddings or logits fail the job and write nothing. The workflow-level kill/rerun is in
test_workflow_faults.py."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clipdyn import io
from clipdyn.config.study import Preprocess
from clipdyn.data.pixels import build_pixel_cache
from clipdyn.fixtures.studies import ARCH

KILL_WRITER = textwrap.dedent(r"""
    import sys, time
    from pathlib import Path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from clipdyn import io

    target, ready = sys.argv[1], Path(sys.argv[2])
    real_write = pq.write_table

    def write_half_then_hang(table, where, **kw):
        sink = pa.BufferOutputStream()
        real_write(table, sink, **kw)
        data = sink.getvalue().to_pybytes()
        with open(where, "wb") as f:          # the temporary file io.write_table_atomic chose
            f.write(data[: len(data) // 2])
            f.flush()
            ready.write_text(str(where))
            time.sleep(600)                   # killed here, mid-write

    io.pq.write_table = write_half_then_hang
    X = np.random.default_rng(0).normal(size=(5000, 64)).astype(np.float32)
    io.write_embeddings(target, [f"img{i}" for i in range(len(X))], X, {"model": "m", "epoch": 1})
""")

KILL_DECODER = textwrap.dedent(r"""
    import sys, time
    from pathlib import Path
    import pandas as pd
    from clipdyn.data import images
    from clipdyn.data.pixels import build_pixel_cache
    from clipdyn.config.study import Preprocess

    manifest, out, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    real_open, seen = images.open_image, []

    def slow_open(path, member=""):
        seen.append(path)
        if len(seen) == 3:                    # a few images decoded into the temporary .npy
            ready.write_text("decoding")
            time.sleep(600)
        return real_open(path, member)

    images.open_image = slow_open
    build_pixel_cache(pd.read_parquet(manifest), Preprocess(32), out / "pixels.npy", out / "pixels.parquet",
                      workers=1, chunk=2)
""")


def _run_and_kill(script, args, ready: Path, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(Path(io.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early:\n{proc.stdout.read().decode()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("writer never reached the middle of the write")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


@pytest.mark.parametrize("existing", [False, True], ids=["new", "over-an-older-file"])
def test_sigkill_mid_write_leaves_no_trusted_embedding_file(tmp_path, existing):
    target = tmp_path / "embeddings" / "m" / "epoch_1" / "ds.parquet"
    if existing:
        io.write_embeddings(target, ["a"], np.ones((1, 4), np.float32), {"model": "m", "epoch": 0})
        before = target.read_bytes()
    ready = tmp_path / "ready"
    _run_and_kill(KILL_WRITER, [target, ready], ready)
    partial = Path(ready.read_text())
    assert partial.exists() and partial != target and partial.name.startswith(".") and partial.name.endswith(".tmp")
    if existing:
        assert target.read_bytes() == before  # the older file is untouched, never half-overwritten
        assert io.read_embeddings(target).X.shape == (1, 4)
    else:
        assert not target.exists()
    # the half-written temporary is not Parquet a reader could mistake for the target
    with pytest.raises(Exception):
        io.read_embeddings(partial)


def _png_rows(folder, n, size, seed):
    """``n`` random ``size`` px PNGs in ``folder``, as manifest rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        rows.append({"image_id": f"i{i}", "path": str(p), "member": ""})
    return rows


def test_sigkill_mid_decode_leaves_no_pixel_cache(tmp_path):
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame(_png_rows(tmp_path, 8, 40, seed=0)).to_parquet(manifest)
    out = tmp_path / "cache"
    out.mkdir()
    ready = tmp_path / "ready"
    _run_and_kill(KILL_DECODER, [manifest, out, ready], ready)
    assert not (out / "pixels.npy").exists() and not (out / "pixels.parquet").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")]  # only the hidden temporary remains


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_embeddings_are_refused_and_nothing_is_written(tmp_path, bad):
    target = tmp_path / "emb.parquet"
    X = np.ones((6, 4), np.float32)
    X[2, 1] = bad
    with pytest.raises(ValueError, match=r"1 of 6 embeddings are not finite \(NaN or inf\).*nothing was written"):
        io.write_embeddings(target, [str(i) for i in range(6)], X, {"model": "m"})
    assert not target.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("W_bad, scale", [(True, 100.0), (False, float("inf")), (False, float("nan"))],
                         ids=["nan-weights", "inf-logit-scale", "nan-logit-scale"])
def test_nonfinite_classifier_or_logit_scale_is_refused(tmp_path, W_bad, scale):
    W = np.eye(3, 4, dtype=np.float32)
    if W_bad:
        W[0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite; nothing was written"):
        io.write_classifier(tmp_path / "cls.parquet", W, ["a", "b", "c"], scale, {"model": "m"})
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- the jobs themselves


@pytest.fixture
def pixel_cache(tmp_path):
    d = tmp_path / "px"
    d.mkdir()
    build_pixel_cache(pd.DataFrame(_png_rows(d, 6, 36, seed=1)), Preprocess(32), d / "px.npy", d / "px.parquet",
                      log=lambda m: None)
    return d / "px.npy", d / "px.parquet"


def _poisoned(tiny_checkpoint, tmp_path, key, value):
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["state_dict"][key].fill_(value)
    path = tmp_path / "epoch_1.pt"
    torch.save(ck, path)
    return path


def test_embed_job_with_diverged_checkpoint_fails_without_output(tiny_checkpoint, pixel_cache, tmp_path):
    from clipdyn.embed.step import embed_images

    ckpt = _poisoned(tiny_checkpoint, tmp_path, "module.visual.proj", float("nan"))
    out = tmp_path / "results" / "emb.parquet"
    with pytest.raises(ValueError, match="6 of 6 embeddings are not finite"):
        embed_images(checkpoint=str(ckpt), pixels=str(pixel_cache[0]), pixel_index=str(pixel_cache[1]),
                     out=str(out), arch=ARCH, allow_pickle=False, spatial=False, batch_size=4, precision="fp32",
                     model_configs=[], provenance={"model": "m", "epoch": 1}, threads=1,
                     lock_dir=str(tmp_path / "locks"))
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))


def test_text_job_with_nonfinite_logit_scale_fails_without_output(tiny_checkpoint, tmp_path):
    from clipdyn.embed.classifier import text_classifier

    ckpt = _poisoned(tiny_checkpoint, tmp_path, "module.logit_scale", float("inf"))
    out = tmp_path / "results" / "cls.parquet"
    with pytest.raises(ValueError, match="logit scale are not finite; nothing was written"):
        text_classifier(checkpoint=str(ckpt), manifest=None, out=str(out), arch=ARCH, allow_pickle=False,
                        classset={"source": "names", "names": ["red", "green"], "templates": "simple"},
                        model_configs=[], provenance={"model": "m", "epoch": 1}, threads=1,
                        lock_dir=str(tmp_path / "locks"))
    assert not out.exists()
