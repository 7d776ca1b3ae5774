"""Code identity (clipdyn.codeid): what a stage computes, not where its code lives.

Each test works on a copy of the real package and rule scripts (or on a small synthetic package),
makes an edit, and compares the rule scripts' code hashes before and after.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clipdyn.codeid import PACKAGE_DIR, CodeIdentity

WORKFLOW = PACKAGE_DIR.parent
#: what the rules hash (their ``code_of(...)`` entries): a rule script, or a ``run:`` job's function
STAGES = sorted({m for f in (WORKFLOW / "rules").glob("*.smk")
                 for m in re.findall(r'code_of\(\s*"([^"]+)"', f.read_text())})


@pytest.fixture
def tree(tmp_path):
    """A copy of workflow/ (the package and the rule scripts)."""
    shutil.copytree(WORKFLOW, tmp_path / "workflow", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "workflow"


def hashes(tree: Path) -> dict:
    ci = CodeIdentity(tree / "clipdyn")
    return {s: ci.code_hash(s if ":" in s else str(tree / "scripts" / s)) for s in STAGES}


def changed(before: dict, after: dict) -> set:
    return {k for k in before if before[k] != after[k]}


def sources(tree: Path):
    return [f for f in tree.rglob("*.py") if "__pycache__" not in f.parts]


def rename_everywhere(tree: Path, word: str, new: str) -> None:
    for f in sources(tree):
        text = f.read_text()
        if re.search(rf"\b{word}\b", text):
            f.write_text(re.sub(rf"\b{word}\b", new, text))


def add_statement(path: Path, function: str, statement: str = "_edit = 1") -> None:
    """Insert ``statement`` as the first line of ``function``'s body (after its signature)."""
    text = path.read_text()
    m = re.search(rf"^(\s*)def {function}\(.*?\)( -> [^:]+)?:\n", text, re.S | re.M)
    assert m, (path, function)
    indent = m.group(1) + "    "
    path.write_text(text[:m.end()] + f"{indent}{statement}\n" + text[m.end():])


def test_hashes_are_stable_and_distinct():
    a, b = hashes(WORKFLOW), hashes(WORKFLOW)
    assert a == b
    assert len(set(a.values())) == len(a)  # each rule script computes something else


def test_moving_a_function_to_another_module_changes_no_hash(tree):
    before = hashes(tree)
    manifests = tree / "clipdyn" / "data" / "manifests.py"
    text = manifests.read_text()
    start = text.index("def stratified_subset")
    end = text.index("\ndef ", start + 1)
    (tree / "clipdyn" / "data" / "subsets.py").write_text(
        "from typing import Optional\n\nimport numpy as np\nimport pandas as pd\n\n\n" + text[start:end])
    text = text[:start] + text[end:]
    text = text.replace("from ..atomic import", "from .subsets import stratified_subset\nfrom ..atomic import", 1)
    manifests.write_text(text)
    assert changed(before, hashes(tree)) == set()


def test_renaming_a_module_or_a_function_changes_no_hash(tree):
    before = hashes(tree)
    (tree / "clipdyn" / "data" / "corruptions.py").rename(tree / "clipdyn" / "data" / "noise.py")
    rename_everywhere(tree, "corruptions", "noise")
    rename_everywhere(tree, "build_pixel_cache", "cache_pixels")
    rename_everywhere(tree, "read_embeddings", "load_embeddings")
    assert changed(before, hashes(tree)) == set()


def test_splitting_or_moving_an_import_changes_no_hash(tree):
    """A function-local import split into two statements, one of them from the name's old module
    re-exported elsewhere: the names bound are the same definitions."""
    before = hashes(tree)
    cls = tree / "clipdyn" / "embed" / "classifier.py"
    text = cls.read_text()
    one = "    from .precision import autocast_dtype, projection_outside\n"
    assert one in text
    cls.write_text(text.replace(one, "    from .precision import autocast_dtype\n"
                                     "    from .precision import projection_outside\n", 1))
    assert changed(before, hashes(tree)) == set()


def test_reordering_and_comments_change_no_hash(tree):
    before = hashes(tree)
    io = tree / "clipdyn" / "io.py"
    text = io.read_text()
    # an annotation change and a comment
    text = text.replace("def read_meta(path: os.PathLike) -> dict:",
                        "def read_meta(path: str) -> dict:  # a comment", 1)
    # a docstring edit
    start = text.index('"""', text.index("def read_meta("))
    text = text[:start + 3] + "Reworded. " + text[start + 3:]
    # read_embeddings moved to the end of the file
    start = text.index("def read_embeddings(")
    end = text.index("\ndef ", start)
    text = text[:start] + text[end + 1:] + "\n\n" + text[start:end] + "\n# trailing comment\n"
    io.write_text(text)
    assert changed(before, hashes(tree)) == set()


def test_an_edit_reruns_exactly_the_stages_whose_code_runs_it(tree):
    before = hashes(tree)
    add_statement(tree / "clipdyn" / "data" / "pixels.py", "build_pixel_cache")
    assert changed(before, hashes(tree)) == {"pixel_cache.py", "derived_pixel_cache.py"}


def test_a_module_with_two_stages_code_reruns_only_the_stage_whose_code_changed(tree):
    """io.py holds the embedding writer and the metric readers."""
    before = hashes(tree)
    add_statement(tree / "clipdyn" / "io.py", "write_embeddings")
    after_writer = hashes(tree)
    assert changed(before, after_writer) == {"clipdyn.embed.jobs:embed_images_job"}
    add_statement(tree / "clipdyn" / "io.py", "read_embeddings")
    assert changed(after_writer, hashes(tree)) == {"compute_metric.py"}


def test_an_unused_definition_changes_no_hash(tree):
    before = hashes(tree)
    with open(tree / "clipdyn" / "io.py", "a") as f:
        f.write("\n\ndef not_used_by_any_stage():\n    return 1\n")
    assert changed(before, hashes(tree)) == set()


def test_registered_adapters_count_for_the_stage_that_looks_them_up(tree):
    """Dataset adapters register themselves by a decorator on import; the manifest stage finds
    them by name, so an adapter's edit reruns the manifests."""
    before = hashes(tree)
    add_statement(tree / "clipdyn" / "data" / "formats" / "nights.py", "read")
    assert changed(before, hashes(tree)) == {"prepare_manifest.py"}


def test_import_time_statements_count(tree):
    before = hashes(tree)
    with open(tree / "clipdyn" / "data" / "corruptions.py", "a") as f:
        f.write("\nnp.seterr(all='ignore')\n")
    assert changed(before, hashes(tree)) >= {"pixel_cache.py", "derived_pixel_cache.py"}


def test_metric_evaluator_as_extra_entry(tree):
    ci = CodeIdentity(tree / "clipdyn")
    script = str(tree / "scripts" / "compute_metric.py")
    ood = ci.code_hash(script, ["clipdyn.metrics.ood:ood_detection_task"])
    sb = ci.code_hash(script, ["clipdyn.metrics.shape_bias:shape_bias_task"])
    assert ood != sb
    add_statement(tree / "clipdyn" / "metrics" / "ood.py", "mcm_scores")
    ci2 = CodeIdentity(tree / "clipdyn")
    assert ci2.code_hash(script, ["clipdyn.metrics.ood:ood_detection_task"]) != ood
    assert ci2.code_hash(script, ["clipdyn.metrics.shape_bias:shape_bias_task"]) == sb


def test_package_data_file_counts_for_its_readers(tree):
    ci = CodeIdentity(tree / "clipdyn")
    script = str(tree / "scripts" / "compute_metric.py")
    sb = ci.code_hash(script, ["clipdyn.metrics.shape_bias:shape_bias_task"])
    ood = ci.code_hash(script, ["clipdyn.metrics.ood:ood_detection_task"])
    csv = tree / "clipdyn" / "metrics" / "imagenet16_categories.csv"
    csv.write_text(csv.read_text() + " \n")
    ci2 = CodeIdentity(tree / "clipdyn")
    assert ci2.code_hash(script, ["clipdyn.metrics.shape_bias:shape_bias_task"]) != sb
    assert ci2.code_hash(script, ["clipdyn.metrics.ood:ood_detection_task"]) == ood


def write_package(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / "clipdyn" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root / "clipdyn"


def test_mutual_recursion_and_lazy_packages(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": """
            from .b import odd

            def even(n):
                return True if n == 0 else odd(n - 1)
            """,
        "b.py": """
            def odd(n):
                from .a import even
                return False if n == 0 else even(n - 1)
            """,
        "lazy/__init__.py": """
            import importlib

            def __getattr__(name):
                return getattr(importlib.import_module(__name__ + ".impl"), name)
            """,
        "lazy/impl.py": """
            def helper(x):
                return x + 1
            """,
    })
    script = tmp_path / "rule.py"
    script.write_text("from clipdyn.a import even\nfrom clipdyn.lazy import helper\nprint(even(4), helper(1))\n")
    h0 = CodeIdentity(pkg).code_hash(str(script))
    # rename a member of the recursive pair: nothing changes
    for f in ("a.py", "b.py"):
        (pkg / f).write_text((pkg / f).read_text().replace("odd", "is_odd"))
    assert CodeIdentity(pkg).code_hash(str(script)) == h0
    # an edit of either member, or of the lazily imported helper, changes the hash
    (pkg / "b.py").write_text((pkg / "b.py").read_text().replace("return False", "return 0 or False"))
    h1 = CodeIdentity(pkg).code_hash(str(script))
    assert h1 != h0
    (pkg / "lazy" / "impl.py").write_text((pkg / "lazy" / "impl.py").read_text().replace("x + 1", "x + 2"))
    assert CodeIdentity(pkg).code_hash(str(script)) != h1


def test_locals_shadow_module_names(tmp_path):
    """A local variable named like a module-level definition is not a reference to it."""
    pkg = write_package(tmp_path, {
        "__init__.py": "",
        "m.py": """
            scale = 3

            def f(values):
                scale = 2
                return [v * scale for v in values]

            def g(values):
                return [v * scale for v in values]
            """,
    })
    script = tmp_path / "rule.py"
    script.write_text("from clipdyn.m import f\nf([1])\n")
    other = tmp_path / "other.py"
    other.write_text("from clipdyn.m import g\ng([1])\n")
    h_f, h_g = CodeIdentity(pkg).code_hash(str(script)), CodeIdentity(pkg).code_hash(str(other))
    (pkg / "m.py").write_text((pkg / "m.py").read_text().replace("scale = 3", "scale = 4"))
    assert CodeIdentity(pkg).code_hash(str(script)) == h_f
    assert CodeIdentity(pkg).code_hash(str(other)) != h_g


def test_a_stage_that_reaches_fabrication_code_is_an_error(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "",
        "fixtures/__init__.py": "",
        "fixtures/fake.py": "def fabricate():\n    return 1\n",
    })
    script = tmp_path / "rule.py"
    script.write_text("from clipdyn.fixtures.fake import fabricate\nfabricate()\n")
    with pytest.raises(ValueError, match="fabricat"):
        CodeIdentity(pkg).code_hash(str(script))


def test_code_hash_is_kept_on_disk_and_follows_edits(tree):
    """``code_hash`` keeps its results in the package's __pycache__; an edited file is seen."""
    script = str(tree / "scripts" / "pixel_cache.py")
    prog = f"from clipdyn.codeid import code_hash; print(code_hash({script!r}))"
    env = dict(os.environ, PYTHONPATH=str(tree))

    def run():
        return subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    first = run()
    assert first == CodeIdentity(tree / "clipdyn").code_hash(script)
    cache = tree / "clipdyn" / "__pycache__" / "clipdyn-codeid.json"
    assert first in cache.read_text()
    assert run() == first
    add_statement(tree / "clipdyn" / "data" / "pixels.py", "build_pixel_cache")
    assert run() != first
