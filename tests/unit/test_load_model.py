"""load_model builds the architecture without random init and loads every tensor of the checkpoint."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from study_fixture import make_checkpoint  # noqa: E402

from clipdyn.embed import load_model  # noqa: E402


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
