"""docs/traceability.md and docs/soup.md stay true to the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from . import traceability

ROOT = Path(__file__).resolve().parent.parent


def test_traceability_doc_is_current() -> None:
    assert traceability.OUTPUT.read_text(encoding="utf-8") == traceability.render(), (
        "docs/traceability.md is stale: run `make docs`"
    )


def test_every_requirement_has_a_test_or_a_stated_plan() -> None:
    reqs = traceability.requirements()
    assert len(reqs) == 20, "could not read the requirement table in ../shared"
    marks = traceability.markers()
    missing = [rid for rid in reqs if not marks.get(rid) and rid not in traceability.PENDING]
    assert not missing, f"requirements with no test and no plan: {missing}"
    stale_pending = [rid for rid in traceability.PENDING if marks.get(rid)]
    assert not stale_pending, f"now covered, remove from PENDING: {stale_pending}"


def test_markers_name_real_requirements() -> None:
    unknown = set(traceability.markers()) - set(traceability.requirements())
    assert not unknown, f"req markers naming no requirement: {sorted(unknown)}"


def _dependency_names() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    out = {}
    for spec in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower()
        out[name] = re.sub(r"^\[[^\]]*\]", "", spec[len(name) :].strip()).strip()  # no extras
    return out


def test_soup_lists_every_runtime_dependency_with_its_range() -> None:
    soup = (ROOT / "docs" / "soup.md").read_text(encoding="utf-8").lower()
    rows = {
        m.group(1).strip(): m.group(2).strip()
        for m in re.finditer(r"^\|\s*([a-z0-9_.-]+)\s*\|\s*`([^`]*)`\s*\|", soup, re.MULTILINE)
    }
    for name, version_range in _dependency_names().items():
        assert name in rows, f"docs/soup.md does not list {name}"
        assert rows[name] == version_range.lower(), (
            f"docs/soup.md gives {name} {rows[name]!r}, pyproject.toml {version_range!r}"
        )
    extra = set(rows) - set(_dependency_names()) - {"python"}
    assert not extra, f"docs/soup.md lists packages pyproject.toml does not: {sorted(extra)}"
