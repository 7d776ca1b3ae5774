"""CLIP saliency-map variants (clipdyn.embed.saliency_maps) on tiny open_clip ViTs.

Each variant is checked against an independent computation (torch's own
``nn.MultiheadAttention(need_weights=True)`` weights, the numpy cosine map), and the
attention variants against a model whose weights are set by hand so that the class token
attends to bright patches: the bright object must be where the map peaks.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from clipdyn.embed.encode import embed_pixels  # noqa: E402
from clipdyn.embed.model import register_model_configs  # noqa: E402
from clipdyn.embed.saliency_maps import DEFAULT_SALIENCY_MAP, SALIENCY_MAPS, check_saliency_map, forward_with_maps  # noqa: E402
from clipdyn.metrics.saliency_alignment import patch_similarity_map  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    register_model_configs([])
    torch.manual_seed(0)
    return open_clip.create_model("clipdyn-tiny").eval()  # 32 px, 8 px patches: a 4 x 4 grid, 2 blocks


def _batch(n=3, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, 32, 32)).astype(np.float32))


def _reference_attention(visual, x):
    """Head-averaged attention of every block, from torch's own MultiheadAttention weights."""
    h = visual._embeds(x)
    out = []
    for blk in visual.transformer.resblocks:
        q = blk.ln_1(h)
        _, w = blk.attn(q, q, q, need_weights=True, average_attn_weights=True)
        out.append(w)
        h = blk(h)
    return out


def test_cls_attention_is_the_last_blocks_class_row(tiny):
    x = _batch()
    with torch.no_grad():
        pooled, maps = forward_with_maps(tiny.visual, x, "cls_attention")
        ref = _reference_attention(tiny.visual, x)[-1][:, 0, 1:].reshape(-1, 4, 4)
        np.testing.assert_allclose(pooled.numpy(), tiny.visual(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    assert maps.shape == (3, 4, 4) and (maps >= 0).all() and (maps.sum(dim=(1, 2)) <= 1 + 1e-6).all()


def test_attention_rollout_is_abnar_zuidema(tiny):
    x = _batch()
    with torch.no_grad():
        _, maps = forward_with_maps(tiny.visual, x, "attention_rollout")
        attn = _reference_attention(tiny.visual, x)
    # by hand: R = (0.5 A_L + 0.5 I) ... (0.5 A_1 + 0.5 I), rows of each factor renormalised
    r = np.stack([np.eye(17)] * 3)
    for a in attn:
        f = 0.5 * a.numpy() + 0.5 * np.eye(17)
        r = (f / f.sum(-1, keepdims=True)) @ r
    np.testing.assert_allclose(maps.numpy(), r[:, 0, 1:].reshape(-1, 4, 4), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        last = forward_with_maps(tiny.visual, x, "cls_attention")[1]
    assert not np.allclose(maps.numpy(), last.numpy())


def test_patch_cosine_equals_the_numpy_map(tiny):
    x = _batch()
    with torch.no_grad():
        pooled, maps = forward_with_maps(tiny.visual, x, "patch_cosine")
        tiny.visual.output_tokens = True
        try:
            _, tokens = tiny.visual(x)
        finally:
            tiny.visual.output_tokens = False
        proj = (tokens @ tiny.visual.proj).numpy()
    for i in range(len(x)):
        np.testing.assert_allclose(maps[i].numpy(), patch_similarity_map(proj[i], pooled[i].numpy()), atol=1e-5)
    assert tiny.visual.output_tokens is False  # left as found


@pytest.fixture(scope="module")
def bright_patch_model():
    """A 2-block ViT whose class token attends, in the last block's head 0, to bright patches.

    Every block's output projections are zero (blocks pass the residual through), the patch
    embedding's channel 0 is the patch's mean normalised pixel value, channel 1 a constant
    (so layer norm keeps the brightness's sign and order), channel 2 marks the class token;
    the last block's query reads channel 2 and its key channel 0."""
    register_model_configs([])
    model = open_clip.create_model("clipdyn-tiny").eval()
    v = model.visual
    with torch.no_grad():
        for p in v.parameters():
            p.zero_()
        for m in v.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.fill_(1.0)
        v.conv1.weight[0] = 1.0 / (3 * 8 * 8)
        v.positional_embedding[:, 1] = 1.0
        v.class_embedding[2] = 1.0
        w = v.transformer.resblocks[-1].attn.in_proj_weight  # rows: q (64), k (64), v (64)
        w[0, 2] = 8.0          # head 0 query <- class marker
        w[64 + 0, 0] = 8.0     # head 0 key   <- brightness
        v.proj[0, 0] = 1.0
    return model


@pytest.mark.parametrize("method", ["cls_attention", "attention_rollout"])
@pytest.mark.parametrize("cells", [[(0, 0)], [(2, 1)], [(3, 3), (3, 2)]])
def test_attention_maps_peak_on_the_salient_object(bright_patch_model, method, cells):
    model = bright_patch_model
    img = np.zeros((1, 3, 32, 32), np.float32) - 1.5   # dark background (normalised pixels)
    for r, c in cells:
        img[0, :, 8 * r:8 * r + 8, 8 * c:8 * c + 8] = 1.8  # a bright object covering these patches
    with torch.no_grad():
        _, maps = forward_with_maps(model.visual, torch.from_numpy(img), method)
    m = maps[0].numpy()
    on = np.zeros((4, 4), bool)
    for r, c in cells:
        on[r, c] = True
    assert m[on].min() > m[~on].max() + 1e-3, m


def test_unknown_or_unsupported_variants_are_named(tiny):
    with pytest.raises(ValueError, match="unknown saliency map 'gradcam'.*cls_attention"):
        check_saliency_map(tiny.visual, "gradcam")
    register_model_configs([])
    avg = open_clip.create_model("clipdyn-tiny").visual
    avg.pool_type = "avg"
    with pytest.raises(ValueError, match="pools with 'avg'.*patch_cosine"):
        check_saliency_map(avg, "cls_attention")
    check_saliency_map(avg, "patch_cosine")  # needs no class token
    with pytest.raises(ValueError, match="VisionTransformer"):
        check_saliency_map(torch.nn.Linear(2, 2), "attention_rollout")
    assert DEFAULT_SALIENCY_MAP in SALIENCY_MAPS


@pytest.mark.parametrize("method", SALIENCY_MAPS)
def test_embed_pixels_returns_the_chosen_variant(tiny, method):
    pixels = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    X, maps = embed_pixels(tiny, pixels, "cpu", batch_size=2, spatial=True, saliency_map=method, log=lambda m: None)
    plain, none = embed_pixels(tiny, pixels, "cpu", batch_size=2, log=lambda m: None)
    assert none is None and maps.shape == (5, 4, 4) and maps.dtype == np.float32
    np.testing.assert_allclose(X, plain, rtol=1e-5, atol=1e-6)  # the maps do not change the embedding
    mean = torch.tensor(tiny.visual.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(tiny.visual.image_std).view(1, 3, 1, 1)
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        _, ref = forward_with_maps(tiny.visual, x, method)
    np.testing.assert_allclose(maps, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_config_key_lists_exactly_the_variants():
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    schema = yaml.safe_load((repo / "workflow" / "schemas" / "config.schema.yaml").read_text())
    key = schema["properties"]["embedding"]["properties"]["saliency_map"]
    assert tuple(key["enum"]) == SALIENCY_MAPS
