"""drivers/ stays below laserctl/ and free of import circles; its files stay one thing each.

Imports are read from the source with ast, never by importing it. Every import statement
counts, wherever it stands: at module level, inside a function (the lazy imports of
drivers/transport/url.py) and under `if TYPE_CHECKING:`. A type-only import is still a
dependency a reader has to follow, and a circle through one is a circle in the design, so it
counts for cycles like any other.

What does not count: the implicit import of a parent package (`import drivers.sim.faults` also
runs drivers/sim/__init__.py). Every package __init__ that re-exports its own submodules would
otherwise be a circle with each of them. An import of a package (`from drivers.protocol import
Param`) is an edge to its __init__, which in turn has edges to the submodules it imports;
`from drivers.sim import firmware` is an edge to the submodule itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = ROOT / "drivers"
LONG_FILE = 400  # lines; a longer file says in its docstring why it is one thing
REASON = "One file because"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(DRIVERS.rglob("*.py"))}


def imported_names(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) for every import statement in the file, relative ones resolved."""
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base, tuple(alias.name for alias in node.names)


def edges(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the drivers modules it imports."""
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for _, module, names in imported_names(path):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            if len(targets) < len(names) or not names:
                targets.append(module)  # names that are not submodules live in `module`
            graph[name].update(t for t in targets if t in known and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None (depth first)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for child in sorted(graph[node]):
            cycle = visit(child, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


def test_the_graph_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks below are only as good as the import reader: a circle through a
    TYPE_CHECKING import or a function-level import is found, and relative imports resolve."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "from .. import top\n"
        "if TYPE_CHECKING:\n"
        "    from .c import Thing\n"
        "def later() -> None:\n"
        "    import drivers.x.d\n"
    )
    fake = tmp_path / "drivers" / "x" / "a.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(source, encoding="utf-8")
    found = {(module, names) for _, module, names in imported_names(fake, tmp_path)}
    assert found == {
        ("typing", ("TYPE_CHECKING",)),
        ("drivers.x", ("b",)),
        ("drivers", ("top",)),
        ("drivers.x.c", ("Thing",)),
        ("drivers.x.d", ()),
    }
    graph = {"a": {"c"}, "b": set(), "c": {"d"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "c", "d", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_drivers_has_no_import_cycle() -> None:
    cycle = find_cycle(edges(modules()))
    assert cycle is None, "import circle in drivers/: " + " -> ".join(cycle or [])


def test_drivers_imports_nothing_of_laserctl() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in modules().values()
        for line, module, _ in imported_names(path)
        if module == "laserctl" or module.startswith("laserctl.")
    ]
    assert not offending, "drivers/ must not import laserctl:\n" + "\n".join(offending)


def test_a_long_file_says_why_it_is_one_thing() -> None:
    unexplained = []
    for path in modules().values():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > LONG_FILE and REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not unexplained, (
        f"split these along a seam, or say in the docstring why each is one thing "
        f"({REASON!r} ...):\n" + "\n".join(unexplained)
    )
