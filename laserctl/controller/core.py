"""The controller's decision core: pure, single-threaded, clock injected.

handle(event, now) takes one event (operator command, device notification, command result,
tick) and returns the actions to carry out, in order. It does no I/O and reads no clock, so the
tests drive it deterministically against the simulator (tests/harness.py) and the runner drives
it from one thread and one queue (runner.py).

The state changes are the `transitions` Machine built from table.TABLE; this module holds the
guards (`_guard_*`, returning a refusal reason or None) and effects (`_effect_*`) the table names,
and the event handling that decides which trigger to fire. An exception anywhere in handle()
disarms the device and enters FAULT (SR-10).

The calibration comes in as an event too (CalibrationLoaded, read from the shot log off this
thread by the runner): the core never waits for a disk, and judges the calibration's expiry on
its own injected clock (SR-14).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any

from transitions import Machine

from drivers.host import ConnectionCrashed, Reconnected, TransportLost
from drivers.protocol import (
    PROTOCOL_VERSION,
    Arm,
    Boot,
    Command,
    CommandFailed,
    DeviceEvent,
    DeviceInfo,
    DeviceState,
    Disarm,
    EStop,
    EventGap,
    Fault,
    FaultCode,
    FrameRejected,
    GetStatus,
    Hello,
    HelloInfo,
    Interlock,
    LinkSilent,
    Nak,
    Param,
    Reply,
    Reset,
    Response,
    SelfTest,
    SelfTestItem,
    SelfTestResult,
    SetParams,
    Shot,
    ShotAck,
    ShotsPending,
    ShotsSince,
    Status,
    StatusBody,
    StatusChanged,
    describe_nak,
)

from ..plan import TreatmentPlan, builtin_plan
from ..safety.energy import Verdict, check_energy
from ..safety.interlocks import (
    BY_DEVICE_BIT,
    SPECS,
    Effect,
    InterlockId,
    InterlockInputs,
    Reading,
    not_closed,
    read_all,
    worst_effect,
)
from ..safety.limits import (
    GRANT_MARGIN,
    DoseUsed,
    Grant,
    LimitExceeded,
    check_parameters,
    fluence_per_pulse,
    plan_mismatch,
    pulse_grant,
)
from ..shotrecord import ShotRecord
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
    Note,
    OpenLink,
    ReadCalibration,
    RecordShot,
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
from .shots import Accept, ShotLedger
from .snapshot import Snapshot
from .table import ARMED, LATCHED, TABLE, Guard, State
from .table import Effect as Do

if TYPE_CHECKING:
    from ..calibration.record import Calibration

CalibrationSource = Callable[[DeviceInfo], "Calibration | str"]
"""What the runner (or the test bench) reads, off the core's thread, for every identified
handpiece and feeds to the core as CalibrationLoaded: its newest calibration (the set-point
mapping: laserctl.calibration.calibration_lookup(store)), or why there is none (SR-14). The core
judges the calibration itself, expiry on its own clock. Returning "" means "may be armed,
uncalibrated": the dose is sent as chosen (drive = target); the controller accepts that for a
simulated handpiece only (training_calibration)."""
CalibrationCheck = CalibrationSource  # the name before calibration became an event


def training_calibration(info: DeviceInfo) -> str:
    """No calibration records at all (training, demonstrations, the unit-test bench): only a
    simulated handpiece may be armed, uncalibrated; a real one never (SR-14, fail safe)."""
    if info.simulated:
        return ""
    return (
        f"no calibration source: {info.handpiece.slug} {info.serial} is a real handpiece and "
        "only a simulated one may be used uncalibrated (training)"
    )


stand_in_calibration = training_calibration  # the name the controller issue used


class CauseKind(StrEnum):
    INTERLOCK = "interlock"  # clears when the interlock closes again
    LINK = "link"  # clears when the link is alive again
    HANDPIECE = "handpiece"  # clears when the expected handpiece is identified again
    ESTOP = "estop"  # clears when the e-stop input reads released
    REBOOT = "reboot"  # the rest are events: the reset acknowledges them
    SELF_TEST = "self_test"
    ENERGY = "energy"
    DEVICE = "device"
    SHOT_COUNTER = "shot_counter"
    SHOT = "shot"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Cause:
    kind: CauseKind
    message: str
    interlock: InterlockId | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    at: float
    command: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Reading:
    """The last CalibrationLoaded, and the core's time when it arrived: the wall clock at
    `now` is loaded.at + (now - received), so expiry is judged on the injected clock."""

    loaded: CalibrationLoaded
    received: float

    def wall(self, now: float) -> float:
        return self.loaded.at + (now - self.received)


@dataclass(frozen=True, slots=True)
class FaultRecord:
    at: float
    state: State  # the state the controller was in
    kind: CauseKind
    cause: str


class _Model:
    """What the transitions Machine decorates (state, trigger()); kept apart from the core so
    the machine's generated attributes never shadow the core's own."""

    state: State


class Controller:
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
        self.plan = plan
        self._plan_for = plan_for
        self.session_id = session_id
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
        self._actions: list[Action] = []
        self._next_token = 1
        self.pending: dict[int, Command] = {}
        # link and device
        self.connected = False
        self.link_alive = False
        self.device: DeviceInfo | None = None
        self.pinned: DeviceInfo | None = None  # the handpiece of this session (SR-15)
        self.identity_problem = ""
        self.calibration_problem = ""
        self.calibrated: Calibration | None = None  # the set-point mapping in use (SR-14)
        self._reading: _Reading | None = None  # the last CalibrationLoaded, any handpiece
        # No reading yet for the identified handpiece: the calibration interlock reads unknown
        # and SET_PARAMS waits (its drive values need the calibration).
        self.calibration_pending = False
        self._params_postponed = False
        self._targets: dict[int, int] = {}  # drive value sent -> the dose target it stands for
        self._targets_of: object = None  # the calibration those drive values were made with
        # Per-pulse fluence of the parameter sets seen (a burst repeats one), and the plan
        # and handpiece they were worked out for.
        self._fluence: dict[tuple[object, ...], float] = {}
        self._fluence_of: object = None
        self._sent_with: object = _NOTHING_SENT  # the calibration of the last SET_PARAMS
        self.count_recovered = count_recovered  # re-read shots are this session's
        self.status: StatusBody | None = None
        self.eyewear = False
        self._readings_of: tuple[object, ...] | None = None  # what _readings_cache came from
        self._readings_cache: Mapping[InterlockId, Reading] = {}
        # parameters and arming
        self.params: dict[Param, float] = dict(plan.defaults()) if plan else {}
        self._requested: dict[Param, float] | None = None
        self._params_token: int | None = None
        self.params_confirmed = False
        self._arm_token: int | None = None
        self._disarm_token: int | None = None
        self._estop_token: int | None = None
        self._reset_token: int | None = None
        self._selftest_token: int | None = None
        self._ack_token: int | None = None
        self._baseline_token: int | None = None
        self._refused_for: str | None = None  # the first guard's reason, in _fire
        self.device_may_fire = False
        self.grant = 0
        self.shots_in_grant = 0
        # The last grant may still be fired on (or its shots not all recorded): from ARM sent
        # until a STATUS shows the device disarmed with every shot it counted recorded.
        self.grant_open = False
        self._grant_fluence = 0.0  # J/cm2 charged per pulse in doubt: the grant's, with margin
        self._pulses_at_grant = 0  # dose.pulses when it was sent
        self.pulses_in_doubt = 0
        self.arm_sent_at: float | None = None
        self.ready_at: float | None = None
        self.last_activity = now
        self._emission_noted = False
        # shots and dose
        self.ledger = ShotLedger()
        self.dose = dose if dose is not None else DoseUsed()
        self.shots_seen = 0
        self.shots_recovered = 0
        # what happened
        self.causes: list[Cause] = []
        self.faults: list[FaultRecord] = []
        self.refusals: list[Refusal] = []
        self.warnings: list[str] = []
        self.history: list[tuple[float, State, State, str]] = []
        self.last_message = ""
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
            self._note("transition", f"{before} -> {self.state} ({trigger})")
        if taken:
            return None
        return self._refused_for if self._refused_for is not None else "refused"

    def _request(self, trigger: str, command: str) -> bool:
        reason = self._fire(trigger)
        if reason is not None:
            self._refuse(command, reason)
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
        actions, self._actions = self._actions, []
        return actions

    def _panic(self, error: str) -> None:
        if self.connected:  # straight in: the bookkeeping that would guard it may be broken
            self._actions.append(Send(Disarm(), self._token(Disarm())))
        cause = Cause(CauseKind.INTERNAL, f"internal error: {error}")
        try:
            self._latch(cause)
        except Exception:  # the machine itself is what broke: force the state
            self._model.state = State.FAULT
            self.causes.append(cause)
        if self.state not in LATCHED:
            self._model.state = State.FAULT

    def _dispatch(self, event: ControllerEvent) -> None:
        match event:
            case Tick():
                self._tick()
            case DeviceEvent():
                self._on_rx()
                self._on_device_event(event.event)
            case CommandDone():
                self._on_rx()
                self._on_done(event.token, event.response)
            case CommandLost():
                self._on_lost(event.token, event.error)
            case Reply():
                # Replies to our commands come as CommandDone; this is the link's own heartbeat.
                if isinstance(event.response, Status):
                    self._on_rx()
                    self._on_status(event.response.body)
            case CommandFailed():
                pass  # reported for our commands as CommandLost
            case EventGap():
                self._note("warning", f"device events {event.expected}..{event.received - 1} lost")
                self._send(GetStatus())
                self._recover_shots()
            case FrameRejected():
                self.frames_rejected += 1
            case LinkSilent():
                if self.connected and self.link_alive:
                    self.link_alive = False
                    ms = event.silent_for * 1000
                    self._latch(Cause(CauseKind.LINK, f"device silent for {ms:.0f} ms (SR-09)"))
            case TransportLost():
                self._link_gone(Cause(CauseKind.LINK, f"link lost: {event.error}"))
            case ConnectionCrashed():
                self._link_gone(Cause(CauseKind.INTERNAL, f"connection crashed: {event.error}"))
            case Reconnected():
                self.connected = self.link_alive = True
                self._note("info", f"reconnected to {event.info.serial}")
                self._identified(event.info)
            case LinkOpened():
                self.connected = self.link_alive = True
                self._identified(event.info)
            case ShotsDurable():
                self.ledger.durable(event.upto_ticket)
                self._maybe_ack()
            case CalibrationLoaded():
                self._reading = _Reading(event, self.now)
                if self.device is not None and self.state not in ARMED:
                    self._judge_calibration()  # armed: at the next ARM, as a change would be
            case LinkOpenFailed():
                self.last_message = f"cannot connect: {event.error}"
                self._note("info", self.last_message)
                if self.state is State.CONNECTING:
                    self._fire("link_open_failed")
            case InternalError():
                self._disarm_now(force=True)
                self._latch(Cause(CauseKind.INTERNAL, f"internal error: {event.error}"))
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
                self._note("info", "protective eyewear confirmed by the operator")
            case RequestArm():
                if self.device is not None and self.state is State.STANDBY:
                    self._judge_calibration()  # expired or revoked since? (SR-14)
                self._request("arm", "ARM")
            case RequestDisarm():
                if self._fire("disarm") is not None:
                    self._disarm_now()  # whatever the state, a disarm is never refused
            case RequestEStop():
                self.causes.append(Cause(CauseKind.ESTOP, "e-stop by the operator"))
                self._record_fault(self.causes[-1])
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
                    self._send(GetStatus())
            case _:
                raise TypeError(f"unknown controller event {command!r}")

    # ---- helpers ----------------------------------------------------------------------------
    def _token(self, command: Command) -> int:
        token = self._next_token
        self._next_token += 1
        self.pending[token] = command
        return token

    def _send(self, command: Command) -> int | None:
        if not self.connected:
            return None
        token = self._token(command)
        self._actions.append(Send(command, token))
        return token

    def _note(self, kind: str, message: str, **data: Any) -> None:
        self._actions.append(Note(kind, message, data))

    def _refuse(self, command: str, reason: str) -> None:
        self.refusals.append(Refusal(self.now, command, reason))
        self.last_message = f"{command} refused: {reason}"
        self._note("refusal", self.last_message)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self._note("warning", message)

    def _record_fault(self, cause: Cause) -> None:
        self.faults.append(FaultRecord(self.now, self.state, cause.kind, cause.message))
        self.last_message = cause.message
        self._note("fault", cause.message, cause=str(cause.kind), state=str(self.state))

    def _add_cause(self, cause: Cause) -> bool:
        if cause in self.causes:
            return False
        self.causes.append(cause)
        self._record_fault(cause)
        return True

    def _latch(self, cause: Cause) -> None:
        self._add_cause(cause)
        self._fire("fault")

    def _estop(self, cause: Cause) -> None:
        self._add_cause(cause)
        self._fire("estop")

    def _disarm_now(self, *, force: bool = False) -> None:
        """DISARM at once; one in flight is enough (the link retries it, SR-16)."""
        if self.connected and (force or self._disarm_token is None):
            self._disarm_token = self._send(Disarm())

    def _readings(self) -> Mapping[InterlockId, Reading]:
        """Every interlock's reading, computed again only when one of its inputs changed (a
        burst of shots changes none of them). Read-only: copy it to change a reading."""
        device = self.device
        key = (
            device,
            self.status,
            self.identity_problem,
            self.calibration_problem,
            self.calibration_pending,
            self.connected and self.link_alive,
            self.eyewear,
        )
        if key != self._readings_of:
            self._readings_cache = read_all(
                InterlockInputs(
                    handpiece=device.handpiece if device else None,
                    device_inputs=device.interlocks if device else frozenset(),
                    status=self.status,
                    identity_ok=None if device is None else not self.identity_problem,
                    calibration_ok=(
                        None
                        if device is None or self.calibration_pending
                        else not self.calibration_problem
                    ),
                    link_alive=self.connected and self.link_alive,
                    eyewear=self.eyewear,
                )
            )
            self._readings_of = key
        return self._readings_cache

    def _interlock_reason(
        self, ids: Sequence[InterlockId], readings: Mapping[InterlockId, Reading]
    ) -> str:
        parts = []
        for ident in ids:
            if ident is InterlockId.FOOTSWITCH and readings[ident] is Reading.OPEN:
                parts.append("footswitch is pressed")
            elif ident is InterlockId.CALIBRATION and self.calibration_problem:
                parts.append(f"calibration: {self.calibration_problem}")
            elif ident is InterlockId.HANDPIECE and self.identity_problem:
                parts.append(f"handpiece: {self.identity_problem}")
            elif ident is InterlockId.EYEWEAR:
                parts.append("eyewear not confirmed")
            else:
                parts.append(f"{ident} {readings[ident]}")
        return "interlock not closed: " + ", ".join(parts)

    def _grant(self) -> Grant:
        assert self.plan is not None
        handpiece = self.device.handpiece if self.device else self.plan.handpiece
        return pulse_grant(self.plan, self.dose, fluence_per_pulse(handpiece, self.params))

    # ---- guards (None = pass, else the reason) ----------------------------------------------
    def _guard_link_down(self) -> str | None:
        return "the link is already open" if self.connected else None

    def _guard_nothing_latched(self) -> str | None:
        if self.causes:
            return "latched: " + "; ".join(c.message for c in self.causes)
        return None

    def _check_parameters(self, values: dict[Param, float]) -> tuple[tuple[int, int], ...]:
        """SR-07: every value inside min(plan window, handpiece capability, calibrated range);
        the treatment values as wire pairs, or LimitExceeded naming the limit and the value.
        The calibrated range is the bound Calibration.restrict() puts on the capability."""
        assert self.plan is not None and self.device is not None
        cal = self.calibrated
        ranges = {cal.dose_param: cal.target_range} if cal is not None else None
        return check_parameters(self.plan, self.device.capabilities, values, ranges)

    def _guard_parameters_within_limits(self) -> str | None:
        if self.plan is None or self.device is None:
            return "no handpiece identified"
        try:
            self._check_parameters(self._requested or self.params)
        except LimitExceeded as exc:
            return str(exc)
        return None

    def _guard_arming_permitted(self) -> str | None:
        if self._arm_token is not None:
            return "an ARM is already waiting for the device's answer"
        if self._disarm_token is not None:
            return "a DISARM is still waiting for the device's answer"
        readings = self._readings()
        open_ids = not_closed(readings)
        if open_ids:
            return self._interlock_reason(open_ids, readings)
        if not self.params_confirmed:
            return "parameters not confirmed by the device"
        if self.status is None or self.status.state != DeviceState.IDLE:
            name = DeviceState(self.status.state).name if self.status else "unknown"
            return f"device is {name}, not IDLE"
        if self.grant_open:
            return self._unsettled_grant()
        grant = self._grant()
        if grant.pulses <= 0:
            return f"session budget used up ({grant.limited_by})"
        return None

    def _unsettled_grant(self) -> str:
        """SR-08: while pulses of the last grant are not all recorded, a new grant would take
        its place, and a reboot could then hide the pulses of both (the doubt is charged for
        the open grant only). The re-read (SHOTS_SINCE) settles it."""
        ledger = self.ledger
        if ledger.upto is not None and ledger.missing:
            top = max([*ledger.ahead, ledger.device_count or 0])
            shots = f"shot {top}" if top == ledger.upto + 1 else f"shots {ledger.upto + 1}..{top}"
            return (
                f"{shots} of the last grant not recorded yet: re-reading them before a new "
                "grant (SR-08)"
            )
        return "the last grant is not settled yet: waiting for the device's status (SR-08)"

    def _guard_still_safe(self) -> str | None:
        readings = self._readings()
        open_ids = [i for i in not_closed(readings) if i is not InterlockId.FOOTSWITCH]
        return self._interlock_reason(open_ids, readings) if open_ids else None

    def _guard_no_arm_in_flight(self) -> str | None:
        return "an ARM is waiting for its answer" if self._arm_token is not None else None

    def _guard_inactive(self) -> str | None:
        assert self.plan is not None
        idle = self.now - self.last_activity
        if idle >= self.plan.inactivity_s and not (self.status and self.status.emission):
            return None
        return f"active {idle:.1f} s ago"

    def _guard_link_up(self) -> str | None:
        return None if self.connected and self.link_alive else "the link to the device is down"

    def _guard_estop_released(self) -> str | None:
        reading = self._readings().get(InterlockId.ESTOP, Reading.UNKNOWN)
        return None if reading is Reading.CLOSED else f"the e-stop input reads {reading}"

    def _guard_causes_cleared(self) -> str | None:
        readings = self._readings()
        present = []
        for cause in self.causes:
            match cause.kind:
                case CauseKind.INTERLOCK if cause.interlock is not None:
                    if readings.get(cause.interlock, Reading.CLOSED) is not Reading.CLOSED:
                        present.append(f"{cause.interlock} still {readings[cause.interlock]}")
                case CauseKind.LINK:
                    if not (self.connected and self.link_alive):
                        present.append("link still down")
                case CauseKind.HANDPIECE:
                    if self.identity_problem:
                        present.append(self.identity_problem)
                case CauseKind.ESTOP:
                    if readings.get(InterlockId.ESTOP) is not Reading.CLOSED:
                        present.append("e-stop still pressed")
        return ("cause still present: " + "; ".join(present)) if present else None

    # ---- effects ----------------------------------------------------------------------------
    def _effect_open_link(self) -> None:
        self._actions.append(OpenLink())

    def _effect_close_link(self) -> None:
        self._actions.append(CloseLink())
        self.connected = self.link_alive = False
        self._abandon_tokens()

    def _effect_resync_device(self) -> None:
        self._disarm_now()
        if self.state is State.ESTOP:
            self._effect_send_estop()  # the one sent while the link was down may have given up
        self.ledger.recovering = False
        self.ledger.replays_due = 0
        self._recover_shots()
        token = self._send(GetStatus())
        if not self.ledger.has_baseline:
            self._baseline_token = token

    def _effect_run_self_test(self) -> None:
        self._selftest_token = self._send(SelfTest())

    def _effect_send_parameters(self) -> None:
        if self.plan is None or self.device is None:
            return
        if self.calibration_pending:  # the drive values need the calibration (SR-14)
            if self._requested is not None:
                self._refuse("SET_PARAMS", f"{self.calibration_problem}: set them again then")
            else:
                self._params_postponed = True
            return
        self._params_postponed = False
        values = self._requested or self.params
        try:
            wire = self._check_parameters(values)
            drive = self._drive(wire)
        except (LimitExceeded, ValueError) as exc:
            self._refuse("SET_PARAMS", str(exc))
            return
        self.params = dict(values)
        self.params_confirmed = False
        self._params_token = self._send(SetParams(drive))
        self._sent_with = _calibration_key(self.calibrated)

    def _drive(self, wire: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        """The treatment values as sent: the dose target replaced by its calibrated drive value
        (SR-14); the targets are kept to read the shots back."""
        cal = self.calibrated
        if cal is None:
            return wire
        if _calibration_key(cal) != self._targets_of:
            self._targets.clear()  # drive values of another calibration mean other targets
            self._targets_of = _calibration_key(cal)
        drive = cal.apply(wire)
        for (code, target), (_, sent) in zip(wire, drive, strict=True):
            if code == cal.dose_param:
                self._targets[sent] = target
        return drive

    def _effect_send_arm(self) -> None:
        assert self.plan is not None
        grant = self._grant()
        self.grant = grant.pulses
        self.shots_in_grant = 0
        self.grant_open = True
        self._pulses_at_grant = self.dose.pulses
        handpiece = self.device.handpiece if self.device else self.plan.handpiece
        self._grant_fluence = fluence_per_pulse(handpiece, self.params) * GRANT_MARGIN
        self.arm_sent_at = self.now
        self.device_may_fire = True
        delay_ms = round(self.plan.ready_delay_s * 1000)
        self._arm_token = self._send(Arm(grant.pulses, delay_ms))
        self._note("info", f"ARM sent: grant {grant.pulses} pulses ({grant.limited_by})")

    def _effect_start_ready_delay(self) -> None:
        assert self.plan is not None and self.arm_sent_at is not None
        self.ready_at = self.arm_sent_at + self.plan.ready_delay_s
        self.last_activity = self.now

    def _effect_note_emission_on(self) -> None:
        self._emission_noted = True
        self._note("emission", "emission indication on", shots_seen=self.shots_seen)

    def _effect_note_emission_off(self) -> None:
        if self._emission_noted:
            self._emission_noted = False
            self._note("emission", "emission stopped", shots_seen=self.shots_seen)

    def _effect_note_inactivity(self) -> None:
        assert self.plan is not None
        self.last_message = f"READY for {self.plan.inactivity_s:g} s without use: STANDBY"
        self._note("info", self.last_message)

    def _effect_disarm_device(self) -> None:
        self._disarm_now()

    def _effect_send_estop(self) -> None:
        if self.connected and self._estop_token is None:
            self._estop_token = self._send(EStop())

    def _effect_forget_eyewear(self) -> None:
        if self.eyewear:
            self._note("info", "eyewear confirmation cleared: confirm again before arming")
        self.eyewear = False

    def _effect_send_reset(self) -> None:
        self._reset_token = self._send(Reset())

    def _effect_clear_causes(self) -> None:
        self._note("info", "reset: " + "; ".join(c.message for c in self.causes))
        self.causes.clear()

    # ---- link -------------------------------------------------------------------------------
    def _on_rx(self) -> None:
        """Something valid arrived from the device."""
        if self.connected and not self.link_alive:
            self.link_alive = True
            self._note("info", "the device answers again: identifying it")
            self._send(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION))
            self._effect_resync_device()

    def _link_gone(self, cause: Cause) -> None:
        self.connected = self.link_alive = False
        self._abandon_tokens()
        self._latch(cause)

    def _abandon_tokens(self) -> None:
        """The link is gone: nothing sent is coming back (its results may still arrive as
        CommandLost and are ignored then)."""
        self.pending.clear()
        self._arm_token = self._disarm_token = self._estop_token = self._reset_token = None
        self._selftest_token = self._ack_token = None
        self._params_token = self._baseline_token = None
        self.params_confirmed = False
        self.ledger.recovering = False
        self.ledger.replays_due = 0

    def _identified(self, info: DeviceInfo) -> None:
        if self.plan is None:
            self.plan = self._plan_for(info.handpiece)
            self.params = self.plan.defaults()
        problem = plan_mismatch(self.plan, info.handpiece, info.capabilities)
        if not problem and info.protocol != PROTOCOL_VERSION:
            problem = f"protocol {info.protocol}, expected {PROTOCOL_VERSION}"
        if not problem and self.plan.serial is not None and info.serial != self.plan.serial:
            problem = f"serial {info.serial}, the plan is for {self.plan.serial}"
        pinned = self.pinned
        if pinned is not None and not pinned.same_handpiece(info):
            problem = (
                f"a different handpiece: {info.handpiece.slug} {info.serial} firmware "
                f"{info.firmware}, the session's is {pinned.handpiece.slug} {pinned.serial} "
                f"firmware {pinned.firmware}"
            )
        self.device = info
        self.identity_problem = problem
        self._judge_calibration()
        self._actions.append(ReadCalibration(info))  # a fresh reading at every identification
        added = False
        if problem:
            added = self._add_cause(Cause(CauseKind.HANDPIECE, problem))
        elif pinned is None:
            self.pinned = info
        elif info.boot_id != pinned.boot_id:
            self.pinned = info
            added = self._add_cause(Cause(CauseKind.REBOOT, "the device rebooted (new boot id)"))
        if self.state is State.CONNECTING or self.state in LATCHED:
            self._fire("identified")
        elif added:
            self._fire("fault")

    def _judge_calibration(self) -> None:
        """SR-14: the identified handpiece's calibration from the last reading, judged now on
        the core's clock (expiry, serial, fit bounds), or why there is none: the calibration
        interlock stays open then, and ARM is refused with that reason."""
        info = self.device
        if info is None:
            return
        reading = self._reading
        before = self.calibrated
        if reading is None or reading.loaded.serial != info.serial:
            self.calibration_pending = True
            self.calibration_problem = (
                f"the calibration of {info.serial} is not read yet (calibration source)"
            )
            self.calibrated = None
        else:
            self.calibration_pending = False
            found = reading.loaded.found
            if isinstance(found, str):
                if not found and not info.simulated:
                    # "Valid" without a set-point mapping: only the training source says that,
                    # and only for a simulated handpiece. A real one is never driven
                    # uncalibrated.
                    found = (
                        f"no calibrated set points for {info.handpiece.slug} {info.serial} "
                        "(the calibration source gave none)"
                    )
                self.calibration_problem = found
                self.calibrated = None
            else:
                self.calibration_problem = found.problem(info, reading.wall(self.now))
                self.calibrated = None if self.calibration_problem else found
        key = _calibration_key(self.calibrated)
        if _calibration_key(before) != key:
            self._note_calibration(info)
        if self.state is not State.STANDBY or self.calibration_pending:
            return
        if self._params_postponed:
            self._effect_send_parameters()  # they waited for this reading
            return
        stale = self._sent_with is not _NOTHING_SENT and self._sent_with != key
        if stale and not self.calibration_problem:
            # The device holds drive values made with another calibration: they no longer
            # count, and go again at once with this one. (While there is no valid calibration,
            # arming is refused anyway; this is decided when one is back.)
            self.params_confirmed = False
            self._effect_send_parameters()

    def _note_calibration(self, info: DeviceInfo) -> None:
        if self.calibrated is not None:
            lo, hi = self.calibrated.target_range
            self._note(
                "info",
                f"calibration {self.calibrated.record_id} of {info.serial} by "
                f"{self.calibrated.who}: {self.calibrated.dose_param.field_name} calibrated "
                f"range {lo:.3f}..{hi:.3f}",
                calibration=self.calibrated.record_id,
            )

    # ---- command results --------------------------------------------------------------------
    def _on_done(self, token: int, response: Response) -> None:
        command = self.pending.pop(token, None)
        if command is None:
            return
        if isinstance(response, Nak):
            self._on_nak(token, command, response)
            return
        match command:
            case Arm():
                if token == self._arm_token:
                    self._arm_token = None
                    self._fire("arm_acked")
            case Disarm():
                if token == self._disarm_token:
                    self._disarm_token = None
                    if self._arm_token is None and self.state not in ARMED:
                        self.device_may_fire = False
            case EStop():
                if token == self._estop_token:
                    self._estop_token = None
                    self.device_may_fire = False
            case Reset():
                if token == self._reset_token:
                    self._reset_token = None
                    self._fire("reset_acked")
            case SelfTest():
                if token == self._selftest_token and isinstance(response, SelfTestResult):
                    self._selftest_token = None
                    self._on_self_test(response)
            case SetParams():
                if token == self._params_token:
                    self._params_token = None
                    self.params_confirmed = True
            case ShotsSince():
                if isinstance(response, ShotsPending):
                    self.ledger.recovering = False
                    self.ledger.replays_due = response.count
                    if response.count == 0:
                        self._recovery_done()
            case GetStatus():
                if isinstance(response, Status):
                    if token == self._baseline_token:
                        self._baseline_token = None
                        if not self.ledger.has_baseline:
                            self.ledger.set_baseline(response.body.shot_no)
                    self._on_status(response.body)
                    self._maybe_ack()
            case ShotAck():
                if token == self._ack_token:
                    self._ack_token = None
                    self.ledger.acked = max(self.ledger.acked, command.up_to_shot)
                    self._maybe_ack()
            case Hello():
                if isinstance(response, HelloInfo):
                    self._identified(DeviceInfo.from_hello(response))

    def _on_nak(self, token: int, command: Command, nak: Nak) -> None:
        reason = describe_nak(command, nak)
        match command:
            case Arm():
                self._arm_token = None
                self.device_may_fire = False
                self.grant_open = False  # refused: the device never held this grant
                self._refuse("ARM", reason)
            case SelfTest():
                if self.state is State.SELF_TEST:
                    self._latch(Cause(CauseKind.SELF_TEST, f"self test not run: {reason}"))
            case SetParams():
                self._params_token = None
                self.params_confirmed = False
                self._refuse("SET_PARAMS", reason)
            case Reset():
                self._reset_token = None
                self._refuse("RESET", reason)
            case _:
                self._warn(reason)

    def _on_lost(self, token: int, error: str) -> None:
        command = self.pending.pop(token, None)
        if command is None:
            return
        match command:
            case Arm():
                # SR-16: an unacknowledged ARM counts as not armed; make sure it is not.
                self._arm_token = None
                self._refuse("ARM", f"unacknowledged, counts as not armed ({error})")
                self._disarm_now()
            case Disarm() | EStop():
                if token == self._disarm_token:
                    self._disarm_token = None
                if token == self._estop_token:
                    self._estop_token = None
                self._latch(Cause(CauseKind.LINK, f"{type(command).__name__.upper()} unanswered"))
            case Reset():
                self._reset_token = None
                self._refuse("RESET", f"unanswered ({error})")
            case SelfTest():
                self._selftest_token = None
                if self.state is State.SELF_TEST:
                    self._latch(Cause(CauseKind.SELF_TEST, f"self test unanswered ({error})"))
            case SetParams():
                self._params_token = None
                self.params_confirmed = False
            case ShotsSince():
                self.ledger.recovering = False
            case ShotAck():
                self._ack_token = None
            case GetStatus():
                if token == self._baseline_token:
                    self._baseline_token = None

    def _on_self_test(self, result: SelfTestResult) -> None:
        if self.state is not State.SELF_TEST:
            return
        failed = [_item_name(item) for item, ok in result.items if not ok]
        if result.passed and not failed:
            self._fire("self_test_passed")
            return
        if not any(c.kind is CauseKind.SELF_TEST for c in self.causes):
            items = ", ".join(failed) or "unspecified"
            self._latch(Cause(CauseKind.SELF_TEST, f"self test failed: {items}"))
        else:
            self._fire("fault")

    # ---- device events ----------------------------------------------------------------------
    def _on_device_event(self, event: object) -> None:
        match event:
            case Shot():
                self._on_shot(event)
            case StatusChanged():
                self._on_status(event.body)
            case Fault():
                self._on_fault(event)
            case Boot():
                pinned = self.pinned
                if pinned is not None and event.boot_id != pinned.boot_id:
                    self.pinned = dataclasses.replace(pinned, boot_id=event.boot_id)
                    self._latch(Cause(CauseKind.REBOOT, "the device rebooted (BOOT event)"))

    def _on_status(self, body: StatusBody) -> None:
        previous = self.status
        self.status = body
        ledger = self.ledger
        if ledger.has_baseline and ledger.upto is not None:
            # The stream is in order: a status never predates a shot already processed, so a
            # counter below the durable mark went back (a reboot that lost it, SR-11).
            if body.shot_no < ledger.upto:
                old = ledger.upto
                self._count_shots_in_doubt("lost its shot counter")
                ledger.rebase(body.shot_no)
                self._latch(
                    Cause(
                        CauseKind.SHOT_COUNTER,
                        f"device shot counter went back from {old} to {body.shot_no}",
                    )
                )
            else:
                ledger.device_count = max(ledger.device_count or 0, body.shot_no)
                if ledger.missing and ledger.replays_due == 0:
                    self._recover_shots()
        self._settle_grant(body)
        if previous is not None and previous.footswitch != body.footswitch:
            self.last_activity = self.now
        device_state = _device_state(body.state)
        if device_state is DeviceState.ESTOP and self.state is not State.ESTOP:
            pressed = not body.is_closed(Interlock.ESTOP)
            self._estop(Cause(CauseKind.ESTOP, "e-stop pressed" if pressed else "device in ESTOP"))
        elif device_state is DeviceState.FAULT and self.state not in LATCHED:
            self._latch(_device_fault_cause(body.fault, 0, body.temp_mc))
        elif device_state is DeviceState.NOT_TESTED and self.state in (
            State.STANDBY,
            *ARMED,
            State.SERVICE,
        ):
            self._latch(Cause(CauseKind.REBOOT, "the device needs a new self test (restarted?)"))
        self._check_interlocks()
        device_armed = device_state in (DeviceState.ARMED, DeviceState.EMITTING)
        settled = self._arm_token is None and self._disarm_token is None
        if device_armed and self.state not in ARMED and settled:
            self._disarm_now()
            if self.state in (State.STANDBY, State.SERVICE):
                self._latch(Cause(CauseKind.DEVICE, "the device is armed without the controller"))
        if not device_armed and settled and self.state in ARMED:
            self.device_may_fire = False
            self._note("info", f"the device disarmed itself ({device_state.name})")
            self._fire("device_disarmed")
        if self.state is State.READY and body.emission:
            self._fire("emission_started")
        elif self.state is State.EMITTING and not body.emission:
            self._fire("emission_ended")

    def _settle_grant(self, body: StatusBody) -> None:
        """The last grant owes nothing once a status shows the device disarmed with every shot
        it counted recorded (SR-08)."""
        ledger = self.ledger
        if (
            self.grant_open
            and _device_state(body.state) not in (DeviceState.ARMED, DeviceState.EMITTING)
            and ledger.upto is not None
            and body.shot_no <= ledger.upto
        ):
            self.grant_open = False

    def _check_interlocks(self) -> None:
        """SR-02: an interlock that opens in READY or EMITTING disarms at once, then FAULT or
        STANDBY as its table entry says."""
        if self.state not in ARMED:
            return
        readings = self._readings()
        opened = [i for i in not_closed(readings) if SPECS[i].effect is not Effect.ARMING]
        if opened:
            self._interlock_opened(opened, readings)

    def _interlock_opened(
        self, opened: list[InterlockId], readings: Mapping[InterlockId, Reading]
    ) -> None:
        self._disarm_now()
        effect = worst_effect(opened)
        where = f"while {self.state}"
        if effect is Effect.ESTOP:
            self._estop(Cause(CauseKind.ESTOP, f"e-stop pressed {where}"))
        elif effect is Effect.FAULT:
            for ident in opened:
                if SPECS[ident].effect is Effect.FAULT:
                    kind = CauseKind.LINK if ident is InterlockId.LINK else CauseKind.INTERLOCK
                    what = self._interlock_reason([ident], readings).split(": ", 1)[1]
                    self._add_cause(Cause(kind, f"interlock opened {where}: {what}", ident))
            self._fire("fault")
        else:
            reason = self._interlock_reason(opened, readings)
            self.last_message = f"back to STANDBY, {reason} {where}"
            self._note("info", self.last_message)
            self._fire("interlock_opened")

    def _on_fault(self, event: Fault) -> None:
        code = _fault_code(event.code)
        if code is FaultCode.ESTOP:
            if event.detail == 1 and self.state is State.ESTOP:
                return  # the device confirming our own ESTOP command
            how = "by command" if event.detail == 1 else "pressed"
            self._estop(Cause(CauseKind.ESTOP, f"e-stop {how}"))
        elif code is FaultCode.GRANT_EXHAUSTED:
            self.device_may_fire = False
            self._note("info", f"grant of {self.grant} pulses used up")
            self._fire("device_disarmed")
        elif code is FaultCode.INTERLOCK_OPENED:
            self.device_may_fire = False
            bit = _interlock(event.detail)
            spec = BY_DEVICE_BIT.get(bit) if bit is not None else None
            if spec is not None and self.state in ARMED:
                readings = {**self._readings(), spec.id: Reading.OPEN}
                self._interlock_opened([spec.id], readings)
        else:
            if code is FaultCode.WATCHDOG:
                self.device_may_fire = False
            elif code is FaultCode.REBOOTED:
                self._count_shots_in_doubt("lost its shot counter in a reboot")
            self._latch(_device_fault_cause(code, event.detail, event.value))

    def _count_shots_in_doubt(self, what: str) -> None:
        """SR-08: the device lost its shot counter and buffer, so the pulses of the open grant
        it fired but never reported are gone for good. Unknown counts as delivered: what of the
        grant was not seen is charged to the budget, at the grant's dose per pulse with its
        margin, so the rest of the session can never exceed the plan's limits because a reboot
        hid pulses. Once per grant; a grant the device is known to have finished owes none."""
        if not self.grant_open:
            return
        self.grant_open = False
        # Its shots seen live, or re-read (lost events): the more of the two counts.
        seen = max(self.shots_in_grant, self.dose.pulses - self._pulses_at_grant)
        doubt = max(0, self.grant - seen)
        if doubt == 0:
            return
        self.pulses_in_doubt += doubt
        self.dose = self.dose.add(self._grant_fluence, doubt)
        self._warn(
            f"the device {what}: {doubt} of the {self.grant} pulses granted were never reported"
            " and count as delivered (SR-08)"
        )

    # ---- shots ------------------------------------------------------------------------------
    def _on_shot(self, shot: Shot) -> None:
        assert self.plan is not None
        ledger = self.ledger
        replay = bool(shot.flags & Shot.FLAG_REPLAY)
        if replay and ledger.replays_due > 0:
            ledger.replays_due -= 1
        upto_before = ledger.upto
        accepted = ledger.accept(shot.shot_no, replay)
        if accepted is not Accept.DUPLICATE:
            counted = accepted is not Accept.RECOVERED
            target = self._target_milli(shot)
            # A recovered shot delivered its dose too: the shot log's dose per area must be
            # right after a crash, even where it is not this session's budget.
            fluence = self._shot_fluence(shot, target)
            boot_id = self.pinned.boot_id if self.pinned else 0
            cal = self.calibrated
            self._actions.append(
                RecordShot(
                    ShotRecord.from_shot(
                        shot,
                        session=self.session_id,
                        plan_id=self.plan.plan_id,
                        area=self.plan.area,
                        boot_id=boot_id,
                        counted=counted,
                        fluence_j_cm2=fluence,
                        received_at=self.now,
                        target_milli=target,
                        calibration=cal.record_id if cal is not None else None,
                    ),
                    ledger.to_record(upto_before),
                )
            )
            if counted:
                self.shots_seen += 1
                self.dose = self.dose.add(fluence)
                self._check_energy(shot, target)
            else:
                self.shots_recovered += 1
                if self.count_recovered:  # fired in this (resumed) session before the crash
                    self.dose = self.dose.add(fluence)
            if accepted is Accept.BACKWARDS:
                self._count_shots_in_doubt("restarted its shot counter")
                self._latch(
                    Cause(
                        CauseKind.SHOT_COUNTER,
                        f"shot {shot.shot_no} is at or below {ledger.upto}: the device shot "
                        "counter went back",
                    )
                )
            elif accepted is Accept.AHEAD:
                self._recover_shots()
            if not replay:
                self._check_live_shot(shot)
        self._maybe_ack()
        if replay and ledger.replays_due == 0 and not ledger.recovering:
            self._recovery_done()

    def _target_milli(self, shot: Shot) -> int:
        """The treatment dose a shot's set value stands for: with a calibration the device was
        sent a drive value, whose target is what the operator chose (SR-06, SR-14)."""
        cal = self.calibrated
        if cal is None or shot.dose_param != cal.dose_param:
            return shot.set_milli
        known = (
            self._targets.get(shot.set_milli) if self._targets_of == _calibration_key(cal) else None
        )
        return known if known is not None else cal.target_milli(shot.set_milli)

    def _shot_fluence(self, shot: Shot, target_milli: int) -> float:
        """The dose this shot adds: its treatment parameters (the dose at its target), scaled up
        (never down) by measured/target. A parameter missing from the record counts at the
        plan's maximum."""
        assert self.plan is not None
        handpiece = self.device.handpiece if self.device else self.plan.handpiece
        if self._fluence_of != (self.plan, handpiece) or len(self._fluence) >= 256:
            self._fluence.clear()  # another plan or handpiece: other per-pulse figures
            self._fluence_of = (self.plan, handpiece)
        key = (shot.params, shot.dose_param, target_milli)
        base = self._fluence.get(key)
        if base is None:
            params = {p: w.max for p, w in self.plan.windows.items()}
            for code, value in shot.params:
                with contextlib.suppress(ValueError):
                    params[Param(code)] = value / 1000.0
            with contextlib.suppress(ValueError):
                params[Param(shot.dose_param)] = target_milli / 1000.0
            base = self._fluence[key] = fluence_per_pulse(handpiece, params)
        scale = shot.measured_milli / target_milli if target_milli > 0 else 1.0
        return base * max(1.0, scale) if math.isfinite(scale) else base

    def _check_live_shot(self, shot: Shot) -> None:
        assert self.plan is not None
        self.last_activity = self.now
        if not self.device_may_fire:
            self._latch(
                Cause(CauseKind.SHOT, f"shot {shot.shot_no} while the device was not armed")
            )
            return
        self.shots_in_grant += 1
        if self.shots_in_grant > self.grant:
            self._latch(
                Cause(
                    CauseKind.SHOT,
                    f"the device fired {self.shots_in_grant} pulses on a grant of {self.grant}",
                )
            )
        if self.arm_sent_at is not None:
            after = self.now - self.arm_sent_at
            if after < self.plan.ready_delay_s:
                self._latch(
                    Cause(
                        CauseKind.SHOT,
                        f"shot {shot.shot_no} {after * 1000:.0f} ms after ARM, before the ready "
                        f"delay of {self.plan.ready_delay_s * 1000:.0f} ms (SR-04)",
                    )
                )
        if self.status is None or not self.status.emission:
            self._warn(f"shot {shot.shot_no} without an emission indication seen first (SR-05)")

    def _check_energy(self, shot: Shot, target_milli: int) -> None:
        """SR-06: measured against the treatment value (the calibrated target, not the drive
        value the device was sent)."""
        result = check_energy(target_milli, shot.measured_milli)
        if result.verdict is Verdict.OK:
            return
        name = _param_name(shot.dose_param)
        drive = f" (drive {shot.set_milli / 1000:g})" if target_milli != shot.set_milli else ""
        message = (
            f"shot {shot.shot_no}: measured {shot.measured_milli / 1000:g} {name} against "
            f"{target_milli / 1000:g} set{drive}, {result.percent:+.1f} %"
        )
        if result.verdict is Verdict.FAULT:
            self._disarm_now()
            self._latch(Cause(CauseKind.ENERGY, message + " is beyond +-20 % (SR-06)"))
        else:
            self._warn(message + " is beyond +-10 % (SR-06)")

    def _recover_shots(self) -> None:
        """SHOTS_SINCE the durable mark: the device replays every shot it still keeps."""
        ledger = self.ledger
        if not (self.connected and self.link_alive) or ledger.recovering:
            return
        ledger.recovering = True
        self._send(ShotsSince(ledger.upto if ledger.upto is not None else 0))

    def _recovery_done(self) -> None:
        ledger = self.ledger
        if ledger.has_baseline and ledger.missing:
            first, last = ledger.skip_hole()
            self._latch(
                Cause(
                    CauseKind.SHOT_COUNTER,
                    f"device shot counter gap: shots {first}..{last} never reported and no "
                    "longer kept by the device",
                )
            )
        elif self.status is not None:
            self._settle_grant(self.status)  # the re-read brought the grant's missing shots
        self._maybe_ack()

    def _maybe_ack(self) -> None:
        """SHOT_ACK up to the shots known durable (ShotsDurable), so the device forgets only
        what is stored (SR-11); one in flight at a time."""
        ledger = self.ledger
        mark = ledger.ackable
        if mark is None or mark <= ledger.acked or self._ack_token is not None:
            return
        if self.connected and self.link_alive:
            self._ack_token = self._send(ShotAck(mark))

    # ---- time -------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.state is State.READY:
            self._fire("inactivity")  # refused (its guard) until READY went unused long enough

    # ---- outside view -----------------------------------------------------------------------
    def readings(self) -> Mapping[InterlockId, Reading]:
        return self._readings()

    def snapshot(self, seq: int = 0) -> Snapshot:
        readings = self._readings()
        status = self.status
        plan = self.plan
        ready_in = None
        if self.state is State.READY and self.ready_at is not None:
            ready_in = max(0.0, self.ready_at - self.now)
        return Snapshot(
            seq=seq,
            at=self.now,
            state=self.state,
            state_since=self.state_since,
            plan_id=plan.plan_id if plan else "",
            handpiece=self.device.handpiece.slug if self.device else "",
            serial=self.device.serial if self.device else "",
            simulated=bool(self.device and self.device.simulated),
            connected=self.connected,
            link_alive=self.connected and self.link_alive,
            device_state=_device_state(status.state).name if status else "",
            interlocks=tuple((str(i), str(r)) for i, r in readings.items()),
            not_closed=tuple(str(i) for i in not_closed(readings)),
            eyewear=self.eyewear,
            footswitch=bool(status and status.footswitch),
            emission=bool(status and status.emission),
            temperature_c=status.temp_mc / 1000.0 if status else None,
            params=tuple((p.field_name, v) for p, v in sorted(self.params.items())),
            params_confirmed=self.params_confirmed,
            grant=self.grant,
            shots_in_grant=self.shots_in_grant,
            ready_in_s=ready_in,
            pulses_used=self.dose.pulses,
            pulses_max=plan.max_pulses if plan else 0,
            fluence_used_j_cm2=self.dose.fluence_j_cm2,
            fluence_max_j_cm2=plan.max_fluence_j_cm2 if plan else 0.0,
            shots_seen=self.shots_seen,
            shots_recovered=self.shots_recovered,
            device_shots_fired=self.ledger.device_fired,
            causes=tuple(c.message for c in self.causes),
            faults=len(self.faults),
            refusals=len(self.refusals),
            warnings=len(self.warnings),
            last_message=self.last_message,
            commands_in_flight=len(self.pending),
            awaiting=tuple(
                sorted(
                    type(c).__name__
                    for c in self.pending.values()
                    if not isinstance(c, ShotAck | GetStatus | ShotsSince)
                )
            ),
        )

    def report(self) -> dict[str, Any]:
        """What the session summary prints."""
        return {
            "final_state": str(self.state),
            "plan_id": self.plan.plan_id if self.plan else "",
            "handpiece": self.device.to_json() if self.device else None,
            "shots_fired": self.ledger.device_fired,
            "shots_seen": self.shots_seen,
            "shots_recovered": self.shots_recovered,
            "pulses_used": self.dose.pulses,
            "pulses_in_doubt": self.pulses_in_doubt,
            "fluence_used_j_cm2": round(self.dose.fluence_j_cm2, 3),
            "faults": [
                {"at": round(f.at, 3), "state": str(f.state), "kind": str(f.kind), "cause": f.cause}
                for f in self.faults
            ],
            "refusals": [
                {"at": round(r.at, 3), "command": r.command, "reason": r.reason}
                for r in self.refusals
            ],
            "warnings": list(self.warnings),
            "latched_causes": [c.message for c in self.causes],
            "calibration": _calibration_json(
                self.calibrated, self.calibration_problem, self.device is not None
            ),
        }


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
    Do.RESYNC_DEVICE: Controller._effect_resync_device,
    Do.RUN_SELF_TEST: Controller._effect_run_self_test,
    Do.SEND_PARAMETERS: Controller._effect_send_parameters,
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


# ---- small translations ------------------------------------------------------------------------
_NOTHING_SENT = object()


def _calibration_key(cal: Calibration | None) -> tuple[object, ...] | None:
    if cal is None:
        return None
    return (cal.record_id, cal.serial, cal.created_at, cal.fit.slope, cal.fit.offset)


def _calibration_json(
    cal: Calibration | None, problem: str, identified: bool
) -> dict[str, Any] | None:
    if cal is None:
        if not identified:
            return None
        if problem:
            return {"valid": False, "problem": problem}
        return {"valid": True, "id": None, "uncalibrated": True}  # training: simulated only
    lo, hi = cal.target_range
    return {
        "valid": True,
        "id": cal.record_id,
        "serial": cal.serial,
        "who": cal.who,
        "created_at": cal.created_at,
        "expires_at": cal.expires_at,
        "dose_param": cal.dose_param.field_name,
        "slope": cal.fit.slope,
        "offset": cal.fit.offset,
        "calibrated_range": [lo, hi],
    }


def _device_state(value: int) -> DeviceState:
    try:
        return DeviceState(value)
    except ValueError:
        return DeviceState.FAULT  # an unknown state is treated as the worst one


def _fault_code(value: int) -> FaultCode:
    try:
        return FaultCode(value)
    except ValueError:
        return FaultCode.INTERNAL


def _interlock(bit: int) -> Interlock | None:
    try:
        return Interlock(bit)
    except ValueError:
        return None


def _item_name(item: int) -> str:
    try:
        return SelfTestItem(item).name.lower()
    except ValueError:
        return f"item {item}"


def _param_name(code: int) -> str:
    try:
        return Param(code).field_name
    except ValueError:
        return f"param {code}"


def _device_fault_cause(code_value: int, detail: int, value: int) -> Cause:
    code = _fault_code(code_value)
    match code:
        case FaultCode.OVERTEMP:
            return Cause(
                CauseKind.INTERLOCK,
                f"over-temperature: {value / 1000:.1f} C (SR-20)",
                InterlockId.TEMPERATURE,
            )
        case FaultCode.COOLING:
            return Cause(CauseKind.INTERLOCK, "cooling failure (SR-20)", InterlockId.COOLING)
        case FaultCode.ENERGY_DEVIATION:
            return Cause(
                CauseKind.ENERGY,
                f"device energy monitor: deviation {value / 10:+.1f} % (SR-06)",
            )
        case FaultCode.WATCHDOG:
            return Cause(CauseKind.LINK, "device watchdog: no host frame in time (SR-09)")
        case FaultCode.SELF_TEST_FAILED:
            return Cause(CauseKind.SELF_TEST, f"self test failed: {_item_name(detail)}")
        case FaultCode.REBOOTED:
            return Cause(CauseKind.REBOOT, "the device lost its shot counter in a reboot")
        case FaultCode.SHOT_BUFFER_FULL:
            return Cause(CauseKind.DEVICE, f"device shot buffer full ({value} unacknowledged)")
    return Cause(CauseKind.DEVICE, f"device fault {code.name.lower()}")


__all__ = [
    "CalibrationCheck",
    "CalibrationSource",
    "Cause",
    "CauseKind",
    "Controller",
    "FaultRecord",
    "Refusal",
    "stand_in_calibration",
    "training_calibration",
]
