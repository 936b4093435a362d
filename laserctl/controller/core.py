"""The controller's decision core: pure, single-threaded, clock injected.

handle(event, now) takes one event (operator command, device notification, command result,
tick) and returns the actions to carry out, in order. It does no I/O and reads no clock, so the
tests drive it deterministically against the simulator (tests/harness.py) and the runner drives
it from one thread and one queue (runner.py).

This module keeps the dispatch (which event goes where, which trigger an operator command
fires), the guards and effects table.TABLE names (bound below in GUARD_OF and EFFECT_OF, checked
complete on import) and the `transitions` Machine built from the table. An exception anywhere
in handle() disarms the device and enters FAULT (SR-10). Everything else is in rooms of its own
(docs/architecture.md lists them), written against the Protocol in context.py, so that none
imports this module. Past 400 lines because the guards and effects stay here, on one page with
the dispatch that fires their triggers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any

from transitions import Machine

from drivers.host import ConnectionCrashed, Reconnected, TransportLost
from drivers.protocol import (
    Arm,
    CommandFailed,
    DeviceEvent,
    DeviceInfo,
    DeviceState,
    Disarm,
    EStop,
    EventGap,
    FrameRejected,
    GetStatus,
    LinkSilent,
    Param,
    Reply,
    Reset,
    SelfTest,
    SetParams,
    Shot,
    Status,
    StatusBody,
)

from ..plan import TreatmentPlan, builtin_plan
from ..safety.interlocks import InterlockId, Reading, not_closed
from ..safety.limits import DoseUsed, LimitExceeded, fluence_per_pulse
from . import intake, link, results
from .causes import Cause, CauseKind, FaultRecord, Refusal, still_present
from .dosing import (
    CalibrationSource,
    Dosing,
    stand_in_calibration,
    training_calibration,
)
from .events import (
    Action,
    CalibrationLoaded,
    CloseLink,
    CommandDone,
    CommandLost,
    ConfirmEyewear,
    Connect,
    ControllerEvent,
    Disconnect,
    EnterService,
    InternalError,
    LeaveService,
    LinkOpened,
    LinkOpenFailed,
    OpenLink,
    RefreshStatus,
    RequestArm,
    RequestDisarm,
    RequestEStop,
    RequestReset,
    Send,
    SetParameters,
    ShotsDurable,
    Tick,
)
from .grants import GrantBook, next_grant
from .identity import judge_calibration
from .journal import Journal
from .reaction import on_device_event, on_status
from .readings import InterlockReadings, interlock_reason
from .shots import ShotLedger
from .snapshot import Snapshot
from .table import ARMED, LATCHED, TABLE, Guard, State
from .table import Effect as Do
from .view import report, snapshot

if TYPE_CHECKING:
    from ..calibration.record import Calibration


class _Model:
    """What the transitions Machine decorates (state, trigger()); kept apart from the core so
    the machine's generated attributes never shadow the core's own."""

    state: State


class Controller(Journal):
    def __init__(
        self,
        plan: TreatmentPlan | None = None,
        *,
        plan_for: Callable[[Any], TreatmentPlan] = builtin_plan,
        session_id: str = "session",
        dose: DoseUsed | None = None,
        count_recovered: bool = False,
        now: float = 0.0,
    ) -> None:
        """`session_id` names the session in the shot log; a resumed session (after a crash)
        starts from the `dose` its shots already delivered, and with `count_recovered` the
        shots the device kept and re-reads count as this session's (they were fired in it)."""
        super().__init__()
        self.plan = plan
        self.plan_for = plan_for
        self.session_id = session_id
        self.count_recovered = count_recovered  # re-read shots are this session's
        self.now = now
        self._model = _Model()
        self._machine = Machine(
            model=self._model,
            states=State,
            initial=State.DISCONNECTED,
            transitions=self._transitions(),
            auto_transitions=False,
            send_event=False,
        )
        self.state_since = now
        self._refused_for: str | None = None  # the first guard's reason, in _fire
        # link and device
        self.connected = False
        self.link_alive = False
        self.device: DeviceInfo | None = None
        self.pinned: DeviceInfo | None = None  # the handpiece of this session (SR-15)
        self.identity_problem = ""
        self.status: StatusBody | None = None
        self.eyewear = False
        self.dosing = Dosing()
        self._interlocks = InterlockReadings()
        # parameters and arming
        self.params: dict[Param, float] = dict(plan.defaults()) if plan else {}
        self._requested: dict[Param, float] | None = None
        self.params_confirmed = False
        self.device_may_fire = False
        self.grants = GrantBook()
        self.arm_sent_at: float | None = None
        self.ready_at: float | None = None
        self.last_activity = now
        self._emission_noted = False
        # shots and dose
        self.ledger = ShotLedger()
        self.dose = dose if dose is not None else DoseUsed()
        self.shots_seen = 0
        self.shots_recovered = 0
        self.history: list[tuple[float, State, State, str]] = []
        self.frames_rejected = 0

    # ---- the machine ------------------------------------------------------------------------
    def _transitions(self) -> list[dict[str, Any]]:
        return [
            {
                "trigger": rule.trigger,
                "source": list(rule.source),
                "dest": rule.dest,
                "conditions": [self._condition(GUARD_OF[g]) for g in rule.guards],
                "after": [partial(EFFECT_OF[e], self) for e in rule.effects],
            }
            for rule in TABLE
        ]

    def _condition(self, guard: Callable[[Controller], str | None]) -> Callable[[], bool]:
        """The Machine's condition for a guard: runs it once and keeps the first reason a
        trigger is refused for, so the refusal never runs the guards a second time."""

        def passes() -> bool:
            reason = guard(self)
            if reason is not None and self._refused_for is None:
                self._refused_for = reason
            return reason is None

        return passes

    @property
    def state(self) -> State:
        return self._model.state

    def _fire(self, trigger: str) -> str | None:
        """Fire a trigger; returns None when a rule was taken, else why not. The Machine tries
        the trigger's rules in table order and each rule's guards in order until one fails, so
        the first reason kept is the one of the first rule refused."""
        if (trigger, self.state) not in _TRIGGERS:
            return f"not possible in {self.state}"
        before = self.state
        self._refused_for = None
        taken = bool(self._model.trigger(trigger))  # type: ignore[attr-defined]
        if self.state is not before:
            self.state_since = self.now
            self.history.append((self.now, before, self.state, trigger))
            self.note("transition", f"{before} -> {self.state} ({trigger})")
        if taken:
            return None
        return self._refused_for if self._refused_for is not None else "refused"

    def _request(self, trigger: str, command: str) -> bool:
        reason = self._fire(trigger)
        if reason is not None:
            self.refuse(command, reason)
            return False
        return True

    # ---- entry point ------------------------------------------------------------------------
    def handle(self, event: ControllerEvent, now: float) -> list[Action]:
        """One event in, the actions to carry out in order out. Never raises."""
        self.now = max(self.now, now)
        try:
            self._dispatch(event)
        except Exception as exc:  # SR-10: whatever broke, stop emission and latch FAULT
            self._panic(f"{type(exc).__name__}: {exc}")
        return self.take()

    def _panic(self, error: str) -> None:
        if self.connected:  # straight in: the bookkeeping that would guard it may be broken
            self._actions.append(Send(Disarm(), self.inflight.token(Disarm())))
        cause = Cause(CauseKind.INTERNAL, f"internal error: {error}")
        try:
            self.latch(cause)
        except Exception:  # the machine itself is what broke: force the state
            self._model.state = State.FAULT
            self.causes.append(cause)
        if self.state not in LATCHED:
            self._model.state = State.FAULT

    def _dispatch(self, event: ControllerEvent) -> None:
        match event:
            case Tick():
                if self.state is State.READY:
                    self._fire("inactivity")  # refused (its guard) until READY went unused
            case DeviceEvent():
                link.answered(self)
                self.ledger.last_event = event.event.event_no
                if isinstance(event.event, Shot):
                    self._on_shot(event.event)
                else:
                    on_device_event(self, event.event)
            case CommandDone():
                link.answered(self)
                results.on_done(self, event.token, event.response)
            case CommandLost():
                results.on_lost(self, event.token, event.error)
            case Reply():
                # Replies to our commands come as CommandDone; this is the link's own heartbeat.
                if isinstance(event.response, Status):
                    link.answered(self)
                    on_status(self, event.response.body)
            case CommandFailed():
                pass  # reported for our commands as CommandLost
            case EventGap():
                self.note("warning", f"device events {event.expected}..{event.received - 1} lost")
                self.send(GetStatus())
                intake.events_lost(self)
            case FrameRejected():
                self.frames_rejected += 1
            case LinkOpened() | LinkOpenFailed() | Reconnected():
                link.on_link_change(self, event)
            case LinkSilent() | TransportLost() | ConnectionCrashed():
                link.on_link_change(self, event)
            case CalibrationLoaded():
                self.dosing.loaded(event, self.now)
                if self.device is not None and self.state not in ARMED:
                    judge_calibration(self)  # armed: at the next ARM, as a change would be
            case ShotsDurable():
                self.ledger.durable(event.upto_ticket)
                intake.maybe_ack(self)
            case InternalError():
                self.disarm_now(force=True)
                self.latch(Cause(CauseKind.INTERNAL, f"internal error: {event.error}"))
            case _:
                self._operator(event)

    def _operator(self, command: ControllerEvent) -> None:
        match command:
            case Connect():
                self._request("connect", "CONNECT")
            case Disconnect():
                self._request("disconnect", "DISCONNECT")
            case ConfirmEyewear():
                self.eyewear = True
                self.note("info", "protective eyewear confirmed by the operator")
            case RequestArm():
                if self.device is not None and self.state is State.STANDBY:
                    judge_calibration(self)  # expired or revoked since? (SR-14)
                self._request("arm", "ARM")
            case RequestDisarm():
                if self._fire("disarm") is not None:
                    self.disarm_now()  # whatever the state, a disarm is never refused
            case RequestEStop():
                self.causes.append(Cause(CauseKind.ESTOP, "e-stop by the operator"))
                self.record_fault(self.causes[-1])
                self._fire("estop")
            case RequestReset():
                self._request("reset", "RESET")
            case SetParameters():
                self._requested = {**self.params, **dict(command.values)}
                self._request("set_parameters", "SET_PARAMS")
                self._requested = None
            case EnterService():
                self._request("enter_service", "SERVICE")
            case LeaveService():
                self._request("leave_service", "LEAVE_SERVICE")
            case RefreshStatus():
                if self.connected:
                    self.send(GetStatus())
            case _:
                raise TypeError(f"unknown controller event {command!r}")

    def _on_shot(self, shot: Shot) -> None:
        intake.on_shot(self, shot)

    # ---- what the rooms ask of the core (context.Core), beyond the Journal's ------------
    def readings(self) -> Mapping[InterlockId, Reading]:
        """Every interlock's reading now (read-only)."""
        return self._interlocks.read(
            self.device,
            self.status,
            self.identity_problem,
            self.dosing,
            link_alive=self.connected and self.link_alive,
            eyewear=self.eyewear,
        )

    def interlock_reason(
        self, ids: Sequence[InterlockId], readings: Mapping[InterlockId, Reading]
    ) -> str:
        return interlock_reason(
            ids,
            readings,
            calibration_problem=self.dosing.problem,
            identity_problem=self.identity_problem,
        )

    # ---- guards (None = pass, else the reason) ----------------------------------------------
    def _guard_link_down(self) -> str | None:
        return "the link is already open" if self.connected else None

    def _guard_nothing_latched(self) -> str | None:
        if self.causes:
            return "latched: " + "; ".join(c.message for c in self.causes)
        return None

    def _guard_parameters_within_limits(self) -> str | None:
        if self.plan is None or self.device is None:
            return "no handpiece identified"
        try:
            self.dosing.check(self.plan, self.device, self._requested or self.params)
        except LimitExceeded as exc:
            return str(exc)
        return None

    def _guard_arming_permitted(self) -> str | None:
        if self.inflight.arm is not None:
            return "an ARM is already waiting for the device's answer"
        if self.inflight.disarm is not None:
            return "a DISARM is still waiting for the device's answer"
        readings = self.readings()
        open_ids = not_closed(readings)
        if open_ids:
            return self.interlock_reason(open_ids, readings)
        if not self.params_confirmed:
            return "parameters not confirmed by the device"
        if self.status is None or self.status.state != DeviceState.IDLE:
            name = DeviceState(self.status.state).name if self.status else "unknown"
            return f"device is {name}, not IDLE"
        if self.grants.open:
            return self.grants.unsettled(self.ledger)
        assert self.plan is not None
        grant = next_grant(self.plan, self.device, self.dose, self.params)
        if grant.pulses <= 0:
            return f"session budget used up ({grant.limited_by})"
        return None

    def _guard_still_safe(self) -> str | None:
        readings = self.readings()
        open_ids = [i for i in not_closed(readings) if i is not InterlockId.FOOTSWITCH]
        return self.interlock_reason(open_ids, readings) if open_ids else None

    def _guard_no_arm_in_flight(self) -> str | None:
        return "an ARM is waiting for its answer" if self.inflight.arm is not None else None

    def _guard_inactive(self) -> str | None:
        assert self.plan is not None
        idle = self.now - self.last_activity
        if idle >= self.plan.inactivity_s and not (self.status and self.status.emission):
            return None
        return f"active {idle:.1f} s ago"

    def _guard_link_up(self) -> str | None:
        return None if self.connected and self.link_alive else "the link to the device is down"

    def _guard_estop_released(self) -> str | None:
        reading = self.readings().get(InterlockId.ESTOP, Reading.UNKNOWN)
        return None if reading is Reading.CLOSED else f"the e-stop input reads {reading}"

    def _guard_causes_cleared(self) -> str | None:
        present = still_present(
            self.causes,
            self.readings(),
            link_up=self.connected and self.link_alive,
            identity_problem=self.identity_problem,
        )
        return ("cause still present: " + "; ".join(present)) if present else None

    # ---- effects ----------------------------------------------------------------------------
    def _effect_open_link(self) -> None:
        self._actions.append(OpenLink())

    def _effect_close_link(self) -> None:
        self._actions.append(CloseLink())
        self.connected = self.link_alive = False
        link.abandon(self)

    def resync_device(self) -> None:
        self.disarm_now()
        if self.state is State.ESTOP:
            self._effect_send_estop()  # the one sent while the link was down may have given up
        self.ledger.reset_recovery()
        intake.recover_shots(self)
        token = self.send(GetStatus())
        if not self.ledger.has_baseline:
            self.inflight.baseline = token

    def _effect_run_self_test(self) -> None:
        self.inflight.self_test = self.send(SelfTest())

    def send_parameters(self) -> None:
        if self.plan is None or self.device is None:
            return
        if self.dosing.pending:  # the drive values need the calibration (SR-14)
            if self._requested is not None:
                self.refuse("SET_PARAMS", f"{self.dosing.problem}: set them again then")
            else:
                self.dosing.params_postponed = True
            return
        self.dosing.params_postponed = False
        values = self._requested or self.params
        try:
            wire = self.dosing.check(self.plan, self.device, values)
            drive = self.dosing.drive(wire)
        except (LimitExceeded, ValueError) as exc:
            self.refuse("SET_PARAMS", str(exc))
            return
        self.params = dict(values)
        self.params_confirmed = False
        self.inflight.params = self.send(SetParams(drive))
        self.dosing.sent()

    def _effect_send_arm(self) -> None:
        assert self.plan is not None
        grant = next_grant(self.plan, self.device, self.dose, self.params)
        handpiece = self.device.handpiece if self.device else self.plan.handpiece
        self.grants.granted(grant.pulses, self.dose, fluence_per_pulse(handpiece, self.params))
        self.arm_sent_at = self.now
        self.device_may_fire = True
        delay_ms = round(self.plan.ready_delay_s * 1000)
        self.inflight.arm = self.send(Arm(grant.pulses, delay_ms))
        self.note("info", f"ARM sent: grant {grant.pulses} pulses ({grant.limited_by})")

    def _effect_start_ready_delay(self) -> None:
        assert self.plan is not None and self.arm_sent_at is not None
        self.ready_at = self.arm_sent_at + self.plan.ready_delay_s
        self.last_activity = self.now

    def _effect_note_emission_on(self) -> None:
        self._emission_noted = True
        self.note("emission", "emission indication on", shots_seen=self.shots_seen)

    def _effect_note_emission_off(self) -> None:
        if self._emission_noted:
            self._emission_noted = False
            self.note("emission", "emission stopped", shots_seen=self.shots_seen)

    def _effect_note_inactivity(self) -> None:
        assert self.plan is not None
        self.last_message = f"READY for {self.plan.inactivity_s:g} s without use: STANDBY"
        self.note("info", self.last_message)

    def _effect_disarm_device(self) -> None:
        self.disarm_now()

    def _effect_send_estop(self) -> None:
        if self.connected and self.inflight.estop is None:
            self.inflight.estop = self.send(EStop())

    def _effect_forget_eyewear(self) -> None:
        if self.eyewear:
            self.note("info", "eyewear confirmation cleared: confirm again before arming")
        self.eyewear = False

    def _effect_send_reset(self) -> None:
        self.inflight.reset = self.send(Reset())

    def _effect_clear_causes(self) -> None:
        self.note("info", "reset: " + "; ".join(c.message for c in self.causes))
        self.causes.clear()

    # ---- outside view (view.py) and the names it had before the rooms ------------------------
    def snapshot(self, seq: int = 0) -> Snapshot:
        return snapshot(self, seq)

    def report(self) -> dict[str, Any]:
        return report(self)

    @property
    def calibrated(self) -> Calibration | None:
        return self.dosing.calibrated

    @property
    def calibration_problem(self) -> str:
        return self.dosing.problem

    @property
    def grant(self) -> int:
        return self.grants.pulses

    @property
    def shots_in_grant(self) -> int:
        return self.grants.shots

    @property
    def grant_open(self) -> bool:
        return self.grants.open

    @property
    def pulses_in_doubt(self) -> int:
        return self.grants.in_doubt


# ---- what the table names, bound -----------------------------------------------------------
GUARD_OF: Mapping[Guard, Callable[[Controller], str | None]] = {
    Guard.LINK_DOWN: Controller._guard_link_down,
    Guard.NOTHING_LATCHED: Controller._guard_nothing_latched,
    Guard.PARAMETERS_WITHIN_LIMITS: Controller._guard_parameters_within_limits,
    Guard.ARMING_PERMITTED: Controller._guard_arming_permitted,
    Guard.STILL_SAFE: Controller._guard_still_safe,
    Guard.NO_ARM_IN_FLIGHT: Controller._guard_no_arm_in_flight,
    Guard.INACTIVE: Controller._guard_inactive,
    Guard.LINK_UP: Controller._guard_link_up,
    Guard.ESTOP_RELEASED: Controller._guard_estop_released,
    Guard.CAUSES_CLEARED: Controller._guard_causes_cleared,
}
EFFECT_OF: Mapping[Do, Callable[[Controller], None]] = {
    Do.OPEN_LINK: Controller._effect_open_link,
    Do.CLOSE_LINK: Controller._effect_close_link,
    Do.RESYNC_DEVICE: Controller.resync_device,
    Do.RUN_SELF_TEST: Controller._effect_run_self_test,
    Do.SEND_PARAMETERS: Controller.send_parameters,
    Do.SEND_ARM: Controller._effect_send_arm,
    Do.START_READY_DELAY: Controller._effect_start_ready_delay,
    Do.NOTE_EMISSION_ON: Controller._effect_note_emission_on,
    Do.NOTE_EMISSION_OFF: Controller._effect_note_emission_off,
    Do.NOTE_INACTIVITY: Controller._effect_note_inactivity,
    Do.DISARM_DEVICE: Controller._effect_disarm_device,
    Do.SEND_ESTOP: Controller._effect_send_estop,
    Do.FORGET_EYEWEAR: Controller._effect_forget_eyewear,
    Do.SEND_RESET: Controller._effect_send_reset,
    Do.CLEAR_CAUSES: Controller._effect_clear_causes,
}


def unbound(names: Mapping[Any, object], members: type[StrEnum]) -> list[str]:
    """The members of a Guard or Effect enumeration without an implementation."""
    return [str(m) for m in members if m not in names]


if missing := unbound(GUARD_OF, Guard) + unbound(EFFECT_OF, Do):  # pragma: no cover
    raise ImportError(f"laserctl.controller.core: no implementation for {missing}")
_TRIGGERS = frozenset((r.trigger, s) for r in TABLE for s in r.source)

__all__ = [
    "EFFECT_OF",
    "GUARD_OF",
    "CalibrationSource",
    "Cause",
    "CauseKind",
    "Controller",
    "FaultRecord",
    "Refusal",
    "stand_in_calibration",
    "training_calibration",
]
