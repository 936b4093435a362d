"""Enumerations shared by both ends of the wire. Their numeric values are the protocol."""

from __future__ import annotations

from enum import IntEnum


class HandpieceType(IntEnum):
    FRACTIONAL_1550 = 1
    NDYAG_1064 = 2

    @property
    def slug(self) -> str:
        return _SLUGS[self]

    @classmethod
    def from_slug(cls, slug: str) -> HandpieceType:
        for member, name in _SLUGS.items():
            if name == slug:
                return member
        raise ValueError(f"unknown handpiece type {slug!r} (known: {', '.join(_SLUGS.values())})")


_SLUGS = {HandpieceType.FRACTIONAL_1550: "fractional-1550", HandpieceType.NDYAG_1064: "ndyag-1064"}


class Param(IntEnum):
    """Treatment parameters. On the wire each value is an unsigned 32-bit count of
    thousandths of the unit in the name (ENERGY_MJ 16.5 mJ -> 16500)."""

    ENERGY_MJ = 1
    FLUENCE_J_CM2 = 2
    PULSE_MS = 3
    SPOT_MM = 4
    DENSITY_PCT = 5
    DEPTH_UM = 6
    PASSES = 7
    REP_RATE_HZ = 8

    @property
    def field_name(self) -> str:
        return _FIELD_NAMES[self]


_FIELD_NAMES = {p: p.name.lower() for p in Param}  # looked up per shot: Enum.name is slow


class Interlock(IntEnum):
    """Bit positions of the interlock inputs in STATUS (1 = closed, i.e. safe to emit)."""

    KEY = 0
    DOOR = 1
    ESTOP = 2
    COOLING = 3
    TEMPERATURE = 4
    SKIN_CONTACT = 5
    AIMING_BEAM = 6
    SHUTTER = 7


class DeviceState(IntEnum):
    NOT_TESTED = 0  # after power-up or e-stop reset: SELF_TEST must pass first
    IDLE = 1  # disarmed, ready to be armed
    ARMED = 2  # armed with a grant, footswitch released
    EMITTING = 3  # armed, footswitch pressed, pulses firing
    FAULT = 4  # latched fault: RESET once the cause is gone
    ESTOP = 5  # latched emergency stop: release, RESET, then SELF_TEST


class NakReason(IntEnum):
    MALFORMED = 1  # payload does not match the field table
    UNSUPPORTED_VERSION = 2  # HELLO: no common protocol version
    BAD_STATE = 3  # command not allowed in the device's state
    INTERLOCK_OPEN = 4  # detail = Interlock bit
    OUT_OF_RANGE = 5  # detail = Param, value = the refused value
    UNKNOWN_PARAM = 6  # detail = Param code, or a parameter this handpiece does not have
    FOOTSWITCH_PRESSED = 7  # ARM refused while the footswitch is down
    LATCHED = 8  # FAULT or ESTOP latched and its cause still present; detail = FaultCode
    SELF_TEST_REQUIRED = 9
    NO_PARAMS = 10  # ARM before every parameter of the handpiece was set
    ZERO_GRANT = 11  # ARM with a grant of 0 pulses
    UNSUPPORTED = 12  # message type this device does not implement (SIM_CONTROL on hardware)
    BUSY = 13  # a calibration pulse is already running, or the device is emitting


class FaultCode(IntEnum):
    NONE = 0
    WATCHDOG = 1  # no valid host frame for the watchdog period: disarmed
    OVERTEMP = 2  # detail = 0, value = temperature in m°C
    COOLING = 3
    INTERLOCK_OPENED = 4  # detail = Interlock bit that opened while armed
    SELF_TEST_FAILED = 5  # detail = SelfTestItem
    ENERGY_DEVIATION = 6  # device's own energy monitor, value = deviation in 0.1 %
    ESTOP = 7
    GRANT_EXHAUSTED = 8  # informational: the pulse grant was used up, device disarmed
    INTERNAL = 9
    SHOT_BUFFER_FULL = 10  # unacknowledged shot records fill the buffer: disarmed until SHOT_ACK
    REBOOTED = 11  # informational, sent after BOOT when the shot counter was lost


class SelfTestItem(IntEnum):
    INTERLOCK_INPUTS = 1
    SHUTTER = 2
    ENERGY_MONITOR = 3
    TEMPERATURE_SENSORS = 4
