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
