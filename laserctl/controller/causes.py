"""Why the controller is in FAULT or ESTOP: the latched causes, what it keeps of every fault,
refusal and warning, and the device's codes in words.

A cause is a condition (an interlock, the link, the handpiece, the e-stop input: it must have
cleared before a reset is accepted, SR-20) or an event (a reboot, a failed self test, an energy
deviation, ...: the reset acknowledges it). Pure: no actions, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from drivers.protocol import DeviceState, FaultCode, Interlock, Param, SelfTestItem

from ..safety.interlocks import InterlockId, Reading
from .table import State


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
class FaultRecord:
    at: float
    state: State  # the state the controller was in
    kind: CauseKind
    cause: str


def still_present(
    causes: list[Cause],
    readings: Mapping[InterlockId, Reading],
    *,
    link_up: bool,
    identity_problem: str,
) -> list[str]:
    """The latched causes that are conditions and have not cleared (SR-20), in words."""
    present = []
    for cause in causes:
        match cause.kind:
            case CauseKind.INTERLOCK if cause.interlock is not None:
                if readings.get(cause.interlock, Reading.CLOSED) is not Reading.CLOSED:
                    present.append(f"{cause.interlock} still {readings[cause.interlock]}")
            case CauseKind.LINK:
                if not link_up:
                    present.append("link still down")
            case CauseKind.HANDPIECE:
                if identity_problem:
                    present.append(identity_problem)
            case CauseKind.ESTOP:
                if readings.get(InterlockId.ESTOP) is not Reading.CLOSED:
                    present.append("e-stop still pressed")
    return present


# ---- the device's codes in words -----------------------------------------------------------
def device_state(value: int) -> DeviceState:
    try:
        return DeviceState(value)
    except ValueError:
        return DeviceState.FAULT  # an unknown state is treated as the worst one


def fault_code(value: int) -> FaultCode:
    try:
        return FaultCode(value)
    except ValueError:
        return FaultCode.INTERNAL


def interlock_bit(bit: int) -> Interlock | None:
    try:
        return Interlock(bit)
    except ValueError:
        return None


def item_name(item: int) -> str:
    try:
        return SelfTestItem(item).name.lower()
    except ValueError:
        return f"item {item}"


def param_name(code: int) -> str:
    try:
        return Param(code).field_name
    except ValueError:
        return f"param {code}"


def device_fault_cause(code_value: int, detail: int, value: int) -> Cause:
    code = fault_code(code_value)
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
            return Cause(CauseKind.SELF_TEST, f"self test failed: {item_name(detail)}")
        case FaultCode.REBOOTED:
            return Cause(CauseKind.REBOOT, "the device lost its shot counter in a reboot")
        case FaultCode.SHOT_BUFFER_FULL:
            return Cause(CauseKind.DEVICE, f"device shot buffer full ({value} unacknowledged)")
    return Cause(CauseKind.DEVICE, f"device fault {code.name.lower()}")
