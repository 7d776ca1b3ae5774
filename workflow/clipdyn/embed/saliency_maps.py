"""How a CLIP ViT's saliency map is formed: named variants, computed while embedding.

Each variant turns one forward pass of an open_clip ``VisionTransformer`` into a (G, G) map
over its patch grid (row-major, as the patches are laid out), higher = more salient:

- ``cls_attention`` (default): the last block's attention from the class token to each
  patch, averaged over heads: the weights with which the pooled embedding (the class token
  read out after that block) mixes the patches (Caron et al. 2021, "Emerging properties
  in self-supervised vision transformers", Fig. 1; Chefer et al. 2021 use the same raw
  attention as their "raw attention" baseline). Non-negative, sums to at most 1 over patches.
- ``attention_rollout``: Abnar & Zuidema (2020), "Quantifying attention flow in
  transformers": per block the head-averaged attention A, plus the residual as identity,
  0.5 A + 0.5 I (rows renormalised), multiplied over all blocks from the first to the last;
  the class token's row over the patches.
- ``patch_cosine``: cosine similarity of each projected, post-``ln_post`` patch token with
  the pooled image embedding. CLIP Surgery (Li et al. 2023, arXiv 2304.05653; code
  xmed-lab/CLIP_Surgery) reports that CLIP's patch tokens give "opposite visualisations"
  (background above foreground), which can flip the sign of a saliency correlation; kept
  as a named variant for comparison with earlier runs.

Gradient-based maps (Chefer et al. 2021, hila-chefer/Transformer-MM-Explainability) and
CLIP Surgery's feature surgery both explain an image-*text* score; the study's saliency is
text-free, so they are not offered.

The attention weights are recomputed from each block's attention input (captured with a
forward pre-hook on its ``nn.MultiheadAttention``), in float32, with the block's own
``in_proj`` weights: softmax(q k^T / sqrt(d)) per head, as ``nn.MultiheadAttention``
computes them. The model's forward pass itself is unchanged.
"""

from __future__ import annotations

import math
from typing import List, Tuple

from ..config.specs import EmbeddingSettings

__all__ = ["SALIENCY_MAPS", "DEFAULT_SALIENCY_MAP", "check_saliency_map", "attention_weights",
           "forward_with_maps"]

#: the named variants, in the order they are documented
SALIENCY_MAPS = ("cls_attention", "attention_rollout", "patch_cosine")

#: the default variant (config key ``embedding.saliency_map``, whose default lives in the typed
#: spec; the reason for it is in config/README.md)
DEFAULT_SALIENCY_MAP = EmbeddingSettings.saliency_map


def check_saliency_map(visual, method: str) -> None:
    """Raise a ValueError naming what is missing when ``visual`` cannot give ``method``'s maps."""
    import torch

    if method not in SALIENCY_MAPS:
        raise ValueError(f"unknown saliency map {method!r}; embedding.saliency_map must be one of "
                         f"{', '.join(SALIENCY_MAPS)}")
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(visual, "conv1"):
        raise ValueError(f"saliency map {method!r} needs an open_clip VisionTransformer image tower, "
                         f"got {type(visual).__name__}")
    if method == "patch_cosine":
        if getattr(visual, "proj", None) is None or not hasattr(visual, "output_tokens"):
            raise ValueError("saliency map 'patch_cosine' needs an open_clip VisionTransformer with a projection")
        return
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise ValueError(f"saliency map {method!r} reads the class token's attention, but this image tower pools "
                         f"with {getattr(visual, 'pool_type', '?')!r}"
                         f"{' and an attentional pooler' if getattr(visual, 'attn_pool', None) is not None else ''}; "
                         "use embedding.saliency_map: patch_cosine for it")
    for i, blk in enumerate(blocks):
        if not isinstance(getattr(blk, "attn", None), torch.nn.MultiheadAttention):
            raise ValueError(f"saliency map {method!r}: block {i} of the image tower has no nn.MultiheadAttention "
                             f"({type(getattr(blk, 'attn', None)).__name__}); use embedding.saliency_map: "
                             "patch_cosine for this architecture")


def attention_weights(mha, x):
    """Per-head attention weights (N, H, L, L), float32, of ``mha`` (an ``nn.MultiheadAttention``
    used as self-attention) on its input ``x``: softmax(q k^T / sqrt(head_dim)) with q and k
    from ``mha.in_proj_weight``/``in_proj_bias``; rows sum to 1. ``x`` is (N, L, D) when
    ``mha.batch_first`` else (L, N, D)."""
    import torch

    if not mha.batch_first:
        x = x.transpose(0, 1)
    d, h = mha.embed_dim, mha.num_heads
    w = mha.in_proj_weight.float()
    b = mha.in_proj_bias.float() if mha.in_proj_bias is not None else None
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        q = torch.nn.functional.linear(x, w[:d], None if b is None else b[:d])
        k = torch.nn.functional.linear(x, w[d:2 * d], None if b is None else b[d:2 * d])
        n, length = x.shape[0], x.shape[1]
        q = q.reshape(n, length, h, d // h).transpose(1, 2)
        k = k.reshape(n, length, h, d // h).transpose(1, 2)
        return torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d // h), dim=-1)


def _grid(n_patches: int) -> int:
    g = int(round(math.sqrt(n_patches)))
    if g * g != n_patches:
        raise ValueError(f"{n_patches} patch tokens do not form a square grid")
    return g


def forward_with_maps(visual, x, method: str = DEFAULT_SALIENCY_MAP, project=None) -> Tuple["object", "object"]:
    """Run ``visual`` (an open_clip VisionTransformer) on the normalised batch ``x`` (N, 3, S, S).

    Returns ``(pooled, maps)``: ``pooled`` exactly as ``visual(x)`` gives it (the unnormalised
    image embedding) and ``maps`` (N, G, G) float32, the ``method`` saliency map of each image
    (see the module docstring). Runs under whatever grad/autocast mode the caller set.
    ``project``: the tower's projection, taken out of it by ``clipdyn.embed.precision.projection_outside``
    (``visual.proj`` is None then); it is applied here, in fp32 with autocast disabled, to the
    pooled embedding (returned float32) and to the patch tokens of ``patch_cosine``.
    """
    import torch

    if project is None:
        check_saliency_map(visual, method)  # (with ``project`` the caller checked before taking it out)
    off = torch.autocast(device_type=x.device.type, enabled=False)
    if method == "patch_cosine":
        saved = visual.output_tokens
        visual.output_tokens = True
        try:
            pooled, tokens = visual(x)
        finally:
            visual.output_tokens = saved
        with off:
            if project is not None:
                pooled = project(pooled.float())
                proj_tokens = project(tokens.float())
            else:
                proj_tokens = tokens.float() @ visual.proj.float()
            sim = torch.nn.functional.cosine_similarity(proj_tokens, pooled.float().unsqueeze(1), dim=-1)
        g = _grid(sim.shape[1])
        return pooled, sim.reshape(-1, g, g)

    blocks = list(visual.transformer.resblocks)
    state: dict = {}

    def last_block(mha, args):
        state["cls"] = attention_weights(mha, args[0]).mean(dim=1)[:, 0, :]

    def every_block(mha, args):
        a = attention_weights(mha, args[0]).mean(dim=1)
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        state["rollout"] = a if "rollout" not in state else a @ state["rollout"]

    hooks: List = []
    try:
        if method == "cls_attention":
            hooks.append(blocks[-1].attn.register_forward_pre_hook(last_block))
        else:
            hooks += [blk.attn.register_forward_pre_hook(every_block) for blk in blocks]
        out = visual(x)
    finally:
        for hk in hooks:
            hk.remove()
    pooled = out[0] if isinstance(out, tuple) else out
    if project is not None:
        with off:
            pooled = project(pooled.float())
    row = state["cls"] if method == "cls_attention" else state["rollout"][:, 0, :]
    patches = row[:, 1:]  # the class token's own weight left out
    g = _grid(patches.shape[1])
    return pooled, patches.reshape(-1, g, g)
