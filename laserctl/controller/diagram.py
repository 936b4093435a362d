"""Draw docs/state-machine.md from the transition table (mermaid; no binaries needed).

python -m laserctl.controller.diagram            # rewrite docs/state-machine.md
python -m laserctl.controller.diagram --check    # exit 1 when the file is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

from .table import EFFECTS, GUARDS, TABLE, State

DOC = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"


def _label(trigger: str, guards: tuple[str, ...]) -> str:
    return trigger + (f" [{' & '.join(guards)}]" if guards else "")


def mermaid() -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {State.DISCONNECTED}"]
    for rule in TABLE:
        if rule.dest is None:
            continue  # internal transitions are listed in the table below the diagram
        for source in rule.source:
            lines.append(f"    {source} --> {rule.dest}: {_label(rule.trigger, rule.guards)}")
    return "\n".join(lines)


def render() -> str:
    out = [
        "# Controller state machine",
        "",
        "Generated from `laserctl/controller/table.py` by "
        "`python -m laserctl.controller.diagram`; do not edit by hand (a test fails when this "
        "file is stale). Rules for one trigger are tried in order; the first whose guards pass "
        "is taken. Internal transitions (the state stays) are in the table only.",
        "",
        "```mermaid",
        mermaid(),
        "```",
        "",
        "## Transitions",
        "",
        "| trigger | from | to | guards | effects |",
        "|---|---|---|---|---|",
    ]
    for rule in TABLE:
        out.append(
            f"| {rule.trigger} | {', '.join(rule.source)} | {rule.dest or '(stays)'} | "
            f"{', '.join(rule.guards) or '-'} | {', '.join(rule.effects) or '-'} |"
        )
    out += ["", "## Guards", "", "| guard | passes when |", "|---|---|"]
    out += [f"| {name} | {text} |" for name, text in GUARDS.items()]
    out += ["", "## Effects", "", "| effect | does |", "|---|---|"]
    out += [f"| {name} | {text} |" for name, text in EFFECTS.items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run python -m laserctl.controller.diagram", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
