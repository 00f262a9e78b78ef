"""The house rules of the code base, checked on its source: no import cycle in ``pipelines/`` or
``vae_core/``, every module importable on its own, and a leading underscore meaning private.

The import graph is read with :mod:`ast` from every ``import`` in a module, also those inside
functions and ``if TYPE_CHECKING:`` blocks: a cycle hidden in a lazy import is still a cycle of
responsibilities. ``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is
one, else to the package ``pkg`` (its ``__init__``).

Private means: a name with a leading underscore defined in one module is used in no other, not
imported (``from m import _name``, anywhere in the project, tests included) and not reached as an
attribute (``obj._name``). A class's underscore members are the exception when reached through
``self`` or ``cls`` (the template methods a subclass implements and calls, as
``DetectorBase._score_frame``): the class hierarchy is their one owner.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "vae_core")
ELSEWHERE = ("tests", "benchmarks", "infra")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(f): f for p in PACKAGES for f in sorted((ROOT / p).rglob("*.py")) if f.name != "__main__.py"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def import_targets(module: str, is_package: bool, node: ast.AST, known: set[str]) -> list[str]:
    """The project modules an ``import`` statement of ``module`` names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join(here + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (every import statement in it)."""
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in import_targets(name, path.name == "__init__.py", node, known)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def private_uses() -> list[str]:
    """Each use of another module's underscore name, as ``file:line: name (defined in ...)``."""
    product = {name: path for name, path in _modules().items()}
    trees = {path: ast.parse(path.read_text(), str(path)) for path in product.values()}
    defined: dict[str, set[Path]] = defaultdict(set)
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = node.name
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                name = node.id
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr
            else:
                continue
            if _private(name):
                defined[name].add(path)
    found = []
    every = list(trees) + [f for d in ELSEWHERE for f in sorted((ROOT / d).rglob("*.py"))]
    for path in every:
        tree = trees.get(path) or ast.parse(path.read_text(), str(path))
        in_product = path in trees
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in PACKAGES):
                names = [a.name for a in node.names if _private(a.name)]
            elif in_product and isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                through_self = isinstance(owner, ast.Name) and owner.id in ("self", "cls") or (
                    isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super")
                if not through_self:
                    names = [node.attr]
            for name in names:
                homes = defined.get(name, set())
                if homes and path not in homes:
                    where = ", ".join(sorted(str(h.relative_to(ROOT)) for h in homes))
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name} (defined in {where})")
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_lazy_and_type_checking_imports_are_edges():
    known = {"pipelines.lake.core", "pipelines.lake.commit", "pipelines.lake"}
    source = ("def f():\n    from pipelines.lake.core import Lake\n"
              "if TYPE_CHECKING:\n    from . import core\n")
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    targets = [t for n in nodes for t in import_targets("pipelines.lake.commit", False, n, known)]
    assert targets == ["pipelines.lake.core", "pipelines.lake.core"]


def test_no_module_uses_another_modules_private_names():
    assert private_uses() == []


def test_every_module_imports_on_its_own():
    """Each project module imported into an interpreter that holds no other project module
    (third-party packages stay loaded, so this takes seconds): none depends on another having
    been imported first."""
    script = (
        "import importlib, sys, traceback\n"
        f"names = {sorted(_modules())!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in ('pipelines', 'vae_core')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=1).strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
