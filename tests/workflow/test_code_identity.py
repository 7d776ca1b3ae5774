"""An edit of the library code a stage runs reruns that stage and what reads its outputs; an edit
elsewhere, a comment, or a pure move or rename reruns nothing (clipdyn.codeid hashes the
definitions each rule's script reaches, wherever they live).

Each test copies the workflow, makes one real code edit in the copy, and dry-runs the copy's
Snakefile against the finished full study (every dataset kind and metric): the jobs listed are
the ones that edit would rerun.
"""

import ast
import re

import pytest

from clipdyn.fixtures.studies import REPO, copy_workflow

pytestmark = pytest.mark.workflow

#: an added statement: a change of code, not of a comment (the hash is over the syntax tree)
EDIT = "_clipdyn_test_edit = 1"

#: every rule downstream of the metrics
REPORTING = {"collect_metrics": 1, "figure": 4, "table1": 1, "all": 1}


def copy_repo(tmp_path):
    return copy_workflow(tmp_path / "repo")


def edit_function(path, function: str, statement: str = EDIT) -> None:
    """Insert ``statement`` as the first statement of ``function`` (after its docstring)."""
    text = path.read_text()
    node = next(n for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                and n.name == function)
    first = node.body[1] if (len(node.body) > 1 and isinstance(node.body[0], ast.Expr)
                             and isinstance(node.body[0].value, ast.Constant)) else node.body[0]
    lines = text.splitlines(keepends=True)
    indent = re.match(r"\s*", lines[first.lineno - 1]).group(0)
    lines.insert(first.lineno - 1, f"{indent}{statement}\n")
    path.write_text("".join(lines))


def dry_run_with_edit(study, relpath: str, tmp_path, function: str = None, text: str = None) -> dict:
    """{rule: jobs} of a dry run whose workflow copy has a statement added to ``function`` of
    ``relpath`` (or ``text`` appended to it)."""
    copy = copy_repo(tmp_path)
    target = copy / "workflow" / relpath
    if function:
        edit_function(target, function)
    else:
        target.write_text(target.read_text() + text)
    return study.dry_run_jobs(repo=copy)


def _n_metrics(study) -> int:
    return len(study.read_config()["metrics"])


def test_baseline_nothing_to_do(full_study):
    assert full_study.dry_run_jobs() == {}


def test_comment_or_docstring_edit_reruns_nothing(full_study, tmp_path):
    assert dry_run_with_edit(full_study, "clipdyn/embed/encode.py", tmp_path, text="\n# a comment\n") == {}


def test_manifest_builder_edit_reruns_manifests_and_everything_downstream(full_study, tmp_path):
    jobs = dry_run_with_edit(full_study, "clipdyn/data/manifests.py", tmp_path, "prepare_manifest")
    cfg = full_study.read_config()
    downloaded = [d for d, spec in cfg["datasets"].items() if "derived_from" not in spec]
    assert jobs["prepare_manifest"] == len(downloaded)
    for rule in ("derive_manifest", "pixel_cache", "derived_pixel_cache", "embed_images", "text_classifier",
                 "compute_metric"):
        assert jobs.get(rule, 0) > 0, (rule, jobs)
    assert "download_dataset" not in jobs
    # the rerun embeddings and classifiers read their checkpoints by record: nothing is fetched again
    assert "fetch_checkpoint" not in jobs
    assert {k: jobs[k] for k in REPORTING} == REPORTING


def test_pixel_cache_edit_reruns_pixel_caches_and_embeddings(full_study, tmp_path):
    jobs = dry_run_with_edit(full_study, "clipdyn/data/pixels.py", tmp_path, "build_pixel_cache")
    assert jobs.get("pixel_cache", 0) > 0 and jobs.get("embed_images", 0) > 0, jobs
    assert "prepare_manifest" not in jobs and "download_dataset" not in jobs


def test_model_loading_edit_reruns_embeddings_and_classifiers_only_upstream_of_metrics(full_study, tmp_path):
    jobs = dry_run_with_edit(full_study, "clipdyn/embed/model.py", tmp_path, "load_model")
    assert jobs.get("embed_images", 0) > 0 and jobs.get("text_classifier", 0) > 0, jobs
    for rule in ("prepare_manifest", "pixel_cache", "derived_pixel_cache"):
        assert rule not in jobs, (rule, jobs)
    assert "fetch_checkpoint" not in jobs  # readers find their checkpoints by record


def test_text_classifier_edit_reruns_classifiers_not_embeddings(full_study, tmp_path):
    jobs = dry_run_with_edit(full_study, "clipdyn/embed/classifier.py", tmp_path, "zero_shot_classifier")
    assert jobs.get("text_classifier", 0) > 0, jobs
    assert "embed_images" not in jobs and "pixel_cache" not in jobs
    assert jobs.get("compute_metric", 0) > 0  # the kinds that read a classifier


def test_one_metric_module_edit_reruns_that_metric_only(full_study, tmp_path):
    cfg = full_study.read_config()
    ood = [n for n, m in cfg["metrics"].items() if m["kind"] == "ood_detection"]
    assert ood and len(ood) < _n_metrics(full_study)
    jobs = dry_run_with_edit(full_study, "clipdyn/metrics/ood.py", tmp_path, "mcm_scores")
    n_models = len(cfg["models"])
    assert jobs == dict(REPORTING, compute_metric=len(ood) * n_models)


def test_metric_reader_edit_reruns_every_metric(full_study, tmp_path):
    """``io.read_embeddings`` is read by every metric job, not by the jobs that write embeddings."""
    jobs = dry_run_with_edit(full_study, "clipdyn/io.py", tmp_path, "read_embeddings")
    n_models = len(full_study.read_config()["models"])
    assert jobs["compute_metric"] == _n_metrics(full_study) * n_models
    assert {k: jobs[k] for k in REPORTING} == REPORTING


def test_figure_function_edit_redraws_the_figures_only(full_study, tmp_path):
    jobs = dry_run_with_edit(full_study, "clipdyn/figures/timecourse.py", tmp_path, "figure1")
    assert jobs == {"figure": 4, "all": 1}  # Table 1 does not run figure1


def test_figure_style_edit_redraws_figures_and_table(full_study, tmp_path):
    jobs = dry_run_with_edit(full_study, "clipdyn/figures/spec.py", tmp_path, "measure_info")
    assert jobs == {"figure": 4, "table1": 1, "all": 1}


def test_moves_and_renames_rerun_nothing(full_study, tmp_path):
    """A function moved to a new module, a module renamed and a function renamed (every import and
    call updated): the code computes what it did, so nothing reruns."""
    copy = copy_repo(tmp_path)
    pkg = copy / "workflow" / "clipdyn"
    sources = lambda: [f for f in (copy / "workflow").rglob("*.py") if "__pycache__" not in f.parts]

    def rename(word: str, new: str) -> None:
        for f in sources():
            text = f.read_text()
            if re.search(rf"\b{word}\b", text):
                f.write_text(re.sub(rf"\b{word}\b", new, text))

    # move stratified_subset out of data/manifests.py into a module of its own
    data = pkg / "data"
    manifests = data / "manifests.py"
    text = manifests.read_text()
    tree = ast.parse(text)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "stratified_subset")
    lines = text.splitlines(keepends=True)
    start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    moved = "".join(lines[start:node.end_lineno])
    (data / "subsets.py").write_text("from typing import Optional\n\nimport numpy as np\nimport pandas as pd\n\n\n"
                                    + moved)
    last_import = max(n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    manifests.write_text("".join(lines[:last_import]) + "from .subsets import stratified_subset\n"
                         + "".join(lines[last_import:start] + lines[node.end_lineno:]))
    # rename a module and a function, everywhere they are named
    (data / "corruptions.py").rename(data / "noise.py")
    rename("corruptions", "noise")
    rename("build_pixel_cache", "cache_pixels")
    assert full_study.dry_run_jobs(repo=copy) == {}
    # and the copy still computes: an edit of the moved function reruns the manifests that use it
    edit_function(data / "subsets.py", "stratified_subset")
    jobs = full_study.dry_run_jobs(repo=copy)
    assert jobs.get("prepare_manifest", 0) > 0, jobs


def test_package_data_file_edit_reruns_its_readers(full_study, tmp_path):
    """The shipped 16-category mapping is read by the shape-bias code: its jobs rerun, others do not."""
    cfg = full_study.read_config()
    sb = [n for n, m in cfg["metrics"].items() if m["kind"] == "shape_bias"]
    jobs = dry_run_with_edit(full_study, "clipdyn/metrics/imagenet16_categories.csv", tmp_path, text="")
    assert jobs == {}  # appending nothing changes nothing
    csv = "clipdyn/metrics/imagenet16_categories.csv"
    text = (REPO / "workflow" / csv).read_text()
    jobs = dry_run_with_edit(full_study, csv, tmp_path / "b", text="\n" if not text.endswith("\n") else " \n")
    assert jobs.get("compute_metric") == len(sb) * len(cfg["models"]), jobs
    assert "embed_images" not in jobs
