"""load_model builds the architecture without random init and loads every tensor of the checkpoint."""
from pathlib import Path

import torch

from clipdyn.embed.model import load_model
from clipdyn.fixtures.studies import make_checkpoint


def test_loaded_model_holds_exactly_the_checkpoint_and_init_is_restored(tmp_path):
    ckpt = tmp_path / "epoch_2.pt"
    make_checkpoint(ckpt, 2, seed=5)
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    model = load_model("clipdyn-tiny", str(ckpt))
    got = model.state_dict()
    assert set(got) == {k[len("module."):] for k in saved}
    for k, v in saved.items():
        assert torch.equal(got[k[len("module."):]], v), k
    assert not model.training
    t = torch.zeros(1000)
    torch.nn.init.normal_(t)  # the initialisers work again after loading
    assert t.std() > 0.5


def _adamw_checkpoint(path, seed=1, dtype=torch.float32, **save_kw):
    """A training checkpoint as open_clip_train writes it: 'module.' keys and AdamW state (2 tensors
    per parameter), which is 2/3 of the file."""
    import open_clip

    from clipdyn.embed.model import register_model_configs

    register_model_configs([])
    torch.manual_seed(seed)
    model = open_clip.create_model("clipdyn-tiny")
    sd = {f"module.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    params = [p for p in model.parameters()]
    opt = {"state": {i: {"step": torch.tensor(10.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
                     for i, p in enumerate(params)},
           "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.2,
                             "params": list(range(len(params)))}]}
    torch.save({"epoch": 3, "name": "run", "state_dict": sd, "optimizer": opt}, path, **save_kw)
    return {k[len("module."):]: v for k, v in sd.items()}


def _mapped_ranges(path):
    """(start, end) address ranges of ``path`` in this process's memory maps."""
    out = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5] == str(path):
            a, b = parts[0].split("-")
            out.append((int(a, 16), int(b, 16)))
    return out


def test_weights_are_memory_mapped_from_the_file_and_the_optimizer_state_is_dropped(tmp_path):
    ckpt = tmp_path / "epoch_3.pt"
    saved = _adamw_checkpoint(ckpt)
    model = load_model("clipdyn-tiny", str(ckpt))
    ranges = _mapped_ranges(ckpt.resolve())
    assert ranges, "the checkpoint is not memory-mapped"
    for name, p in model.named_parameters():  # assigned, not copied: the parameters live in the mapping
        assert any(a <= p.data_ptr() < b for a, b in ranges), name
        assert torch.equal(p, saved[name])
    assert not any(hasattr(m, "exp_avg") for m in model.modules())
    del model, p
    import gc

    gc.collect()
    assert _mapped_ranges(ckpt.resolve()) == []  # nothing else (the optimizer state) kept the file mapped


def test_legacy_format_and_fp16_checkpoints_still_load(tmp_path):
    legacy = tmp_path / "legacy.pt"
    saved = _adamw_checkpoint(legacy, _use_new_zipfile_serialization=False)  # cannot be mapped: read whole
    model = load_model("clipdyn-tiny", str(legacy))
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items() if k in saved)
    half = tmp_path / "half.pt"
    saved = _adamw_checkpoint(half, dtype=torch.float16)
    model = load_model("clipdyn-tiny", str(half))
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # converted to the model's precision
    assert torch.equal(model.visual.proj, saved["visual.proj"].float())
