"""Payload codecs: the field types message payloads are made of (docs/protocol.md section 2).

Fixed-width integers, length-prefixed UTF-8 text, and counted lists of fixed-layout entries
(PARAM, CAPABILITY). Reading goes through a PayloadReader, which names the field a payload
ends inside; messages.py lays the messages out with these.
"""

from __future__ import annotations

import functools
import struct
from typing import cast

from .framing import MalformedPayload

U8 = struct.Struct("<B")
U32 = struct.Struct("<I")
PARAM = struct.Struct("<BI")
CAPABILITY = struct.Struct("<BII")

ParamValues = tuple[tuple[int, int], ...]
"""(Param code, value in thousandths of the unit) pairs, in the order sent."""


class PayloadReader:
    """Cursor over a payload; every short read is a MalformedPayload naming the field."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data, self.pos = name, data, 0

    def take(self, fmt: struct.Struct, field: str) -> tuple[int, ...]:
        if self.pos + fmt.size > len(self.data):
            raise MalformedPayload(f"{self.name}: payload ends inside field {field!r}")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def text(self, field: str) -> str:
        (n,) = self.take(U8, field)
        raw = self.data[self.pos : self.pos + n]
        if len(raw) != n:
            raise MalformedPayload(f"{self.name}: payload ends inside field {field!r}")
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPayload(f"{self.name}: field {field!r} is not UTF-8") from exc

    def entries(self, fmt: struct.Struct, field: str) -> tuple[tuple[int, ...], ...]:
        (n,) = self.take(U8, field)
        end = self.pos + n * fmt.size
        if end > len(self.data):
            raise MalformedPayload(f"{self.name}: payload ends inside field {field!r}")
        values = tuple(fmt.iter_unpack(self.data[self.pos : end]))
        self.pos = end
        return values

    def done(self) -> None:
        if self.pos != len(self.data):
            extra = len(self.data) - self.pos
            raise MalformedPayload(f"{self.name}: {extra} bytes after the last field")


def pack_text(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"text field of {len(raw)} bytes exceeds 255")
    return U8.pack(len(raw)) + raw


@functools.lru_cache(maxsize=64)  # a burst of SHOT records repeats one parameter set
def pack_entries(fmt: struct.Struct, items: tuple[tuple[int, ...], ...]) -> bytes:
    if len(items) > 255:
        raise ValueError(f"{len(items)} entries exceed 255")
    return U8.pack(len(items)) + b"".join(fmt.pack(*item) for item in items)


@functools.lru_cache(maxsize=64)  # a burst of SHOT records repeats one parameter set
def unpack_param_entries(data: bytes) -> ParamValues:
    return cast(ParamValues, tuple(PARAM.iter_unpack(data)))
