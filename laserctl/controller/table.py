"""The controller's states and every transition, guard and side effect, in one table.

This table is the single source of truth: the core builds its `transitions` Machine from it,
docs/state-machine.md is drawn from it (python -m laserctl.controller.diagram), and a test fails
when that file is stale. Rules for one trigger are tried in order; the first whose guards all
pass is taken. dest None is an internal transition: the state stays, the effects run.

Guards are methods `_guard_<name>` of the core returning None (pass) or the reason it fails,
which becomes the refusal message; effects are methods `_effect_<name>` that only queue actions
and update data (no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    SELF_TEST = "SELF_TEST"
    STANDBY = "STANDBY"
    READY = "READY"
    EMITTING = "EMITTING"
    FAULT = "FAULT"
    ESTOP = "ESTOP"
    SERVICE = "SERVICE"


S = State
ARMED = (S.READY, S.EMITTING)
LATCHED = (S.FAULT, S.ESTOP)
LINKED = (S.CONNECTING, S.SELF_TEST, S.STANDBY, S.READY, S.EMITTING, S.SERVICE)


@dataclass(frozen=True, slots=True)
class Rule:
    trigger: str
    source: tuple[State, ...]
    dest: State | None
    guards: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()


def _rule(
    trigger: str,
    source: State | tuple[State, ...],
    dest: State | None,
    guards: tuple[str, ...] = (),
    effects: tuple[str, ...] = (),
) -> Rule:
    return Rule(trigger, source if isinstance(source, tuple) else (source,), dest, guards, effects)


TABLE: tuple[Rule, ...] = (
    # -- connecting, identifying (SR-15), self test (SR-17)
    _rule("connect", S.DISCONNECTED, S.CONNECTING, effects=("open_link",)),
    _rule("connect", LATCHED, None, guards=("link_down",), effects=("open_link",)),
    _rule("link_open_failed", S.CONNECTING, S.DISCONNECTED),
    _rule(
        "identified",
        S.CONNECTING,
        S.SELF_TEST,
        guards=("nothing_latched",),
        effects=("resync_device", "run_self_test"),
    ),
    _rule(
        "identified",
        S.CONNECTING,
        S.FAULT,
        effects=("disarm_device", "forget_eyewear", "resync_device"),
    ),
    _rule("identified", LATCHED, None, effects=("disarm_device", "resync_device")),
    _rule("self_test_passed", S.SELF_TEST, S.STANDBY, effects=("send_parameters",)),
    # -- standby, arming (SR-04, SR-07, SR-08, SR-16)
    _rule(
        "set_parameters",
        S.STANDBY,
        None,
        guards=("parameters_within_limits",),
        effects=("send_parameters",),
    ),
    _rule("arm", S.STANDBY, None, guards=("arming_permitted",), effects=("send_arm",)),
    _rule("arm_acked", S.STANDBY, S.READY, guards=("still_safe",), effects=("start_ready_delay",)),
    _rule(
        "arm_acked",
        (S.STANDBY, *LATCHED, S.SERVICE, S.SELF_TEST),
        None,
        effects=("disarm_device",),
    ),
    _rule("enter_service", S.STANDBY, S.SERVICE, guards=("no_arm_in_flight",)),
    _rule("leave_service", S.SERVICE, S.STANDBY),
    # -- ready and emitting (SR-02, SR-04, SR-05)
    _rule("emission_started", S.READY, S.EMITTING, effects=("note_emission_on",)),
    _rule("emission_ended", S.EMITTING, S.READY, effects=("note_emission_off",)),
    _rule("disarm", ARMED, S.STANDBY, effects=("disarm_device",)),
    _rule(
        "disarm", (S.STANDBY, S.SERVICE, S.SELF_TEST, *LATCHED), None, effects=("disarm_device",)
    ),
    _rule("device_disarmed", ARMED, S.STANDBY, effects=("note_emission_off",)),
    _rule("inactivity", S.READY, S.STANDBY, guards=("inactive",), effects=("disarm_device",)),
    _rule("interlock_opened", ARMED, S.STANDBY, effects=("disarm_device", "note_emission_off")),
    # -- latching (SR-03, SR-10, SR-20)
    _rule(
        "fault",
        (S.DISCONNECTED, *LINKED),
        S.FAULT,
        effects=("disarm_device", "forget_eyewear", "note_emission_off"),
    ),
    _rule("fault", LATCHED, None, effects=("disarm_device",)),
    _rule(
        "estop",
        (S.DISCONNECTED, *LINKED, S.FAULT),
        S.ESTOP,
        effects=("send_estop", "forget_eyewear", "note_emission_off"),
    ),
    _rule("estop", S.ESTOP, None, effects=("send_estop",)),
    _rule(
        "reset",
        S.FAULT,
        None,
        guards=("link_up", "causes_cleared"),
        effects=("send_reset",),
    ),
    _rule(
        "reset",
        S.ESTOP,
        None,
        guards=("link_up", "estop_released", "causes_cleared"),
        effects=("send_reset",),
    ),
    _rule("reset_acked", LATCHED, S.SELF_TEST, effects=("clear_causes", "run_self_test")),
    # -- leaving
    _rule("disconnect", LINKED, S.DISCONNECTED, effects=("disarm_device", "close_link")),
)

GUARDS: dict[str, str] = {
    "link_down": "the link is down (a latched controller may reopen it)",
    "nothing_latched": "handpiece matches the plan and no fault cause is waiting for a reset",
    "parameters_within_limits": "every value inside min(plan window, capability, calibrated range) "
    "(SR-07)",
    "arming_permitted": "interlocks closed, footswitch released, parameters confirmed, device "
    "idle, the last grant settled, budget left (SR-01, SR-04, SR-08)",
    "still_safe": "every interlock still closed when the device acknowledges ARM",
    "no_arm_in_flight": "no ARM waiting for its answer",
    "inactive": "READY without a pulse or footswitch change for the inactivity timeout (SR-04)",
    "link_up": "the link is alive",
    "estop_released": "the e-stop input reads released (SR-03)",
    "causes_cleared": "every latched cause that is a condition has cleared (SR-20)",
}

EFFECTS: dict[str, str] = {
    "open_link": "open the device URL and identify (HELLO)",
    "close_link": "close the link",
    "resync_device": "DISARM, SHOTS_SINCE (re-read unacknowledged shots, SR-11), GET_STATUS",
    "run_self_test": "SELF_TEST (SR-17)",
    "send_parameters": "SET_PARAMS with the checked values, the dose as its calibrated drive value "
    "(SR-14)",
    "send_arm": "ARM with grant = remaining budget and delay = ready delay (SR-04, SR-08)",
    "start_ready_delay": "first pulse no sooner than the ready delay; start the inactivity timer",
    "note_emission_on": "log the emission indication on (SR-05)",
    "note_emission_off": "log the emission indication off (SR-05)",
    "disarm_device": "DISARM, priority, retried until acknowledged or the link is lost (SR-16)",
    "send_estop": "ESTOP, priority, retried until acknowledged or the link is lost (SR-03)",
    "forget_eyewear": "the eyewear confirmation must be given again",
    "send_reset": "RESET to the device",
    "clear_causes": "forget the latched causes (acknowledged by the reset)",
}
