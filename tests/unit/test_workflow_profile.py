"""The workflow's defaults (rerun-incomplete, failed logs shown) come from workflow/profiles/default,
which Snakemake itself loads for the top-level Snakefile (through the `profiles` link next to it) and
for workflow/Snakefile (the catalog's entry): checked with Snakemake's own argument parsing.
(That a killed run's jobs are recomputed by the next plain run: tests/reliability/test_workflow_faults.py.)"""

import pytest
import yaml
from snakemake.cli import parse_args

from clipdyn.fixtures.studies import REPO

SNAKEFILE = REPO / "workflow" / "Snakefile"
DEFAULT = REPO / "workflow" / "profiles" / "default" / "config.yaml"


def test_default_profile_holds_the_workflow_defaults():
    assert yaml.safe_load(DEFAULT.read_text()) == {
        "rerun-incomplete": True, "show-failed-logs": True, "printshellcmds": True,
        # the code identity is in params (clipdyn.codeid), not Snakemake's script-mtime `code` trigger
        "rerun-triggers": ["mtime", "params", "input", "software-env"],
        # run: jobs (clipdyn.embed.jobs) in threads, not one snakemake process each
        "force-use-threads": True}


@pytest.mark.parametrize("how", ["plain snakemake in the repository", "--snakefile Snakefile from elsewhere",
                                 "--snakefile workflow/Snakefile from elsewhere"])
def test_snakemake_loads_the_default_profile_by_itself(how, tmp_path, monkeypatch):
    assert (REPO / "Snakefile").is_file() and SNAKEFILE.is_file()
    if how.startswith("plain"):
        monkeypatch.chdir(REPO)  # Snakemake finds ./Snakefile, then profiles/default
        argv = ["-n"]
    else:
        monkeypatch.chdir(tmp_path)
        snakefile = REPO / how.split()[1]
        argv = ["--snakefile", str(snakefile), "--directory", str(tmp_path), "-n"]
    _, args = parse_args(argv)
    assert args.rerun_incomplete and args.show_failed_logs


def test_the_catalog_entry_is_the_top_level_workflow():
    assert 'include: "../Snakefile"' in SNAKEFILE.read_text()
    assert (REPO / "profiles").resolve() == (REPO / "workflow" / "profiles").resolve()


def test_workflow_profile_none_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, args = parse_args(["--snakefile", str(SNAKEFILE), "--workflow-profile", "none", "-n"])
    assert not args.rerun_incomplete and not args.show_failed_logs


def test_the_slurm_profile_keeps_its_settings_next_to_the_default_one(tmp_path, monkeypatch):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="the slurm extra is not installed")
    monkeypatch.chdir(tmp_path)
    slurm = REPO / "workflow" / "profiles" / "slurm"
    _, args = parse_args(["--snakefile", str(SNAKEFILE), "--profile", str(slurm), "-n"])
    assert args.executor == "slurm" and args.jobs == 100 and args.latency_wait == 60
    assert args.rerun_incomplete and args.show_failed_logs


def _strict_eval(expr, **names):
    """A profile resource the way Snakemake evaluates it (snakemake.resources), except that a NameError,
    which Snakemake quietly turns into the expression's text, fails here."""
    return eval(expr, dict(names))  # noqa: S307 - the project's own profile


def test_every_slurm_profile_expression_evaluates_to_a_number(tmp_path, monkeypatch):
    """Every per-rule value of the SLURM profile is a Python expression that Snakemake evaluates per job
    on the cluster only; an expression naming a moved module or a missing input fails there, job by
    job. Here each one is evaluated for attempts 1 and 2 with real input files."""
    from types import SimpleNamespace

    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    monkeypatch.setenv("CLIPDYN_SLURM_PARTITION", "gpu")
    monkeypatch.delenv("CLIPDYN_SLURM_ACCOUNT", raising=False)
    assert _strict_eval(profile["default-resources"]["slurm_partition"]) == "gpu"
    assert _strict_eval(profile["default-resources"]["slurm_account"]) == ""
    files = {}
    for name in ("checkpoint", "pixels", "manifest", "embeddings"):
        files[name] = tmp_path / name
        files[name].write_bytes(b"\0" * 1000)
    job = dict(input=SimpleNamespace(**{k: str(v) for k, v in files.items()}), wildcards=SimpleNamespace(),
               threads=2)
    assert profile["set-resources"], "the profile sets no per-rule resources"
    for rule, resources in profile["set-resources"].items():
        for name, expr in resources.items():
            values = [_strict_eval(str(expr), attempt=a, **job) for a in (1, 2)]
            assert all(isinstance(v, int) and v > 0 for v in values), (rule, name, expr, values)
            if name in ("mem_mb", "runtime"):
                assert values[1] == 2 * values[0], (rule, name, "a retry asks for twice as much")


def test_the_embedding_jobs_own_runtime_follows_model_and_images():
    """embed_images asks for its runtime itself (the rule's resources, not the profile's): 30 minutes
    plus 20 per checkpoint GiB x pixel-cache GiB, twice that on a retry."""
    from clipdyn.embed.memory import RUNTIME_BASE_MIN, job_runtime_min

    assert job_runtime_min(None, None) == job_runtime_min(3_000_000, 1_000_000) == RUNTIME_BASE_MIN == 30
    vit_h, imagenet_val_224 = 3.9 * 2**30, 7.0 * 2**30  # ViT-H-14 weights; 50,000 x 3 x 224 x 224 bytes
    assert job_runtime_min(vit_h, imagenet_val_224) == int(30 + 20 * 3.9 * 7.0)
    assert job_runtime_min(vit_h, imagenet_val_224, attempt=2) == 2 * job_runtime_min(vit_h, imagenet_val_224)
    assert "runtime=embed_runtime_min" in (REPO / "workflow" / "rules" / "embed.smk").read_text()
