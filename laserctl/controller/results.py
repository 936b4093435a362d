"""Command results: what the answer (CommandDone), the refusal (a NAK) or the loss (CommandLost)
of each command the core sent means.

An acknowledged ARM enters READY, an acknowledged RESET the new self test; an unanswered ARM
counts as not armed and is followed by a DISARM, an unanswered DISARM or ESTOP latches FAULT
(SR-16). The tokens are the in-flight room's (inflight.py); answers to commands no longer in
flight (the link was lost meanwhile) are ignored.
"""

from __future__ import annotations

from drivers.protocol import (
    Arm,
    Command,
    DeviceInfo,
    Disarm,
    EStop,
    GetStatus,
    Hello,
    HelloInfo,
    Nak,
    Reset,
    Response,
    SelfTest,
    SelfTestResult,
    SetParams,
    ShotAck,
    ShotsPending,
    ShotsSince,
    Status,
    describe_nak,
)

from .causes import Cause, CauseKind, item_name
from .context import Core
from .identity import identified
from .intake import maybe_ack, recovery_done
from .reaction import on_status
from .table import ARMED, State


def on_done(core: Core, token: int, response: Response) -> None:
    command = core.inflight.answered(token)
    if command is None:
        return
    if isinstance(response, Nak):
        on_nak(core, token, command, response)
        return
    match command:
        case Arm():
            if token == core.inflight.arm:
                core.inflight.arm = None
                core.fire("arm_acked")
        case Disarm():
            if token == core.inflight.disarm:
                core.inflight.disarm = None
                if core.inflight.arm is None and core.state not in ARMED:
                    core.device_may_fire = False
        case EStop():
            if token == core.inflight.estop:
                core.inflight.estop = None
                core.device_may_fire = False
        case Reset():
            if token == core.inflight.reset:
                core.inflight.reset = None
                core.fire("reset_acked")
        case SelfTest():
            if token == core.inflight.self_test and isinstance(response, SelfTestResult):
                core.inflight.self_test = None
                on_self_test(core, response)
        case SetParams():
            if token == core.inflight.params:
                core.inflight.params = None
                core.params_confirmed = True
        case ShotsSince():
            pending = response.count if isinstance(response, ShotsPending) else None
            if pending is not None and core.ledger.replays_answered(pending) == 0:
                recovery_done(core, kept_none=pending == 0)
        case GetStatus():
            made_after = core.inflight.status_mark(token)
            if isinstance(response, Status):
                if token == core.inflight.baseline:
                    core.inflight.baseline = None
                    if not core.ledger.has_baseline:
                        core.ledger.set_baseline(response.body.shot_no)
                on_status(core, response.body, made_after=made_after)
                maybe_ack(core)
        case ShotAck():
            if token == core.inflight.ack:
                core.inflight.ack = None
                core.ledger.acked = max(core.ledger.acked, command.up_to_shot)
                maybe_ack(core)
        case Hello():
            if isinstance(response, HelloInfo):
                identified(core, DeviceInfo.from_hello(response))


def on_nak(core: Core, token: int, command: Command, nak: Nak) -> None:
    reason = describe_nak(command, nak)
    match command:
        case Arm():
            core.inflight.arm = None
            core.device_may_fire = False
            core.grants.open = False  # refused: the device never held this grant
            core.refuse("ARM", reason)
        case SelfTest():
            if core.state is State.SELF_TEST:
                core.latch(Cause(CauseKind.SELF_TEST, f"self test not run: {reason}"))
        case SetParams():
            core.inflight.params = None
            core.params_confirmed = False
            core.refuse("SET_PARAMS", reason)
        case Reset():
            core.inflight.reset = None
            core.refuse("RESET", reason)
        case _:
            core.warn(reason)


def on_lost(core: Core, token: int, error: str) -> None:
    command = core.inflight.answered(token)
    if command is None:
        return
    match command:
        case Arm():
            # SR-16: an unacknowledged ARM counts as not armed; make sure it is not.
            core.inflight.arm = None
            core.refuse("ARM", f"unacknowledged, counts as not armed ({error})")
            core.disarm_now()
        case Disarm() | EStop():
            if token == core.inflight.disarm:
                core.inflight.disarm = None
            if token == core.inflight.estop:
                core.inflight.estop = None
            core.latch(Cause(CauseKind.LINK, f"{type(command).__name__.upper()} unanswered"))
        case Reset():
            core.inflight.reset = None
            core.refuse("RESET", f"unanswered ({error})")
        case SelfTest():
            core.inflight.self_test = None
            if core.state is State.SELF_TEST:
                core.latch(Cause(CauseKind.SELF_TEST, f"self test unanswered ({error})"))
        case SetParams():
            core.inflight.params = None
            core.params_confirmed = False
        case ShotsSince():
            core.ledger.reset_recovery()
        case ShotAck():
            core.inflight.ack = None
        case GetStatus():
            core.inflight.status_mark(token)
            if token == core.inflight.baseline:
                core.inflight.baseline = None


def on_self_test(core: Core, result: SelfTestResult) -> None:
    if core.state is not State.SELF_TEST:
        return
    failed = [item_name(item) for item, ok in result.items if not ok]
    if result.passed and not failed:
        core.fire("self_test_passed")
        return
    if not any(c.kind is CauseKind.SELF_TEST for c in core.causes):
        items = ", ".join(failed) or "unspecified"
        core.latch(Cause(CauseKind.SELF_TEST, f"self test failed: {items}"))
    else:
        core.fire("fault")
