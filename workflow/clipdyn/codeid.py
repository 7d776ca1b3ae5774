"""Code identity: the clipdyn source a rule's script reaches, and one hash of it.

A rule's results depend on the library code its script runs. Rather than list modules by hand
(a list that drifts), :func:`code_hash` reads the script's imports with :mod:`ast`, follows every
``clipdyn`` import transitively (imports inside functions too, and the parent packages Python
imports on the way), and hashes what it reached. Nothing is imported, so building a 10,000-job
DAG does not pay for torch.

What counts:

- ``import clipdyn.x``, ``from clipdyn.x import y``, relative imports (``from .x import y``,
  ``from . import x``, ``from .. import x``), wherever they stand in the module;
- in the script itself, a string ``"clipdyn.module:function"``: the step a script hands to the
  embedding worker (:func:`clipdyn.worker.run_step`), which imports it by name;
- package data files the reached code builds a path to (``x / "name"``, ``.joinpath("name")``,
  ``Path("name")``): a file of the package (``"data/imagenet16_categories.csv"`` or its bare
  name) or a folder of it (``"model_configs"``, every file below it).

The hash is over each module's syntax tree without docstrings, so an edit of a comment, a
docstring or the layout reruns nothing; a change of code or data reruns every rule that reaches
it. (A cosmetic edit the syntax tree does see, such as renaming a local variable, does rerun; use
``snakemake --touch`` to mark the outputs current instead.)
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from pathlib import Path
from typing import FrozenSet, Iterable, List, Optional, Set, Tuple

#: the package folder (``workflow/clipdyn``)
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = "clipdyn"

_STEP = re.compile(r"^(clipdyn(?:\.\w+)*):\w+$")


def module_file(module: str) -> Optional[Path]:
    """The source file of a clipdyn module (``clipdyn.metrics`` -> ``metrics/__init__.py``), or None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_package(module: str) -> bool:
    f = module_file(module)
    return f is not None and f.name == "__init__.py"


def _parents(module: str) -> List[str]:
    """The packages Python imports before ``module`` (``clipdyn``, ``clipdyn.metrics`` ...)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _absolute(module: str, level: int, name: Optional[str]) -> str:
    """Resolve a relative import in ``module`` (``from ..x import y`` has level 2, name ``x``)."""
    if level == 0:
        return name or ""
    pkg = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(level - 1):
        pkg = pkg.rpartition(".")[0]
    return f"{pkg}.{name}" if name else pkg


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.AST, module: str, steps: bool) -> Set[str]:
    """clipdyn modules named by the imports of ``tree`` (and step strings when ``steps``)."""
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.level, node.module)
            found.add(base)
            # ``from pkg import name``: name may be a submodule
            found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif steps and isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _STEP.match(node.value)
            if m:
                found.add(m.group(1))
    out = set()
    for name in found:
        if name.split(".")[0] == PACKAGE and module_file(name) is not None:
            out.add(name)
            out.update(_parents(name))
    return out


_PATH_CALLS = {"Path", "PurePath", "joinpath", "open", "open_text", "read_text", "read_bytes"}


def _path_strings(tree: ast.AST) -> Set[str]:
    """Strings the code builds a path from: ``x / "name"``, ``joinpath("name")``, ``Path("name")``."""
    out: Set[str] = set()

    def add(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.add(node.value)

    for n in ast.walk(tree):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
            add(n.left)
            add(n.right)
        elif isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in _PATH_CALLS:
                for arg in n.args:
                    add(arg)
    return out


@functools.lru_cache(maxsize=None)
def _data_files() -> Tuple[Tuple[str, Path], ...]:
    """(relative posix path, file) of every non-Python file in the package."""
    out = []
    for f in sorted(PACKAGE_DIR.rglob("*")):
        if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts:
            out.append((f.relative_to(PACKAGE_DIR).as_posix(), f))
    return tuple(out)


def data_files_named(strings: Iterable[str]) -> List[Path]:
    """Package data files (or every file of a package folder) that one of ``strings`` names."""
    strings = {s.strip("/") for s in strings if s and len(s) < 300}
    hits = []
    for rel, f in _data_files():
        parents = [p.as_posix() for p in Path(rel).parents if p.as_posix() != "."]
        if rel in strings or f.name in strings or any(p in strings for p in parents) or any(
                s.endswith("/" + rel) for s in strings):
            hits.append(f)
    return hits


def _modules_reached(entry: Path, entry_module: str) -> List[str]:
    seen: Set[str] = set()
    todo = sorted(_imports(_parse(entry), entry_module, steps=True))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(_parse(module_file(name)), name, steps=False) - seen)
    return sorted(seen)


def _module_digest(tree: ast.Module) -> str:
    """The syntax tree without docstrings (comments and layout are not in it anyway)."""
    tree = ast.parse(ast.unparse(tree))  # a copy
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


@functools.lru_cache(maxsize=None)
def reached(entry: str, extra_modules: FrozenSet[str] = frozenset()) -> Tuple[Tuple[str, ...], Tuple[Path, ...]]:
    """(clipdyn modules, package data files) that the script or module ``entry`` reaches.

    ``entry``: a script path, or a module name (``clipdyn.metrics.shape_bias``). ``extra_modules``:
    modules a rule also runs though no import names them (a metric kind's evaluator module, which
    the metric step imports by the registry's name).
    """
    starts = []
    if entry.startswith(PACKAGE + ".") or entry == PACKAGE:
        starts.append((module_file(entry), entry))
    else:
        starts.append((Path(entry), "__script__"))
    starts += [(module_file(m), m) for m in sorted(extra_modules)]
    modules: Set[str] = set()
    for path, name in starts:
        if path is None or not path.is_file():
            raise FileNotFoundError(f"code identity: no source for {name} ({path})")
        if name != "__script__":
            modules.add(name)
            modules.update(_parents(name))
        modules.update(_modules_reached(path, name))
    strings: Set[str] = set()
    for m in modules:
        strings |= _path_strings(_parse(module_file(m)))
    for path, name in starts:
        if name == "__script__":
            strings |= _path_strings(_parse(path))
    return tuple(sorted(modules)), tuple(data_files_named(strings))


@functools.lru_cache(maxsize=None)
def code_hash(entry: str, extra_modules: FrozenSet[str] = frozenset()) -> str:
    """Short hash of the clipdyn code and data ``entry`` reaches (see the module docstring).

    Enters a rule's ``params:`` so that an edit of any of it reruns that rule's jobs. Computed once
    per process per entry.
    """
    modules, data = reached(str(entry), frozenset(extra_modules))
    h = hashlib.sha256()
    for m in modules:
        h.update(m.encode() + b"\0" + _module_digest(_parse(module_file(m))).encode() + b"\0")
    for f in data:
        h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def package_hash() -> str:
    """Hash of every module and data file of the package (which code a persistent worker runs)."""
    h = hashlib.sha256()
    for f in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" not in f.parts:
            h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + _module_digest(_parse(f)).encode())
    for rel, f in _data_files():
        h.update(rel.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
