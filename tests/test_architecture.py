"""The layout rules docs/architecture.md states, checked on the source itself:

- no import cycle among gpbt's modules, counting every import a module can make: static
  `import` / `from` statements wherever they stand (inside functions too: an import made at
  run time is still a dependency) and the module paths it names in strings to import them by
  name (`ENGINES`' registration lines, `importlib.import_module("gpbt....")`). Imports under
  `if TYPE_CHECKING:` are left out: they never run. An import of `a.b.c` is an edge to that
  module alone, not to the packages above it.
- no switch on an engine's name outside `gpbt/engines/`: what a run can do is asked of its
  `Engine` object (`gpbt.engines.engine_of(config).supports(...)`), so adding an engine edits
  no other layer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
ENGINE_NAMES = {"vector", "local", "ray"}
MODULE_STRING = re.compile(r"^gpbt(\.\w+)+(:\w+)?$")


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (they name modules in prose)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name `source` (the module `module`) imports, as written."""
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    docs = _docstrings(tree)
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docs
            and MODULE_STRING.match(node.value)
        ):
            names.add(node.value.partition(":")[0])
    return names


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the modules of the tree under `root` it imports (an imported name that is not
    a module, `from a import function`, counts as an import of `a`)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges = set()
        for name in imported_names(path.read_text(), module, path.name == "__init__.py"):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.add(name)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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


def engine_switches(source: str) -> list[str]:
    """Comparisons of an engine field (an expression that mentions `engine`) with an engine's
    name, or with a collection of them: `cfg["engine"] == "vector"`, `engine in ("vector",
    "local")`."""

    def names_in(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value} & ENGINE_NAMES
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return set().union(*(names_in(e) for e in node.elts)) if node.elts else set()
        return set()

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        named = [s for s in sides if names_in(s)]
        field = [s for s in sides if not names_in(s) and "engine" in ast.unparse(s).lower()]
        if named and field:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checks_find_what_they_look_for():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = (
        'def f(cfg, spec):\n    if cfg.get("engine") == "vector":\n        pass\n'
        '    if spec.engine not in ("local", "ray"):\n        pass\n'
        '    if cfg["method"] == "local":\n        pass\n'
    )
    assert engine_switches(source) == [
        "line 2: cfg.get('engine') == 'vector'",
        "line 4: spec.engine not in ('local', 'ray')",
    ]
    imports = imported_names(
        '"""gpbt.docs.only"""\nimport os\nfrom . import sibling\nfrom typing import TYPE_CHECKING\n'
        "if TYPE_CHECKING:\n    from gpbt.never import X\n"
        'def f():\n    from gpbt.late import g\n    return {"x": "gpbt.engines.vector"}\n',
        "gpbt.pkg.mod",
        is_package=False,
    )
    assert {"os", "gpbt.pkg.sibling", "gpbt.late.g", "gpbt.engines.vector"} <= imports
    assert not {"gpbt.never", "gpbt.docs.only"} & imports


def test_no_import_cycle_in_gpbt():
    graph = import_graph()
    assert "gpbt.engines.vector" in graph["gpbt.engines"]  # the registry's lines count
    assert cycles(graph) == []


def test_no_engine_name_switch_outside_the_engines():
    found = {}
    for path in (SRC / "gpbt").rglob("*.py"):
        if (SRC / "gpbt" / "engines") in path.parents:
            continue
        hits = engine_switches(path.read_text())
        if hits:
            found[str(path.relative_to(SRC))] = hits
    assert found == {}
