"""Frame layer: COBS framing, header and CRC-32 (sans-IO).

A frame on the wire is ``COBS(header | payload | crc32) 0x00``. See docs/protocol.md, "Framing".
Nothing here does I/O or reads a clock: bytes go in, checked frames come out.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from dataclasses import dataclass, field

from cobs import cobs as _cobs  # C implementation: ~15x the pure-Python speed

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

HEADER = struct.Struct("<BBHH")  # version, type, seq, payload length
CRC = struct.Struct("<I")
MAX_PAYLOAD = 1024
MAX_RAW_FRAME = HEADER.size + MAX_PAYLOAD + CRC.size
# COBS adds one byte per 254 plus one; the delimiter is not counted.
MAX_ENCODED_FRAME = MAX_RAW_FRAME + MAX_RAW_FRAME // 254 + 1
DELIMITER = b"\x00"


class ProtocolError(Exception):
    """Base of every error the codec raises: a frame or payload that must not be acted upon."""

    counter = "protocol_errors"


class CobsError(ProtocolError):
    """The bytes between two delimiters are not valid COBS."""

    counter = "cobs_errors"


class TruncatedFrame(ProtocolError):
    """Fewer bytes than the header and its length field promise."""

    counter = "truncated"


class OversizeFrame(ProtocolError):
    """More bytes than the largest legal frame, or a length field above MAX_PAYLOAD."""

    counter = "oversize"


class CrcMismatch(ProtocolError):
    """The CRC-32 over header and payload does not match."""

    counter = "crc_errors"


class UnsupportedVersion(ProtocolError):
    """The header names a protocol version this end does not speak."""

    counter = "bad_version"


class UnknownMessage(ProtocolError):
    """A message type code that no message has."""

    counter = "unknown_type"


class MalformedPayload(ProtocolError):
    """The payload does not match the field table of its message type."""

    counter = "malformed"


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result holds no zero byte."""
    return bytes(_cobs.encode(data))


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; raises CobsError on a zero byte or a code past the end."""
    try:
        return bytes(_cobs.decode(data))
    except _cobs.DecodeError as exc:
        raise CobsError(f"invalid COBS block: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Frame:
    """A checked frame: the CRC, length and version were right."""

    type: int
    seq: int
    payload: bytes
    version: int = PROTOCOL_VERSION


def encode_frame(msg_type: int, seq: int, payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """Header, payload and CRC, COBS-encoded and delimited: ready for the wire."""
    if len(payload) > MAX_PAYLOAD:
        raise OversizeFrame(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    raw = HEADER.pack(version, msg_type, seq & 0xFFFF, len(payload)) + payload
    raw += CRC.pack(zlib.crc32(raw))
    return cobs_encode(raw) + DELIMITER


def decode_frame(encoded: bytes) -> Frame:
    """Check one frame's bytes (without the delimiter) and return it, or raise a ProtocolError."""
    if len(encoded) > MAX_ENCODED_FRAME:
        raise OversizeFrame(f"{len(encoded)} encoded bytes exceed {MAX_ENCODED_FRAME}")
    raw = cobs_decode(encoded)
    if len(raw) < HEADER.size + CRC.size:
        raise TruncatedFrame(f"{len(raw)} bytes is shorter than header and CRC")
    version, msg_type, seq, length = HEADER.unpack_from(raw)
    if length > MAX_PAYLOAD:
        raise OversizeFrame(f"length field {length} exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    expected = HEADER.size + length + CRC.size
    if len(raw) < expected:
        raise TruncatedFrame(f"{len(raw)} bytes, header promises {expected}")
    if len(raw) > expected:
        raise MalformedPayload(f"{len(raw)} bytes, header promises {expected}")
    (crc,) = CRC.unpack_from(raw, expected - CRC.size)
    if crc != zlib.crc32(raw[: expected - CRC.size]):
        raise CrcMismatch(f"CRC {crc:#010x} does not match the frame (type {msg_type:#04x})")
    if version not in SUPPORTED_VERSIONS:
        spoken = sorted(SUPPORTED_VERSIONS)
        raise UnsupportedVersion(f"protocol version {version} (this end speaks {spoken})")
    return Frame(msg_type, seq, raw[HEADER.size : HEADER.size + length], version)


@dataclass
class FrameStats:
    """Counters of what the decoder accepted and rejected, by the error's name."""

    frames: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def count(self, error: ProtocolError) -> None:
        self.rejected[error.counter] = self.rejected.get(error.counter, 0) + 1

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())


class FrameDecoder:
    """Splits a byte stream on the delimiter and checks each frame.

    Bounded: a run of bytes longer than the largest legal frame is dropped up to the next
    delimiter and counted as oversize, so garbage can never grow the buffer without bound.
    Results come out in order, each a Frame or the ProtocolError that rejected it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self._out: deque[Frame | ProtocolError] = deque()
        self.stats = FrameStats()

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            idx = data.find(0, start)
            chunk = data[start:] if idx < 0 else data[start:idx]
            if not self._discarding:
                self._buf += chunk
                if len(self._buf) > MAX_ENCODED_FRAME:
                    self._reject(OversizeFrame(f"no delimiter within {MAX_ENCODED_FRAME} bytes"))
                    self._buf.clear()
                    self._discarding = True
            if idx < 0:
                return
            if self._discarding:
                self._discarding = False
            elif self._buf:
                self._take(bytes(self._buf))
            self._buf.clear()
            start = idx + 1

    def _take(self, encoded: bytes) -> None:
        try:
            frame = decode_frame(encoded)
        except ProtocolError as exc:
            self._reject(exc)
            return
        self.stats.frames += 1
        self._out.append(frame)

    def _reject(self, error: ProtocolError) -> None:
        self.stats.count(error)
        self._out.append(error)

    def next(self) -> Frame | ProtocolError | None:
        return self._out.popleft() if self._out else None
