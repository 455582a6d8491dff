"""The house rules of the package layout (README, "Where things are"), checked on the source.

Module-level imports only: an import inside a function runs when it is called, and one
under ``if TYPE_CHECKING:`` never runs, so neither closes a cycle or drags in a layer.
"""

from __future__ import annotations

import ast
import pathlib

from conftest import ROOT

PACKAGE = ROOT / "plancheck"
CORE = ("inputs", "network", "compare", "remedies", "run", "records")
FRONT = ("click", "pytest", "_pytest", "plancheck.render", "plancheck.cli")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(path: pathlib.Path, name: str) -> set[str]:
    """Every module the file imports when it is imported (absolute names; ``from x import y`` gives x and x.y)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not _type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module-level import edges between plancheck's own modules; importing a.b.c imports a and a.b first."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for imported in module_level_imports(path, name):
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in mods and prefix != name and not name.startswith(prefix + "."):
                    edges.add(prefix)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_plancheck_imports():
    graph = import_graph()
    assert "plancheck.records.report" in graph["plancheck.check"]
    assert "plancheck.errors" in graph["plancheck.cli.main"]


def test_no_module_level_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_over_700_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 700}
    assert long == {}


def test_subpackages_and_top_level_modules():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert set(CORE) | {"render", "cli"} <= set(subpackages)
    top = {p.name for p in PACKAGE.glob("*.py")}
    # the top level is the package's frame plus one pipeline per command, each returning a record of its own
    frame = {"__init__.py", "__main__.py", "_nnunet.py", "atomic.py", "errors.py", "options.py", "pytest_plugin.py"}
    record_of = {"check": "report"}
    pipelines = sorted(name[:-3] for name in top - frame)
    assert [p for p in pipelines if not (PACKAGE / "records" / f"{record_of.get(p, p)}.py").is_file()] == []
    assert len(pipelines) <= 8, pipelines


def test_core_imports_no_front_end_at_module_level():
    offenders = {}
    for name, path in modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in CORE:
            bad = sorted(m for m in module_level_imports(path, name)
                         if any(m == f or m.startswith(f + ".") for f in FRONT))
            if bad:
                offenders[name] = bad
    assert offenders == {}
