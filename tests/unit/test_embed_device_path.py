"""The embedding path's GPU behaviour, shown on the CPU: fp32 projections under autocast, out-of-memory
halving (simulated errors) with no thread left behind, the compile cache freeing models, provenance,
and the GPU claim held until the output is written."""
import contextlib
import gc
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from clipdyn.embed import encode, precision, step
from clipdyn.embed.encode import embed_pixels
from clipdyn.embed.model import register_model_configs

ARCH = "clipdyn-tiny"


def _model(seed=0):
    import open_clip

    register_model_configs([])
    torch.manual_seed(seed)
    return open_clip.create_model(ARCH).eval()


def _pixels(n=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _quiet(msg):
    pass


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "clipdyn-prefetch"]


# --- precision: the tower may run in bf16, the projection and the maps run in fp32 ---------------


def test_projection_and_maps_run_in_fp32_when_bf16_autocast_is_requested():
    model, px = _model(), _pixels()
    seen = []
    hook = model.visual.ln_post.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    X, maps = embed_pixels(model, px, "cpu", batch_size=4, spatial=True, precision="bf16", log=_quiet,
                           saliency_map="patch_cosine")
    hook.remove()
    tokens = torch.cat(seen)  # the tower's last features: bf16 (it ran under autocast)
    assert tokens.dtype == torch.bfloat16
    proj = model.visual.proj.detach()
    assert isinstance(model.visual.proj, torch.nn.Parameter)  # put back after the call
    pooled32 = tokens[:, 0].float() @ proj  # the projection in fp32 ...
    pooled16 = (tokens[:, 0] @ proj.bfloat16()).float()  # ... not in bf16 (what autocast would do)
    assert X.dtype == np.float32 and maps.dtype == np.float32
    np.testing.assert_allclose(X, pooled32.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(X - pooled16.numpy()).max() > 100 * np.abs(X - pooled32.numpy()).max()
    patch32 = tokens[:, 1:].float() @ proj
    sim = torch.nn.functional.cosine_similarity(patch32, pooled32.unsqueeze(1), dim=-1).reshape(-1, 4, 4)
    np.testing.assert_allclose(maps, sim.numpy(), rtol=1e-5, atol=1e-5)
    for variant in ("cls_attention", "attention_rollout"):  # the other map variants: same fp32 projection
        Xv, mv = embed_pixels(model, px, "cpu", batch_size=4, spatial=True, precision="bf16", log=_quiet,
                              saliency_map=variant)
        np.testing.assert_allclose(Xv, X, rtol=1e-5, atol=1e-6)
        assert mv.dtype == np.float32 and mv.shape == (7, 4, 4)
    # the tower did run in bf16: the result differs from fp32 throughout, by bf16's rounding
    X32, _ = embed_pixels(model, px, "cpu", batch_size=4, precision="fp32", log=_quiet)
    gap = np.abs(X - X32).max() / np.abs(X32).max()
    assert 1e-4 < gap < 5e-2


def test_auto_is_fp32_on_the_cpu_and_bf16_only_on_native_gpus(monkeypatch):
    info = {}
    embed_pixels(_model(), _pixels(3), "cpu", precision="auto", log=_quiet, info=info)
    assert info == {"precision": "fp32", "batch_size": 256, "effective_batch_size": 256, "projection": "fp32"}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 0))
    msgs = []
    assert precision.autocast_dtype("auto", "cuda:0") == torch.float16
    assert precision.autocast_dtype("bf16", "cuda:0", log=msgs.append) == torch.float16 and "no native bf16" in msgs[0]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    assert precision.autocast_dtype("auto", "cuda:0") == torch.bfloat16
    assert precision.autocast_dtype("fp32", "cuda:0") is None
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.autocast_dtype("fp8", "cpu")


def test_text_projection_runs_in_fp32_under_bf16_autocast():
    import open_clip

    from clipdyn.embed.classifier import zero_shot_classifier

    model = _model(1)
    names, templates = ["red", "green", "blue"], ["a photo of a {}.", "a {} thing."]
    ref = open_clip.build_zero_shot_classifier(model, open_clip.get_tokenizer(ARCH), names, templates,
                                               device="cpu").T.numpy()
    W32 = zero_shot_classifier(model, ARCH, names, templates, "cpu", precision="auto", log=_quiet)
    np.testing.assert_allclose(W32, ref, rtol=1e-5, atol=1e-6)  # CPU: fp32, open_clip's own numbers
    seen, tower = [], []
    hooks = [model.ln_final.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone())),
             model.transformer.resblocks[0].mlp.c_fc.register_forward_hook(lambda m, i, o: tower.append(o.dtype))]
    W16 = zero_shot_classifier(model, ARCH, names, templates, "cpu", precision="bf16", log=_quiet)
    for h in hooks:
        h.remove()
    assert W16.dtype == np.float32 and isinstance(model.text_projection, torch.nn.Parameter)
    assert set(tower) == {torch.bfloat16}  # the text tower's matmuls ran under bf16 autocast
    feats = torch.cat(seen)  # its final features, pooled at the end-of-text token, projected in fp32
    tok = open_clip.get_tokenizer(ARCH)([t.format(c) for c in names for t in templates])
    pooled = feats[torch.arange(len(tok)), tok.argmax(dim=-1)].float() @ model.text_projection.detach()
    e = torch.nn.functional.normalize(pooled, dim=-1).reshape(len(names), len(templates), -1).mean(1)
    np.testing.assert_allclose(W16, torch.nn.functional.normalize(e, dim=-1).numpy(), rtol=1e-5, atol=1e-6)
    assert 0 < np.abs(W16 - W32).max() < 5e-2


# --- out of memory: halve and retry, same result, nothing left behind --------------------------


def _cap(model, max_batch, make_error, calls):
    def pre_hook(module, args):
        calls.append(len(args[0]))
        if len(args[0]) > max_batch:
            raise make_error()
    return model.visual.register_forward_pre_hook(pre_hook)


@pytest.mark.parametrize("make_error", [
    lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    lambda: RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
], ids=["allocator", "cublas"])
def test_out_of_memory_halves_the_batch_and_gives_the_uncapped_result(make_error):
    model, px = _model(), _pixels(11)
    ref, ref_maps = embed_pixels(model, px, "cpu", batch_size=8, spatial=True, log=_quiet)
    calls, msgs, info = [], [], {}
    hook = _cap(model, 2, make_error, calls)
    X, maps = embed_pixels(model, px, "cpu", batch_size=8, spatial=True, log=msgs.append, info=info)
    hook.remove()
    # equal up to float rounding: matrix products of other batch sizes sum in another order
    np.testing.assert_allclose(X, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps, ref_maps, rtol=1e-5, atol=1e-6)
    assert calls[:3] == [8, 4, 2] and info["effective_batch_size"] == 2 and info["batch_size"] == 8
    assert sum("batch size halved" in m for m in msgs) == 2
    assert not _prefetch_threads()


def test_other_errors_are_not_retried_and_release_the_prefetch_thread():
    model, px = _model(), _pixels(40)
    before = threading.active_count()
    calls = []
    hook = _cap(model, 0, lambda: RuntimeError("mat1 and mat2 shapes cannot be multiplied"), calls)
    for _ in range(3):  # a persistent worker serving failing jobs
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            embed_pixels(model, px, "cpu", batch_size=4, log=_quiet)
    assert calls == [4, 4, 4]
    hook.remove()
    calls = []
    hook = _cap(model, 0, lambda: torch.cuda.OutOfMemoryError("CUDA out of memory"), calls)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # out of memory even at batch size 1
        embed_pixels(model, px, "cpu", batch_size=4, log=_quiet)
    hook.remove()
    assert calls == [4, 2, 1]
    assert not _prefetch_threads() and threading.active_count() == before


def test_a_consumer_that_stops_early_releases_the_producer():
    produced = []

    def slow():
        for i in range(1000):
            produced.append(i)
            yield i
    with encode._Prefetch(slow(), depth=2) as p:
        for x in p:
            if x == 3:
                break
    assert not _prefetch_threads() and len(produced) < 10


# --- compile: the cache does not keep models alive ---------------------------------------------


def test_compiled_towers_go_with_their_models(monkeypatch):
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend="eager"))  # no C compiler needed
    refs = []
    px = _pixels(3)
    for seed in range(3):  # a worker embedding three checkpoints one after the other
        model = _model(seed)
        embed_pixels(model, px, "cpu", batch_size=2, log=_quiet, compile=True)
        assert "_clipdyn_compiled" in vars(model.visual) and "_clipdyn_compiled" not in dict(model.named_modules())
        refs.append(weakref.ref(model))
        del model
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_the_worker_cache_frees_the_previous_model(monkeypatch, tmp_path):
    from clipdyn.fixtures.studies import make_checkpoint

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend="eager"))
    monkeypatch.setattr(step, "_MODEL_CACHE", {})
    refs = []
    for e in (1, 2):
        ckpt = tmp_path / f"epoch_{e}.pt"
        make_checkpoint(ckpt, e, seed=3)
        model = step.model_for(ARCH, str(ckpt), torch.device("cpu"), False, "m")
        embed_pixels(model, _pixels(2), "cpu", log=_quiet, compile=True)
        refs.append(weakref.ref(model))
        del model
    assert refs[0]() is None and refs[1]() is not None  # the earlier checkpoint is gone
    assert step.cached_gpu() is None  # on the CPU
    step.release_cached_model()
    assert refs[1]() is None


def test_the_worker_cache_keys_on_the_checkpoint_content_not_its_path(monkeypatch, tmp_path):
    """A checkpoint replaced in place (same path, size and mtime: `cp -p`) is loaded again, and so is a new
    content identity for the same file; the same checkpoint is reused."""
    import os
    import shutil
    import time

    loads = []
    monkeypatch.setattr(step, "_MODEL_CACHE", {})
    monkeypatch.setattr(step, "load_model", lambda arch, ckpt, **kw: loads.append(Path(ckpt).read_bytes()) or
                        object())
    ckpt, other = tmp_path / "epoch_1.pt", tmp_path / "new.pt"
    ckpt.write_bytes(b"old weights")
    other.write_bytes(b"new weights")
    os.utime(other, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns))
    first = step.model_for(ARCH, str(ckpt), torch.device("cpu"), False, "m", "sha-old")
    assert step.model_for(ARCH, str(ckpt), torch.device("cpu"), False, "m", "sha-old") is first
    time.sleep(0.05)  # file times have the kernel clock's tick as resolution
    shutil.copy2(other, ckpt)  # `cp -p`: same path, size and mtime
    second = step.model_for(ARCH, str(ckpt), torch.device("cpu"), False, "m", "sha-old")
    assert second is not first and loads == [b"old weights", b"new weights"]
    third = step.model_for(ARCH, str(ckpt), torch.device("cpu"), False, "m", "sha-new")
    assert third is not second and len(loads) == 3  # the listing says other content: not the cached model


# --- the step: provenance, and the claim held until the Parquet file is written ---------------


def test_embedding_file_records_what_ran_and_the_claim_covers_the_write(monkeypatch, tmp_path):

    import open_clip
    import pandas as pd
    from PIL import Image

    from clipdyn import io
    from clipdyn.config.study import Preprocess
    from clipdyn.data.pixels import build_pixel_cache
    from clipdyn.embed import devices
    from clipdyn.fixtures.studies import make_checkpoint
    from clipdyn.io import read_meta

    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
        rows.append({"image_id": f"i{i}", "path": str(p), "member": "", "label": 0})
    build_pixel_cache(pd.DataFrame(rows), Preprocess(32), tmp_path / "px.npy", tmp_path / "px.parquet")
    ckpt = tmp_path / "epoch_1.pt"
    make_checkpoint(ckpt, 1, seed=2)

    events = []

    @contextlib.contextmanager
    def claim(lock_dir=None, log=print, prefer=None):
        events.append(("claim", prefer))
        yield torch.device("cpu")
        events.append("release")
    real_write = io.write_embeddings

    def write(*a, **kw):
        events.append("write")
        return real_write(*a, **kw)
    monkeypatch.setattr(devices, "claim_device", claim)
    monkeypatch.setattr(io, "write_embeddings", write)
    out = tmp_path / "emb.parquet"
    step.embed_images(checkpoint=str(ckpt), pixels=str(tmp_path / "px.npy"),
                       pixel_index=str(tmp_path / "px.parquet"), out=str(out), arch=ARCH, allow_pickle=False,
                       spatial=False, batch_size=4, precision="auto", model_configs=[],
                       provenance={"model": "m", "epoch": 1}, threads=1)
    assert events == [("claim", None), "write", "release"]
    meta = read_meta(out)
    assert meta["torch_version"] == torch.__version__ and meta["open_clip_version"] == open_clip.__version__
    assert meta["device"] == "cpu" and meta["device_name"]
    assert (meta["batch_size"], meta["effective_batch_size"]) == (4, 4)
    assert (meta["precision"], meta["precision_setting"], meta["projection"]) == ("fp32", "auto", "fp32")


def test_job_memory_follows_the_checkpoint_size():
    from clipdyn.embed.memory import FALLBACK_MEM_MB, JOB_BASE_MB, job_mem_mb

    vit_h_adamw = 11_830_000_000  # ViT-H-14 with AdamW state, about 11.8 GB
    assert job_mem_mb(vit_h_adamw) == JOB_BASE_MB + 11282
    assert job_mem_mb(vit_h_adamw, attempt=2) == 2 * (JOB_BASE_MB + 11282)
    assert job_mem_mb(1) == JOB_BASE_MB + 1
    assert job_mem_mb(None) == job_mem_mb(0) == FALLBACK_MEM_MB
    assert job_mem_mb(vit_h_adamw, configured=20000) == 20000
