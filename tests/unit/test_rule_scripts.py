"""The rule scripts follow one convention: a docstring, then stdout and stderr to the rule's log,
then the library call (thin scripts: the work is in clipdyn)."""

import ast
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "workflow" / "scripts").glob("*.py"))
HEAD = ["sys.stderr = open(snakemake.log[0], 'w')", "sys.stdout = sys.stderr"]  # as ast.unparse writes them


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_logs_first_and_stays_thin(script):
    tree = ast.parse(script.read_text())
    assert ast.get_docstring(tree), f"{script.name}: say in a docstring what the rule does"
    assigns = [ast.unparse(n) for n in tree.body if isinstance(n, ast.Assign)][:2]
    assert assigns == HEAD, f"{script.name}: start with {HEAD} (logs go to the rule's log file)"
    defs = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert not defs, f"{script.name} defines {defs}: put them in workflow/clipdyn (importable, unit-tested)"
    assert len(script.read_text().splitlines()) <= 30, f"{script.name}: a rule script is wiring, not work"
