"""The console's side of shipping: its rows as they are stored, and the outbox.

The outbox is the SQLite table `fleet_outbox` (records/schema.py): per central store (its
store_id), console and table, the last row id the central store acknowledged. It advances
only after the central store has committed a batch, so a crash or a cut connection at any
point at worst re-sends rows the store already holds, which the store skips (same hash) or
refuses (a different hash: a fork).

The pushing connection is its own SQLite connection (WAL: its reads never block the console's
writes; its one small write per batch waits at most busy_timeout).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from laserctl.records import db as records_db
from laserctl.records.schema import TABLE_NAMES

CHECKPOINTS = "checkpoints"  # helper table of signed checkpoints (records/checkpoints.py)


class LocalLogProblem(Exception):
    """The console's own log cannot be shipped as it is (names the file, table and row)."""


@dataclass(frozen=True, slots=True)
class LocalRow:
    row_id: int
    prev: bytes
    hash: bytes
    body: str


class Outbox:
    """One console's log file and its outbox towards one central store."""

    def __init__(self, conn: sqlite3.Connection, path: Path, store_id: str, console_id: str):
        self.conn = conn
        self.path = path
        self.store_id = store_id
        self.console_id = console_id

    @classmethod
    def open(cls, db: str | Path | None, store_id: str, console_id: str) -> Outbox:
        conn, path = records_db.connect(db)
        return cls(conn, path, store_id, console_id)

    def close(self) -> None:
        self.conn.close()

    def acked(self, table: str) -> int:
        row = self.conn.execute(
            "SELECT acked_id FROM fleet_outbox WHERE store_id = ? AND console_id = ? AND tbl = ?",
            (self.store_id, self.console_id, table),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def advance(self, table: str, row_id: int, row_hash: bytes | None) -> None:
        """Record that the central store committed everything up to `row_id` of `table`."""
        with self.conn:  # BEGIN ... COMMIT (synchronous=FULL)
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO fleet_outbox (store_id, console_id, tbl, acked_id, acked_hash,"
                " acked_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, console_id, tbl)"
                " DO UPDATE SET acked_id = excluded.acked_id, acked_hash = excluded.acked_hash,"
                " acked_at = excluded.acked_at",
                (self.store_id, self.console_id, table, row_id, row_hash, time.time()),
            )
            self.conn.execute("COMMIT")

    def rows_after(self, table: str, after: int, limit: int) -> list[LocalRow]:
        """Up to `limit` rows of `table` with id > after, in id order, body as stored."""
        sql = f"SELECT id, prev, hash, body FROM {table} WHERE id > ? ORDER BY id LIMIT ?"
        return list(self._rows(table, sql, (after, limit)))

    def row(self, table: str, row_id: int) -> LocalRow | None:
        sql = f"SELECT id, prev, hash, body FROM {table} WHERE id = ?"
        found = list(self._rows(table, sql, (row_id,)))
        return found[0] if found else None

    def _rows(self, table: str, sql: str, params: tuple[object, ...]) -> Iterator[LocalRow]:
        previous = self.conn.text_factory
        self.conn.text_factory = bytes
        try:
            fetched = self.conn.execute(sql, params).fetchall()
        finally:
            self.conn.text_factory = previous
        for row_id, prev, hash_, body in fetched:
            try:
                text = _b(body).decode("utf-8")
            except UnicodeDecodeError:
                raise LocalLogProblem(
                    f"shot log {self.path}: {table} row {row_id}: body is not UTF-8"
                ) from None
            yield LocalRow(int(row_id), _b(prev), _b(hash_), text)

    def last_id(self, table: str) -> int:
        row = self.conn.execute(f"SELECT max(id) FROM {table}").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def pending(self) -> dict[str, int]:
        """Per table, how many local rows the central store has not acknowledged."""
        out = {}
        for table in (*TABLE_NAMES, *(t for t in (CHECKPOINTS,) if t in self.tables())):
            row = self.conn.execute(
                f"SELECT count(*) FROM {table} WHERE id > ?", (self.acked(table),)
            ).fetchone()
            out[table] = int(row[0]) if row else 0
        return out

    def shipped_tables(self) -> tuple[str, ...]:
        """The chained tables, in the order a push sends them."""
        return TABLE_NAMES

    def tables(self) -> set[str]:
        rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(r[0]) for r in rows}


def _b(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return b"" if value is None else str(value).encode()
