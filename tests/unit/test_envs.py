"""The conda environment for --sdm conda installs the same packages as pyproject.toml."""
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _norm(req: str) -> str:
    return req.replace(" ", "").lower().replace("_", "-")


def test_conda_env_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs" / "clipdyn.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(map(_norm, pip)) == sorted(map(_norm, project))


def test_torch_range_admits_the_pinned_release():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(Requirement(r) for r in project if r.startswith("torch>") or r.startswith("torch<"))
    assert torch.specifier.contains("2.14.1")
