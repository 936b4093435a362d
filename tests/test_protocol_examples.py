"""docs/protocol.md cannot drift from the code: its worked examples, COBS examples, message field
tables, enumeration tables, sizes and timing constants are all checked here against
drivers/protocol."""

from __future__ import annotations

import ast
import re
import struct
import zlib
from dataclasses import dataclass, fields
from enum import IntEnum
from pathlib import Path

import pytest

from drivers import protocol
from drivers.protocol import (
    MESSAGES,
    PROTOCOL_VERSION,
    Command,
    DeviceLink,
    Event,
    FrameDecoder,
    Message,
    ProtocolError,
    Response,
    decode_message,
    encode_frame,
    framing,
    link,
    messages,
)
from drivers.protocol.framing import cobs_decode, cobs_encode

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
NAMESPACE = {name: getattr(protocol, name) for name in protocol.__all__}


# ---- parsing helpers -----------------------------------------------------------------------------
def fenced_blocks(info: str) -> list[str]:
    return re.findall(rf"^```{info}\n(.*?)^```$", DOC, flags=re.MULTILINE | re.DOTALL)


def keyed_lines(block: str) -> list[tuple[str, str]]:
    """`key: value` lines; an indented line continues the value of the line above."""
    items: list[tuple[str, str]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            assert items, f"continuation line before any key: {line!r}"
            key, value = items[-1]
            items[-1] = (key, f"{value} {line.strip()}")
            continue
        key, sep, value = line.partition(":")
        assert sep, f"not a `key: value` line: {line!r}"
        items.append((key.strip(), value.strip()))
    return items


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


_ALLOWED_NODES = (
    ast.Expression,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Constant,
    ast.Tuple,
    ast.keyword,
    ast.UnaryOp,
    ast.USub,
)


def construct(expression: str) -> Message:
    """Evaluate a constructor expression from the doc: only calls, names of drivers.protocol,
    attributes of those names, constants and tuples are allowed."""
    tree = ast.parse(expression, mode="eval")
    for node in ast.walk(tree):
        assert isinstance(node, _ALLOWED_NODES), f"{type(node).__name__} in {expression!r}"
        if isinstance(node, ast.Name):
            assert node.id in NAMESPACE, f"{node.id} is not exported by drivers.protocol"
        if isinstance(node, ast.Attribute):
            assert isinstance(node.value, ast.Name), f"nested attribute in {expression!r}"
    value = eval(compile(tree, str(DOC_PATH), "eval"), {"__builtins__": {}}, NAMESPACE)
    assert isinstance(value, Message), f"{expression!r} is not a message"
    return value


@dataclass(frozen=True)
class Example:
    expression: str
    message: Message
    seq: int
    header: bytes
    payload: bytes
    crc: bytes
    wire: bytes


def parse_examples() -> list[Example]:
    examples = []
    for block in fenced_blocks("frame"):
        items = keyed_lines(block)
        keys = [key for key, _ in items]
        assert keys == ["frame", "seq", "header", "payload", "crc", "wire"], keys
        values = dict(items)
        examples.append(
            Example(
                expression=values["frame"],
                message=construct(values["frame"]),
                seq=int(values["seq"]),
                header=hex_bytes(values["header"]),
                payload=hex_bytes(values["payload"]),
                crc=hex_bytes(values["crc"]),
                wire=hex_bytes(values["wire"]),
            )
        )
    return examples


EXAMPLES = parse_examples()


def example_id(example: Example) -> str:
    return f"{type(example.message).__name__}-seq{example.seq}"


# ---- worked examples -----------------------------------------------------------------------------
def test_the_doc_has_enough_worked_examples_of_every_kind() -> None:
    assert len(EXAMPLES) >= 8
    kinds = {
        kind for e in EXAMPLES for kind in (Command, Response, Event) if isinstance(e.message, kind)
    }
    assert kinds == {Command, Response, Event}


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_worked_example_encodes_to_the_documented_bytes(example: Example) -> None:
    msg = example.message
    assert example.header == framing.HEADER.pack(
        PROTOCOL_VERSION, msg.TYPE, example.seq, len(example.payload)
    )
    assert example.payload == msg.pack()
    assert example.crc == struct.pack("<I", zlib.crc32(example.header + example.payload))
    assert example.wire == encode_frame(msg.TYPE, example.seq, msg.pack())
    # The doc's own lines agree with each other: wire is COBS of header, payload and CRC.
    assert example.wire == cobs_encode(example.header + example.payload + example.crc) + b"\x00"


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_worked_example_decodes_back_to_the_message(example: Example) -> None:
    decoder = FrameDecoder()
    decoder.feed(example.wire)
    frame = decoder.next()
    assert not isinstance(frame, ProtocolError), frame
    assert frame is not None
    assert decoder.next() is None
    assert (frame.version, frame.type, frame.seq) == (
        PROTOCOL_VERSION,
        example.message.TYPE,
        example.seq,
    )
    decoded = decode_message(frame.type, frame.payload)
    assert type(decoded) is type(example.message)
    assert decoded == example.message


@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if isinstance(e.message, Event)], ids=example_id
)
def test_event_examples_carry_the_low_16_bits_of_the_event_number(example: Example) -> None:
    assert isinstance(example.message, Event)
    assert example.seq == example.message.event_no & 0xFFFF
    # and that is what the device end of the link writes
    device = DeviceLink()
    device.emit(example.message)
    assert device.data_to_send() == example.wire


# ---- COBS examples -------------------------------------------------------------------------------
def cobs_examples() -> list[tuple[bytes, bytes]]:
    (block,) = fenced_blocks("cobs")
    items = keyed_lines(block)
    assert [key for key, _ in items] == ["raw", "encoded"] * (len(items) // 2)
    return [(hex_bytes(items[i][1]), hex_bytes(items[i + 1][1])) for i in range(0, len(items), 2)]


@pytest.mark.parametrize("raw,encoded", cobs_examples(), ids=lambda b: b.hex())
def test_cobs_example(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


# ---- tables --------------------------------------------------------------------------------------
def table_rows(text: str) -> list[list[str]]:
    """Rows of the first markdown table in text, without the header and rule lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def section(heading_re: str) -> str:
    """Text from a heading matching heading_re up to the next heading."""
    match = re.search(heading_re, DOC, flags=re.MULTILINE)
    assert match, f"no heading matching {heading_re!r}"
    rest = DOC[match.end() :]
    nxt = re.search(r"^#{1,6} ", rest, flags=re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


TYPE_NAMES = {"B": "u8", "H": "u16", "I": "u32", "Q": "u64", "i": "i32"}


def fixed_layout(fmt: struct.Struct, names: list[str]) -> list[tuple[str, str, str]]:
    """(offset, type, name) rows for a fixed struct whose fields are `names`, in order."""
    codes = fmt.format.lstrip("<")
    assert len(codes) == len(names), (fmt.format, names)
    rows, offset = [], 0
    for code, name in zip(codes, names, strict=True):
        rows.append((str(offset), TYPE_NAMES[code], name))
        offset += struct.calcsize("<" + code)
    return rows


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]  # type: ignore[arg-type]


def layout_rows(rows: list[list[str]]) -> list[tuple[str, str, str]]:
    return [(offset, typ, name.strip("`")) for offset, typ, name, *_ in rows]


def message_section(cls: type[Message]) -> str:
    return section(rf"^#### 0x{cls.TYPE:02X} \w+ \(`{cls.__name__}`\)")


VARIABLE_TAIL = "…"


def expected_layout(cls: type[Message]) -> list[tuple[str, str, str]]:
    """What the field table of each message must say, derived from the code."""
    names = field_names(cls)
    if cls.pack is Message.pack:  # fixed layout: FORMAT and the fields, in order
        return fixed_layout(cls.FORMAT, names)
    body = ("STATUS_BODY", "body")
    variable: dict[type[Message], list[tuple[str, str, str]]] = {
        protocol.SetParams: [("0", "list of PARAM", "values")],
        protocol.SimControl: [("0", "text", "command")],
        protocol.Status: [("0", *body)],
        protocol.StatusChanged: [("0", "u32", "event_no"), ("4", *body)],
        protocol.SelfTestResult: [("0", "u8", "passed"), ("1", "list of ITEM", "items")],
        protocol.HelloInfo: [
            *fixed_layout(messages.HELLO_FIXED, field_names(protocol.HelloInfo)[:6]),
            ("11", "text", "serial"),
            (VARIABLE_TAIL, "text", "firmware"),
            (VARIABLE_TAIL, "list of CAPABILITY", "capabilities"),
        ],
        protocol.Shot: [
            *fixed_layout(messages.SHOT_FIXED, field_names(protocol.Shot)[:8]),
            ("30", "list of PARAM", "params"),
        ],
    }
    rows = variable[cls]
    assert [name for _, _, name in rows] == names, f"{cls.__name__}: test table out of date"
    return rows


def test_every_message_has_a_section_with_its_type_code() -> None:
    headings = re.findall(r"^#### 0x([0-9A-F]{2}) (\w+) \(`(\w+)`\)", DOC, flags=re.MULTILINE)
    documented = {int(code, 16): cls_name for code, _, cls_name in headings}
    assert documented == {code: cls.__name__ for code, cls in MESSAGES.items()}


@pytest.mark.parametrize("cls", list(MESSAGES.values()), ids=lambda c: c.__name__)
def test_message_field_table_matches_the_code(cls: type[Message]) -> None:
    text = message_section(cls)
    expected = expected_layout(cls)
    if not expected:
        assert "| Offset" not in text, f"{cls.__name__} has an empty payload but a field table"
        assert "Empty payload" in text
        return
    assert layout_rows(table_rows(text)) == expected


@pytest.mark.parametrize(
    "title,fmt",
    [
        ("PARAM entry (5 bytes)", messages.PARAM),
        ("CAPABILITY entry (9 bytes)", messages.CAPABILITY),
        ("ITEM entry (2 bytes)", struct.Struct("<BB")),
        ("STATUS_BODY (`StatusBody`, 34 bytes)", messages.STATUS_BODY),
    ],
)
def test_record_tables_match_the_code(title: str, fmt: struct.Struct) -> None:
    size = int(re.search(r"(\d+) bytes", title).group(1))  # type: ignore[union-attr]
    assert fmt.size == size
    start = DOC.index(title)
    rows = layout_rows(table_rows(DOC[start:]))
    expected = fixed_layout(fmt, [name for _, _, name in rows])
    assert [(o, t) for o, t, _ in rows] == [(o, t) for o, t, _ in expected]
    if fmt is messages.STATUS_BODY:
        assert [name for _, _, name in rows] == field_names(protocol.StatusBody)


def test_header_table_matches_the_code() -> None:
    rows = layout_rows(table_rows(DOC[DOC.index("Header (6 bytes):") :]))
    assert framing.HEADER.size == 6
    assert rows == fixed_layout(framing.HEADER, ["version", "type", "seq", "length"])


ENUMS: list[type[IntEnum]] = [
    protocol.HandpieceType,
    protocol.Param,
    protocol.Interlock,
    protocol.DeviceState,
    protocol.NakReason,
    protocol.FaultCode,
    protocol.SelfTestItem,
]


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_enumeration_table_matches_the_code(enum: type[IntEnum]) -> None:
    rows = table_rows(section(rf"^### {enum.__name__}$"))
    assert {int(value): name for value, name, *_ in rows} == {m.value: m.name for m in enum}
    assert len(rows) == len(enum)


def number_in(cell: str) -> float:
    match = re.search(r"\d+(\.\d+)?", cell)
    assert match, cell
    return float(match.group())


def test_sizes_table_matches_the_code() -> None:
    rows = table_rows(section(r"^### 3\.4 Sizes$"))
    by_constant = {constant.strip("`"): number_in(size) for _, size, constant in rows if constant}
    assert by_constant == {
        "framing.HEADER.size": framing.HEADER.size,
        "framing.CRC.size": framing.CRC.size,
        "MAX_PAYLOAD": framing.MAX_PAYLOAD,
        "framing.MAX_RAW_FRAME": framing.MAX_RAW_FRAME,
        "framing.MAX_ENCODED_FRAME": framing.MAX_ENCODED_FRAME,
    }


def test_timing_table_matches_the_code() -> None:
    rows = table_rows(section(r"^## 10 Timing$"))
    by_constant = {constant.strip("`"): number_in(value) for _, value, constant, *_ in rows}
    assert by_constant["HEARTBEAT_INTERVAL"] == link.HEARTBEAT_INTERVAL * 1000
    assert by_constant["LINK_TIMEOUT"] == link.LINK_TIMEOUT * 1000
    assert by_constant["RETRY_TIMEOUT"] == link.RETRY_TIMEOUT * 1000
    assert by_constant["MAX_ATTEMPTS"] == link.MAX_ATTEMPTS
    assert by_constant["DeviceLink.CACHE"] == DeviceLink.CACHE
