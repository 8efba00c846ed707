"""The package's shape: no module imports a module that imports it back (directly or through
others), counting imports inside functions too, which hide a cycle without removing it."""

from __future__ import annotations

import ast
from pathlib import Path

import musicnext_tf

PACKAGE = Path(musicnext_tf.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports anywhere in its code}."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                if all(submodule in modules for submodule in submodules):
                    graph[name].update(submodules)  # `from package import module`
                elif node.module in modules:
                    graph[name].add(node.module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle that a depth-first search meets, as the list of its modules."""
    found, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module] - {module}):
            if state.get(imported) == "open":
                found.append(path[path.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "musicnext_tf.datasets.folder" in graph["musicnext_tf.datasets.demo"]
    assert "musicnext_tf.demo_music" in graph["musicnext_tf.datasets.demo"]  # inside load_index


def test_no_module_imports_a_module_that_imports_it_back():
    assert cycles(import_graph()) == []
