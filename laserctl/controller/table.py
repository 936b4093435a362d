"""The controller's states and every transition, guard and side effect, in one table.

This table is the single source of truth: the core builds its `transitions` Machine from it,
docs/state-machine.md is drawn from it (python -m laserctl.controller.diagram), and a test fails
when that file is stale. Rules for one trigger are tried in order; the first whose guards all
pass is taken. dest None is an internal transition: the state stays, the effects run.

Guards and effects are named here by typed references, `Guard` and `Effect` members: a
misspelt one is an error for mypy and an AttributeError when this module is imported, never a
lookup that fails at run time. The core binds each member to its implementation (core.GUARD_OF,
core.EFFECT_OF, checked complete when core.py is imported). A guard returns None (pass) or the
reason it fails, which becomes the refusal message; it is evaluated at most once per trigger
and its reason kept. An effect only queues actions and updates data (no I/O).
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


class Guard(StrEnum):
    """A guard the table names; its value is its name in docs/state-machine.md."""

    LINK_DOWN = "link_down"
    NOTHING_LATCHED = "nothing_latched"
    PARAMETERS_WITHIN_LIMITS = "parameters_within_limits"
    ARMING_PERMITTED = "arming_permitted"
    STILL_SAFE = "still_safe"
    NO_ARM_IN_FLIGHT = "no_arm_in_flight"
    INACTIVE = "inactive"
    LINK_UP = "link_up"
    ESTOP_RELEASED = "estop_released"
    CAUSES_CLEARED = "causes_cleared"


class Effect(StrEnum):
    """An effect the table names; its value is its name in docs/state-machine.md."""

    OPEN_LINK = "open_link"
    CLOSE_LINK = "close_link"
    RESYNC_DEVICE = "resync_device"
    RUN_SELF_TEST = "run_self_test"
    SEND_PARAMETERS = "send_parameters"
    SEND_ARM = "send_arm"
    START_READY_DELAY = "start_ready_delay"
    NOTE_EMISSION_ON = "note_emission_on"
    NOTE_EMISSION_OFF = "note_emission_off"
    NOTE_INACTIVITY = "note_inactivity"
    DISARM_DEVICE = "disarm_device"
    SEND_ESTOP = "send_estop"
    FORGET_EYEWEAR = "forget_eyewear"
    SEND_RESET = "send_reset"
    CLEAR_CAUSES = "clear_causes"


G = Guard
E = Effect


@dataclass(frozen=True, slots=True)
class Rule:
    trigger: str
    source: tuple[State, ...]
    dest: State | None
    guards: tuple[Guard, ...] = ()
    effects: tuple[Effect, ...] = ()


def _rule(
    trigger: str,
    source: State | tuple[State, ...],
    dest: State | None,
    guards: tuple[Guard, ...] = (),
    effects: tuple[Effect, ...] = (),
) -> Rule:
    return Rule(trigger, source if isinstance(source, tuple) else (source,), dest, guards, effects)


TABLE: tuple[Rule, ...] = (
    # -- connecting, identifying (SR-15), self test (SR-17)
    _rule("connect", S.DISCONNECTED, S.CONNECTING, effects=(E.OPEN_LINK,)),
    _rule("connect", LATCHED, None, guards=(G.LINK_DOWN,), effects=(E.OPEN_LINK,)),
    _rule("link_open_failed", S.CONNECTING, S.DISCONNECTED),
    _rule(
        "identified",
        S.CONNECTING,
        S.SELF_TEST,
        guards=(G.NOTHING_LATCHED,),
        effects=(E.RESYNC_DEVICE, E.RUN_SELF_TEST),
    ),
    _rule(
        "identified",
        S.CONNECTING,
        S.FAULT,
        effects=(E.DISARM_DEVICE, E.FORGET_EYEWEAR, E.RESYNC_DEVICE),
    ),
    _rule("identified", LATCHED, None, effects=(E.DISARM_DEVICE, E.RESYNC_DEVICE)),
    _rule("self_test_passed", S.SELF_TEST, S.STANDBY, effects=(E.SEND_PARAMETERS,)),
    # -- standby, arming (SR-04, SR-07, SR-08, SR-16)
    _rule(
        "set_parameters",
        S.STANDBY,
        None,
        guards=(G.PARAMETERS_WITHIN_LIMITS,),
        effects=(E.SEND_PARAMETERS,),
    ),
    _rule("arm", S.STANDBY, None, guards=(G.ARMING_PERMITTED,), effects=(E.SEND_ARM,)),
    _rule("arm_acked", S.STANDBY, S.READY, guards=(G.STILL_SAFE,), effects=(E.START_READY_DELAY,)),
    _rule(
        "arm_acked",
        (S.STANDBY, *LATCHED, S.SERVICE, S.SELF_TEST),
        None,
        effects=(E.DISARM_DEVICE,),
    ),
    _rule("enter_service", S.STANDBY, S.SERVICE, guards=(G.NO_ARM_IN_FLIGHT,)),
    _rule("leave_service", S.SERVICE, S.STANDBY),
    # -- ready and emitting (SR-02, SR-04, SR-05)
    _rule("emission_started", S.READY, S.EMITTING, effects=(E.NOTE_EMISSION_ON,)),
    _rule("emission_ended", S.EMITTING, S.READY, effects=(E.NOTE_EMISSION_OFF,)),
    _rule("disarm", ARMED, S.STANDBY, effects=(E.DISARM_DEVICE,)),
    _rule(
        "disarm", (S.STANDBY, S.SERVICE, S.SELF_TEST, *LATCHED), None, effects=(E.DISARM_DEVICE,)
    ),
    _rule("device_disarmed", ARMED, S.STANDBY, effects=(E.NOTE_EMISSION_OFF,)),
    _rule(
        "inactivity",
        S.READY,
        S.STANDBY,
        guards=(G.INACTIVE,),
        effects=(E.NOTE_INACTIVITY, E.DISARM_DEVICE),
    ),
    _rule("interlock_opened", ARMED, S.STANDBY, effects=(E.DISARM_DEVICE, E.NOTE_EMISSION_OFF)),
    # -- latching (SR-03, SR-10, SR-20)
    _rule(
        "fault",
        (S.DISCONNECTED, *LINKED),
        S.FAULT,
        effects=(E.DISARM_DEVICE, E.FORGET_EYEWEAR, E.NOTE_EMISSION_OFF),
    ),
    _rule("fault", LATCHED, None, effects=(E.DISARM_DEVICE,)),
    _rule(
        "estop",
        (S.DISCONNECTED, *LINKED, S.FAULT),
        S.ESTOP,
        effects=(E.SEND_ESTOP, E.FORGET_EYEWEAR, E.NOTE_EMISSION_OFF),
    ),
    _rule("estop", S.ESTOP, None, effects=(E.SEND_ESTOP,)),
    _rule(
        "reset",
        S.FAULT,
        None,
        guards=(G.LINK_UP, G.CAUSES_CLEARED),
        effects=(E.SEND_RESET,),
    ),
    _rule(
        "reset",
        S.ESTOP,
        None,
        guards=(G.LINK_UP, G.ESTOP_RELEASED, G.CAUSES_CLEARED),
        effects=(E.SEND_RESET,),
    ),
    _rule("reset_acked", LATCHED, S.SELF_TEST, effects=(E.CLEAR_CAUSES, E.RUN_SELF_TEST)),
    # -- leaving
    _rule("disconnect", LINKED, S.DISCONNECTED, effects=(E.DISARM_DEVICE, E.CLOSE_LINK)),
)

GUARDS: dict[Guard, str] = {
    G.LINK_DOWN: "the link is down (a latched controller may reopen it)",
    G.NOTHING_LATCHED: "handpiece matches the plan and no fault cause is waiting for a reset",
    G.PARAMETERS_WITHIN_LIMITS: "every value inside min(plan window, capability, calibrated range) "
    "(SR-07)",
    G.ARMING_PERMITTED: "interlocks closed, footswitch released, parameters confirmed, device "
    "idle, the last grant settled, budget left (SR-01, SR-04, SR-08)",
    G.STILL_SAFE: "every interlock still closed when the device acknowledges ARM",
    G.NO_ARM_IN_FLIGHT: "no ARM waiting for its answer",
    G.INACTIVE: "READY without a pulse or footswitch change for the inactivity timeout (SR-04)",
    G.LINK_UP: "the link is alive",
    G.ESTOP_RELEASED: "the e-stop input reads released (SR-03)",
    G.CAUSES_CLEARED: "every latched cause that is a condition has cleared (SR-20)",
}

EFFECTS: dict[Effect, str] = {
    E.OPEN_LINK: "open the device URL and identify (HELLO)",
    E.CLOSE_LINK: "close the link",
    E.RESYNC_DEVICE: "DISARM, SHOTS_SINCE (re-read unacknowledged shots, SR-11), GET_STATUS",
    E.RUN_SELF_TEST: "SELF_TEST (SR-17)",
    E.SEND_PARAMETERS: "SET_PARAMS with the checked values, the dose as its calibrated drive value "
    "(SR-14)",
    E.SEND_ARM: "ARM with grant = remaining budget and delay = ready delay (SR-04, SR-08)",
    E.START_READY_DELAY: "first pulse no sooner than the ready delay; start the inactivity timer",
    E.NOTE_EMISSION_ON: "log the emission indication on (SR-05)",
    E.NOTE_EMISSION_OFF: "log the emission indication off (SR-05)",
    E.NOTE_INACTIVITY: "say READY fell back to STANDBY for want of use (SR-04)",
    E.DISARM_DEVICE: "DISARM, priority, retried until acknowledged or the link is lost (SR-16)",
    E.SEND_ESTOP: "ESTOP, priority, retried until acknowledged or the link is lost (SR-03)",
    E.FORGET_EYEWEAR: "the eyewear confirmation must be given again",
    E.SEND_RESET: "RESET to the device",
    E.CLEAR_CAUSES: "forget the latched causes (acknowledged by the reset)",
}
