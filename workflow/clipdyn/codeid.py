"""Code identity: what a stage computes, hashed so that a pure move or rename reruns nothing.

A rule's results depend on the library code its script runs. Rather than list modules by hand
(a list that drifts), :func:`code_hash` reads the code with :mod:`ast` (nothing is imported, so
building a 10,000-job DAG does not pay for torch) and hashes the *definitions* the script
reaches, not the files they live in:

- every top-level ``def``, ``class`` and assignment of the package is a definition;
- a definition's references to other definitions of the package are followed wherever they
  lead: ``from clipdyn.x import f``, ``import clipdyn.x as m`` then ``m.f``, relative imports,
  imports inside functions, a lazy package that finds a name in its submodules (``__getattr__``),
  and the step strings ``"clipdyn.module:function"`` a script hands to the embedding worker;
- each definition is hashed without its own name and with every reference to another definition
  replaced by that definition's hash (a Merkle hash; mutually recursive definitions are hashed
  as one group), so moving a function to another module, renaming a module or a function, or
  reordering a file changes no hash, while an edit of any code a definition runs changes its
  hash and the hash of everything that calls it;
- package data files that reached code builds a path to (``x / "name"``, ``.joinpath("name")``,
  ``Path("name")``) count by their content;
- statements a module runs on import besides definitions and imports (``matplotlib.use("Agg")``)
  count for every module the stage imports.

A definition nothing in the stage refers to does not count: adding an unused helper to a module
reruns nothing, and a module with code for two stages (the embedding writer and the metric
readers of :mod:`clipdyn.io`) reruns only the stage whose code changed. Docstrings, comments and
layout are not in the hash. A cosmetic edit the syntax tree does see (renaming a local variable)
does rerun; ``snakemake --touch`` marks the outputs current instead.

What is fabricated for tests and the demo (:data:`FABRICATION`) is never part of a stage: a stage
that reached it would be an error (:func:`code_hash` raises).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

#: the package folder (``workflow/clipdyn``)
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = "clipdyn"
#: subpackages that only fabricate test and demo data: outside every stage's code identity
FABRICATION = ("clipdyn.fixtures", "clipdyn.demo")

_STEP = re.compile(r"^(clipdyn(?:\.\w+)*):(\w+)$")
_PATH_CALLS = {"Path", "PurePath", "joinpath", "open", "open_text", "read_text", "read_bytes"}

#: a symbol: ("def", module, name), or ("module", module, "") for a module used as a value
Symbol = Tuple[str, str, str]


def _parse(path: Path) -> ast.Module:
    """The module's syntax tree without docstrings and without argument and return annotations
    (they compute nothing; class-body annotations stay, as they declare a dataclass's fields)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    todo: List[ast.AST] = [tree]
    while todo:  # statements only: docstrings and annotated functions live there
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                arg.annotation = None
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        for attr in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, attr, None)
            if isinstance(block, list):
                todo.extend(block)
    return tree


def _is_import_only(stmt: ast.stmt) -> bool:
    """An ``if TYPE_CHECKING:`` / ``try: import`` block holding only imports (and ``pass``)."""
    if not isinstance(stmt, (ast.If, ast.Try)):
        return False
    inner = [s for s in ast.walk(stmt) if isinstance(s, ast.stmt) and s is not stmt]
    return all(isinstance(s, (ast.Import, ast.ImportFrom, ast.Pass)) for s in inner)


def _targets(node: ast.AST) -> List[str]:
    """Names an assignment target binds (``a``, ``a, b``, ``[a, *b]``; not ``a.x`` or ``a[0]``)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [n for e in node.elts for n in _targets(e)]
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    return []


def _bound_names(stmt: ast.stmt) -> List[str]:
    """Names a top-level statement binds: a def or class, an assignment's targets, and those of the
    statements inside an if/try/with/for block (never the locals of a function)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [n for t in stmt.targets for n in _targets(t)]
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        return _targets(stmt.target)
    out = []
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        out += _targets(stmt.target)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        out += [n for item in stmt.items if item.optional_vars is not None for n in _targets(item.optional_vars)]
    for attr in ("body", "orelse", "finalbody"):
        for inner in getattr(stmt, attr, None) or []:
            out += _bound_names(inner)
    for handler in getattr(stmt, "handlers", None) or []:
        out += ([handler.name] if handler.name else []) + [n for s in handler.body for n in _bound_names(s)]
    return out


def _own_locals(fn: ast.AST) -> Set[str]:
    """The names local to a function's own scope (arguments, assignments, loop, ``with`` and
    comprehension targets, inner defs), less those declared ``global`` or ``nonlocal``: a load of
    one of them there is not a reference to the module's definition of that name."""
    args = fn.args
    out = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    out |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    declared: Set[str] = set()
    todo = list(fn.body) if isinstance(fn.body, list) else [fn.body]
    while todo:
        n = todo.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)  # its body is its own scope
            todo.extend(n.decorator_list)
            continue
        if isinstance(n, ast.Lambda):
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            declared.update(n.names)
        todo.extend(ast.iter_child_nodes(n))
    return out - declared


@dataclass
class _Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    #: top-level name -> the statement that binds it
    bindings: Dict[str, ast.stmt] = field(default_factory=dict)
    #: import alias -> (module, attribute or "")
    aliases: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    #: statements run on import that bind no tracked name (side effects)
    prelude: List[ast.stmt] = field(default_factory=list)
    #: modules its top-level imports load
    loads: Set[str] = field(default_factory=set)

    @property
    def lazy(self) -> bool:
        return "__getattr__" in self.bindings


def _absolute(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    """Resolve a relative import in ``module`` (``from ..x import y`` has level 2, name ``x``)."""
    if level == 0:
        return name or ""
    pkg = module if is_package else module.rpartition(".")[0]
    for _ in range(level - 1):
        pkg = pkg.rpartition(".")[0]
    return f"{pkg}.{name}" if name else pkg


def _import_aliases(stmts: Iterable[ast.AST], module: str, is_package: bool) -> Dict[str, Tuple[str, str]]:
    """alias -> (module, attribute) of the clipdyn imports among ``stmts`` (walked)."""
    out: Dict[str, Tuple[str, str]] = {}
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] != PACKAGE:
                        continue
                    if a.asname:
                        out[a.asname] = (a.name, "")
                    else:  # ``import clipdyn.x.y`` binds ``clipdyn``
                        out[a.name.split(".")[0]] = (PACKAGE, "")
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node.level, node.module)
                if base.split(".")[0] != PACKAGE:
                    continue
                for a in node.names:
                    if a.name != "*":
                        out[a.asname or a.name] = (base, a.name)
    return out


def _imported_modules(node: ast.AST, module: str, is_package: bool) -> Set[str]:
    """Modules (and their parent packages) that the imports in ``node`` load."""
    out = set()
    for n in ast.walk(node):
        names = []
        if isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = _absolute(module, is_package, n.level, n.module)
            names = [base] + [f"{base}.{a.name}" for a in n.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE:
                out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


class _Index:
    """Every module of the package, parsed once, with its bindings, aliases and prelude."""

    def __init__(self, package_dir: Path = PACKAGE_DIR):
        self.package_dir = package_dir
        self.modules: Dict[str, _Module] = {}
        for f in sorted(package_dir.rglob("*.py")):
            if "__pycache__" in f.parts:
                continue
            rel = f.relative_to(package_dir).with_suffix("").parts
            is_pkg = rel[-1] == "__init__"
            name = ".".join((PACKAGE,) + (rel[:-1] if is_pkg else rel))
            self.modules[name] = self._read(name, f, is_pkg)
        self.data_files = tuple(
            (f.relative_to(package_dir).as_posix(), f) for f in sorted(package_dir.rglob("*"))
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts)
        # per instance, not an lru_cache on the method: that would keep every instance (and its syntax
        # trees, millions of objects for a few copies of the package) alive for the whole process
        self._digests: Dict[Path, str] = {}

    @staticmethod
    def _read(name: str, path: Path, is_pkg: bool) -> _Module:
        tree = _parse(path)
        m = _Module(name, path, is_pkg, tree)
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)) or _is_import_only(stmt):
                m.aliases.update(_import_aliases([stmt], name, is_pkg))
                m.loads |= _imported_modules(stmt, name, is_pkg)
                continue
            names = _bound_names(stmt)
            simple = isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                                       ast.AnnAssign)) and names
            for n in names:
                m.bindings[n] = stmt
            if not simple:
                # an if/try block, a call, an assignment to an attribute: it runs on import
                m.prelude.append(stmt)
                m.aliases.update(_import_aliases([stmt], name, is_pkg))
                m.loads |= _imported_modules(stmt, name, is_pkg)
        return m

    # ---- name resolution

    def attribute(self, module: str, name: str, _depth: int = 0) -> Optional[Symbol]:
        """What ``module.name`` is: a definition, a module, or None (not the package's)."""
        m = self.modules.get(module)
        if m is None or _depth > 20:
            return None
        if name in m.bindings:
            return ("def", module, name)
        if name in m.aliases:
            return self.target(*m.aliases[name], _depth=_depth + 1)
        if m.lazy and m.is_package:  # a package whose __getattr__ imports the name from a submodule
            for other in sorted(self.modules):
                if other.rpartition(".")[0] == module and name in self.modules[other].bindings:
                    return ("def", other, name)
        sub = f"{module}.{name}"
        if sub in self.modules:
            return ("module", sub, "")
        return None

    def target(self, module: str, attr: str, _depth: int = 0) -> Optional[Symbol]:
        if not attr:
            return ("module", module, "") if module in self.modules else None
        return self.attribute(module, attr, _depth)

    def step(self, text: str) -> Optional[Symbol]:
        """The definition a ``"clipdyn.module:function"`` string names."""
        match = _STEP.match(text)
        return self.attribute(match.group(1), match.group(2)) if match else None

    def data_digest(self, strings: Iterable[str]) -> str:
        """Content hashes of the package data files that ``strings`` name."""
        return ",".join(self._file_digest(f) for f in data_files_named(strings, self.data_files))

    def _file_digest(self, f: Path) -> str:
        if f not in self._digests:
            self._digests[f] = hashlib.sha256(f.read_bytes()).hexdigest()[:24]
        return self._digests[f]


def _chain(node: ast.AST) -> Optional[List[str]]:
    """``a.b.c`` -> ["a", "b", "c"]; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + parts[::-1]
    return None


def _path_strings(tree: ast.AST) -> Set[str]:
    """Strings the code builds a path from: ``x / "name"``, ``joinpath("name")``, ``Path("name")``."""
    out: Set[str] = set()

    def add(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) < 300:
            out.add(node.value.strip("/"))

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


def data_files_named(strings: Iterable[str], data_files) -> List[Path]:
    """Package data files (or every file of a package folder) that one of ``strings`` names."""
    strings = {s.strip("/") for s in strings if s and len(s) < 300}
    hits = []
    for rel, f in data_files:
        parents = [p.as_posix() for p in Path(rel).parents if p.as_posix() != "."]
        if rel in strings or f.name in strings or any(p in strings for p in parents) or any(
                s.endswith("/" + rel) for s in strings):
            hits.append(f)
    return hits


class _Unit:
    """One piece of code to hash: a definition, a module used as a value, an import-time statement
    or a rule script; with the definitions it refers to."""

    def __init__(self, node: ast.AST, refs: Dict[int, Symbol], data: str = ""):
        self.node, self.refs, self.data = node, refs, data

    def dump(self, name_of) -> str:
        """The unit without its own name, each reference replaced by ``name_of(symbol)``."""
        out: List[str] = []
        _serialise(self.node, {i: "§" + name_of(s) for i, s in self.refs.items()}, out, top=True)
        return "".join(out) + ("|data:" + self.data if self.data else "")


_NAMED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_package_import(node) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == PACKAGE
    if isinstance(node, ast.Import):
        return all(a.name.split(".")[0] == PACKAGE for a in node.names)
    return False


def _serialise(node, swap: Dict[int, str], out: List[str], top: bool = False) -> None:
    """A compact dump of ``node`` (fields in order, no positions), with the nodes in ``swap``
    written as their replacement, and the defined name of a top-level unit left out."""
    if id(node) in swap:
        out.append(swap[id(node)])
        return
    if _is_package_import(node):  # where a name comes from is not what the code computes
        out.append("import§")
        return
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for name, value in ast.iter_fields(node):
            if name in ("ctx", "type_comment"):
                continue
            if top and (name == "name" and isinstance(node, _NAMED)):
                value = "§"
            elif top and name in ("targets", "target") and isinstance(node, (ast.Assign, ast.AnnAssign,
                                                                              ast.AugAssign)):
                value = "§"
            _serialise(value, swap, out)
            out.append(",")
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        # imports from the package bind names only (their definitions are reached through the
        # references): how many statements import them, and from where, is not what code computes
        for v in [v for v in node if not _is_package_import(v)]:
            _serialise(v, swap, out)
            out.append(",")
        out.append("]")
    else:
        out.append(repr(node))


class _Hasher:
    """Resolves and hashes the definitions reached from entries (see the module docstring)."""

    def __init__(self, index: _Index):
        self.index = index
        self.units: Dict[Symbol, _Unit] = {}
        self.hashes: Dict[Symbol, str] = {}

    def refs(self, module: str, node: ast.AST) -> Dict[int, Symbol]:
        """{id(ast node): symbol} for every reference in ``node`` to a definition of the package:
        names and attribute chains (resolved through imports, the unit's own first; a function's
        locals shadow the module's names) and step strings."""
        m = self.index.modules.get(module)
        local = _import_aliases([node], module, m.is_package if m else False)
        out: Dict[int, Symbol] = {}

        def scan(n: ast.AST, shadowed: FrozenSet[str]) -> None:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                # decorators and defaults are evaluated where the function is defined
                for d in getattr(n, "decorator_list", []) + n.args.defaults + [
                        d for d in n.args.kw_defaults if d is not None]:
                    scan(d, shadowed)
                inner = shadowed | (_own_locals(n) - set(local))
                for stmt in (n.body if isinstance(n.body, list) else [n.body]):
                    scan(stmt, inner)
                return
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                sym = self.index.step(n.value)
                if sym:
                    out[id(n)] = sym
                return
            if isinstance(n, (ast.Attribute, ast.Name)):
                chain = _chain(n)
                if chain and chain[0] not in shadowed and not (
                        isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)):
                    found = self._resolve(module, chain, local)
                    if found is not None:
                        sym, used = found
                        target = n
                        for _ in range(len(chain) - used):
                            target = target.value
                        out[id(target)] = sym
                        return
            for child in ast.iter_child_nodes(n):
                scan(child, shadowed)

        scan(node, frozenset())
        return out

    def _resolve(self, module: str, chain: List[str], local: Dict[str, Tuple[str, str]]
                 ) -> Optional[Tuple[Symbol, int]]:
        """(symbol, how many parts of ``chain`` name it), or None."""
        head = chain[0]
        if head in local:
            sym = self.index.target(*local[head])
        elif module in self.index.modules:
            sym = self.index.attribute(module, head)
        else:
            sym = None
        if sym is None:
            return None
        used = 1
        while sym[0] == "module" and used < len(chain):
            nxt = self.index.attribute(sym[1], chain[used])
            if nxt is None:
                break
            sym, used = nxt, used + 1
        return sym, used

    def unit(self, module: str, node: ast.AST) -> _Unit:
        return _Unit(node, self.refs(module, node), self.index.data_digest(_path_strings(node)))

    def visit(self, roots: Iterable[Symbol]) -> Set[Symbol]:
        """Record the roots and everything they refer to; returns all of them."""
        todo, seen = list(roots), set()
        while todo:
            s = todo.pop()
            if s in seen:
                continue
            seen.add(s)
            if s not in self.units:
                kind, module, name = s
                m = self.index.modules[module]
                if kind == "def":
                    self.units[s] = self.unit(module, m.bindings[name])
                else:  # a module used as a value: every definition of it
                    names = sorted(set(m.bindings))
                    node = ast.Module(body=[ast.Expr(ast.Name(id=n, ctx=ast.Load())) for n in names],
                                      type_ignores=[])
                    self.units[s] = _Unit(node, {id(e.value): ("def", module, n) for e, n in zip(node.body, names)})
            todo.extend(self.units[s].refs.values())
        self._hash(seen)
        return seen

    def _hash(self, symbols: Set[Symbol]) -> None:
        """Hash the symbols not hashed yet, dependencies first; a strongly connected group
        (mutual recursion) is hashed together (Tarjan's algorithm, iterative)."""
        index_of: Dict[Symbol, int] = {}
        low: Dict[Symbol, int] = {}
        stack: List[Symbol] = []
        on_stack: Set[Symbol] = set()

        def deps(s: Symbol):
            return iter(sorted({d for d in self.units[s].refs.values() if d not in self.hashes}))

        for root in sorted(symbols):
            if root in self.hashes or root in index_of:
                continue
            work = [(root, deps(root))]
            index_of[root] = low[root] = len(index_of)
            stack.append(root)
            on_stack.add(root)
            while work:
                v, it = work[-1]
                for w in it:
                    if w not in index_of:
                        index_of[w] = low[w] = len(index_of)
                        stack.append(w)
                        on_stack.add(w)
                        work.append((w, deps(w)))
                        break
                    if w in on_stack:
                        low[v] = min(low[v], index_of[w])
                else:
                    work.pop()
                    if work:
                        low[work[-1][0]] = min(low[work[-1][0]], low[v])
                    if low[v] == index_of[v]:
                        group = set()
                        while True:
                            w = stack.pop()
                            on_stack.discard(w)
                            group.add(w)
                            if w == v:
                                break
                        self._hash_group(group)

    def _hash_group(self, group: Set[Symbol]) -> None:
        def name_of(d: Symbol) -> str:
            return "group" if d in group else self.hashes[d]

        dumps = {s: self.units[s].dump(name_of) for s in group}
        together = hashlib.sha256("\0".join(sorted(dumps.values())).encode()).hexdigest()
        for s, d in dumps.items():
            self.hashes[s] = hashlib.sha256((together + "\0" + d).encode()).hexdigest()[:24]


class CodeIdentity:
    """Code identity of the clipdyn package in ``package_dir`` (the installed one by default)."""

    def __init__(self, package_dir: Path = PACKAGE_DIR):
        self.index = _Index(Path(package_dir))
        self.hasher = _Hasher(self.index)

    def _entry(self, entry: str) -> Tuple[List[Symbol], Optional[_Unit]]:
        """(the definitions an entry names, the unit of its own code): a rule script's statements,
        a module (every definition of it), or ``"clipdyn.module:function"``."""
        index, h = self.index, self.hasher
        if _STEP.match(entry):
            sym = index.step(entry)
            if sym is None:
                raise FileNotFoundError(f"code identity: no definition {entry} in {index.package_dir}")
            return [sym], None
        if entry == PACKAGE or entry.startswith(PACKAGE + "."):
            if entry not in index.modules:
                raise FileNotFoundError(f"code identity: no module {entry} in {index.package_dir}")
            return [("module", entry, "")], None
        path = Path(entry)
        if not path.is_file():
            raise FileNotFoundError(f"code identity: no source for {entry}")
        tree = _parse(path)
        refs = h.refs("__script__", tree)  # through the script's imports; the imports are not hashed
        body = ast.Module(body=[s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))],
                          type_ignores=[])
        return sorted(set(refs.values())), _Unit(body, refs, index.data_digest(_path_strings(tree)))

    def _registered(self, modules: Iterable[str]) -> List[Symbol]:
        """Definitions that a module registers on import: decorated by a function of the package
        (``@register("iqa")``), so that loading the module runs package code and changes its state."""
        out = []
        for name in modules:
            m = self.index.modules[name]
            for binding, stmt in m.bindings.items():
                decorators = getattr(stmt, "decorator_list", None)
                if decorators and any(self.hasher.refs(name, d) for d in decorators):
                    out.append(("def", name, binding))
        return out

    def _loaded(self, symbols: Iterable[Symbol]) -> Set[str]:
        """Modules a stage imports: those holding its definitions, what their top-level imports and
        its definitions' own imports load, transitively, with their parent packages."""
        index = self.index
        todo: Set[str] = set()
        for kind, module, name in symbols:
            todo.add(module)
            if kind == "def":
                m = index.modules[module]
                todo |= _imported_modules(m.bindings[name], module, m.is_package)
        seen: Set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen or name not in index.modules:
                continue
            seen.add(name)
            parts = name.split(".")
            todo.update(".".join(parts[:i]) for i in range(1, len(parts)))
            todo |= index.modules[name].loads
        return seen

    def reached(self, entry: str, extras: Iterable[str] = ()) -> Tuple[Set[Symbol], Set[str], List[_Unit]]:
        """(definitions, loaded modules, the entries' own units) of ``entry`` and ``extras``."""
        roots: List[Symbol] = []
        own: List[_Unit] = []
        for e in (str(entry), *sorted(extras)):
            syms, unit = self._entry(e)
            roots += syms
            if unit is not None:
                own.append(unit)
        symbols: Set[Symbol] = set()
        while True:  # registrations can load more modules, which can register more
            symbols |= self.hasher.visit(roots)
            loaded = self._loaded(symbols)
            roots = [s for s in self._registered(loaded) if s not in symbols]
            if not roots:
                return symbols, loaded, own

    def code_hash(self, entry: str, extras: Iterable[str] = ()) -> str:
        """See :func:`code_hash`."""
        h = self.hasher
        symbols, loaded, own = self.reached(entry, extras)
        for s in symbols:
            if s[1].startswith(FABRICATION):
                raise ValueError(f"code identity: {entry} reaches {s[1]}, which only fabricates test data")
        parts = sorted({h.hashes[s] for s in symbols})
        for name in sorted(loaded):
            for stmt in self.index.modules[name].prelude:
                unit = h.unit(name, stmt)
                h.visit(unit.refs.values())
                parts.append("prelude:" + unit.dump(h.hashes.__getitem__))
        parts += ["entry:" + unit.dump(h.hashes.__getitem__) for unit in own]
        return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]


def _fingerprint(paths: Iterable[Path]) -> str:
    """Size and modification time of every file: the disk cache's key."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _identity() -> CodeIdentity:
    return CodeIdentity()


@functools.lru_cache(maxsize=None)
def _package_files() -> Tuple[Path, ...]:
    return tuple(sorted(f for f in PACKAGE_DIR.rglob("*") if f.is_file() and "__pycache__" not in f.parts))


_CACHE = PACKAGE_DIR / "__pycache__" / "clipdyn-codeid.json"


@functools.lru_cache(maxsize=None)
def _disk_cache() -> Tuple[str, dict]:
    """(fingerprint of the package's files, the hashes cached for it): reading the package's code
    costs about half a second, which every Snakefile parse (every cluster job) would pay."""
    key = _fingerprint(_package_files())
    try:
        cached = json.loads(_CACHE.read_text())
        if cached.get("key") == key:
            return key, cached["hashes"]
    except (OSError, ValueError, KeyError):
        pass
    return key, {}


def _remember(entry_key: str, value: str) -> None:
    key, hashes = _disk_cache()
    hashes[entry_key] = value
    try:
        _CACHE.parent.mkdir(exist_ok=True)
        tmp = _CACHE.with_name(f"{_CACHE.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "hashes": hashes}))
        os.replace(tmp, _CACHE)
    except OSError:  # a read-only install: no cache, the same hashes
        pass


@functools.lru_cache(maxsize=None)
def code_hash(entry: str, extras: FrozenSet[str] = frozenset()) -> str:
    """Short hash of what ``entry`` computes (see the module docstring).

    ``entry``: a rule script's path, a module name, or ``"clipdyn.module:function"``; ``extras``:
    definitions (``"module:function"``) a rule also runs though no import names them (a metric
    kind's evaluator, which the metric step runs by the registry's name). The hash covers the
    script's own statements, the definitions reached (Merkle hashes, free of names and places),
    the data files they read, and the import-time statements of the modules it loads.

    Enters a rule's ``params:`` so that an edit of any of it reruns that rule's jobs. Computed once
    per process per entry, and kept on disk for unchanged files (``__pycache__/clipdyn-codeid.json``).
    """
    files = [Path(e) for e in (entry, *extras) if not _STEP.match(e) and not e.startswith(PACKAGE)]
    entry_key = "\0".join([str(entry), *sorted(extras), _fingerprint(files) if files else ""])
    _, hashes = _disk_cache()
    if entry_key not in hashes:
        _remember(entry_key, _identity().code_hash(str(entry), sorted(extras)))
    return hashes[entry_key]


@functools.lru_cache(maxsize=None)
def worker_hash() -> str:
    """Hash of every module and data file of the package outside :data:`FABRICATION`: which code a
    persistent embedding worker runs (a worker serves any step, so it restarts on any such edit)."""
    h = hashlib.sha256()
    for f in _package_files():
        rel = f.relative_to(PACKAGE_DIR).as_posix()
        if f.suffix == ".pyc" or (PACKAGE + "." + rel.replace("/", ".")).startswith(FABRICATION):
            continue
        h.update(rel.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
