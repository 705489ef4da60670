"""No circular imports in testbed or its built-in plugins.

A cycle works only as long as nobody imports its modules in another order (or moves an import
out of a function), so the import graph is checked from the source: every `import` and
`from ... import` of a testbed module, at module level or inside a function (a lazy import
hides a cycle, it does not remove it), is an edge; imports under `if TYPE_CHECKING:` never run
and are left out. The graph must be acyclic.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"testbed": ROOT / "testbed", "testbed_plugins": ROOT / "plugins"}


def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Import nodes that run: every one except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _imports_in(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def edges(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules among `known` that module `name` (whose code is `source`) imports."""
    out = set()
    for node in _imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:  # relative: from the module's package, up level - 1 packages
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from package import name` imports the submodule `name` when there is one
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names]
        for target in targets:
            while target and target not in known:  # `import testbed.x.y` where y is not a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    """The check itself can fail: a hidden lazy import closing a loop is found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    known = {"pkg", "pkg.one", "pkg.two"}
    tree = "import pkg.one\nfrom pkg import two\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.x\n" \
           "def f():\n    from . import two\n    from .one import thing\n"
    assert edges("pkg.three", tree, False, known) == {"pkg.one", "pkg.two"}


def test_no_circular_imports():
    found = modules()
    assert "testbed.render.video" in found and "testbed_plugins.panels" in found
    known = set(found)
    graph = {name: edges(name, path.read_text(), path.name == "__init__.py", known) for name, path in found.items()}
    assert "testbed.render.quantities" in graph["testbed.render.video"]  # lazy imports count
    cycle = find_cycle(graph)
    assert cycle is None, "circular import: " + " -> ".join(cycle)

