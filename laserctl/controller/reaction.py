"""The reaction to what the device reports: STATUS, FAULT and BOOT events, and an interlock
that opens while armed (SR-02: DISARM at once, then FAULT, ESTOP or STANDBY as the interlock
table says; SR-03, SR-15, SR-20).

The event that reports an opening is answered in the same handle() call that queues the
DISARM. A device state the core does not expect (armed without the controller, a new self
test needed, FAULT or ESTOP on its own) latches the matching cause.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from drivers.protocol import (
    Boot,
    DeviceState,
    Fault,
    FaultCode,
    GetStatus,
    Interlock,
    StatusBody,
    StatusChanged,
)

from ..safety.interlocks import (
    BY_DEVICE_BIT,
    SPECS,
    Effect,
    InterlockId,
    Reading,
    not_closed,
    worst_effect,
)
from .causes import Cause, CauseKind, device_fault_cause, device_state, fault_code, interlock_bit
from .context import Core
from .intake import count_shots_in_doubt, recover_shots, replays_lost_by_status
from .table import ARMED, LATCHED, State


def on_device_event(core: Core, event: object) -> None:
    """A device event other than a shot (the core gives those to intake.py)."""
    match event:
        case StatusChanged():
            on_status(core, event.body, made_after=core.ledger.upto)  # events come in order
        case Fault():
            on_fault(core, event)
        case Boot():
            pinned = core.pinned
            if pinned is not None and event.boot_id != pinned.boot_id:
                core.pinned = dataclasses.replace(pinned, boot_id=event.boot_id)
                core.latch(Cause(CauseKind.REBOOT, "the device rebooted (BOOT event)"))


def on_status(core: Core, body: StatusBody, *, made_after: int | None = None) -> None:
    """A STATUS (answer, event or the heartbeat's): the shot counter checked against the
    ledger (SR-11), the grant settled (SR-08), the device's state and interlocks reacted to.

    `made_after`: the ledger's mark at a moment known to precede the status (a STATUS_CHANGED
    event: now, events come in order; a GET_STATUS answer: when it was sent; a heartbeat's:
    unknown). A counter below it went back for real. A counter below the mark but not below
    that may be a status older than shots already processed: an answer repeated from the
    device's answer cache after its first copy was lost. Such a status is set aside, and a
    new GET_STATUS asked, whose answer is made after the shots we have."""
    ledger = core.ledger
    older = ledger.has_baseline and ledger.upto is not None and body.shot_no < ledger.upto
    if older and (made_after is None or body.shot_no >= made_after):
        if core.inflight.recheck is None:
            core.inflight.recheck = core.send(GetStatus())
        return
    previous = core.status
    core.status = body
    if ledger.has_baseline and ledger.upto is not None:
        # Below a mark that preceded the status: the device's counter went back (a reboot
        # that lost it, SR-11).
        if body.shot_no < ledger.upto:
            old = ledger.upto
            count_shots_in_doubt(core, "lost its shot counter")
            ledger.rebase(body.shot_no)
            core.latch(
                Cause(
                    CauseKind.SHOT_COUNTER,
                    f"device shot counter went back from {old} to {body.shot_no}",
                )
            )
        else:
            ledger.device_count = max(ledger.device_count or 0, body.shot_no)
            replays_lost_by_status(core, body.event_no)
            if ledger.missing and ledger.replays_due == 0:
                recover_shots(core)
    core.grants.settle(body, core.ledger)
    if previous is not None and previous.footswitch != body.footswitch:
        core.last_activity = core.now
    reported = device_state(body.state)
    if reported is DeviceState.ESTOP and core.state is not State.ESTOP:
        pressed = not body.is_closed(Interlock.ESTOP)
        core.estop(Cause(CauseKind.ESTOP, "e-stop pressed" if pressed else "device in ESTOP"))
    elif reported is DeviceState.FAULT and core.state not in LATCHED:
        core.latch(device_fault_cause(body.fault, 0, body.temp_mc))
    elif reported is DeviceState.NOT_TESTED and core.state in (
        State.STANDBY,
        *ARMED,
        State.SERVICE,
    ):
        core.latch(Cause(CauseKind.REBOOT, "the device needs a new self test (restarted?)"))
    check_interlocks(core)
    device_armed = reported in (DeviceState.ARMED, DeviceState.EMITTING)
    settled = core.inflight.arm is None and core.inflight.disarm is None
    if device_armed and core.state not in ARMED and settled:
        core.disarm_now()
        if core.state in (State.STANDBY, State.SERVICE):
            core.latch(Cause(CauseKind.DEVICE, "the device is armed without the controller"))
    if not device_armed and settled and core.state in ARMED:
        core.device_may_fire = False
        core.note("info", f"the device disarmed itself ({reported.name})")
        core.fire("device_disarmed")
    if core.state is State.READY and body.emission:
        core.fire("emission_started")
    elif core.state is State.EMITTING and not body.emission:
        core.fire("emission_ended")


def check_interlocks(core: Core) -> None:
    """SR-02: an interlock that opens in READY or EMITTING disarms at once, then FAULT or
    STANDBY as its table entry says."""
    if core.state not in ARMED:
        return
    readings = core.readings()
    opened = [i for i in not_closed(readings) if SPECS[i].effect is not Effect.ARMING]
    if opened:
        interlock_opened(core, opened, readings)


def interlock_opened(
    core: Core, opened: list[InterlockId], readings: Mapping[InterlockId, Reading]
) -> None:
    core.disarm_now()
    effect = worst_effect(opened)
    where = f"while {core.state}"
    if effect is Effect.ESTOP:
        core.estop(Cause(CauseKind.ESTOP, f"e-stop pressed {where}"))
    elif effect is Effect.FAULT:
        for ident in opened:
            if SPECS[ident].effect is Effect.FAULT:
                kind = CauseKind.LINK if ident is InterlockId.LINK else CauseKind.INTERLOCK
                what = core.interlock_reason([ident], readings).split(": ", 1)[1]
                core.add_cause(Cause(kind, f"interlock opened {where}: {what}", ident))
        core.fire("fault")
    else:
        reason = core.interlock_reason(opened, readings)
        core.last_message = f"back to STANDBY, {reason} {where}"
        core.note("info", core.last_message)
        core.fire("interlock_opened")


def on_fault(core: Core, event: Fault) -> None:
    code = fault_code(event.code)
    if code is FaultCode.ESTOP:
        if event.detail == 1 and core.state is State.ESTOP:
            return  # the device confirming our own ESTOP command
        how = "by command" if event.detail == 1 else "pressed"
        core.estop(Cause(CauseKind.ESTOP, f"e-stop {how}"))
    elif code is FaultCode.GRANT_EXHAUSTED:
        core.device_may_fire = False
        core.note("info", f"grant of {core.grants.pulses} pulses used up")
        core.fire("device_disarmed")
    elif code is FaultCode.INTERLOCK_OPENED:
        core.device_may_fire = False
        bit = interlock_bit(event.detail)
        spec = BY_DEVICE_BIT.get(bit) if bit is not None else None
        if spec is not None and core.state in ARMED:
            readings = {**core.readings(), spec.id: Reading.OPEN}
            interlock_opened(core, [spec.id], readings)
    else:
        if code is FaultCode.WATCHDOG:
            core.device_may_fire = False
        elif code is FaultCode.REBOOTED:
            count_shots_in_doubt(core, "lost its shot counter in a reboot")
        core.latch(device_fault_cause(code, event.detail, event.value))
