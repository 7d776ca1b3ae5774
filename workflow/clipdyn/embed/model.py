"""Checkpoints in, models out: open_clip's factory builds the architecture, the checkpoint's weights
are loaded into it (``open_clip.load_checkpoint``'s steps).

Training checkpoints (``{'epoch', 'state_dict' with 'module.' prefix, 'optimizer', ...}``), bare
state dicts and ``.safetensors`` all load. ``torch.load`` runs with ``weights_only=True`` unless a
model's config opts in to pickles (``allow_pickle``), because unpickling a file from the internet
runs its code, and with ``mmap=True``: the file is mapped, not read, and the weights are assigned to
the model as they are (``load_state_dict(assign=True)``), so only the weights' pages are ever read
and the optimizer state of a training checkpoint (2/3 of a ViT-H-14 checkpoint with AdamW) is never
read into memory nor moved to the GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Optional, Sequence

from . import MODEL_CONFIG_DIR


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and what to do."""


def register_model_configs(paths: Sequence[str]) -> None:
    """Make extra open_clip JSON model configs (files or folders) known to open_clip."""
    import open_clip

    for p in [MODEL_CONFIG_DIR, *map(Path, paths)]:
        if str(p) not in map(str, open_clip.factory._MODEL_CONFIG_PATHS):
            open_clip.add_model_config(p)


def _first_mismatch(model, state_dict) -> Optional[str]:
    """The first key or shape by which ``state_dict`` differs from ``model``'s, or None."""
    own = model.state_dict()
    for k, v in own.items():
        if k not in state_dict:
            return f"key {k!r} expected (shape {tuple(v.shape)}) but not in the checkpoint"
        if tuple(state_dict[k].shape) != tuple(v.shape):
            return f"key {k!r}: expected shape {tuple(v.shape)}, found {tuple(state_dict[k].shape)}"
    for k in state_dict:
        if k not in own:
            return f"unexpected key {k!r} in the checkpoint"
    return None


@contextlib.contextmanager
def _skip_random_init():
    """Make ``torch.nn.init``'s in-place initialisers no-ops while a model is built.

    The weights are overwritten by a ``strict=True`` checkpoint load right after, so drawing them at
    random first is wasted work: 3.1 s of ViT-B-16's 3.5 s ``create_model`` on this CPU, 0.4 s
    without (the same trick as transformers' ``no_init_weights``).
    """
    import torch

    saved = {}
    for name in dir(torch.nn.init):
        fn = getattr(torch.nn.init, name)
        if name.endswith("_") and not name.startswith("_") and callable(fn):
            saved[name] = fn
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _is_safetensors(path) -> bool:
    """Whether the file is in the safetensors format (an 8-byte header length, then a JSON header), whatever
    its name: ``results/checkpoints/<m>/epoch_<e>.pt`` may link to a final model's ``open_clip_model.safetensors``."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and head[:2] != b"PK"


def read_state_dict(path: str, weights_only: bool = True) -> dict:
    """The model weights of a checkpoint file, memory-mapped (open_clip's ``load_state_dict``
    with ``mmap=True``): the tensors are views of the mapped file, nothing is read until used.

    A training checkpoint's other entries (optimizer state, ...) are dropped unread; a
    ``module.`` prefix (DistributedDataParallel) is stripped. Files in torch's legacy (pre-1.6,
    non-zip) format cannot be mapped and are read whole.
    """
    import torch

    if str(path).endswith(".safetensors") or _is_safetensors(path):
        from safetensors.torch import load_file  # weights only by construction

        checkpoint = load_file(path, device="cpu")
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError as err:
            if "mmap can only be used with files saved with" not in str(err):
                raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        state_dict = checkpoint["state_dict"]
    elif isinstance(checkpoint, torch.jit.ScriptModule):
        state_dict = checkpoint.state_dict()
        for key in ["input_resolution", "context_length", "vocab_size"]:
            state_dict.pop(key, None)
    else:
        state_dict = checkpoint
    del checkpoint  # the optimizer state's tensors: mapped, never read
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"no state dict in the checkpoint (found {type(state_dict).__name__})")
    if next(iter(state_dict)).startswith("module"):
        state_dict = {k[7:]: v for k, v in state_dict.items()}
    return state_dict


def load_checkpoint(model, path: str, weights_only: bool = True):
    """``open_clip.load_checkpoint(model, path, strict=True)`` (the same conversions of
    older and third-party layouts), but memory-mapped and assigning the checkpoint's tensors
    to the model instead of copying them: peak host memory is about the weights' size, not
    the file's plus the model's. Tensors whose dtype differs from the model's are converted."""
    from open_clip.factory import (
        convert_state_dict,
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    state_dict = read_state_dict(path, weights_only=weights_only)
    state_dict = convert_state_dict(model, state_dict)
    if "positional_embedding" in state_dict and not hasattr(model, "positional_embedding"):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    for name in ("logit_scale", "logit_bias"):
        own = getattr(model, name, None)
        if name in state_dict and own is not None and own.ndim != state_dict[name].ndim:
            state_dict[name] = state_dict[name].reshape(own.shape)
    if "logit_bias" not in state_dict and getattr(model, "logit_bias", None) is not None:
        import torch

        state_dict["logit_bias"] = torch.zeros_like(state_dict["logit_scale"])
    position_id_key = "text.transformer.embeddings.position_ids"
    if position_id_key in state_dict and not hasattr(model, position_id_key):
        del state_dict[position_id_key]
    resize_pos_embed(state_dict, model)
    resize_text_pos_embed(state_dict, model)
    own = model.state_dict()
    for k, v in state_dict.items():
        if k in own and v.dtype != own[k].dtype and v.is_floating_point():
            state_dict[k] = v.to(own[k].dtype)
    del own
    return model.load_state_dict(state_dict, strict=True, assign=True)


#: host memory of an embedding job besides the weights: torch, CUDA's context, open_clip, a few pinned
#: batches (measured: 1.26 GB for the worker of a small model on the CPU; ``benchmarks/gpu_check.py``)


def load_model(arch: str, checkpoint: str, device="cpu", allow_pickle: bool = False,
               what: str = "", precision: str = "fp32"):
    """Build ``arch`` and load ``checkpoint`` into it; returns the model in eval mode.

    ``what`` names the model and epoch in error messages.
    """
    import open_clip

    ckpt = Path(checkpoint)
    where = f"{what + ': ' if what else ''}checkpoint {checkpoint}"
    if ckpt.is_dir():
        raise CheckpointError(f"{where} is a directory. Sharded (e.g. FSDP) checkpoints are not supported: "
                              "consolidate it into one file (torch.distributed.checkpoint.format_utils."
                              "dcp_to_torch_save) and point the config's checkpoint template at that file.")
    if not ckpt.exists():
        raise CheckpointError(f"{where} does not exist (a dangling link into the HF cache?); "
                              "rerun to download it again")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "no pretrained weights" noise
    with _skip_random_init():  # every parameter and buffer is loaded below (strict=True)
        model = open_clip.create_model(arch, device="cpu", precision=precision)
    try:
        load_checkpoint(model, str(ckpt), weights_only=not allow_pickle)
    except Exception as err:
        msg = str(err)
        if "Weights only load failed" in msg:
            refused = re.search(r"GLOBAL ([\w.]+)", msg)
            if refused:  # a pickled object torch's safe unpickler does not allow
                raise CheckpointError(
                    f"{where} contains pickled Python objects ({refused.group(1)}), which are refused by default "
                    "because loading them runs code from the file. If you trust the repo, set `allow_pickle: true` "
                    "for this model in the config.") from err
            operand = re.search(r"Unsupported operand[^\n]*", msg)  # not a pickle at all: garbage, an HTML page
            msg = f"not a PyTorch checkpoint: {operand.group(0) if operand else 'unreadable pickle stream'}"
        else:
            try:  # a readable state dict that does not fit: name the first differing key
                sd = read_state_dict(str(ckpt), weights_only=not allow_pickle)
                mismatch = _first_mismatch(model, sd)
            except Exception:
                mismatch = None
            if mismatch:
                raise CheckpointError(f"{where} does not fit architecture {arch!r}: {mismatch}. "
                                      "Check `arch` for this model in the config.") from None
        raise CheckpointError(f"{where} cannot be read ({type(err).__name__}: {msg.splitlines()[0] if msg else ''}); "
                              "it is truncated or corrupt. Delete it from the HF cache "
                              "(`hf cache rm hf://models/<repo>/<file>`) and rerun to download it again.") from err
    model = model.to(device).eval()
    return model


def logit_scale(model) -> float:
    """The checkpoint's learned logit scale as a multiplier (``exp(logit_scale)``)."""
    return float(model.logit_scale.detach().float().exp().item())


def checkpoint_commit(checkpoint: str) -> Optional[str]:
    """The Hub commit a checkpoint in the HF cache (or a link to one) came from (``.../snapshots/<commit>/...``)."""
    parts = Path(checkpoint).parts
    if "snapshots" not in parts:
        try:
            parts = Path(os.readlink(checkpoint)).parts
        except OSError:
            return None
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
