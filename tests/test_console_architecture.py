"""The console's screens and widgets reach the console through one small protocol
(laserctl.console.host.ConsoleHost), never by importing ConsoleApp: app.py imports the
screens, and no screen or widget imports app.py back, at any level (function-level and
TYPE_CHECKING imports count). That ConsoleApp is a ConsoleHost, mypy checks (app.py, _HOST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[1] / "laserctl" / "console"
SCREENS = [*sorted((CONSOLE / "screens").glob("*.py")), CONSOLE / "widgets.py"]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, resolved against its package."""
    package = path.relative_to(CONSOLE.parents[1]).with_suffix("").parts[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


@pytest.mark.parametrize("path", SCREENS, ids=lambda p: p.name)
def test_no_screen_or_widget_imports_the_console_app(path: Path) -> None:
    imports = imported_modules(path)
    assert "laserctl.console.app" not in imports, f"{path.name} imports laserctl.console.app"
    assert not any(name.endswith(".ConsoleApp") for name in imports)
