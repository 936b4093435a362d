"""The hash chains and their verification (SR-12).

Each record table is one chain in id order:

    hash[1] = SHA-256(genesis(table) || body[1])
    hash[n] = SHA-256(hash[n-1] || body[n])

where body is the record's stored JSON text (UTF-8) exactly as written, and genesis(table) is
SHA-256("laserctl shot log v1 " || table), so a record copied into another table does not fit.
Every row also stores `prev` (the hash it was chained to): not needed to prove the chain intact,
it lets a broken chain be explained, row by row, as modified, inserted, deleted or reordered.
`chain_heads` holds each table's record count and last hash, written in the same transaction
as the records, so records removed from the end are detected too.

Verification reads (body, hash) in id order and recomputes each hash from the previous one:
one SHA-256 per record and no per-record Python beyond that. Only a chain that fails is read a
second time, completely, to say what happened to which row.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

CHAIN_VERSION = b"laserctl shot log v1 "


def genesis(table: str) -> bytes:
    return hashlib.sha256(CHAIN_VERSION + table.encode()).digest()


def link(prev: bytes, body: str) -> bytes:
    return hashlib.sha256(prev + body.encode()).digest()


@dataclass(frozen=True, slots=True)
class Problem:
    table: str
    row_id: int | None  # None: about the table or the schema, not one row
    what: str

    def __str__(self) -> str:
        where = f"{self.table} row {self.row_id}" if self.row_id is not None else self.table
        return f"{where}: {self.what}"


@dataclass(slots=True)
class TableResult:
    table: str
    records: int
    head: bytes
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Head:
    count: int
    last_id: int
    hash: bytes


def verify_table(db: sqlite3.Connection, table: str, head: Head | None) -> TableResult:
    """Check one table's chain; an intact chain is read once, (body, hash) per row."""
    previous_factory = db.text_factory
    db.text_factory = bytes  # hash the stored UTF-8 as it is: no decode and re-encode
    try:
        sha = hashlib.sha256
        last = genesis(table)
        count = 0
        intact = True
        for body, stored in db.execute(f"SELECT body, hash FROM {table} ORDER BY id"):
            if type(body) is not bytes or sha(last + body).digest() != stored:
                intact = False
                break
            last = stored
            count += 1
    finally:
        db.text_factory = previous_factory
    if intact and _head_matches(head, count, last):
        return TableResult(table, count, last)
    return diagnose(table, _all_rows(db, table), head)


def _head_matches(head: Head | None, count: int, last: bytes) -> bool:
    if head is None:
        return count == 0
    return head.count == count and head.hash == last


def _all_rows(db: sqlite3.Connection, table: str) -> list[tuple[int, bytes, bytes, bytes]]:
    previous_factory = db.text_factory
    db.text_factory = bytes
    try:
        rows = db.execute(f"SELECT id, prev, hash, body FROM {table} ORDER BY id").fetchall()
    finally:
        db.text_factory = previous_factory
    return [(int(i), _bytes(p), _bytes(h), _bytes(b)) for i, p, h, b in rows]


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    return str(value).encode()


def diagnose(
    table: str, rows: Sequence[tuple[int, bytes, bytes, bytes]], head: Head | None
) -> TableResult:
    """Say what happened to each row of a broken chain (rows: id, prev, hash, body in id
    order). A row is reported only where it is itself wrong, not because a neighbour is."""
    problems: list[Problem] = []
    start = genesis(table)
    n = len(rows)
    position: dict[bytes, int] = {}  # stored hash -> first position holding it
    for i, row in enumerate(rows):
        position.setdefault(row[2], i)
    chained_next: dict[bytes, int] = {}  # a hash -> first position of a row chained to it
    for i, row in enumerate(rows):
        chained_next.setdefault(row[1], i)
    head_hash = head.hash if head is not None else None
    before_recomputed = start  # what the row before should have had as its hash
    for i, (row_id, prev, stored, body) in enumerate(rows):
        before = rows[i - 1][2] if i > 0 else start
        next_prev = rows[i + 1][1] if i + 1 < n else head_hash
        recomputed = hashlib.sha256(prev + body).digest()
        previous_recomputed, before_recomputed = before_recomputed, recomputed
        if position[stored] != i:
            copy_of = rows[position[stored]][0]
            problems.append(Problem(table, row_id, f"inserted: a copy of row {copy_of}"))
        elif recomputed != stored:
            if next_prev == recomputed:
                what = "modified: its stored hash was changed"
            elif next_prev == stored:
                what = "modified: its content no longer matches the hash it was chained with"
            elif next_prev == before:
                what = "inserted: not part of the chain (the next record is chained past it)"
            else:
                what = "modified or inserted: its hash does not match its content"
            problems.append(Problem(table, row_id, what))
        elif prev not in (before, previous_recomputed):
            # Intact in itself, but not chained to the row before it (and not because that
            # row's stored hash was edited: that row is reported itself).
            if prev == start or prev in position:
                after = (
                    "the start of the chain" if prev == start else f"row {rows[position[prev]][0]}"
                )
                if next_prev != stored:  # a row that still leads into its successor stayed put
                    problems.append(
                        Problem(table, row_id, f"reordered: it was chained after {after}")
                    )
            else:
                previous_id = rows[i - 1][0] if i > 0 else 0
                gap = row_id - previous_id - 1
                ids = (
                    f"ids {previous_id + 1}..{row_id - 1}"
                    if gap > 1
                    else f"id {previous_id + 1}"
                    if gap == 1
                    else "ids renumbered"
                )
                problems.append(
                    Problem(
                        table,
                        row_id,
                        "deleted record(s) before it: the record it was chained to is gone "
                        f"({ids})",
                    )
                )
    last = rows[-1][2] if rows else start
    problems += _tail_problems(table, head, rows, position, last)
    return TableResult(table, n, last, problems)


def _tail_problems(
    table: str,
    head: Head | None,
    rows: Sequence[tuple[int, bytes, bytes, bytes]],
    position: dict[bytes, int],
    last: bytes,
) -> list[Problem]:
    if head is None:
        if rows:
            return [Problem(table, None, "no chain head recorded for a table with records")]
        return []
    if head.hash == last or (not rows and head.count == 0):
        return []
    at = position.get(head.hash)
    if at is not None:
        first_extra = rows[at + 1][0]
        return [
            Problem(
                table,
                first_extra,
                f"inserted: {len(rows) - at - 1} record(s) from row {first_extra} on were added "
                f"after the chain head (row {rows[at][0]})",
            )
        ]
    return [
        Problem(
            table,
            head.last_id,
            f"deleted: record(s) missing at the end (the chain head names {head.count} records "
            f"up to row {head.last_id})",
        )
    ]
