"""A bad config stops the run before any job, with a message that names the key."""

import copy

import pytest

from clipdyn.fixtures.studies import build_tiny_study

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def study():
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="clipdyn-cfg-"))
    yield build_tiny_study(root, n_models=1, n_epochs=1)
    shutil.rmtree(root, ignore_errors=True)


def _break(cfg, how):
    cfg = copy.deepcopy(cfg)
    how(cfg)
    return cfg


CASES = {
    "unknown top-level key": (lambda c: c.update(bogus_key=1), "bogus_key"),
    "unknown model key": (lambda c: c["models"]["tiny_a"].update(archh="x"), "archh"),
    "wrong type": (lambda c: c["embedding"].update(batch_size="big"), "batch_size"),
    "template without {epoch}": (lambda c: c["models"]["tiny_a"].update(checkpoint="full_checkpoints/x.pt"),
                                 "checkpoint"),
    "missing repo": (lambda c: c["models"]["tiny_a"].pop("repo"), "repo"),
    "unknown dataset format": (lambda c: c["datasets"]["tiny_imagenet"].update(format="tfrecord"), "format"),
    "unknown metric kind": (lambda c: c["metrics"]["zeroshot"].update(kind="fid"), "kind"),
    "metric input names no dataset": (lambda c: c["metrics"]["zeroshot"]["inputs"].update(dataset="nope"),
                                      "metrics.zeroshot.inputs.dataset"),
    "ood metric without MCM's prompt": (lambda c: c["metrics"].update(ood={
        "kind": "ood_detection", "inputs": {"in_distribution": "tiny_imagenet", "ood": ["tiny_imagenet"]},
        "classset": "tiny"}), "metrics.ood: MCM scores use the single prompt"),
    "unknown saliency map": (lambda c: c["embedding"].update(saliency_map="gradcam"), "saliency_map"),
    "saliency option value": (lambda c: c["metrics"].update(sal={
        "kind": "saliency_alignment", "inputs": {"dataset": "tiny_imagenet"}, "options": {"crop": "middle"}}),
        "crop"),
    "saliency option name": (lambda c: c["metrics"].update(sal={
        "kind": "saliency_alignment", "inputs": {"dataset": "tiny_imagenet"}, "options": {"cropp": "auto"}}),
        "cropp"),
    "figure names no model": (lambda c: c["figures"].update(base_model="ViT-Z"), "figures.base_model"),
    "epoch not on the hub": (lambda c: c["models"]["tiny_a"].update(epochs=[1, 7]), "models.tiny_a.epochs"),
    "repo not in the offline cache": (lambda c: c["models"]["tiny_a"].update(repo="nobody/nothing"),
                                      "nobody/nothing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_fails_before_any_job_naming_the_key(study, case):
    how, key = CASES[case]
    good = study.read_config()
    study.write_config(_break(good, how))
    try:
        proc = study.snakemake("-n", check=False)
    finally:
        study.write_config(good)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert key in out, out[-3000:]
    assert "Job stats" not in out
    assert not (study.workdir / "results").exists()


def test_configfile_replaces_the_shipped_study_config(study):
    """From the repo root (where config/config.yaml exists), --configfile must not be merged
    into the shipped study: the dry run sees only the given config's models and datasets."""
    import subprocess
    import sys

    from clipdyn.fixtures.studies import REPO

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                           "--configfile", str(study.config), "-n", "--cores", "1"],
                          cwd=REPO, env=study.env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "tiny_a" in out and "B-16" not in out and "laion/scaling-laws-openclip" not in out
