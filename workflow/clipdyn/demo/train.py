"""Contrastive training of the tiny demo CLIP models on the shape world, on the CPU.

Three open_clip architectures of increasing size stand in for base, large and huge:
``clipdyn-demo-s``, ``clipdyn-demo-m`` and ``clipdyn-demo-l`` (JSON configs in
``clipdyn/embed/model_configs``; CLIP BPE tokenizer, vocab 49408). Training is the real
thing in miniature: open_clip's :class:`~open_clip.ClipLoss`, AdamW with
open_clip_train's weight-decay exclusions, linear warm-up then cosine decay, and a
checkpoint after every epoch in open_clip_train's layout::

    {"epoch": n, "name": run_name,
     "state_dict": {"module." + k: v},   # as saved from a DDP-wrapped model
     "optimizer": optimizer.state_dict()}

so ``open_clip.create_model_and_transforms(arch, pretrained="epoch_n.pt")`` loads
it with ``weights_only=True``.

After each epoch a probe (:func:`probe`) prints zero-shot accuracy on the held-out
set and the shape bias on the cue-conflict set, computed with the study's metric
functions (``clipdyn.metrics``) on embeddings computed in place, so the numbers
should match what the workflow computes from its cached embeddings of the same
published images.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import open_clip
import torch

from ..embed import MODEL_CONFIG_DIR  # noqa: E402
from . import world

#: the demo architectures, smallest first
ARCHS = ("clipdyn-demo-s", "clipdyn-demo-m", "clipdyn-demo-l")


def register_model_configs() -> List[str]:
    """Make the demo architectures known to open_clip; returns their names."""
    known = set(open_clip.list_models())
    for arch in ARCHS:
        if arch not in known:
            open_clip.add_model_config(MODEL_CONFIG_DIR / f"{arch}.json")
    return list(ARCHS)


@dataclass(frozen=True)
class Schedule:
    """Optimisation settings. The learning-rate schedule is a function of the global
    step only, so resuming from epoch n continues exactly where the run stopped."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    batch_size: int = 128
    warmup_steps: int = 30
    #: the cosine decays to ``lr * final_lr_fraction`` at this many steps and stays there
    decay_steps: int = 1000
    final_lr_fraction: float = 0.1

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        t = min(1.0, (step - self.warmup_steps) / max(1, self.decay_steps - self.warmup_steps))
        lo = self.lr * self.final_lr_fraction
        return lo + 0.5 * (self.lr - lo) * (1 + math.cos(math.pi * t))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> List[dict]:
    # open_clip_train: no decay on gains, biases, norms, the logit scale
    def exclude(n: str, p: torch.Tensor) -> bool:
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def make_optimizer(model: torch.nn.Module, schedule: Schedule) -> torch.optim.Optimizer:
    return torch.optim.AdamW(_param_groups(model, schedule.weight_decay), lr=schedule.lr,
                             betas=(0.9, 0.98), eps=1e-6, fused=True)


def to_tensor(images: np.ndarray, model: torch.nn.Module) -> torch.Tensor:
    """uint8 (N, H, W, 3) at the model's image size -> normalised float (N, 3, H, W).

    Equivalent to the model's open_clip preprocessing for images already at its size
    (Resize and CenterCrop are then identities).
    """
    cfg = model.visual.preprocess_cfg
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    run_name: str) -> Path:
    """Write an open_clip_train style checkpoint (``module.`` keys, optimizer state)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"module." + k: v.detach().clone() for k, v in model.state_dict().items()}
    # torch.save names the archive's root folder after the file, so write under the final name
    torch.save({"epoch": epoch, "name": run_name, "state_dict": state, "optimizer": optimizer.state_dict()},
               path)
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load model and optimizer state from a training checkpoint; returns its epoch."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k[len("module."):]: v for k, v in ckpt["state_dict"].items()})
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["epoch"])


@dataclass
class ProbeData:
    """Held-out and cue-conflict images for the per-epoch probe."""

    images: np.ndarray
    labels: np.ndarray
    conflict_images: np.ndarray
    conflict_shape: np.ndarray
    conflict_texture: np.ndarray
    classnames: Sequence[str] = world.SHAPES
    templates: Sequence[str] = world.TEMPLATES


@torch.no_grad()
def probe(model: torch.nn.Module, tokenizer, data: ProbeData) -> Dict[str, float]:
    """Zero-shot top-1 accuracy on the held-out images and shape bias on the cue-conflict
    images, with the study's metric functions (``clipdyn.metrics``) on freshly computed
    embeddings. Decisions on cue-conflict images are argmax over the demo classes."""
    from ..metrics import shape_bias, topk_accuracy, zero_shot_logits

    model.eval()
    classifier = open_clip.build_zero_shot_classifier(
        model, tokenizer, data.classnames, [lambda c, t=t: t.format(c=c) for t in data.templates],
        num_classes_per_batch=None, device="cpu", use_tqdm=False)
    weights = classifier.T.numpy()
    scale = float(model.logit_scale.exp())

    def logits(images: np.ndarray) -> np.ndarray:
        return zero_shot_logits(model.encode_image(to_tensor(images, model)).numpy(), weights, scale)

    acc = topk_accuracy(logits(data.images), data.labels, ks=(1,))["top1"]
    names = np.asarray(data.classnames, dtype=object)
    decided = names[logits(data.conflict_images).argmax(axis=1)]
    bias = shape_bias(names[data.conflict_shape], names[data.conflict_texture], decided)
    model.train()
    return {
        "zeroshot_acc": acc,
        "shape_bias": bias["shape_bias"],
        "cue_conflict_shape_accuracy": bias["shape_accuracy"],
        "cue_conflict_texture_accuracy": bias["texture_accuracy"],
    }


def train_run(
    arch: str,
    run_name: str,
    out_dir: os.PathLike,
    images: np.ndarray,
    captions: Sequence[str],
    epochs: int,
    schedule: Schedule = Schedule(),
    seed: int = 0,
    resume: Optional[os.PathLike] = None,
    probe_data: Optional[ProbeData] = None,
    log: Callable[[str], None] = print,
    on_checkpoint: Optional[Callable[[int, Path], None]] = None,
) -> List[dict]:
    """Train ``arch`` up to epoch ``epochs``, writing ``out_dir/epoch_{n}.pt`` after each epoch.

    Starts from scratch (seeded) or, with ``resume``, from that checkpoint's model and
    optimizer state and epoch. Batches of epoch n come from a permutation seeded by
    (seed, n), so a resumed run sees the same data as an uninterrupted one. Returns one
    dict per trained epoch: epoch, loss, lr, and the probe's numbers. ``on_checkpoint(epoch,
    path)`` is called after each checkpoint is saved (the demo's local run publishes it).
    """
    register_model_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch)
    tokenizer = open_clip.get_tokenizer(arch)
    optimizer = make_optimizer(model, schedule)
    start = 0
    if resume is not None:
        start = load_checkpoint(Path(resume), model, optimizer)
    loss_fn = open_clip.ClipLoss()
    x_all = to_tensor(images, model)
    t_all = tokenizer(list(captions))
    n = len(x_all)
    steps_per_epoch = n // schedule.batch_size
    history = []
    model.train()
    cpu0 = time.process_time()
    for epoch in range(start + 1, epochs + 1):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
        total = 0.0
        for i in range(steps_per_epoch):
            step = (epoch - 1) * steps_per_epoch + i
            lr = schedule.lr_at(step)
            for g in optimizer.param_groups:
                g["lr"] = lr
            idx = order[i * schedule.batch_size:(i + 1) * schedule.batch_size]
            image_features, text_features, logit_scale = model(x_all[idx], t_all[idx])
            loss = loss_fn(image_features, text_features, logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # as open_clip_train: clamp to 100
                model.logit_scale.clamp_(0, math.log(100))
            total += loss.item()
        saved = save_checkpoint(Path(out_dir) / f"epoch_{epoch}.pt", model, optimizer, epoch, run_name)
        row = {"epoch": epoch, "loss": total / max(1, steps_per_epoch), "lr": lr}
        if probe_data is not None:
            row.update(probe(model, tokenizer, probe_data))
        history.append(row)
        log(f"[{run_name}] " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in row.items()) + f" (cpu {time.process_time() - cpu0:.0f} s)")
        if on_checkpoint is not None:
            on_checkpoint(epoch, saved)
    return history
