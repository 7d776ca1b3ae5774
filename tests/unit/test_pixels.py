"""The pixel cache: decoding once gives what open_clip's own preprocessing gives, and the same embeddings."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipdyn.config.study import Preprocess
from clipdyn.data.manifests import stratified_subset
from clipdyn.data.pixels import build_pixel_cache, open_pixels


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, (w, h) in enumerate([(50, 40), (33, 61), (64, 64), (40, 90), (120, 70)]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        rows.append({"image_id": f"i{i}", "path": str(p), "member": "", "label": i % 2})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_equals_open_clip_preprocessing(folder, tmp_path, workers):
    import open_clip
    import torch

    pp = Preprocess(32, "bicubic", "shortest")
    out = build_pixel_cache(folder, pp, tmp_path / "px.npy", tmp_path / "px.parquet", workers=workers, chunk=2)
    assert out == {"n": 5, "skipped": 0}
    arr, ids, meta = open_pixels(tmp_path / "px.npy", tmp_path / "px.parquet")
    assert list(ids) == list(folder["image_id"]) and meta["preprocess"] == pp.id
    tf = open_clip.image_transform(32, is_train=False)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(3, 1, 1)
    for i, p in enumerate(folder["path"]):
        direct = tf(Image.open(p).convert("RGB"))
        cached = (torch.from_numpy(np.array(arr[i])).permute(2, 0, 1).float() / 255 - mean) / std
        assert torch.allclose(direct, cached, atol=1e-6)


def test_embeddings_from_cache_equal_direct(folder, tmp_path):
    import open_clip
    import torch

    from clipdyn.embed.encode import embed_pixels
    from clipdyn.embed.model import register_model_configs

    register_model_configs([])
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("clipdyn-tiny")
    model.eval()
    pp = Preprocess(32)
    build_pixel_cache(folder, pp, tmp_path / "px.npy", tmp_path / "px.parquet")
    arr, _, _ = open_pixels(tmp_path / "px.npy", tmp_path / "px.parquet")
    X, maps = embed_pixels(model, arr, "cpu", batch_size=2, spatial=True, log=lambda m: None)
    with torch.no_grad():
        direct = model.encode_image(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in folder["path"]]))
    np.testing.assert_allclose(X, direct.numpy(), rtol=1e-5, atol=1e-5)
    assert maps.shape == (5, 4, 4) and np.all(np.abs(maps) <= 1 + 1e-5)


def test_bad_image_error_names_the_file_and_skip_lists_it(folder, tmp_path):
    from clipdyn.data.images import BadImageError

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    df = pd.concat([folder, pd.DataFrame([{"image_id": "bad", "path": str(bad), "member": "", "label": 0}])],
                   ignore_index=True)
    with pytest.raises(BadImageError, match="broken.png"):
        build_pixel_cache(df, Preprocess(32), tmp_path / "a.npy", tmp_path / "a.parquet")
    assert not (tmp_path / "a.npy").exists() and not list(tmp_path.glob(".a.npy*"))
    out = build_pixel_cache(df, Preprocess(32), tmp_path / "b.npy", tmp_path / "b.parquet", on_bad_image="skip",
                            log=lambda m: None)
    arr, ids, meta = open_pixels(tmp_path / "b.npy", tmp_path / "b.parquet")
    assert out == {"n": 5, "skipped": 1} and "bad" not in ids and len(arr) == 5
    assert meta["n_skipped"] == 1 and meta["skipped"][0]["image_id"] == "bad"


def test_stratified_subset_is_deterministic_and_balanced():
    df = pd.DataFrame({"image_id": [f"x{i}" for i in range(100)], "label": [i % 4 for i in range(100)]})
    a = stratified_subset(df, 20, seed=1)
    b = stratified_subset(df, 20, seed=1)
    assert a.equals(b) and len(a) == 20
    assert a["label"].value_counts().tolist() == [5, 5, 5, 5]
    assert not a.equals(stratified_subset(df, 20, seed=2))
    # a class smaller than its quota gives its share to the others
    skew = pd.DataFrame({"image_id": [f"y{i}" for i in range(43)], "label": [0] * 40 + [1] * 3})
    s = stratified_subset(skew, 10, seed=0)
    assert len(s) == 10 and (s["label"] == 1).sum() == 3
    assert stratified_subset(df, None).equals(df) and len(stratified_subset(df, 1000)) == 100


def test_compiled_image_tower_gives_the_same_embeddings(folder, tmp_path):
    """``embedding: compile: true`` (torch.compile of the image tower) agrees with eager mode."""
    import open_clip
    import torch

    from clipdyn.embed.encode import embed_pixels
    from clipdyn.embed.model import register_model_configs

    register_model_configs([])
    torch.manual_seed(0)
    model = open_clip.create_model("clipdyn-tiny").eval()
    build_pixel_cache(folder, Preprocess(32), tmp_path / "px.npy", tmp_path / "px.parquet")
    arr, _, _ = open_pixels(tmp_path / "px.npy", tmp_path / "px.parquet")
    eager, eager_maps = embed_pixels(model, arr, "cpu", batch_size=4, spatial=True, log=lambda m: None)
    comp, comp_maps = embed_pixels(model, arr, "cpu", batch_size=4, spatial=True, log=lambda m: None, compile=True)
    np.testing.assert_allclose(comp, eager, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(comp_maps, eager_maps, rtol=1e-4, atol=1e-4)
    plain, _ = embed_pixels(model, arr, "cpu", batch_size=4, log=lambda m: None, compile=True)
    np.testing.assert_allclose(plain, eager, rtol=1e-4, atol=1e-4)
