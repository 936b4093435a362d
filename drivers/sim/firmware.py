"""The simulated handpiece: a firmware model, not an echo.

It enforces its own interlocks whatever the host does: it never fires unless armed, every
interlock of the handpiece closed, the footswitch pressed, the ready delay elapsed and pulses
left in the grant. It runs the dead-man watchdog, keeps a shot counter and a bounded buffer of
unacknowledged shot records that survives host reconnects, and runs a self test.

Time is injected: every entry point takes ``now`` (seconds), so tests are deterministic and fast.
The same object is served in-process, over a pty and over TCP by drivers/sim/server.py.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Callable

from drivers.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Arm,
    Boot,
    CalFire,
    Command,
    DeviceLink,
    DeviceState,
    Disarm,
    EStop,
    Fault,
    FaultCode,
    GetStatus,
    HandpieceType,
    Heartbeat,
    Hello,
    HelloInfo,
    Interlock,
    MeterReading,
    Nak,
    NakReason,
    Param,
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
    SimControl,
    Status,
    StatusBody,
    StatusChanged,
)

from .faults import FaultInjector, InjectionError
from .models import MODELS, OVERTEMP_C, EnergySource, Thermal

WATCHDOG_S = 0.250  # SR-09
EMISSION_LEAD_S = 0.010  # emission indicator on at least this long before the first pulse
ENERGY_FAULT = 0.20  # the device's own energy monitor trips beyond +-20 % (SR-06)
SHOT_BUFFER = 4096
FIRMWARE = "sim-1.0.0"

# Interlocks whose opening latches FAULT on the device (the cause must clear before RESET).
LATCHING = {Interlock.COOLING: FaultCode.COOLING, Interlock.TEMPERATURE: FaultCode.OVERTEMP}
# Not needed for a test pulse into the internal power meter (the beam never leaves the handpiece).
NOT_NEEDED_FOR_CALIBRATION = frozenset({Interlock.SKIN_CONTACT, Interlock.AIMING_BEAM})


class SimulatedHandpiece:
    """One handpiece: bytes in by receive(), bytes out by output(), time by tick()."""

    def __init__(
        self,
        handpiece: HandpieceType | str,
        *,
        serial: str | None = None,
        seed: int = 0,
        now: float = 0.0,
        gain: float = 1.0,
        watchdog_s: float = WATCHDOG_S,
        buffer_size: int = SHOT_BUFFER,
    ) -> None:
        if isinstance(handpiece, str):
            handpiece = HandpieceType.from_slug(handpiece)
        self.model = MODELS[handpiece]
        self.rng = random.Random(seed)
        self.serial = serial or f"{self.model.serial_prefix}-{seed % 100000:05d}"
        self.watchdog_s = watchdog_s
        self.energy = EnergySource(self.rng, gain)
        self.thermal = Thermal()
        self.inputs: dict[Interlock, bool | None] = {i: True for i in self.model.interlocks}
        self.footswitch = False
        self.footswitch_stuck = False
        self.selftest_failures: set[SelfTestItem] = set()
        self.shot_no = 0  # kept in non-volatile memory: survives a power cycle
        self.unacked: deque[Shot] = deque()
        self.buffer_size = buffer_size
        self.faults = FaultInjector(self.rng)
        self.link_up = True
        self.boots = 0
        self._boot(now)

    # ---- power ----------------------------------------------------------------------------------
    def _boot(self, now: float) -> None:
        self.link = DeviceLink()
        self.boots += 1
        self.boot_id = self.rng.getrandbits(32) or 1
        self.boot_time = now
        self.now = now
        self.event_no = 0
        self.state = DeviceState.NOT_TESTED
        self.self_tested = False  # a self test passed since power-up or the last e-stop reset
        self.fault = FaultCode.NONE
        self.params: dict[Param, int] = {}
        # The model and parameters of the last pulse, and what follows from them: the SHOT
        # record's params, pulse duration, heat per pulse (a burst fires one parameter set).
        self._pulse_of: tuple[object, tuple[tuple[int, int], ...], float, float] | None = None
        self.grant = 0
        self.ready_at = now
        self.next_pulse = now
        self.emission = False
        self.last_rx: float | None = None
        self._reported: tuple[int, ...] | None = None
        self._emit(lambda n: Boot(n, self.boot_id))
        self._report_status()

    def power_cycle(self, now: float, *, lose_counter: bool = False) -> None:
        """Reboot. With lose_counter the shot counter and its buffer are lost (a fault)."""
        if lose_counter:
            self.shot_no = 0
            self.unacked.clear()
        self._boot(now)
        if lose_counter:
            self._fault_event(FaultCode.REBOOTED, latched=False)

    # ---- bytes in, bytes out --------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> None:
        self._advance(now)
        valid = self.link.receive_data(data)
        while (incoming := self.link.next_command()) is not None:
            command = incoming.command
            if not self.link_up and not isinstance(command, SimControl):
                # The cable is "pulled": nothing but the trainer's control gets through, and a
                # retransmission after replug must find the command not received at all.
                self.link.forget(incoming.seq)
                continue
            if self.link_up:
                self.last_rx = now
            self._execute(incoming.seq, command, now)
        if valid and self.link_up:
            self.last_rx = now
        self._report_status()

    def tick(self, now: float) -> None:
        self._advance(now)
        self._report_status()

    def output(self, now: float) -> bytes:
        data = self.link.data_to_send()
        return self.faults.shape_output(data, now)

    def next_deadline(self) -> float:
        """When tick() must next be called for pulses and the watchdog to be on time."""
        deadlines = [self.now + 0.05]
        if self.state is DeviceState.EMITTING:
            deadlines.append(self.next_pulse)
        elif self.state is DeviceState.ARMED and self.ready_at > self.now:
            # Once ready, nothing is due until an input changes (the footswitch): a ready time
            # in the past here made every serving loop spin while ARMED.
            deadlines.append(self.ready_at)
        if self.last_rx is not None and self.state in (DeviceState.ARMED, DeviceState.EMITTING):
            deadlines.append(self.last_rx + self.watchdog_s)
        held = self.faults.next_release()
        if held is not None:
            deadlines.append(held)
        return min(deadlines)

    # ---- the model ------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        now = max(now, self.now)
        self.thermal.advance(now)
        if (
            self.last_rx is not None
            and now - self.last_rx > self.watchdog_s
            and self.state in (DeviceState.ARMED, DeviceState.EMITTING)
        ):
            # Pulses due before the watchdog expired still fire, none after it.
            self._fire_until(min(now, self.last_rx + self.watchdog_s))
            self._stop(DeviceState.IDLE)
            self._fault_event(FaultCode.WATCHDOG, latched=False, value=int(self.watchdog_s * 1000))
        self.now = now
        self._check_inputs()
        self._fire_until(now)

    def _fire_until(self, now: float) -> None:
        if self.state in (DeviceState.ARMED, DeviceState.EMITTING):
            gate = self._footswitch_down() and now >= self.ready_at
            if self.state is DeviceState.ARMED and gate:
                self.state = DeviceState.EMITTING
                self.emission = True  # SR-05: the indication goes out before the first pulse
                self._report_status()
                self.next_pulse = max(now, self.ready_at) + EMISSION_LEAD_S
            elif self.state is DeviceState.EMITTING and not self._footswitch_down():
                self.state = DeviceState.ARMED
                self.emission = False
        while self.state is DeviceState.EMITTING and self.next_pulse <= now:
            self._fire(self.next_pulse)
            self.next_pulse += 1.0 / (self.params[Param.REP_RATE_HZ] / 1000.0)

    def _fire(self, t: float) -> None:
        dose = self.model.dose_param
        set_milli = self.params[dose]
        delivered = self.energy.deliver(set_milli / 1000.0)
        key = (self.model, tuple(self.params.items()))
        if self._pulse_of is None or self._pulse_of[0] != key:
            values = {p: v / 1000.0 for p, v in key[1]}
            self._pulse_of = (
                key,
                tuple(sorted((int(p), v) for p, v in key[1])),
                self.model.pulse_us(values),
                self.model.heat_per_pulse_c(values),
            )
        _, params, pulse_us, heat_c = self._pulse_of
        self.shot_no += 1
        self.grant -= 1
        shot = Shot(
            event_no=self._next_event_no(),
            shot_no=self.shot_no,
            device_time_us=int((t - self.boot_time) * 1e6),
            flags=0,
            dose_param=dose,
            set_milli=set_milli,
            measured_milli=round(delivered * 1000),
            pulse_us=round(pulse_us * (1 + self.rng.gauss(0, 0.01))),
            params=params,
        )
        self.unacked.append(shot)
        self.link.emit(shot)
        if not self.link_up:
            self.link.discard_output()  # lost on the pulled cable; the record stays in the buffer
        self.thermal.pulse(heat_c)
        deviation = delivered / (set_milli / 1000.0) - 1.0
        if abs(deviation) > ENERGY_FAULT:
            self._stop(DeviceState.FAULT, FaultCode.ENERGY_DEVIATION)
            self._fault_event(
                FaultCode.ENERGY_DEVIATION, latched=True, value=round(deviation * 1000)
            )
        elif self.grant <= 0:
            self._stop(DeviceState.IDLE)
            self._fault_event(FaultCode.GRANT_EXHAUSTED, latched=False)
        elif len(self.unacked) >= self.buffer_size:
            self._stop(DeviceState.IDLE)
            self._fault_event(FaultCode.SHOT_BUFFER_FULL, latched=False, value=len(self.unacked))

    def _footswitch_down(self) -> bool:
        return self.footswitch or self.footswitch_stuck

    def _closed(self, interlock: Interlock) -> bool:
        return self.inputs.get(interlock) is True  # unknown (None) counts as open

    def _first_open(self, ignore: frozenset[Interlock] = frozenset()) -> Interlock | None:
        for interlock in sorted(self.model.interlocks):
            if interlock not in ignore and not self._closed(interlock):
                return interlock
        return None

    def _check_inputs(self) -> None:
        """Derived inputs, then the hard interlocks: an open one stops emission at once."""
        if Interlock.TEMPERATURE in self.inputs and self.inputs[Interlock.TEMPERATURE] is not None:
            self.inputs[Interlock.TEMPERATURE] = self.thermal.in_range
        self.thermal.cooling_ok = self._closed(Interlock.COOLING)
        for interlock, code in LATCHING.items():
            if not self._closed(interlock) and self.state not in (
                DeviceState.FAULT,
                DeviceState.ESTOP,
            ):
                self._stop(DeviceState.FAULT, code)
                self._fault_event(code, latched=True, value=round(self.thermal.temp_c * 1000))
        if not self._closed(Interlock.ESTOP) and self.state is not DeviceState.ESTOP:
            self._stop(DeviceState.ESTOP, FaultCode.ESTOP)
            self._fault_event(FaultCode.ESTOP, latched=True)
        if self.state in (DeviceState.ARMED, DeviceState.EMITTING):
            opened = self._first_open()
            if opened is not None:
                self._stop(DeviceState.IDLE)
                self._fault_event(FaultCode.INTERLOCK_OPENED, latched=False, detail=opened)

    def _stop(self, state: DeviceState, fault: FaultCode = FaultCode.NONE) -> None:
        self.state = state
        self.emission = False
        self.grant = 0
        if fault is not FaultCode.NONE:
            self.fault = fault

    # ---- events ---------------------------------------------------------------------------------
    def _next_event_no(self) -> int:
        self.event_no += 1
        return self.event_no

    def _emit(self, make: Callable[[int], Shot | StatusChanged | Fault | Boot]) -> None:
        event = make(self._next_event_no())
        self.link.emit(event)
        if not self.link_up:
            self.link.discard_output()

    def _fault_event(
        self, code: FaultCode, *, latched: bool, detail: int = 0, value: int = 0
    ) -> None:
        self._emit(lambda n: Fault(n, code, int(latched), detail, value))
        self._report_status()

    def _interlock_bits(self) -> tuple[int, int]:
        """(closed, known): a bit per interlock input, as STATUS carries them."""
        closed = known = 0
        for interlock, value in self.inputs.items():
            if value is not None:
                known |= 1 << interlock
                if value:
                    closed |= 1 << interlock
        return closed, known

    def status(self) -> StatusBody:
        closed, known = self._interlock_bits()
        return StatusBody(
            state=self.state,
            closed=closed,
            known=known,
            footswitch=int(self._footswitch_down()),
            emission=int(self.emission),
            grant_remaining=self.grant,
            shot_no=self.shot_no,
            unacked=min(len(self.unacked), 0xFFFF),
            temp_mc=round(self.thermal.temp_c * 1000),
            fault=self.fault,
            event_no=self.event_no,
            device_time_us=int((self.now - self.boot_time) * 1e6),
        )

    def _report_status(self) -> None:
        """A STATUS_CHANGED event whenever a discrete field changed (not for temperature drift).
        Called after every step: the whole status is built only when it goes out."""
        closed, known = self._interlock_bits()
        signature = (
            self.state,
            closed,
            known,
            int(self._footswitch_down()),
            int(self.emission),
            self.fault,
        )
        if signature != self._reported:
            self._reported = signature
            body = self.status()
            self._emit(lambda n: StatusChanged(n, dataclasses.replace(body, event_no=n)))

    # ---- commands -------------------------------------------------------------------------------
    def _execute(self, seq: int, command: Command, now: float) -> None:
        response = self._dispatch(command, now)
        self.link.respond(seq, response)
        if isinstance(command, ShotsSince) and isinstance(response, ShotsPending):
            for shot in [s for s in self.unacked if s.shot_no > command.after_shot]:
                self._emit(_replay(shot))
        if not self.link_up:
            self._keep_control_reply(command)

    def _dispatch(self, command: Command, now: float) -> Response:
        match command:
            case Hello():
                return self._hello(command, now)
            case GetStatus() | Heartbeat():
                return self._status(command, now)
            case SetParams():
                return self._set_params(command, now)
            case Arm():
                return self._arm(command, now)
            case Disarm():
                return self._disarm(command, now)
            case EStop():
                return self._estop(command, now)
            case Reset():
                return self._reset(command, now)
            case SelfTest():
                return self._self_test(command, now)
            case ShotsSince():
                return self._shots_since(command, now)
            case ShotAck():
                return self._shot_ack(command, now)
            case CalFire():
                return self._cal_fire(command, now)
            case SimControl():
                return self._sim_control(command, now)
        return _nak(command, NakReason.UNSUPPORTED)

    def _keep_control_reply(self, command: Command) -> None:
        if not isinstance(command, SimControl):
            self.link.discard_output()

    def _hello(self, command: Hello, now: float) -> Response:
        if not command.min_version <= PROTOCOL_VERSION <= command.max_version:
            return _nak(command, NakReason.UNSUPPORTED_VERSION, value=PROTOCOL_VERSION)
        caps = tuple(
            (int(p), round(lo * 1000), round(hi * 1000))
            for p, (lo, hi) in sorted(self.model.capabilities.items())
        )
        return HelloInfo(
            protocol=PROTOCOL_VERSION,
            handpiece=self.model.type,
            flags=HelloInfo.FLAG_SIMULATED,
            wavelength_nm=self.model.wavelength_nm,
            boot_id=self.boot_id,
            interlocks=self.model.interlock_mask,
            serial=self.serial,
            firmware=FIRMWARE,
            capabilities=caps,
        )

    def _status(self, command: Command, now: float) -> Response:
        return Status(self.status())

    def _set_params(self, command: SetParams, now: float) -> Response:
        if self.state not in (DeviceState.NOT_TESTED, DeviceState.IDLE, DeviceState.FAULT):
            return _nak(command, NakReason.BAD_STATE, detail=self.state)
        staged: dict[Param, int] = {}
        for code, value in command.values:
            if code not in Param._value2member_map_ or Param(code) not in self.model.capabilities:
                return _nak(command, NakReason.UNKNOWN_PARAM, detail=code, value=value)
            lo, hi = self.model.capabilities[Param(code)]
            if not round(lo * 1000) <= value <= round(hi * 1000):
                return _nak(command, NakReason.OUT_OF_RANGE, detail=code, value=value)
            staged[Param(code)] = value
        self.params.update(staged)  # all or nothing: one bad value refuses the whole command
        return Ack(command.TYPE)

    def _arm(self, command: Arm, now: float) -> Response:
        refusal = self._arm_refusal(command)
        if refusal is not None:
            return refusal
        self.state = DeviceState.ARMED
        self.grant = command.grant
        self.ready_at = now + command.delay_ms / 1000.0
        return Ack(command.TYPE)

    def _arm_refusal(self, command: Arm) -> Nak | None:
        if self.state is DeviceState.NOT_TESTED:
            return _nak(command, NakReason.SELF_TEST_REQUIRED)
        if self.state in (DeviceState.FAULT, DeviceState.ESTOP):
            return _nak(command, NakReason.LATCHED, detail=self.fault)
        if self.state is not DeviceState.IDLE:
            return _nak(command, NakReason.BAD_STATE, detail=self.state)
        if command.grant <= 0:
            return _nak(command, NakReason.ZERO_GRANT)
        missing = [p for p in sorted(self.model.capabilities) if p not in self.params]
        if missing:
            return _nak(command, NakReason.NO_PARAMS, detail=missing[0])
        opened = self._first_open()
        if opened is not None:
            return _nak(command, NakReason.INTERLOCK_OPEN, detail=opened)
        if self._footswitch_down():
            return _nak(command, NakReason.FOOTSWITCH_PRESSED)
        if len(self.unacked) >= self.buffer_size:
            return _nak(command, NakReason.BUSY, value=len(self.unacked))
        return None

    def _disarm(self, command: Disarm, now: float) -> Response:
        if self.state in (DeviceState.ARMED, DeviceState.EMITTING):
            self._stop(DeviceState.IDLE)
        return Ack(command.TYPE)

    def _estop(self, command: EStop, now: float) -> Response:
        if self.state is not DeviceState.ESTOP:
            self._stop(DeviceState.ESTOP, FaultCode.ESTOP)
            self._fault_event(FaultCode.ESTOP, latched=True, detail=1)
        return Ack(command.TYPE)

    def _reset(self, command: Reset, now: float) -> Response:
        if self.state is DeviceState.ESTOP:
            if not self._closed(Interlock.ESTOP):
                return _nak(command, NakReason.LATCHED, detail=FaultCode.ESTOP)
            self.state = DeviceState.NOT_TESTED  # a new self test is required (SR-03)
            self.self_tested = False
        elif self.state is DeviceState.FAULT:
            cause = self._fault_cause()
            if cause is not None:
                return _nak(command, NakReason.LATCHED, detail=self.fault, value=cause)
            # Never IDLE without a passed self test (SR-17): not after a failed one, nor after
            # a fault that latched before the first one.
            self.state = DeviceState.IDLE if self.self_tested else DeviceState.NOT_TESTED
        self.fault = FaultCode.NONE
        return Ack(command.TYPE)

    def _fault_cause(self) -> int | None:
        """The interlock still holding the latched fault, or None when it may be reset."""
        for interlock, code in LATCHING.items():
            if self.fault == code and not self._closed(interlock):
                return int(interlock)
        if self.fault == FaultCode.SELF_TEST_FAILED and self.selftest_failures:
            return int(min(self.selftest_failures))
        return None

    def _self_test(self, command: SelfTest, now: float) -> Response:
        if self.state not in (DeviceState.NOT_TESTED, DeviceState.IDLE):
            return _nak(command, NakReason.BAD_STATE, detail=self.state)
        failures = set(self.selftest_failures)
        if any(v is None for v in self.inputs.values()):
            failures.add(SelfTestItem.INTERLOCK_INPUTS)
        if self.thermal.temp_c > OVERTEMP_C + 30:
            failures.add(SelfTestItem.TEMPERATURE_SENSORS)
        items = tuple((int(i), int(i not in failures)) for i in SelfTestItem)
        if failures:
            self.self_tested = False
            self._stop(DeviceState.FAULT, FaultCode.SELF_TEST_FAILED)
            self._fault_event(FaultCode.SELF_TEST_FAILED, latched=True, detail=min(failures))
            return SelfTestResult(0, items)
        self.state = DeviceState.IDLE
        self.self_tested = True
        return SelfTestResult(1, items)

    def _shots_since(self, command: ShotsSince, now: float) -> Response:
        return ShotsPending(sum(1 for s in self.unacked if s.shot_no > command.after_shot))

    def _shot_ack(self, command: ShotAck, now: float) -> Response:
        while self.unacked and self.unacked[0].shot_no <= command.up_to_shot:
            self.unacked.popleft()
        return Ack(command.TYPE)

    def _cal_fire(self, command: CalFire, now: float) -> Response:
        if self.state is not DeviceState.IDLE:
            return _nak(command, NakReason.BAD_STATE, detail=self.state)
        opened = self._first_open(NOT_NEEDED_FOR_CALIBRATION)
        if opened is not None:
            return _nak(command, NakReason.INTERLOCK_OPEN, detail=opened)
        lo, hi = self.model.capabilities[self.model.dose_param]
        if not round(lo * 1000) <= command.set_milli <= round(hi * 1000):
            return _nak(
                command,
                NakReason.OUT_OF_RANGE,
                detail=self.model.dose_param,
                value=command.set_milli,
            )
        delivered = self.energy.deliver(command.set_milli / 1000.0)
        self.thermal.pulse(self.model.heat_per_pulse_c({self.model.dose_param: delivered}))
        return MeterReading(command.set_milli, round(self.energy.meter(delivered) * 1000))

    def _sim_control(self, command: SimControl, now: float) -> Response:
        try:
            self.inject(command.command, now)
        except InjectionError:
            return _nak(command, NakReason.MALFORMED)
        return Ack(command.TYPE)

    # ---- fault injection ------------------------------------------------------------------------
    def inject(self, text: str, now: float) -> None:
        """Apply one fault-injection command (see docs/simulator.md for the list)."""
        self._advance(now)
        self.faults.apply(self, text, now)
        self._advance(now)
        self._report_status()


def _replay(shot: Shot) -> Callable[[int], Shot]:
    return lambda n: dataclasses.replace(shot, event_no=n, flags=Shot.FLAG_REPLAY)


def _nak(command: Command, reason: NakReason, *, detail: int = 0, value: int = 0) -> Nak:
    return Nak(command.TYPE, reason, int(detail), value & 0xFFFFFFFF)
