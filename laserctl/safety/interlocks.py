"""Every interlock in one table: where its reading comes from, what it does when it opens (SR-01,
SR-02). A reading that is missing or unknown counts as open.

The table is the single declaration; the controller only asks "which are open" and "what does
this one do when it opens". docs/controller.md prints the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from drivers.protocol import HandpieceType, Interlock, StatusBody


class InterlockId(StrEnum):
    KEY = "key"
    DOOR = "door"
    ESTOP = "estop"
    FOOTSWITCH = "footswitch"
    HANDPIECE = "handpiece"
    CALIBRATION = "calibration"
    LINK = "link"
    COOLING = "cooling"
    TEMPERATURE = "temperature"
    SHUTTER = "shutter"
    SKIN_CONTACT = "skin_contact"
    AIMING_BEAM = "aiming_beam"
    EYEWEAR = "eyewear"


class Source(StrEnum):
    DEVICE = "device input (STATUS bit)"
    FOOTSWITCH = "device footswitch input (STATUS footswitch)"
    CONTROLLER = "controller check"
    OPERATOR = "operator confirmation"


class Effect(StrEnum):
    FAULT = "stop, latch FAULT"
    STANDBY = "stop, drop to STANDBY"
    ESTOP = "stop, latch ESTOP"
    ARMING = "refuse ARM (no effect once armed)"


class Reading(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class InterlockSpec:
    id: InterlockId
    title: str
    source: Source
    effect: Effect
    device_bit: Interlock | None = None
    only_for: frozenset[HandpieceType] | None = None  # None: every handpiece
    why: str = ""


_FRACTIONAL = frozenset({HandpieceType.FRACTIONAL_1550})
_NDYAG = frozenset({HandpieceType.NDYAG_1064})

INTERLOCKS: tuple[InterlockSpec, ...] = (
    InterlockSpec(
        InterlockId.KEY,
        "key switch",
        Source.DEVICE,
        Effect.STANDBY,
        Interlock.KEY,
        why="turning the key off is a deliberate operator action, not a malfunction",
    ),
    InterlockSpec(
        InterlockId.DOOR,
        "remote / door interlock",
        Source.DEVICE,
        Effect.FAULT,
        Interlock.DOOR,
        why="someone may have entered the treatment room during emission: acknowledge first",
    ),
    InterlockSpec(
        InterlockId.ESTOP,
        "emergency stop",
        Source.DEVICE,
        Effect.ESTOP,
        Interlock.ESTOP,
        why="SR-03: release, reset and a new self test",
    ),
    InterlockSpec(
        InterlockId.FOOTSWITCH,
        "footswitch released when arming",
        Source.FOOTSWITCH,
        Effect.ARMING,
        why="SR-04: a stuck or held footswitch must not fire on arming; pressing it is how "
        "the operator fires, so it has no effect once armed",
    ),
    InterlockSpec(
        InterlockId.HANDPIECE,
        "handpiece identified and matching the plan",
        Source.CONTROLLER,
        Effect.FAULT,
        why="SR-15: a different handpiece mid-session is a fault",
    ),
    InterlockSpec(
        InterlockId.CALIBRATION,
        "calibration valid",
        Source.CONTROLLER,
        Effect.FAULT,
        why="SR-14: a valid calibration of this serial number in the shot log (training: simulated"
        " handpieces only, uncalibrated)",
    ),
    InterlockSpec(
        InterlockId.LINK,
        "link alive both ways",
        Source.CONTROLLER,
        Effect.FAULT,
        why="SR-09: the host cannot stop what it cannot reach",
    ),
    InterlockSpec(
        InterlockId.COOLING,
        "cooling",
        Source.DEVICE,
        Effect.FAULT,
        Interlock.COOLING,
        why="SR-20; the device latches it too",
    ),
    InterlockSpec(
        InterlockId.TEMPERATURE,
        "handpiece temperature in range",
        Source.DEVICE,
        Effect.FAULT,
        Interlock.TEMPERATURE,
        why="SR-20; the device latches it too",
    ),
    InterlockSpec(
        InterlockId.SHUTTER,
        "shutter",
        Source.DEVICE,
        Effect.FAULT,
        Interlock.SHUTTER,
        why="a shutter that reads open unexpectedly is a malfunction",
    ),
    InterlockSpec(
        InterlockId.SKIN_CONTACT,
        "skin contact",
        Source.DEVICE,
        Effect.STANDBY,
        Interlock.SKIN_CONTACT,
        only_for=_FRACTIONAL,
        why="lifting the handpiece off the skin is routine; re-arm to continue",
    ),
    InterlockSpec(
        InterlockId.AIMING_BEAM,
        "aiming beam on",
        Source.DEVICE,
        Effect.STANDBY,
        Interlock.AIMING_BEAM,
        only_for=_NDYAG,
        why="without the aiming beam the operator cannot see where the pulse lands",
    ),
    InterlockSpec(
        InterlockId.EYEWEAR,
        "protective eyewear confirmed for this session",
        Source.OPERATOR,
        Effect.STANDBY,
        why="cleared on FAULT, ESTOP and reconnect: re-confirm after any disturbance",
    ),
)

SPECS: dict[InterlockId, InterlockSpec] = {spec.id: spec for spec in INTERLOCKS}
BY_DEVICE_BIT: dict[Interlock, InterlockSpec] = {
    spec.device_bit: spec for spec in INTERLOCKS if spec.device_bit is not None
}


@dataclass(frozen=True, slots=True)
class InterlockInputs:
    """Everything the readings are computed from. None means not known yet (counts as open)."""

    handpiece: HandpieceType | None
    device_inputs: frozenset[Interlock]  # the inputs the handpiece says it has (HELLO)
    status: StatusBody | None
    identity_ok: bool | None
    calibration_ok: bool | None
    link_alive: bool
    eyewear: bool


def applies(spec: InterlockSpec, inputs: InterlockInputs) -> bool:
    """Skin contact and aiming beam apply to the handpieces that have them: by type, and also
    whenever the handpiece reports the input."""
    if spec.only_for is None:
        return True
    if spec.device_bit is not None and spec.device_bit in inputs.device_inputs:
        return True
    return inputs.handpiece is not None and inputs.handpiece in spec.only_for


def read(spec: InterlockSpec, inputs: InterlockInputs) -> Reading:
    if spec.device_bit is not None:
        status = inputs.status
        if status is None or not inputs.link_alive:
            return Reading.UNKNOWN
        if not status.known & (1 << spec.device_bit):
            return Reading.UNKNOWN
        return Reading.CLOSED if status.is_closed(spec.device_bit) else Reading.OPEN
    match spec.id:
        case InterlockId.FOOTSWITCH:
            if inputs.status is None or not inputs.link_alive:
                return Reading.UNKNOWN
            return Reading.OPEN if inputs.status.footswitch else Reading.CLOSED
        case InterlockId.HANDPIECE:
            return _flag(inputs.identity_ok)
        case InterlockId.CALIBRATION:
            return _flag(inputs.calibration_ok)
        case InterlockId.LINK:
            return Reading.CLOSED if inputs.link_alive else Reading.OPEN
        case InterlockId.EYEWEAR:
            return Reading.CLOSED if inputs.eyewear else Reading.OPEN
    return Reading.UNKNOWN  # pragma: no cover - every spec without a device bit is above


def _flag(value: bool | None) -> Reading:
    if value is None:
        return Reading.UNKNOWN
    return Reading.CLOSED if value else Reading.OPEN


def read_all(inputs: InterlockInputs) -> dict[InterlockId, Reading]:
    """The reading of every interlock that applies to this handpiece, in table order."""
    return {spec.id: read(spec, inputs) for spec in INTERLOCKS if applies(spec, inputs)}


def not_closed(readings: Mapping[InterlockId, Reading]) -> list[InterlockId]:
    """Open or unknown (SR-01: unknown counts as open), in table order."""
    return [ident for ident, reading in readings.items() if reading is not Reading.CLOSED]


def worst_effect(ids: list[InterlockId]) -> Effect | None:
    """What the controller does when these interlocks open during READY or EMITTING:
    ESTOP beats FAULT beats STANDBY; ARMING-only interlocks do nothing once armed."""
    effects = {SPECS[i].effect for i in ids}
    for effect in (Effect.ESTOP, Effect.FAULT, Effect.STANDBY):
        if effect in effects:
            return effect
    return None
