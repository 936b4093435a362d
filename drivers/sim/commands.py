"""What each command does on the simulated handpiece: one handler per command of
docs/protocol.md section 5.1, answering it from the state the firmware model keeps.

The handlers see the model (firmware.py) as `Firmware`: the part of it a command may read or
change. They decide whether a command is allowed in the state it finds (NAK, and why, when not)
and what it changes; what happens afterwards by itself (pulses, the watchdog, interlocks opening)
is the model's. SimulatedHandpiece passes itself in.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from drivers.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Arm,
    CalFire,
    Command,
    DeviceState,
    Disarm,
    EStop,
    FaultCode,
    GetStatus,
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
)

from .faults import InjectionError
from .models import OVERTEMP_C, EnergySource, HandpieceModel, Thermal

FIRMWARE = "sim-1.0.0"
# Interlocks whose opening latches FAULT on the device (the cause must clear before RESET).
LATCHING = {Interlock.COOLING: FaultCode.COOLING, Interlock.TEMPERATURE: FaultCode.OVERTEMP}
# Not needed for a test pulse into the internal power meter (the beam never leaves the handpiece).
NOT_NEEDED_FOR_CALIBRATION = frozenset({Interlock.SKIN_CONTACT, Interlock.AIMING_BEAM})


class Firmware(Protocol):
    """What a command handler reads and changes of the handpiece."""

    model: HandpieceModel
    serial: str
    boot_id: int
    state: DeviceState
    fault: FaultCode
    self_tested: bool  # a self test passed since power-up or the last e-stop reset
    params: dict[Param, int]
    grant: int
    ready_at: float
    unacked: deque[Shot]
    buffer_size: int
    inputs: dict[Interlock, bool | None]
    selftest_failures: set[SelfTestItem]
    energy: EnergySource
    thermal: Thermal

    def status(self) -> StatusBody: ...
    def is_closed(self, interlock: Interlock) -> bool: ...
    def first_open(self, ignore: frozenset[Interlock] = ...) -> Interlock | None: ...
    def footswitch_down(self) -> bool: ...
    def stop_emission(self, state: DeviceState, fault: FaultCode = ...) -> None: ...
    def report_fault(
        self, code: FaultCode, *, latched: bool, detail: int = ..., value: int = ...
    ) -> None: ...
    def inject(self, text: str, now: float) -> None: ...


def answer(fw: Firmware, command: Command, now: float) -> Response:
    """Execute one command and say what the device answers."""
    match command:
        case Hello():
            return _hello(fw, command)
        case GetStatus() | Heartbeat():
            return Status(fw.status())
        case SetParams():
            return _set_params(fw, command)
        case Arm():
            return _arm(fw, command, now)
        case Disarm():
            return _disarm(fw, command)
        case EStop():
            return _estop(fw, command)
        case Reset():
            return _reset(fw, command)
        case SelfTest():
            return _self_test(fw, command)
        case ShotsSince():
            return ShotsPending(sum(1 for s in fw.unacked if s.shot_no > command.after_shot))
        case ShotAck():
            return _shot_ack(fw, command)
        case CalFire():
            return _cal_fire(fw, command)
        case SimControl():
            return _sim_control(fw, command, now)
    return _nak(command, NakReason.UNSUPPORTED)


def _hello(fw: Firmware, command: Hello) -> Response:
    if not command.min_version <= PROTOCOL_VERSION <= command.max_version:
        return _nak(command, NakReason.UNSUPPORTED_VERSION, value=PROTOCOL_VERSION)
    caps = tuple(
        (int(p), round(lo * 1000), round(hi * 1000))
        for p, (lo, hi) in sorted(fw.model.capabilities.items())
    )
    return HelloInfo(
        protocol=PROTOCOL_VERSION,
        handpiece=fw.model.type,
        flags=HelloInfo.FLAG_SIMULATED,
        wavelength_nm=fw.model.wavelength_nm,
        boot_id=fw.boot_id,
        interlocks=fw.model.interlock_mask,
        serial=fw.serial,
        firmware=FIRMWARE,
        capabilities=caps,
    )


def _set_params(fw: Firmware, command: SetParams) -> Response:
    if fw.state not in (DeviceState.NOT_TESTED, DeviceState.IDLE, DeviceState.FAULT):
        return _nak(command, NakReason.BAD_STATE, detail=fw.state)
    staged: dict[Param, int] = {}
    for code, value in command.values:
        if code not in Param._value2member_map_ or Param(code) not in fw.model.capabilities:
            return _nak(command, NakReason.UNKNOWN_PARAM, detail=code, value=value)
        lo, hi = fw.model.capabilities[Param(code)]
        if not round(lo * 1000) <= value <= round(hi * 1000):
            return _nak(command, NakReason.OUT_OF_RANGE, detail=code, value=value)
        staged[Param(code)] = value
    fw.params.update(staged)  # all or nothing: one bad value refuses the whole command
    return Ack(command.TYPE)


def _arm(fw: Firmware, command: Arm, now: float) -> Response:
    refusal = _arm_refusal(fw, command)
    if refusal is not None:
        return refusal
    fw.state = DeviceState.ARMED
    fw.grant = command.grant
    fw.ready_at = now + command.delay_ms / 1000.0
    return Ack(command.TYPE)


def _arm_refusal(fw: Firmware, command: Arm) -> Nak | None:
    if fw.state is DeviceState.NOT_TESTED:
        return _nak(command, NakReason.SELF_TEST_REQUIRED)
    if fw.state in (DeviceState.FAULT, DeviceState.ESTOP):
        return _nak(command, NakReason.LATCHED, detail=fw.fault)
    if fw.state is not DeviceState.IDLE:
        return _nak(command, NakReason.BAD_STATE, detail=fw.state)
    if command.grant <= 0:
        return _nak(command, NakReason.ZERO_GRANT)
    missing = [p for p in sorted(fw.model.capabilities) if p not in fw.params]
    if missing:
        return _nak(command, NakReason.NO_PARAMS, detail=missing[0])
    opened = fw.first_open()
    if opened is not None:
        return _nak(command, NakReason.INTERLOCK_OPEN, detail=opened)
    if fw.footswitch_down():
        return _nak(command, NakReason.FOOTSWITCH_PRESSED)
    if len(fw.unacked) >= fw.buffer_size:
        return _nak(command, NakReason.BUSY, value=len(fw.unacked))
    return None


def _disarm(fw: Firmware, command: Disarm) -> Response:
    if fw.state in (DeviceState.ARMED, DeviceState.EMITTING):
        fw.stop_emission(DeviceState.IDLE)
    return Ack(command.TYPE)


def _estop(fw: Firmware, command: EStop) -> Response:
    if fw.state is not DeviceState.ESTOP:
        fw.stop_emission(DeviceState.ESTOP, FaultCode.ESTOP)
        fw.report_fault(FaultCode.ESTOP, latched=True, detail=1)
    return Ack(command.TYPE)


def _reset(fw: Firmware, command: Reset) -> Response:
    if fw.state is DeviceState.ESTOP:
        if not fw.is_closed(Interlock.ESTOP):
            return _nak(command, NakReason.LATCHED, detail=FaultCode.ESTOP)
        fw.state = DeviceState.NOT_TESTED  # a new self test is required (SR-03)
        fw.self_tested = False
    elif fw.state is DeviceState.FAULT:
        cause = _fault_cause(fw)
        if cause is not None:
            return _nak(command, NakReason.LATCHED, detail=fw.fault, value=cause)
        # Never IDLE without a passed self test (SR-17): not after a failed one, nor after
        # a fault that latched before the first one.
        fw.state = DeviceState.IDLE if fw.self_tested else DeviceState.NOT_TESTED
    fw.fault = FaultCode.NONE
    return Ack(command.TYPE)


def _fault_cause(fw: Firmware) -> int | None:
    """The interlock or self-test item holding the latched fault; None: it may be reset."""
    for interlock, code in LATCHING.items():
        if fw.fault == code and not fw.is_closed(interlock):
            return int(interlock)
    if fw.fault == FaultCode.SELF_TEST_FAILED and fw.selftest_failures:
        return int(min(fw.selftest_failures))
    return None


def _self_test(fw: Firmware, command: SelfTest) -> Response:
    if fw.state not in (DeviceState.NOT_TESTED, DeviceState.IDLE):
        return _nak(command, NakReason.BAD_STATE, detail=fw.state)
    failures = set(fw.selftest_failures)
    if any(v is None for v in fw.inputs.values()):
        failures.add(SelfTestItem.INTERLOCK_INPUTS)
    if fw.thermal.temp_c > OVERTEMP_C + 30:
        failures.add(SelfTestItem.TEMPERATURE_SENSORS)
    items = tuple((int(i), int(i not in failures)) for i in SelfTestItem)
    if failures:
        fw.self_tested = False
        fw.stop_emission(DeviceState.FAULT, FaultCode.SELF_TEST_FAILED)
        fw.report_fault(FaultCode.SELF_TEST_FAILED, latched=True, detail=min(failures))
        return SelfTestResult(0, items)
    fw.state = DeviceState.IDLE
    fw.self_tested = True
    return SelfTestResult(1, items)


def _shot_ack(fw: Firmware, command: ShotAck) -> Response:
    while fw.unacked and fw.unacked[0].shot_no <= command.up_to_shot:
        fw.unacked.popleft()
    return Ack(command.TYPE)


def _cal_fire(fw: Firmware, command: CalFire) -> Response:
    if fw.state is not DeviceState.IDLE:
        return _nak(command, NakReason.BAD_STATE, detail=fw.state)
    opened = fw.first_open(NOT_NEEDED_FOR_CALIBRATION)
    if opened is not None:
        return _nak(command, NakReason.INTERLOCK_OPEN, detail=opened)
    dose = fw.model.dose_param
    lo, hi = fw.model.capabilities[dose]
    if not round(lo * 1000) <= command.set_milli <= round(hi * 1000):
        return _nak(command, NakReason.OUT_OF_RANGE, detail=dose, value=command.set_milli)
    delivered = fw.energy.deliver(command.set_milli / 1000.0)
    fw.thermal.pulse(fw.model.heat_per_pulse_c({dose: delivered}))
    return MeterReading(command.set_milli, round(fw.energy.meter(delivered) * 1000))


def _sim_control(fw: Firmware, command: SimControl, now: float) -> Response:
    try:
        fw.inject(command.command, now)
    except InjectionError:
        return _nak(command, NakReason.MALFORMED)
    return Ack(command.TYPE)


def _nak(command: Command, reason: NakReason, *, detail: int = 0, value: int = 0) -> Nak:
    return Nak(command.TYPE, reason, int(detail), value & 0xFFFFFFFF)
