"""Zero-shot classifiers: class names and prompt templates in, one (C, D) text-embedding matrix out.

The weights come from open_clip's own ``build_zero_shot_classifier``; :func:`text_classifier` is the
workflow's step (one checkpoint, one class set, written to Parquet with the checkpoint's logit scale).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from ..io import provenance as prov
from ..io import read_meta, write_classifier
from ..progress import log as _log
from .model import checkpoint_commit
from .step import model_for

#: MCM's single prompt (deeplearning-wisc/MCM, ``utils/detection_util.py``, ``get_ood_scores_clip``:
#: ``f"a photo of a {c}"`` for every in-distribution label, no template ensemble)
MCM_TEMPLATES = ("a photo of a {}",)


def class_templates(source: str, dataset_templates: Optional[Sequence[str]] = None) -> list:
    """Prompt templates: ``openai`` (open_clip's 80 ImageNet templates), ``simple``, ``dataset``, or
    ``mcm`` (MCM's single prompt "a photo of a <label>", :data:`MCM_TEMPLATES`)."""
    import open_clip

    if source == "mcm":
        return list(MCM_TEMPLATES)
    if source == "openai":
        return list(open_clip.OPENAI_IMAGENET_TEMPLATES)
    if source == "simple":
        return list(open_clip.SIMPLE_IMAGENET_TEMPLATES)
    if source == "dataset":
        if not dataset_templates:
            raise ValueError("templates: 'dataset' but the dataset ships no templates")
        return [t.replace("{c}", "{}") if "{c}" in t else t for t in dataset_templates]
    raise ValueError(f"unknown template source {source!r} (openai, simple, dataset, mcm)")


class _TextTower:
    """``model.encode_text`` for open_clip's ``build_zero_shot_classifier``: the text tower under
    autocast (``dtype``; None = fp32), its projection and the normalisation in fp32 with autocast
    disabled (``project`` from :func:`clipdyn.embed.precision.projection_outside`; None = inside the tower)."""

    def __init__(self, model, project, dtype, device_type: str):
        self.model, self.project, self.dtype, self.device_type = model, project, dtype, device_type

    def encode_text(self, text, normalize: bool = False):
        import torch

        with torch.autocast(device_type=self.device_type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            x = self.model.encode_text(text)
        with torch.autocast(device_type=self.device_type, enabled=False):
            x = x.float()
            if self.project is not None:
                x = self.project(x)
            return torch.nn.functional.normalize(x, dim=-1) if normalize else x


def zero_shot_classifier(model, arch: str, classnames: Sequence[str], templates: Sequence, device,
                         precision: str = "fp32", log=print) -> np.ndarray:
    """(C, D) L2-normalised class weights from open_clip's ``build_zero_shot_classifier``.

    ``precision`` as for image embeddings (:func:`clipdyn.embed.precision.autocast_dtype`): with ``auto`` the text
    tower runs under bf16 autocast on a GPU (fp16 where bf16 is not native; 1000 classes x 80 templates
    of ViT-H-14 took minutes in plain fp32), and in fp32 on the CPU. The text projection, the
    normalisations and the mean over templates always run in fp32 (and TF32 stays off: the only fp32
    matrix products left are the projections, which are meant to be fp32).
    """
    import open_clip
    import torch

    from .precision import autocast_dtype, projection_outside

    device = torch.device(device)
    dtype = autocast_dtype(precision, device, log)
    tokenizer = open_clip.get_tokenizer(arch)
    owner = model.text if hasattr(model, "text") and hasattr(model.text, "text_projection") else model
    with torch.inference_mode(), projection_outside(owner, "text_projection") as project:
        if project is None and dtype is not None:
            if precision == "auto":
                dtype = None
            log(f"{type(owner).__name__} projects inside the text tower: it runs in "
                f"{'fp32' if dtype is None else precision} throughout")
        W = open_clip.build_zero_shot_classifier(_TextTower(model, project, dtype, device.type), tokenizer=tokenizer,
                                                 classnames=list(classnames), templates=list(templates),
                                                 num_classes_per_batch=10, device=device, use_tqdm=False)
    return W.float().T.contiguous().cpu().numpy()


def text_classifier(*, checkpoint: str, manifest: Optional[str], out: str, arch: str, allow_pickle: bool,
                    classset: dict, model_configs: Sequence[str], provenance: dict, threads: int = 2,
                    lock_dir: Optional[str] = None, precision: str = "auto") -> None:
    import open_clip
    import torch

    from .devices import claim_device
    from .model import logit_scale, register_model_configs
    from .precision import autocast_dtype, precision_name
    from .step import cached_gpu, runtime_provenance

    torch.set_num_threads(max(1, threads))
    register_model_configs(model_configs)
    source = classset.get("source", "openclip_imagenet")
    ds_meta = read_meta(manifest) if manifest else {}
    if source == "openclip_imagenet":
        names = list(open_clip.IMAGENET_CLASSNAMES)
    elif source == "dataset":
        names = ds_meta.get("classnames")
        if not names:
            raise ValueError(f"class set from dataset {classset.get('dataset')!r}, but its manifest {manifest} "
                             "has no class names (the dataset ships no classnames file)")
    elif source == "names":
        names = list(classset["names"])
    else:
        raise ValueError(f"unknown class set source {source!r}")
    template_source = classset.get("templates", "openai" if source != "dataset" else "dataset")
    templates = class_templates(template_source, ds_meta.get("templates"))
    what = f"model {provenance.get('model')} epoch {provenance.get('epoch')}"
    with claim_device(lock_dir, log=_log, prefer=cached_gpu()) as device:
        model = model_for(arch, checkpoint, device, allow_pickle, what, provenance.get("checkpoint_blob") or "")
        t0 = time.time()
        W = zero_shot_classifier(model, arch, names, templates, device, precision=precision, log=_log)
        scale = logit_scale(model)
        _log(f"classifier {W.shape[0]} classes x {W.shape[1]} dims from {len(templates)} templates in "
             f"{time.time() - t0:.1f} s; logit scale {scale:.2f}")
        write_classifier(out, W, names, scale, prov(**provenance, checkpoint_commit=checkpoint_commit(checkpoint),
                                                    n_templates=len(templates), templates=template_source,
                                                    precision_setting=precision,
                                                    precision=precision_name(autocast_dtype(precision, device,
                                                                                            lambda m: None)),
                                                    **runtime_provenance(device)))
