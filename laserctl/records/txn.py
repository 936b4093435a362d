"""Writing to the shot log's chains: one transaction, records appended in chain order.

A record's body is compact JSON with sorted keys (orjson), and it is hashed exactly as stored
(chain.py). Txn holds what a transaction has added so far (each chain's head, the context rows,
the handpieces bound to sessions) until db.Database commits it. Shot rows are chained at once
and inserted many to a statement (defer_shot, flush_shots): SQLite's module lets go of the GIL
around every statement, and taking it back costs the writer a wait behind the controller's
threads.

A transaction writes through `ChainFile`, the part of db.Database it needs: this module
imports nothing of the records package above chain.py, so db.py imports it, not both ways.
"""

from __future__ import annotations

import functools
import math
import sqlite3
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

from . import chain
from .context import ShotContext
from .errors import RecordError

_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: object) -> str:
    """A record's body as stored and hashed: compact JSON, keys sorted, UTF-8. NaN and
    infinity are refused (JSON has no such numbers; orjson would write null)."""
    _check_finite(value)
    return orjson.dumps(value, option=_JSON_OPTIONS, default=str).decode()


_PLAIN = frozenset({str, int, bool, type(None)})


def _check_finite(value: object) -> None:
    items: Iterable[object]
    if type(value) is dict or isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, list | tuple):
        items = value
    elif type(value) is float:
        items = (value,)
    else:
        return
    for item in items:
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                raise ValueError(f"{item!r} in a shot log record: only finite numbers are stored")
        elif kind not in _PLAIN:
            _check_finite(item)


SHOT_CHUNK = 100  # shot rows per INSERT statement (400 parameters; SQLite allows 32,766)


@functools.lru_cache(maxsize=8)
def _insert_rows_sql(rows: int) -> str:
    return "INSERT INTO shots (id, prev, hash, body) VALUES " + ", ".join(["(?, ?, ?, ?)"] * rows)


@dataclass(slots=True)
class Head:
    count: int
    last_id: int
    hash: bytes


def _chained(head: Head, text: str) -> tuple[tuple[int, bytes, bytes, str], Head]:
    """The row (id, prev, hash, body) that chains `text` onto `head`, and the head after it."""
    row_id = head.last_id + 1
    digest = chain.link(head.hash, text)
    return (row_id, head.hash, digest, text), Head(head.count + 1, row_id, digest)


class ChainFile(Protocol):
    """The open shot log a transaction writes to (db.Database)."""

    @property
    def path(self) -> Path: ...

    @property
    def conn(self) -> sqlite3.Connection: ...

    @property
    def contexts(self) -> Mapping[tuple[str, Hashable], int]:
        """The context rows committed so far, by (kind, key)."""

    def head(self, table: str) -> Head:
        """The table's chain head as committed."""


@dataclass(slots=True)
class Txn:
    db: ChainFile
    heads: dict[str, Head] = field(default_factory=dict)
    contexts: dict[tuple[str, Hashable], int] = field(default_factory=dict)
    bound: dict[int, tuple[str, str]] = field(default_factory=dict)
    # (shot params, shot context) -> the ids of their context rows, for this transaction
    shot_refs: dict[tuple[Hashable, ShotContext], dict[str, int]] = field(default_factory=dict)
    new_shots: int = 0

    # Shot rows chained but not yet inserted (id, prev, hash, body), and the shots chain head
    # before the first of them: flush_shots() inserts them many to a statement.
    pending: list[tuple[int, bytes, bytes, str]] = field(default_factory=list)
    pending_head: Head | None = None

    def defer_shot(self, body: Mapping[str, object]) -> None:
        """Chain a shot row now and insert it with the others at flush_shots(): one INSERT per
        SHOT_CHUNK rows instead of one per row. SQLite's module lets go of the GIL around each
        statement, and taking it back costs the writer a wait behind the controller's threads
        every time: per row, a 20,000-shot burst spent most of its time there."""
        head = self.heads.get("shots") or self.db.head("shots")
        if self.pending_head is None:
            self.pending_head = head
        row, self.heads["shots"] = _chained(head, self.dumps("shots", body))
        self.pending.append(row)
        self.new_shots += 1

    def flush_shots(self) -> None:
        """Insert the deferred shot rows. A row the unique index already holds (a shot stored
        before, SR-11) undoes its statement only: from that statement on, the rows are chained
        again and inserted one by one, the duplicate skipped, as append_once() does."""
        rows, head = self.pending, self.pending_head
        if not rows or head is None:
            return
        self.pending, self.pending_head = [], None
        db = self.db.conn
        for start in range(0, len(rows), SHOT_CHUNK):
            chunk = rows[start : start + SHOT_CHUNK]
            try:
                db.execute(_insert_rows_sql(len(chunk)), [v for row in chunk for v in row])
            except sqlite3.IntegrityError as exc:
                if "UNIQUE constraint failed" not in str(exc):
                    raise
                before = rows[start - 1] if start else None
                self.heads["shots"] = (
                    Head(head.count + start, before[0], before[2]) if before else head
                )
                self.new_shots -= len(rows) - start
                for _, _, _, text in rows[start:]:
                    if self._insert("shots", text, duplicate_ok=True) is not None:
                        self.new_shots += 1
                return

    def head(self, table: str) -> Head:
        """The table's chain head as this transaction has it so far (a checkpoint made inside
        it covers what it wrote)."""
        self.flush_shots()
        return self.heads.get(table) or self.db.head(table)

    def dumps(self, table: str, body: Mapping[str, object]) -> str:
        try:
            return dumps(body)
        except (TypeError, ValueError) as exc:
            raise RecordError(
                f"shot log {self.db.path}: a {table} record not stored: {exc}"
            ) from None

    def append(self, table: str, body: Mapping[str, object]) -> int:
        stored = self.append_once(table, body, duplicate_ok=False)
        assert stored is not None
        return stored

    def append_once(
        self, table: str, body: Mapping[str, object], *, duplicate_ok: bool = True
    ) -> int | None:
        """Chain and insert one record; returns its id. duplicate_ok: a row the table's unique
        index already holds is skipped (SQLite undoes the statement, not the transaction) and
        None returned."""
        if table == "shots":
            self.flush_shots()  # in chain order
        return self._insert(table, self.dumps(table, body), duplicate_ok=duplicate_ok)

    def _insert(self, table: str, text: str, *, duplicate_ok: bool) -> int | None:
        row, after = _chained(self.heads.get(table) or self.db.head(table), text)
        try:
            self.db.conn.execute(
                f"INSERT INTO {table} (id, prev, hash, body) VALUES (?, ?, ?, ?)", row
            )
        except sqlite3.IntegrityError as exc:
            if duplicate_ok and "UNIQUE constraint failed" in str(exc):
                return None
            raise
        self.heads[table] = after  # a skipped duplicate leaves the chain where it was
        return row[0]

    def context(self, kind: str, key: Hashable, value: Callable[[], Mapping[str, object]]) -> int:
        """The id of the shared context row {kind, value()}, added if new. `key` stands for
        the value in memory, so a context already seen costs one dict lookup."""
        memo = (kind, key)
        found = self.contexts.get(memo) or self.db.contexts.get(memo)
        if found is not None:
            return found
        body = {"kind": kind, "value": value()}
        text = self.dumps("contexts", body)
        row = self.db.conn.execute("SELECT id FROM contexts WHERE body = ?", (text,)).fetchone()
        ref = int(row[0]) if row else self.append("contexts", body)
        self.contexts[memo] = ref
        return ref
