"""Bad and untrusted checkpoints through clipdyn.embed.model.load_model: every failure is a
CheckpointError that names the file and says what to do; pickled code never runs unless the
config opts in with `allow_pickle`."""

import argparse
import os

import numpy as np
import pytest
import torch

from clipdyn.embed.model import CheckpointError, load_model
from clipdyn.fixtures.studies import ARCH, make_checkpoint

WHAT = "model tiny_a epoch 1"


def _load(path, **kw):
    return load_model(ARCH, str(path), what=WHAT, **kw)


def _assert_names_file_and_remedy(msg, path):
    assert WHAT in msg and str(path) in msg


def test_good_checkpoint_loads(tiny_checkpoint):
    model = _load(tiny_checkpoint)
    assert not model.training


@pytest.mark.parametrize("cut", [0.5, 0.01])
def test_truncated_checkpoint(tiny_checkpoint, tmp_path, cut):
    data = tiny_checkpoint.read_bytes()
    bad = tmp_path / "epoch_1.pt"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError) as err:
        _load(bad)
    msg = str(err.value)
    _assert_names_file_and_remedy(msg, bad)
    assert "truncated or corrupt" in msg and "hf cache rm" in msg and "rerun" in msg


@pytest.mark.parametrize("content", [b"", os.urandom(5000), b"<html><body>502 Bad Gateway</body></html>",
                                     b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n"],
                         ids=["empty", "random-bytes", "html-error-page", "lfs-pointer"])
def test_corrupt_checkpoint_is_not_blamed_on_pickles(tmp_path, content):
    """Not a checkpoint at all: the message says corrupt, and never advises `allow_pickle`
    (which would run whatever the file holds)."""
    bad = tmp_path / "epoch_1.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        _load(bad)
    msg = str(err.value)
    _assert_names_file_and_remedy(msg, bad)
    assert "truncated or corrupt" in msg
    assert "allow_pickle" not in msg


def test_wrong_architecture_names_key_and_shapes(tmp_path):
    other = tmp_path / "epoch_1.pt"
    make_checkpoint(other, 1, seed=0, arch="clipdyn-demo-s")  # narrower text tower, smaller patches
    with pytest.raises(CheckpointError) as err:
        _load(other)
    msg = str(err.value)
    _assert_names_file_and_remedy(msg, other)
    assert f"does not fit architecture {ARCH!r}" in msg
    assert "key 'positional_embedding': expected shape (32, 64), found (16, 32)" in msg
    assert "`arch`" in msg


def test_missing_keys_are_named(tiny_checkpoint, tmp_path):
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["state_dict"].pop("module.visual.proj")
    bad = tmp_path / "epoch_1.pt"
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match=r"key 'visual.proj' expected \(shape \(64, 32\)\) but not in the "
                                              r"checkpoint"):
        _load(bad)


def test_sharded_checkpoint_directory_is_explained(tmp_path):
    shard = tmp_path / "epoch_1.pt"
    shard.mkdir()
    (shard / ".metadata").write_bytes(b"x")
    (shard / "__0_0.distcp").write_bytes(b"x")
    with pytest.raises(CheckpointError) as err:
        _load(shard)
    msg = str(err.value)
    _assert_names_file_and_remedy(msg, shard)
    assert "is a directory" in msg and "FSDP" in msg and "dcp_to_torch_save" in msg


class _RunsCode:
    """Unpickling this runs a command: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_never_runs(tiny_checkpoint, tmp_path):
    marker = tmp_path / "PWNED"
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["payload"] = _RunsCode(marker)
    evil = tmp_path / "epoch_1.pt"
    torch.save(ck, evil)
    with pytest.raises(CheckpointError) as err:
        _load(evil)
    msg = str(err.value)
    _assert_names_file_and_remedy(msg, evil)
    assert "pickled Python objects" in msg and "system" in msg
    assert "allow_pickle" in msg
    assert not marker.exists()


def test_pickled_object_loads_only_with_allow_pickle(tiny_checkpoint, tmp_path):
    """open_clip_train-style checkpoints may carry their argparse Namespace: refused by default
    (the message names the config key), loaded when the model's config sets allow_pickle."""
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["args"] = argparse.Namespace(lr=5e-4, model=ARCH)
    pickled = tmp_path / "epoch_1.pt"
    torch.save(ck, pickled)
    with pytest.raises(CheckpointError) as err:
        _load(pickled)
    msg = str(err.value)
    assert "argparse.Namespace" in msg
    assert "set `allow_pickle: true` for this model in the config" in msg
    model = _load(pickled, allow_pickle=True)
    ref = _load(tiny_checkpoint)
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k


def test_nonfinite_weights_load_but_cannot_produce_embeddings(tiny_checkpoint, tmp_path):
    """A checkpoint with NaN weights (a diverged epoch) is a valid file; the job fails when it
    writes the embeddings (tests/reliability/test_faults.py), not here."""
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["state_dict"]["module.visual.proj"].fill_(float("nan"))
    nan = tmp_path / "epoch_1.pt"
    torch.save(ck, nan)
    model = _load(nan)
    assert np.isnan(model.visual.proj.detach().numpy()).all()
