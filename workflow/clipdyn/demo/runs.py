"""The demo's other checkpoint sources (``clipdyn.sources``), from the demo hub's models.

- :func:`local_run`: train a demo model into a local run folder as open_clip's trainer
  does, ``<run>/checkpoints/epoch_N.pt`` after each epoch plus ``epoch_latest.pt`` and
  ``out.log``, slowly enough to be followed by ``clipdyn.watch``; one epoch's file is
  written in two halves with a pause between them (a half-written checkpoint, as while a
  12 GB ``torch.save`` runs). ``done`` marks the end of training.
- :func:`publish_revisions`: a model's published epochs as revisions of another repo
  (``<org>/<run>-steps``: one fixed file name, one commit per epoch, branch ``epoch-N``).
- :func:`publish_final`: a model's last epoch as open_clip pretrained weights
  (``<org>/<run>-final``: ``open_clip_model.safetensors`` + ``open_clip_config.json``), the
  layout of ``hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from ..localhub import LocalHub
from . import build

STEPS_FILE = "checkpoint.pt"
STEPS_BRANCH = "epoch-{epoch}"


def _write_slowly(src: Path, dest: Path, pause_s: float) -> None:
    """Copy ``src`` to ``dest`` in place (not atomically, as ``torch.save`` writes), pausing halfway."""
    data = src.read_bytes()
    with open(dest, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        time.sleep(pause_s)
        f.write(data[len(data) // 2:])


def local_run(hub_dir: os.PathLike, out: os.PathLike, run: str = "demo-s", epochs: int = 4,
              epoch_pause_s: float = 0.0, half_written: Optional[int] = 2, half_pause_s: float = 30.0,
              log: Callable[[str], None] = print) -> Path:
    """Train ``run`` of the demo hub from scratch into the open_clip run folder ``out``; returns it.

    ``epoch_pause_s`` after each epoch stands for a longer epoch; epoch ``half_written`` is
    written in two halves ``half_pause_s`` apart. Refuses a folder that holds checkpoints.
    """
    import torch

    from .train import Schedule, train_run

    manifest = build.load_manifest(hub_dir)
    out = Path(out)
    ck = out / "checkpoints"
    if ck.exists() and any(ck.iterdir()):
        raise FileExistsError(f"{ck} holds checkpoints already: delete the run folder {out} or choose another")
    ck.mkdir(parents=True, exist_ok=True)
    (out / "done").unlink(missing_ok=True)
    sc = build.Scale(**manifest["scale_settings"])
    seed = int(manifest["seed"])
    arch = build.RUNS[run]
    staging = out / ".staging"

    def publish(epoch: int, path: Path) -> None:
        dest = ck / f"epoch_{epoch}.pt"
        if epoch == half_written:
            log(f"[{run}] writing {dest} slowly: half of it now, the rest in {half_pause_s:.0f} s")
            _write_slowly(path, dest, half_pause_s)
        else:
            shutil.copyfile(path, dest)
        shutil.copyfile(dest, ck / "epoch_latest.pt")  # open_clip's --save-most-recent
        with open(out / "out.log", "a") as f:
            f.write(f"Train Epoch: {epoch} done\n")
        path.unlink()
        if epoch_pause_s:
            time.sleep(epoch_pause_s)

    torch.set_num_threads(1)
    data = build.training_data(sc, seed)
    try:
        train_run(arch, run, staging, data.images, data.captions, epochs, Schedule(**manifest["training"]["schedule"]),
                  seed=seed, log=log, on_checkpoint=publish)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (out / "done").write_text(f"{epochs} epochs\n")
    log(f"[{run}] training done: {epochs} epochs in {ck}")
    return out


def _published(hub_dir: os.PathLike, run: str) -> Dict[int, Path]:
    m = build.load_manifest(hub_dir)["models"].get(run)
    if m is None:
        raise ValueError(f"the demo hub {hub_dir} has no model {run!r}")
    return {e: build.checkpoint_path(hub_dir, run, e, m["revision"]) for e in m["epochs"]}


def publish_revisions(hub_dir: os.PathLike, run: str = "demo-s") -> Dict[int, str]:
    """Each published epoch of ``run`` as a commit of ``<org>/<run>-steps`` holding ``checkpoint.pt``,
    with a branch ``epoch-N`` on it; returns {epoch: commit}."""
    hub, repo = LocalHub(hub_dir), f"{build.ORG}/{run}-steps"
    out = {}
    for e, path in sorted(_published(hub_dir, run).items()):
        out[e] = hub.publish(repo, {STEPS_FILE: path}, message=f"epoch {e}")
        hub.branch(repo, STEPS_BRANCH.format(epoch=e), out[e])
    return out


def publish_final(hub_dir: os.PathLike, run: str = "demo-s") -> str:
    """The last epoch of ``run`` as open_clip pretrained weights in ``<org>/<run>-final``; returns the commit."""
    import torch
    from safetensors.torch import save as safetensors_bytes

    epochs = _published(hub_dir, run)
    last = max(epochs)
    ckpt = torch.load(epochs[last], map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v.contiguous() for k, v in ckpt["state_dict"].items()}
    arch = build.RUNS[run]
    model_cfg = json.loads((Path(__file__).resolve().parent.parent / "model_configs" / f"{arch}.json").read_text())
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                                                         "std": [0.26862954, 0.26130258, 0.27577711]}}
    return LocalHub(hub_dir).publish(f"{build.ORG}/{run}-final", {
        "open_clip_model.safetensors": safetensors_bytes(state),
        "open_clip_config.json": json.dumps(config, indent=2),
        "README.md": f"# {run}, final weights (epoch {last} of the demo run)\n",
    })
