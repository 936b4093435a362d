"""Signed checkpoints of the shot log (SR-12): what each chain held at a moment, signed with
the console's key, so that the log can later be held to it.

A chain alone cannot show that records were removed from its end, or that the whole chain was
recomputed after an edit, when whoever did it also fixed `chain_heads`. A checkpoint can, once
it has left the console: it names each table's record count and last hash, and the log must
still hold that many records with the last of them hashing to that. Checked by check_log().

The text is a signed note in the manner of C2SP tlog-checkpoint and signed-note:

    laserctl/3f2a9c0d1b4e5f60                   origin: "laserctl/" + console id
    patients 12 <base64 SHA-256>                per chained table, in schema order:
    ...                                         record count and its last record's hash
    calibrations 0 <base64 SHA-256>             (an empty table: chain.genesis(table))
    time 2026-12-07T14:30:00.123456Z            when it was made, UTC
    key ed25519 <base64 raw public key>         the console's public key
                                                a blank line
    — laserctl/3f2a9c0d1b4e5f60 <base64(key hash || signature)>

The signature is Ed25519 over the note's body: every line before the blank line, each ending
in a newline, as UTF-8. The key hash is signed-note's: the first 4 bytes of SHA-256(origin ||
0x0A || 0x01 || raw public key). parse() accepts only the text text() writes (one form per
checkpoint), so a checkpoint read back re-signs to the same bytes. See docs/shot-log.md.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import re
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from . import chain
from .schema import TABLE_NAMES

if TYPE_CHECKING:
    from laserctl.auth.console_key import ConsoleKey

ORIGIN_PREFIX = "laserctl/"
SIGNATURE_DASH = "\u2014"  # signed-note's em dash
_ORIGIN = re.compile(r"laserctl/([0-9a-f]{16})")
_TABLE = re.compile(r"[a-z_][a-z0-9_]*")
_SIZE = re.compile(r"0|[1-9][0-9]*")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class CheckpointProblem(Exception):
    """A checkpoint that cannot be read or trusted: what is wrong, and where (which file or
    checkpoint, which line)."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{where}: {what}")
        self.what = what
        self.where = where


@dataclass(frozen=True)
class Checkpoint:
    origin: str  # "laserctl/<console_id>"
    console_id: str
    sizes: dict[str, int]  # per chained table: record count
    heads: dict[str, bytes]  # per table: hash of its last record (chain.genesis if empty)
    made_at: str  # ISO-8601 UTC, microseconds, "Z"
    public_key: str  # "ed25519 <base64>"
    signature: bytes

    def body(self) -> str:
        """The signed part of the note, exactly as signed."""
        lines = [self.origin]
        lines += [
            f"{table} {size} {base64.b64encode(self.heads[table]).decode()}"
            for table, size in self.sizes.items()
        ]
        lines += [f"time {self.made_at}", f"key {self.public_key}"]
        return "".join(line + "\n" for line in lines)

    def text(self) -> str:
        """The signed note: body, a blank line, the signature line. parse(text()) == self."""
        stamp = base64.b64encode(key_hash(self.origin, self.public_key) + self.signature)
        return f"{self.body()}\n{SIGNATURE_DASH} {self.origin} {stamp.decode()}\n"

    def label(self) -> str:
        """How problems name it: "checkpoint 2026-12-07T14:30:00.123456Z of laserctl/..."."""
        return f"checkpoint {self.made_at} of {self.origin}"


def key_hash(name: str, public_key: str) -> bytes:
    """signed-note's key id for an Ed25519 key: SHA-256(name || "\\n" || 0x01 || key)[:4]."""
    raw = _raw_key(public_key)
    return hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]


def _raw_key(public_key: str) -> bytes:
    parts = public_key.split(" ")
    if len(parts) != 2 or parts[0] != "ed25519":
        raise ValueError("expected 'ed25519 <base64 key>'")
    raw = base64.b64decode(parts[1], validate=True)
    if len(raw) != 32 or base64.b64encode(raw).decode() != parts[1]:
        raise ValueError("not a 32-byte key in canonical base64")
    return raw


def format_time(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime(_TIME_FORMAT)


# ---- making one -----------------------------------------------------------------------------


class _HeadLike(Protocol):
    @property
    def count(self) -> int: ...

    @property
    def hash(self) -> bytes: ...


class HeadSource(Protocol):
    """What has been chained so far (db.Database as committed, or a txn.Txn inside its
    transaction): each table's head, with a `count` and a `hash`."""

    def head(self, table: str) -> _HeadLike: ...


def make(source: sqlite3.Connection | HeadSource, key: ConsoleKey, now: float) -> Checkpoint:
    """A checkpoint of every chain as `source` holds it, signed with `key`, made at `now`
    (seconds since the epoch). A connection is read (count and last hash per table); a
    Database or Txn gives the heads it has chained, without a read."""
    sizes: dict[str, int] = {}
    heads: dict[str, bytes] = {}
    for table in TABLE_NAMES:
        if isinstance(source, sqlite3.Connection):
            count, last = source.execute(
                f"SELECT count(*), (SELECT hash FROM {table} ORDER BY id DESC LIMIT 1) FROM {table}"
            ).fetchone()
            sizes[table] = int(count)
            heads[table] = bytes(last) if last is not None else chain.genesis(table)
        else:
            head = source.head(table)
            sizes[table], heads[table] = head.count, head.hash
    origin = ORIGIN_PREFIX + key.console_id
    unsigned = Checkpoint(
        origin, key.console_id, sizes, heads, format_time(now), key.public_text(), b""
    )
    return dataclasses.replace(unsigned, signature=key.sign(unsigned.body().encode()))


# ---- reading one ----------------------------------------------------------------------------


def parse(text: str, source: str = "checkpoint") -> Checkpoint:
    """The checkpoint in `text` (as text() writes it); CheckpointProblem naming `source` and
    the line otherwise. The signature is not checked here: check_signature()."""
    if not text.endswith("\n"):
        raise CheckpointProblem("does not end with a newline (cut short?)", source)
    body, sep, rest = text.partition("\n\n")
    if not sep:
        raise CheckpointProblem("no blank line before the signature", source)
    lines = body.split("\n")
    signature_at = len(lines) + 2

    def where(number: int) -> str:
        return f"{source} line {number}"

    origin = lines[0]
    found = _ORIGIN.fullmatch(origin)
    if found is None:
        raise CheckpointProblem(
            f"first line {origin!r} is not 'laserctl/<16 hex digits console id>'", where(1)
        )
    console_id = found.group(1)
    if len(lines) < 3:
        raise CheckpointProblem("too short: expected tables, time and key lines", source)
    sizes: dict[str, int] = {}
    heads: dict[str, bytes] = {}
    for number, line in enumerate(lines[1:-2], start=2):
        parts = line.split(" ")
        if len(parts) != 3 or not _TABLE.fullmatch(parts[0]) or parts[0] in ("time", "key"):
            raise CheckpointProblem(
                f"{line!r} is not '<table> <count> <base64 hash>'", where(number)
            )
        table, size, digest = parts
        if table in sizes:
            raise CheckpointProblem(f"table {table} named twice", where(number))
        if not _SIZE.fullmatch(size):
            raise CheckpointProblem(f"{table}: count {size!r} is not a whole number", where(number))
        try:
            head = base64.b64decode(digest, validate=True)
        except binascii.Error:
            head = b""
        if len(head) != 32 or base64.b64encode(head).decode() != digest:
            raise CheckpointProblem(
                f"{table}: {digest!r} is not a SHA-256 hash in base64", where(number)
            )
        sizes[table], heads[table] = int(size), head
    time_line, key_line = lines[-2], lines[-1]
    if not time_line.startswith("time ") or not _TIME.fullmatch(time_line[5:]):
        raise CheckpointProblem(
            f"{time_line!r} is not 'time YYYY-MM-DDTHH:MM:SS.ffffffZ'", where(len(lines) - 1)
        )
    made_at = time_line[5:]
    try:
        dt.datetime.strptime(made_at, _TIME_FORMAT)
    except ValueError:
        raise CheckpointProblem(
            f"{made_at!r} is not a date and time", where(len(lines) - 1)
        ) from None
    public_key = key_line.removeprefix("key ")
    try:
        if public_key == key_line:
            raise ValueError("no 'key' line")
        _raw_key(public_key)
    except (ValueError, binascii.Error) as exc:
        raise CheckpointProblem(
            f"{key_line!r} is not 'key ed25519 <base64 key>': {exc}", where(len(lines))
        ) from None
    signature = _parse_signature(rest, origin, public_key, where(signature_at))
    checkpoint = Checkpoint(origin, console_id, sizes, heads, made_at, public_key, signature)
    if checkpoint.text() != text:  # e.g. a field this reader cannot say again the same way
        raise CheckpointProblem("not in the one form laserctl writes", source)
    return checkpoint


def _parse_signature(rest: str, origin: str, public_key: str, where: str) -> bytes:
    lines = rest.split("\n")
    if len(lines) != 2 or lines[1]:
        raise CheckpointProblem("expected exactly one signature line after the blank line", where)
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != SIGNATURE_DASH:
        raise CheckpointProblem(f"{lines[0]!r} is not '\u2014 <origin> <base64 signature>'", where)
    if parts[1] != origin:
        raise CheckpointProblem(f"signed by {parts[1]!r}, the note is {origin!r}'s", where)
    try:
        stamp = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        stamp = b""
    if len(stamp) != 4 + 64:
        raise CheckpointProblem("the signature is not 4 + 64 bytes of base64", where)
    if stamp[:4] != key_hash(origin, public_key):
        raise CheckpointProblem("the signature's key hash is not that of the note's key", where)
    return stamp[4:]


def check_signature(cp: Checkpoint, trusted_public: str | None = None) -> None:
    """Raise CheckpointProblem unless `cp` is signed by the key it names, that key is its
    console's (its id is the console id), and, if given, that key is `trusted_public`."""
    from cryptography.exceptions import InvalidSignature

    from laserctl.auth import keys

    where = cp.label()
    if cp.origin != ORIGIN_PREFIX + cp.console_id:
        raise CheckpointProblem(f"origin {cp.origin!r} is not console {cp.console_id}'s", where)
    try:
        public = keys.parse_public(cp.public_key, where)
    except keys.KeyProblem as exc:
        raise CheckpointProblem(str(exc), where) from None
    if keys.key_id(public) != cp.console_id:
        raise CheckpointProblem(
            f"its key (id {keys.key_id(public)}) is not console {cp.console_id}'s", where
        )
    if trusted_public is not None and trusted_public.split() != cp.public_key.split():
        try:
            other = keys.key_id(keys.parse_public(trusted_public, "the trusted key"))
        except keys.KeyProblem as exc:
            raise CheckpointProblem(str(exc), where) from None
        raise CheckpointProblem(
            f"made by console {cp.console_id}, not by this log's console {other}", where
        )
    try:
        public.verify(cp.signature, cp.body().encode())
    except InvalidSignature:
        raise CheckpointProblem(
            "the signature does not verify: the checkpoint was forged or altered", where
        ) from None


# ---- holding the log to it ------------------------------------------------------------------


def check_log(conn: sqlite3.Connection, cp: Checkpoint) -> list[chain.Problem]:
    """Where the log no longer holds what `cp` signed: a table with fewer records than it
    names (truncated), or whose record at that position does not hash to its head (the chain
    up to it was rewritten). One indexed read per table: the chains themselves are checked
    by chain.verify_table, which this complements (an intact chain whose record n still
    hashes to the signed head holds records 1..n unchanged)."""
    problems: list[chain.Problem] = []
    label = cp.label()
    previous_factory = conn.text_factory
    conn.text_factory = bytes  # hash the stored UTF-8 as it is
    try:
        for table, size in cp.sizes.items():
            head = cp.heads[table]
            if table not in TABLE_NAMES:
                problems.append(
                    chain.Problem(table, None, f"{label} names a table this log does not have")
                )
            elif size == 0:
                if head != chain.genesis(table):
                    problems.append(
                        chain.Problem(table, None, f"{label}: an empty table with a head hash")
                    )
            else:
                problems += _check_table(conn, table, size, head, label)
    finally:
        conn.text_factory = previous_factory
    return problems


def _check_table(
    conn: sqlite3.Connection, table: str, size: int, head: bytes, label: str
) -> list[chain.Problem]:
    row = conn.execute(f"SELECT prev, hash, body FROM {table} WHERE id = ?", (size,)).fetchone()
    if row is None:
        last_id, count = conn.execute(f"SELECT max(id), count(*) FROM {table}").fetchone()
        last = int(last_id or 0)
        if last < size:
            gone = f"row {size} is" if last + 1 == size else f"rows {last + 1}..{size} are"
            what = (
                f"deleted: {gone} gone: the {label} signed {size} records, the log holds "
                f"{count} (truncated)"
            )
            return [chain.Problem(table, last + 1, what)]
        what = f"deleted: row {size} is gone, the {label} signed it as the last of {size}"
        return [chain.Problem(table, size, what)]
    prev, stored, body = (bytes(v) for v in row)
    if stored == head and hashlib.sha256(prev + body).digest() == head:
        return []
    return [
        chain.Problem(
            table,
            size,
            f"rewritten: row {size} no longer hashes to what the {label} signed "
            f"({head.hex()[:16]}...): records up to it were changed since",
        )
    ]


# ---- kept in the log ------------------------------------------------------------------------


def save(conn: sqlite3.Connection, cp: Checkpoint) -> int:
    """Add `cp` to the log's `checkpoints` table (in the caller's transaction); its id."""
    cursor = conn.execute(
        "INSERT INTO checkpoints (made_at, text) VALUES (?, ?)", (cp.made_at, cp.text())
    )
    assert cursor.lastrowid is not None
    return int(cursor.lastrowid)


def stored(conn: sqlite3.Connection) -> list[tuple[int, str, Checkpoint | CheckpointProblem]]:
    """Every checkpoint in the log's `checkpoints` table, oldest first: (id, made_at, the
    checkpoint or why its text cannot be read)."""
    out: list[tuple[int, str, Checkpoint | CheckpointProblem]] = []
    for row_id, made_at, text in conn.execute(
        "SELECT id, made_at, text FROM checkpoints ORDER BY id"
    ):
        source = f"checkpoints row {row_id}"
        try:
            cp: Checkpoint | CheckpointProblem = parse(_text(text), source)
        except CheckpointProblem as exc:
            cp = exc
        out.append((int(row_id), str(made_at), cp))
    return out


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
