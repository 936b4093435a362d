"""Property tests of the frame and message codec (drivers/protocol/framing.py, messages.py).

Every message round-trips; every corruption of a frame is caught (SR-16); the decoder survives
any byte stream, stays bounded and resynchronises; its counters name the errors.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.protocol import (
    MAX_PAYLOAD,
    MESSAGES,
    CobsError,
    CrcMismatch,
    FrameDecoder,
    HelloInfo,
    MalformedPayload,
    Message,
    OversizeFrame,
    ProtocolError,
    SelfTestResult,
    SetParams,
    Shot,
    SimControl,
    Status,
    StatusBody,
    StatusChanged,
    TruncatedFrame,
    UnknownMessage,
    UnsupportedVersion,
    decode_frame,
    decode_message,
    encode_frame,
    framing,
    messages,
)
from drivers.protocol.framing import (
    CRC,
    HEADER,
    MAX_ENCODED_FRAME,
    MAX_RAW_FRAME,
    Frame,
    cobs_decode,
    cobs_encode,
)

# ---- strategies: one per message, every field within its struct range -----------------------
INTS = {
    "B": st.integers(0, 0xFF),
    "H": st.integers(0, 0xFFFF),
    "I": st.integers(0, 0xFFFF_FFFF),
    "Q": st.integers(0, 0xFFFF_FFFF_FFFF_FFFF),
    "i": st.integers(-(2**31), 2**31 - 1),
}
u8, u16, u32 = INTS["B"], INTS["H"], INTS["I"]
SEQ = u16

# Text fields hold at most 255 UTF-8 bytes: any text of up to 63 characters (at most 4 bytes
# each), or ASCII up to the limit.
TEXT = st.one_of(
    st.text(max_size=63),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=255),
)


def fields_of(fmt: struct.Struct) -> list[st.SearchStrategy[int]]:
    return [INTS[code] for code in fmt.format.lstrip("<")]


def fixed(cls: type[Message]) -> st.SearchStrategy[Message]:
    return st.builds(cls, *fields_of(cls.FORMAT))


def param_list(max_size: int) -> st.SearchStrategy[tuple[tuple[int, int], ...]]:
    return st.lists(st.tuples(u8, u32), max_size=max_size).map(tuple)


STATUS_BODY = st.builds(StatusBody, *fields_of(messages.STATUS_BODY))

# List sizes keep each payload within MAX_PAYLOAD (1024 bytes); at the limit for SET_PARAMS.
VARIABLE: dict[type[Message], st.SearchStrategy[Message]] = {
    SetParams: st.builds(SetParams, param_list(max_size=(MAX_PAYLOAD - 1) // 5)),
    SimControl: st.builds(SimControl, TEXT),
    HelloInfo: st.builds(
        HelloInfo,
        *fields_of(messages.HELLO_FIXED),
        TEXT,
        TEXT,
        st.lists(st.tuples(u8, u32, u32), max_size=55).map(tuple),
    ),
    Status: st.builds(Status, STATUS_BODY),
    SelfTestResult: st.builds(
        SelfTestResult, u8, st.lists(st.tuples(u8, u8), max_size=255).map(tuple)
    ),
    Shot: st.builds(Shot, *fields_of(messages.SHOT_FIXED), param_list(max_size=198)),
    StatusChanged: st.builds(StatusChanged, u32, STATUS_BODY),
}
STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    cls: VARIABLE[cls] if cls in VARIABLE else fixed(cls) for cls in MESSAGES.values()
}
ANY_MESSAGE = st.one_of(*STRATEGIES.values())


def wire_of(msg: Message, seq: int) -> bytes:
    return encode_frame(msg.TYPE, seq, msg.pack())


def drain(decoder: FrameDecoder) -> list[Frame | ProtocolError]:
    items = []
    while (item := decoder.next()) is not None:
        items.append(item)
    return items


def decode_stream(data: bytes) -> list[Frame | ProtocolError]:
    decoder = FrameDecoder()
    decoder.feed(data)
    return drain(decoder)


def raw_frame(version: int, type_code: int, seq: int, length: int, payload: bytes) -> bytes:
    raw = HEADER.pack(version, type_code, seq, length) + payload
    return raw + CRC.pack(zlib.crc32(raw))


def frames_in(items: list[Frame | ProtocolError]) -> list[Frame]:
    return [item for item in items if isinstance(item, Frame)]


def test_there_is_a_strategy_for_every_message() -> None:
    assert set(STRATEGIES) == set(MESSAGES.values())
    assert set(VARIABLE) == {cls for cls in MESSAGES.values() if cls.pack is not Message.pack}


# ---- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", list(MESSAGES.values()), ids=lambda c: c.__name__)
@given(data=st.data(), seq=SEQ)
def test_every_message_round_trips(cls: type[Message], data: st.DataObject, seq: int) -> None:
    msg = data.draw(STRATEGIES[cls])
    payload = msg.pack()
    assert len(payload) <= MAX_PAYLOAD
    decoded = decode_message(cls.TYPE, payload)
    assert type(decoded) is cls
    assert decoded == msg

    wire = wire_of(msg, seq)
    assert wire.count(0) == 1
    assert wire.endswith(b"\x00")
    assert len(wire) - 1 <= MAX_ENCODED_FRAME
    frame = decode_frame(wire[:-1])
    assert (frame.type, frame.seq, frame.payload) == (cls.TYPE, seq, payload)
    assert frames_in(decode_stream(wire)) == [frame]


@given(msg=ANY_MESSAGE, data=st.data(), extra=st.binary(min_size=1, max_size=8))
def test_a_payload_cut_short_or_extended_is_malformed(
    msg: Message, data: st.DataObject, extra: bytes
) -> None:
    payload = msg.pack()
    if payload:
        cut = data.draw(st.integers(0, len(payload) - 1), label="cut at")
        with pytest.raises(MalformedPayload):
            decode_message(msg.TYPE, payload[:cut])
    with pytest.raises(MalformedPayload):
        decode_message(msg.TYPE, payload + extra)


@given(type_code=u8.filter(lambda t: t not in MESSAGES), payload=st.binary(max_size=MAX_PAYLOAD))
def test_an_unknown_type_code_is_refused(type_code: int, payload: bytes) -> None:
    with pytest.raises(UnknownMessage):
        decode_message(type_code, payload)


@given(type_code=u8, payload=st.binary(max_size=MAX_PAYLOAD))
def test_decode_message_raises_nothing_but_protocol_errors(type_code: int, payload: bytes) -> None:
    try:
        msg = decode_message(type_code, payload)
    except ProtocolError:
        return
    assert type_code == msg.TYPE
    assert msg.pack() == payload  # a payload that parses is the canonical encoding of its message


@given(data=st.binary(max_size=2000))
def test_cobs_round_trips_without_zero_bytes(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


def test_a_final_block_of_254_bytes_decodes_with_or_without_the_code_0x01() -> None:
    """docs/protocol.md section 3.3: the reference encoder omits the final 0x01 of the paper's
    algorithm, and the decoder accepts both forms."""
    run = bytes(range(1, 255))  # 254 non-zero bytes
    assert cobs_encode(run) == b"\xff" + run
    assert cobs_decode(b"\xff" + run) == run
    assert cobs_decode(b"\xff" + run + b"\x01") == run  # the form of the original algorithm
    assert cobs_encode(run + b"\x07") == b"\xff" + run + b"\x02\x07"
    assert cobs_encode(run + b"\x00") == b"\xff" + run + b"\x01\x01"


def test_the_largest_frame_fits_and_one_byte_more_is_refused() -> None:
    payload = b"\x55" * MAX_PAYLOAD
    wire = encode_frame(0x7F, 0x0101, payload)
    assert len(wire) - 1 == MAX_ENCODED_FRAME  # the bound is reached, not just respected
    assert HEADER.size + MAX_PAYLOAD + CRC.size == MAX_RAW_FRAME
    (frame,) = decode_stream(wire)
    assert isinstance(frame, Frame)
    assert frame.payload == payload
    with pytest.raises(OversizeFrame):
        encode_frame(0x7F, 0x0101, payload + b"\x55")


# ---- corruption is always caught (SR-16) ---------------------------------------------------------
def assert_never_a_different_frame(original: Frame, damaged: bytes) -> None:
    """Feed a damaged frame (then a delimiter): nothing valid may come out but the original."""
    for frame in frames_in(decode_stream(damaged + b"\x00")):
        assert frame == original, f"damaged bytes {damaged.hex()} decoded to {frame}"


def flip(body: bytes, pos: int, bit: int) -> bytes:
    return body[:pos] + bytes([body[pos] ^ (1 << bit)]) + body[pos + 1 :]


def assert_bit_flip_is_caught(body: bytes, pos: int, bit: int) -> None:
    items = decode_stream(flip(body, pos, bit) + b"\x00")
    assert frames_in(items) == [], f"bit {bit} of byte {pos} flipped in {body.hex()}"
    assert items, "the damaged frame vanished without being counted"


@pytest.mark.req("SR-16")
@given(msg=ANY_MESSAGE, seq=SEQ, data=st.data())
def test_any_single_bit_flip_is_caught(msg: Message, seq: int, data: st.DataObject) -> None:
    body = wire_of(msg, seq)[:-1]
    pos = data.draw(st.integers(0, len(body) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    assert_bit_flip_is_caught(body, pos, bit)


@pytest.mark.req("SR-16")
@given(msg=ANY_MESSAGE, seq=SEQ, data=st.data())
def test_truncation_deletion_and_insertion_are_caught(
    msg: Message, seq: int, data: st.DataObject
) -> None:
    body = wire_of(msg, seq)[:-1]
    original = decode_frame(body)
    for kind in ("truncate", "delete", "insert"):
        assert_never_a_different_frame(original, damage(kind, body, data))


def damage(kind: str, body: bytes, data: st.DataObject) -> bytes:
    """One flipped bit, a truncation, a deleted byte or an inserted byte, drawn from data."""
    if kind == "insert":
        pos = data.draw(st.integers(0, len(body)), label="insert at")
        return body[:pos] + data.draw(st.binary(min_size=1, max_size=1), label="byte") + body[pos:]
    pos = data.draw(st.integers(0, len(body) - 1), label=kind)
    if kind == "flip":
        return flip(body, pos, data.draw(st.integers(0, 7), label="bit"))
    if kind == "truncate":
        return body[:pos]
    assert kind == "delete"
    return body[:pos] + body[pos + 1 :]


KINDS_OF_DAMAGE = ["flip", "truncate", "delete", "insert"]


@pytest.mark.req("SR-16")
@given(
    before=ANY_MESSAGE,
    damaged=ANY_MESSAGE,
    after=ANY_MESSAGE,
    kind=st.sampled_from(KINDS_OF_DAMAGE),
    data=st.data(),
)
def test_damage_to_one_frame_costs_only_that_frame(
    before: Message, damaged: Message, after: Message, kind: str, data: st.DataObject
) -> None:
    # Distinct sequence numbers make the three frames distinct whatever the messages are.
    first, middle, last = wire_of(before, 1), wire_of(damaged, 2), wire_of(after, 3)
    broken = damage(kind, middle[:-1], data) + b"\x00"
    frames = frames_in(decode_stream(first + broken + last))
    assert frames[0] == decode_frame(first[:-1])
    assert frames[-1] == decode_frame(last[:-1])
    middle_frame = decode_frame(middle[:-1])
    assert all(f == middle_frame for f in frames[1:-1])  # the damaged frame, intact, or nothing
    if kind == "flip":
        assert len(frames) == 2


EXHAUSTIVE = [
    messages.Arm(20, 1000),
    messages.Ack(0x05),
    messages.Heartbeat(),
    messages.Nak(0x04, 5, 1, 80000),
    messages.Fault(70000, 4, 0, 1, -250),
    Status(StatusBody(2, 0xBF, 0xBF, 0, 1, 20, 16, 3, 33120, 0, 41, 75_250_000)),
    HelloInfo(1, 1, 1, 1550, 0x5EED1234, 0xBF, "FX-00042", "sim-1.0.0", ((1, 4000, 70000),)),
    SetParams(tuple((i % 8 + 1, 0x01010101 * (i % 200 + 1)) for i in range(204))),  # ~1 KiB
]


@pytest.mark.req("SR-16")
@pytest.mark.parametrize("msg", EXHAUSTIVE, ids=lambda m: type(m).__name__)
def test_every_single_byte_corruption_of_these_frames_is_caught(msg: Message) -> None:
    """Exhaustive, not sampled: every bit of every byte, every truncation, every deletion and
    an insertion of 0x00, 0x01, 0x55 and 0xFF at every position."""
    body = wire_of(msg, 0x0107)[:-1]
    original = decode_frame(body)
    for pos in range(len(body)):
        for bit in range(8):
            assert_bit_flip_is_caught(body, pos, bit)
        assert_never_a_different_frame(original, body[:pos])
        assert_never_a_different_frame(original, body[:pos] + body[pos + 1 :])
    for pos in range(len(body) + 1):
        for byte in (b"\x00", b"\x01", b"\x55", b"\xff"):
            assert_never_a_different_frame(original, body[:pos] + byte + body[pos:])


@pytest.mark.req("SR-16")
@given(msg=ANY_MESSAGE, seq=SEQ, crc=u32)
def test_a_wrong_crc_is_caught(msg: Message, seq: int, crc: int) -> None:
    raw = HEADER.pack(1, msg.TYPE, seq, len(msg.pack())) + msg.pack()
    good = zlib.crc32(raw)
    items = decode_stream(cobs_encode(raw + CRC.pack(crc)) + b"\x00")
    if crc == good:
        assert frames_in(items) == [decode_frame(wire_of(msg, seq)[:-1])]
    else:
        assert len(items) == 1
        assert isinstance(items[0], CrcMismatch)


# ---- any byte stream -----------------------------------------------------------------------------
@pytest.mark.req("SR-16")
@given(data=st.one_of(st.binary(max_size=1200), st.binary(max_size=1100).map(cobs_encode)))
def test_decode_frame_raises_nothing_but_protocol_errors(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except ProtocolError:
        return
    # Accepted: then these bytes really are that frame, length and CRC included.
    expected = raw_frame(frame.version, frame.type, frame.seq, len(frame.payload), frame.payload)
    assert cobs_decode(data) == expected


@given(
    version=st.one_of(st.just(framing.PROTOCOL_VERSION), u8),
    type_and_seq=st.tuples(u8, SEQ),
    length=st.one_of(st.none(), u16),  # None: the right length
    payload=st.binary(max_size=64),
    fix_crc=st.booleans(),
)
def test_decode_frame_checks_every_header_field(
    version: int, type_and_seq: tuple[int, int], length: int | None, payload: bytes, fix_crc: bool
) -> None:
    """Frames with arbitrary header fields, with a right or a wrong CRC: only a frame whose
    length, CRC and version are all right is accepted."""
    type_code, seq = type_and_seq
    length = len(payload) if length is None else length
    raw = HEADER.pack(version, type_code, seq, length) + payload
    crc = zlib.crc32(raw) if fix_crc else zlib.crc32(raw) ^ 1
    try:
        frame = decode_frame(cobs_encode(raw + CRC.pack(crc)))
    except ProtocolError:
        assert not (fix_crc and length == len(payload) and version == 1)
        return
    assert fix_crc and length == len(payload) and version == 1
    assert frame == Frame(type_code, seq, payload, version)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for size in sizes:
        out.append(data[pos : pos + size])
        pos += size
    out.append(data[pos:])
    return out


@pytest.mark.req("SR-16")
@given(
    garbage=st.binary(max_size=3000),
    sizes=st.lists(st.integers(1, 700), max_size=8),
    msg=ANY_MESSAGE,
    seq=SEQ,
)
def test_frame_decoder_never_raises_and_resynchronises(
    garbage: bytes, sizes: list[int], msg: Message, seq: int
) -> None:
    good = wire_of(msg, seq)
    decoder = FrameDecoder()
    for piece in chunked(garbage + good + good, sizes):
        decoder.feed(piece)
        assert len(decoder._buf) <= MAX_ENCODED_FRAME  # bounded, whatever it is fed
    items = drain(decoder)
    assert items[-1] == decode_frame(good[:-1])
    # Every item is counted: frames as frames, the rest under its error's counter.
    assert decoder.stats.frames == len(frames_in(items))
    assert decoder.stats.total_rejected == len(items) - len(frames_in(items))
    for item in items:
        if isinstance(item, ProtocolError):
            assert decoder.stats.rejected[item.counter] >= 1
    # Chunking does not matter: the same bytes in one piece give the same results.
    whole = decode_stream(garbage + good + good)
    assert [repr(i) for i in whole] == [repr(i) for i in items]


@pytest.mark.req("SR-16")
@given(
    garbage=st.binary(max_size=2000),
    sizes=st.lists(st.integers(1, 700), max_size=8),
    msg=ANY_MESSAGE,
)
def test_garbage_then_a_delimiter_then_a_good_frame_yields_that_frame(
    garbage: bytes, sizes: list[int], msg: Message
) -> None:
    good = wire_of(msg, 0x4242)
    decoder = FrameDecoder()
    for piece in chunked(garbage, sizes):
        decoder.feed(piece)
    decoder.feed(b"\x00" + good)
    assert drain(decoder)[-1] == decode_frame(good[:-1])


@pytest.mark.req("SR-16")
@given(
    run=st.integers(MAX_ENCODED_FRAME + 1, 6000),
    sizes=st.lists(st.integers(1, 1500), max_size=8),
    filler=st.integers(1, 255),
)
def test_an_oversize_run_is_dropped_and_counted_once(
    run: int, sizes: list[int], filler: int
) -> None:
    good = wire_of(messages.Heartbeat(), 9)
    decoder = FrameDecoder()
    for piece in chunked(bytes([filler]) * run + b"\x00" + good, sizes):
        decoder.feed(piece)
        assert len(decoder._buf) <= MAX_ENCODED_FRAME
    items = drain(decoder)
    assert len(items) == 2
    assert isinstance(items[0], OversizeFrame)
    assert items[1] == decode_frame(good[:-1])
    assert decoder.stats.rejected == {"oversize": 1}
    assert decoder.stats.frames == 1


def test_a_frame_of_exactly_the_largest_size_is_not_oversize() -> None:
    raw = HEADER.pack(1, 0x7F, 0x0101, MAX_PAYLOAD) + b"\x55" * MAX_PAYLOAD
    encoded = cobs_encode(raw + CRC.pack(zlib.crc32(raw) ^ 1))
    assert len(encoded) == MAX_ENCODED_FRAME
    items = decode_stream(encoded + b"\x00")
    assert len(items) == 1
    assert isinstance(items[0], CrcMismatch)  # rejected for what it is, not for its size


# ---- the counters name the errors ----------------------------------------------------------------
GOOD_RAW = raw_frame(1, 0x05, 7, 6, messages.Arm(20, 1000).pack())
BAD_FRAMES: list[tuple[str, bytes, type[ProtocolError], str]] = [
    ("code past the end", b"\x05\x01\x02", CobsError, "cobs_errors"),
    ("shorter than header and CRC", cobs_encode(GOOD_RAW[:9]), TruncatedFrame, "truncated"),
    ("shorter than its length field", cobs_encode(GOOD_RAW[:-1]), TruncatedFrame, "truncated"),
    (
        "length field above MAX_PAYLOAD",
        cobs_encode(raw_frame(1, 0x05, 7, MAX_PAYLOAD + 1, b"")),
        OversizeFrame,
        "oversize",
    ),
    ("no delimiter within the limit", b"\x55" * (MAX_ENCODED_FRAME + 1), OversizeFrame, "oversize"),
    ("bytes after the CRC", cobs_encode(GOOD_RAW + b"\x01"), MalformedPayload, "malformed"),
    ("CRC", cobs_encode(GOOD_RAW[:-1] + bytes([GOOD_RAW[-1] ^ 0x80])), CrcMismatch, "crc_errors"),
    ("version 2", encode_frame(0x05, 7, b"", version=2)[:-1], UnsupportedVersion, "bad_version"),
]


@pytest.mark.req("SR-16")
@pytest.mark.parametrize(
    "encoded,error,counter", [case[1:] for case in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES]
)
def test_each_error_is_counted_under_its_name(
    encoded: bytes, error: type[ProtocolError], counter: str
) -> None:
    assert error.counter == counter
    decoder = FrameDecoder()
    decoder.feed(encoded + b"\x00")
    items = drain(decoder)
    assert len(items) == 1
    assert type(items[0]) is error
    assert decoder.stats.rejected == {counter: 1}
    assert decoder.stats.frames == 0
    # and the stream goes on: the next good frame is received
    decoder.feed(cobs_encode(GOOD_RAW) + b"\x00")
    assert drain(decoder) == [decode_frame(cobs_encode(GOOD_RAW))]
    assert decoder.stats.frames == 1


def test_counter_names_are_distinct() -> None:
    classes = [
        ProtocolError,
        CobsError,
        TruncatedFrame,
        OversizeFrame,
        CrcMismatch,
        UnsupportedVersion,
        UnknownMessage,
        MalformedPayload,
    ]
    assert all(issubclass(cls, ProtocolError) for cls in classes)
    assert len({cls.counter for cls in classes}) == len(classes)
    assert {framing.PROTOCOL_VERSION} == framing.SUPPORTED_VERSIONS
