"""The table's guards are typed references evaluated once per trigger (issue 13).

A refused trigger keeps the reason of the guard that refused it; nothing runs the guards a
second time to find it. A misspelt guard is an error for mypy and on import, not a lookup that
fails the first time the rule is tried.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from mypy import api as mypy_api

from laserctl.controller import core as core_module
from laserctl.controller.core import GUARD_OF, Controller
from laserctl.controller.events import ConfirmEyewear, RequestArm, RequestDisarm, RequestReset
from laserctl.controller.table import Guard, State
from laserctl.plan import FRACTIONAL_CONSERVATIVE

from .harness import Bench

FAST = dataclasses.replace(FRACTIONAL_CONSERVATIVE, inactivity_s=2.0)


def _counting(monkeypatch: pytest.MonkeyPatch, calls: Counter[Guard]) -> None:
    """Every guard counts its calls into `calls` (bound before the Controller is built)."""
    for guard, check in list(GUARD_OF.items()):

        def counted(
            core: Controller,
            _guard: Guard = guard,
            _check: Callable[[Controller], str | None] = check,
        ) -> str | None:
            calls[_guard] += 1
            return _check(core)

        monkeypatch.setitem(core_module.GUARD_OF, guard, counted)  # type: ignore[arg-type]


def test_each_guard_runs_at_most_once_per_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole session (connect, refused and granted ARMs, pulses, inactivity, a fault, a
    refused and an accepted reset) with every trigger watched: no guard is run twice by one."""
    calls: Counter[Guard] = Counter()
    _counting(monkeypatch, calls)
    bench = Bench(plan=FAST)
    fired = bench.core._fire
    per_trigger: list[tuple[str, Counter[Guard]]] = []

    def watched(trigger: str) -> str | None:
        before = Counter(calls)
        try:
            return fired(trigger)
        finally:
            per_trigger.append((trigger, calls - before))

    bench.core._fire = watched  # type: ignore[method-assign]
    bench.connect()
    bench.operator(RequestArm())  # refused: no eyewear
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    bench.run(1.1)
    bench.inject("press")
    bench.run(0.3)
    bench.inject("release")
    bench.run(FAST.inactivity_s + 0.5)  # READY unused: STANDBY by the inactivity guard
    assert bench.state is State.STANDBY
    bench.operator(RequestArm())
    bench.run(0.2)
    assert bench.state is State.READY
    bench.inject("open door")
    bench.run(0.1)
    bench.operator(RequestReset())  # refused: the door is still open
    bench.inject("close door")
    bench.run(0.1)
    bench.operator(RequestReset())
    bench.run(0.5)
    assert bench.state is State.STANDBY, bench.core.causes
    twice = [(t, c) for t, c in per_trigger if any(n > 1 for n in c.values())]
    assert not twice, twice
    tried = {g for _t, c in per_trigger for g in c}
    assert {Guard.ARMING_PERMITTED, Guard.INACTIVE, Guard.LINK_UP, Guard.CAUSES_CLEARED} <= tried
    assert any(r.command == "RESET" for r in bench.core.refusals)


def test_a_refusal_is_the_reason_of_the_guard_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[Guard] = Counter()
    _counting(monkeypatch, calls)
    bench = Bench(plan=FAST)
    bench.connect()
    calls.clear()
    actions = bench.core.handle(RequestArm(), bench.now)
    assert calls == Counter({Guard.ARMING_PERMITTED: 1})
    assert bench.core.refusals[-1].reason == "interlock not closed: eyewear not confirmed"
    assert not any(type(a).__name__ == "Send" for a in actions)
    bench.operator(ConfirmEyewear())
    calls.clear()
    bench.feed(RequestDisarm())  # a guardless rule: no guard is run
    assert calls == Counter()
    bench.pump()
    bench.operator(RequestArm())
    bench.run(0.2)
    assert bench.state is State.READY
    bench.inject("open door")
    bench.run(0.05)
    calls.clear()
    bench.core.handle(RequestReset(), bench.now)
    # FAULT's reset rule: link_up passes, causes_cleared refuses; each run once.
    assert calls == Counter({Guard.LINK_UP: 1, Guard.CAUSES_CLEARED: 1})
    assert bench.core.refusals[-1].reason == "cause still present: door still open"


TYPO = """\
from laserctl.controller.table import Guard, Rule, State

RULE = Rule("arm", (State.STANDBY,), None, guards=(Guard.ARMING_PERMITED,))
"""


def test_a_misspelt_guard_fails_mypy_and_import(tmp_path: Path) -> None:
    path = tmp_path / "typo_table.py"
    path.write_text(TYPO, encoding="utf-8")
    out, _err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--follow-imports=silent", str(path)]
    )
    assert status == 1, out
    assert '"type[Guard]" has no attribute "ARMING_PERMITED"' in out
    spec = importlib.util.spec_from_file_location("typo_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(AttributeError, match="ARMING_PERMITED"):
        spec.loader.exec_module(module)
    assert "typo_table" not in sys.modules


def test_every_guard_and_effect_is_bound_when_the_core_is_imported() -> None:
    """core.py refuses to import with a table member it has no implementation for."""
    assert core_module.unbound(GUARD_OF, Guard) == []
    assert core_module.unbound({}, Guard) == [str(g) for g in Guard]
    assert core_module.unbound(core_module.EFFECT_OF, core_module.Do) == []
