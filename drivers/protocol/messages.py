"""Every message of the wire protocol as a frozen dataclass with its field table.

Type codes: 0x01-0x7F host commands, 0x80-0xBF device responses (their header sequence number
echoes the command they answer), 0xC0-0xFF device events (their payload starts with the device's
event number). All integers are little-endian. docs/protocol.md is the specification; the worked
examples there are checked against this module by tests/test_protocol_examples.py. The field
types the payloads are made of (text, counted lists, the reader) are in payload.py.

One file because it is one table, section 5 of docs/protocol.md: every message in type-code
order next to its layout, and the registry decode_message looks them up in. Commands, responses
and events apart would need a fourth file for the base classes and the registry, and a reader
checking the spec against the code would lose the single page to read it from.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from .framing import MalformedPayload, UnknownMessage
from .payload import (
    CAPABILITY,
    PARAM,
    U8,
    U32,
    ParamValues,
    PayloadReader,
    pack_entries,
    pack_text,
    unpack_param_entries,
)


class Message:
    """Base of all messages. Subclasses set TYPE and either FORMAT (fixed fields, in dataclass
    order) or override pack/unpack for variable-length fields."""

    __slots__ = ()
    TYPE: ClassVar[int]
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<")

    def pack(self) -> bytes:
        # Fixed-layout messages are slotted dataclasses whose slots are the fields, in order.
        names: tuple[str, ...] = type(self).__slots__
        return self.FORMAT.pack(*(getattr(self, name) for name in names))

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        reader = PayloadReader(cls.__name__, payload)
        values = reader.take(cls.FORMAT, "fields")
        reader.done()
        return cls(*values)


class Command(Message):
    """Host to device. Every command is answered with a response carrying its sequence number."""

    __slots__ = ()
    PRIORITY: ClassVar[bool] = False  # DISARM and ESTOP jump every queue


class Response(Message):
    """Device to host, answering one command."""

    __slots__ = ()


class Event(Message):
    """Device to host, unsolicited; event_no increases by one per event since boot."""

    __slots__ = ()
    event_no: int


# ---- status body, shared by STATUS and STATUS_CHANGED -------------------------------------------
STATUS_BODY = struct.Struct("<BHHBBIIHiBIQ")


@dataclass(frozen=True, slots=True)
class StatusBody:
    state: int  # DeviceState
    closed: int  # bitmap of Interlock: 1 = closed
    known: int  # bitmap of Interlock: 1 = the input reads valid (unknown counts as open)
    footswitch: int  # 1 = pressed
    emission: int  # 1 = emission indicator on
    grant_remaining: int  # pulses left of the current ARM grant
    shot_no: int  # device shot counter: number of the last shot fired
    unacked: int  # shot records kept until SHOT_ACK
    temp_mc: int  # handpiece temperature, thousandths of a degree Celsius
    fault: int  # latched FaultCode, 0 = none
    event_no: int  # number of the last event the device sent
    device_time_us: int  # device clock, microseconds since boot

    def is_closed(self, bit: int) -> bool:
        mask = 1 << bit
        return bool(self.closed & self.known & mask)


# ---- commands -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hello(Command):
    TYPE = 0x01
    FORMAT = struct.Struct("<BB")
    min_version: int
    max_version: int


@dataclass(frozen=True, slots=True)
class GetStatus(Command):
    TYPE = 0x02


@dataclass(frozen=True, slots=True)
class Heartbeat(Command):
    TYPE = 0x03


@dataclass(frozen=True, slots=True)
class SetParams(Command):
    TYPE = 0x04
    values: ParamValues

    def pack(self) -> bytes:
        return pack_entries(PARAM, self.values)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        reader = PayloadReader(cls.__name__, payload)
        values = reader.entries(PARAM, "values")
        reader.done()
        return cls(tuple((int(p), int(v)) for p, v in values))


@dataclass(frozen=True, slots=True)
class Arm(Command):
    TYPE = 0x05
    FORMAT = struct.Struct("<IH")
    grant: int  # the device fires at most this many pulses, then disarms
    delay_ms: int  # no pulse sooner than this after the ARM is accepted (ready delay, SR-04)


@dataclass(frozen=True, slots=True)
class Disarm(Command):
    TYPE = 0x06
    PRIORITY = True


@dataclass(frozen=True, slots=True)
class EStop(Command):
    TYPE = 0x07
    PRIORITY = True


@dataclass(frozen=True, slots=True)
class Reset(Command):
    TYPE = 0x08


@dataclass(frozen=True, slots=True)
class SelfTest(Command):
    TYPE = 0x09


@dataclass(frozen=True, slots=True)
class ShotsSince(Command):
    TYPE = 0x0A
    FORMAT = struct.Struct("<I")
    after_shot: int  # replay every kept shot record with a shot number above this


@dataclass(frozen=True, slots=True)
class ShotAck(Command):
    TYPE = 0x0B
    FORMAT = struct.Struct("<I")
    up_to_shot: int  # every shot up to and including this number is durable on the host


@dataclass(frozen=True, slots=True)
class CalFire(Command):
    TYPE = 0x0C
    FORMAT = struct.Struct("<I")
    set_milli: int  # set value of the dose parameter, thousandths of its unit


@dataclass(frozen=True, slots=True)
class SimControl(Command):
    """Simulator only: fault injection. A real handpiece answers NAK UNSUPPORTED."""

    TYPE = 0x7F
    command: str

    def pack(self) -> bytes:
        return pack_text(self.command)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        reader = PayloadReader(cls.__name__, payload)
        text = reader.text("command")
        reader.done()
        return cls(text)


# ---- responses ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ack(Response):
    TYPE = 0x80
    FORMAT = struct.Struct("<B")
    command: int  # type code of the command acknowledged


@dataclass(frozen=True, slots=True)
class Nak(Response):
    TYPE = 0x81
    FORMAT = struct.Struct("<BBBI")
    command: int
    reason: int  # NakReason
    detail: int  # Param, Interlock or FaultCode, by reason
    value: int  # the refused value, or 0


HELLO_FIXED = struct.Struct("<BBBHIH")


@dataclass(frozen=True, slots=True)
class HelloInfo(Response):
    TYPE = 0x82
    protocol: int
    handpiece: int  # HandpieceType
    flags: int  # bit 0: simulated handpiece
    wavelength_nm: int
    boot_id: int  # random per power-up: a changed boot_id is a device reboot
    interlocks: int  # bitmap of the Interlock inputs this handpiece has
    serial: str
    firmware: str
    capabilities: tuple[tuple[int, int, int], ...]  # (Param, min, max) in thousandths

    FLAG_SIMULATED: ClassVar[int] = 0x01

    def pack(self) -> bytes:
        fixed = HELLO_FIXED.pack(
            self.protocol,
            self.handpiece,
            self.flags,
            self.wavelength_nm,
            self.boot_id,
            self.interlocks,
        )
        caps = pack_entries(CAPABILITY, self.capabilities)
        return fixed + pack_text(self.serial) + pack_text(self.firmware) + caps

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        reader = PayloadReader(cls.__name__, payload)
        protocol, handpiece, flags, wavelength, boot_id, mask = reader.take(HELLO_FIXED, "header")
        serial = reader.text("serial")
        firmware = reader.text("firmware")
        caps = reader.entries(CAPABILITY, "capabilities")
        reader.done()
        return cls(
            protocol,
            handpiece,
            flags,
            wavelength,
            boot_id,
            mask,
            serial,
            firmware,
            tuple((int(p), int(lo), int(hi)) for p, lo, hi in caps),
        )


@dataclass(frozen=True, slots=True)
class Status(Response):
    TYPE = 0x83
    body: StatusBody

    def pack(self) -> bytes:
        return STATUS_BODY.pack(*(getattr(self.body, f) for f in StatusBody.__slots__))

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        reader = PayloadReader(cls.__name__, payload)
        values = reader.take(STATUS_BODY, "status")
        reader.done()
        return cls(StatusBody(*values))


@dataclass(frozen=True, slots=True)
class SelfTestResult(Response):
    TYPE = 0x84
    passed: int
    items: tuple[tuple[int, int], ...]  # (SelfTestItem, 1 = ok)

    def pack(self) -> bytes:
        return U8.pack(self.passed) + pack_entries(struct.Struct("<BB"), self.items)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        reader = PayloadReader(cls.__name__, payload)
        (passed,) = reader.take(U8, "passed")
        items = reader.entries(struct.Struct("<BB"), "items")
        reader.done()
        return cls(passed, tuple((int(i), int(ok)) for i, ok in items))


@dataclass(frozen=True, slots=True)
class ShotsPending(Response):
    TYPE = 0x85
    FORMAT = struct.Struct("<I")
    count: int  # number of SHOT events (flag REPLAY) that follow this response


@dataclass(frozen=True, slots=True)
class MeterReading(Response):
    TYPE = 0x86
    FORMAT = struct.Struct("<II")
    set_milli: int
    measured_milli: int  # internal power meter, thousandths of the dose unit


# ---- events -------------------------------------------------------------------------------------
SHOT_FIXED = struct.Struct("<IIQBBIII")


@dataclass(frozen=True, slots=True)
class Shot(Event):
    TYPE = 0xC0
    event_no: int
    shot_no: int  # device shot counter, +1 per pulse, never reset except by a reboot fault
    device_time_us: int
    flags: int  # bit 0: replayed by SHOTS_SINCE
    dose_param: int  # Param the set and measured values are in (ENERGY_MJ or FLUENCE_J_CM2)
    set_milli: int
    measured_milli: int
    pulse_us: int  # measured pulse duration, microseconds
    params: ParamValues  # every parameter in force for this pulse

    FLAG_REPLAY: ClassVar[int] = 0x01

    def pack(self) -> bytes:
        fixed = SHOT_FIXED.pack(
            self.event_no,
            self.shot_no,
            self.device_time_us,
            self.flags,
            self.dose_param,
            self.set_milli,
            self.measured_milli,
            self.pulse_us,
        )
        return fixed + pack_entries(PARAM, self.params)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        fixed = SHOT_FIXED.size
        if len(payload) > fixed and len(payload) == fixed + 1 + payload[fixed] * PARAM.size:
            # The length is right (the common case, once per pulse): straight through.
            event_no, shot_no, time_us, flags, dose, set_milli, measured, pulse_us = (
                SHOT_FIXED.unpack_from(payload)
            )
            pairs = unpack_param_entries(payload[fixed + 1 :])
            return cls(
                event_no, shot_no, time_us, flags, dose, set_milli, measured, pulse_us, pairs
            )
        # Any other length is malformed: read it field by field, which names where it fails.
        reader = PayloadReader(cls.__name__, payload)
        reader.take(SHOT_FIXED, "fields")
        reader.entries(PARAM, "params")
        reader.done()
        raise AssertionError(
            "unreachable: only a payload of the wrong length gets here"
        )  # pragma: no cover


@dataclass(frozen=True, slots=True)
class StatusChanged(Event):
    TYPE = 0xC1
    event_no: int
    body: StatusBody

    def pack(self) -> bytes:
        return U32.pack(self.event_no) + Status(self.body).pack()

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        reader = PayloadReader(cls.__name__, payload)
        (event_no,) = reader.take(U32, "event_no")
        body = reader.take(STATUS_BODY, "status")
        reader.done()
        return cls(event_no, StatusBody(*body))


@dataclass(frozen=True, slots=True)
class Fault(Event):
    TYPE = 0xC2
    FORMAT = struct.Struct("<IBBBi")
    event_no: int
    code: int  # FaultCode
    latched: int  # 1 = device latched FAULT/ESTOP and needs RESET; 0 = disarmed only
    detail: int
    value: int


@dataclass(frozen=True, slots=True)
class Boot(Event):
    """First event after power-up; event numbers restart at 1 with it."""

    TYPE = 0xC3
    FORMAT = struct.Struct("<II")
    event_no: int
    boot_id: int


MESSAGES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        GetStatus,
        Heartbeat,
        SetParams,
        Arm,
        Disarm,
        EStop,
        Reset,
        SelfTest,
        ShotsSince,
        ShotAck,
        CalFire,
        SimControl,
        Ack,
        Nak,
        HelloInfo,
        Status,
        SelfTestResult,
        ShotsPending,
        MeterReading,
        Shot,
        StatusChanged,
        Fault,
        Boot,
    )
}


def decode_message(msg_type: int, payload: bytes) -> Message:
    cls = MESSAGES.get(msg_type)
    if cls is None:
        raise UnknownMessage(f"unknown message type {msg_type:#04x}")
    try:
        return cls.unpack(payload)
    except struct.error as exc:  # pragma: no cover - PayloadReader checks lengths first
        raise MalformedPayload(f"{cls.__name__}: {exc}") from exc
