"""The transition table is the single source of truth: the machine, the guards and effects it
names, and docs/state-machine.md all follow from it."""

from __future__ import annotations

import pytest

from laserctl.controller import diagram
from laserctl.controller.core import EFFECT_OF, GUARD_OF
from laserctl.controller.table import EFFECTS, GUARDS, LATCHED, TABLE, State


def test_state_machine_doc_is_generated_from_the_table() -> None:
    assert diagram.DOC.read_text(encoding="utf-8") == diagram.render(), (
        "docs/state-machine.md is stale: run python -m laserctl.controller.diagram"
    )
    assert diagram.main(["--check"]) == 0


def test_every_guard_and_effect_named_exists_and_is_documented() -> None:
    for rule in TABLE:
        for guard in rule.guards:
            assert callable(GUARD_OF[guard]), guard
            assert guard in GUARDS
        for effect in rule.effects:
            assert callable(EFFECT_OF[effect]), effect
            assert effect in EFFECTS
    named_guards = {g for r in TABLE for g in r.guards}
    named_effects = {e for r in TABLE for e in r.effects}
    assert set(GUARDS) == named_guards
    assert set(EFFECTS) == named_effects


def test_every_state_is_reachable_from_disconnected() -> None:
    reached = {State.DISCONNECTED}
    frontier = [State.DISCONNECTED]
    while frontier:
        state = frontier.pop()
        for rule in TABLE:
            if state in rule.source and rule.dest is not None and rule.dest not in reached:
                reached.add(rule.dest)
                frontier.append(rule.dest)
    assert reached == set(State)


@pytest.mark.req("SR-03")
def test_fault_and_estop_are_left_only_by_an_acknowledged_reset() -> None:
    exits = {
        (rule.trigger, rule.dest)
        for rule in TABLE
        for source in rule.source
        if source in LATCHED and rule.dest is not None and rule.dest not in LATCHED
    }
    assert exits == {("reset_acked", State.SELF_TEST)}
    # ESTOP is never left for FAULT, and a reset always goes through a new self test.
    assert not any(State.ESTOP in r.source and r.dest is State.FAULT for r in TABLE)


@pytest.mark.req("SR-04")
def test_emission_states_are_entered_only_by_an_acknowledged_arm() -> None:
    into_ready = {(r.trigger, s) for r in TABLE if r.dest is State.READY for s in r.source}
    assert into_ready == {("arm_acked", State.STANDBY), ("emission_ended", State.EMITTING)}
    into_emitting = {(r.trigger, s) for r in TABLE if r.dest is State.EMITTING for s in r.source}
    assert into_emitting == {("emission_started", State.READY)}


@pytest.mark.req("SR-03")
def test_estop_is_accepted_from_every_state() -> None:
    sources = {s for r in TABLE if r.trigger == "estop" for s in r.source}
    assert sources == set(State)


def test_controller_doc_lists_every_interlock_with_its_effect() -> None:
    from laserctl.safety.interlocks import INTERLOCKS

    doc = (diagram.DOC.parent / "controller.md").read_text(encoding="utf-8")
    for spec in INTERLOCKS:
        assert f"| {spec.id} | " in doc, spec.id
        row = next(line for line in doc.splitlines() if line.startswith(f"| {spec.id} | "))
        assert str(spec.effect) in row, (spec.id, spec.effect)
