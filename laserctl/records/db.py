"""The shot log's SQLite file: opening it, its one lock, and the transaction every write takes.

Durability: WAL with synchronous=FULL, so a COMMIT returns only after the write-ahead log is on
disk. A failed write rolls the whole transaction back: what was stored before stays as it was,
and the caller gets a RecordError (StoreFull, StoreReadOnly, ...) naming the file and what
happened.

One connection, one lock: the store may be called from the controller's owner thread and from
a group-commit writer thread (writer.py). Database also keeps what the committed chains hold
(each table's head, the context rows) so a write need not read them back.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import chain
from .errors import RecordError, StoreReadOnly, translate
from .schema import SCHEMA_VERSION, SchemaTooNew, migrate
from .txn import Head, Txn

DEFAULT_FILENAME = "laserctl.db"


def default_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_path("laserctl", appauthor=False)) / DEFAULT_FILENAME


class Database:
    """An open shot log file. `conn` is for callers holding `lock` (all of records/ does)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self.lock = threading.RLock()
        self.heads: dict[str, Head] = {}
        self.contexts: dict[tuple[str, Hashable], int] = {}
        self.closed = False
        self._on_commit: list[Callable[[Txn], None]] = []

    def fail(self, doing: str, exc: sqlite3.Error) -> RecordError:
        return translate(self.path, doing, exc)

    def head(self, table: str) -> Head:
        head = self.heads.get(table)
        if head is None:
            # New records chain onto the last row there is, whatever the recorded head says;
            # a disagreement is for `log verify` to report, not a reason to stop treating.
            row = self.conn.execute(
                f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                head = Head(0, 0, chain.genesis(table))
            else:
                recorded = self.conn.execute(
                    "SELECT count, hash FROM chain_heads WHERE tbl = ?", (table,)
                ).fetchone()
                if recorded is not None and bytes(recorded[1]) == bytes(row[1]):
                    count = int(recorded[0])
                else:
                    count = int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                head = Head(count, int(row[0]), bytes(row[1]))
            self.heads[table] = head
        return head

    def on_commit(self, committed: Callable[[Txn], None]) -> None:
        """Call `committed(txn)` after each transaction commits, still under the lock (the
        sessions keep the handpieces a transaction bound)."""
        self._on_commit.append(committed)

    @contextlib.contextmanager
    def transaction(self, doing: str) -> Iterator[Txn]:
        with self.lock:
            if self.closed:
                raise RecordError(f"shot log {self.path}: closed (while {doing})")
            if self.readonly:
                raise StoreReadOnly(f"shot log {self.path}: opened read-only (while {doing})")
            txn = Txn(self)
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                yield txn
                for table, head in txn.heads.items():
                    self.conn.execute(
                        "INSERT INTO chain_heads (tbl, count, last_id, hash) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (tbl) DO UPDATE SET count = excluded.count,"
                        " last_id = excluded.last_id, hash = excluded.hash",
                        (table, head.count, head.last_id, head.hash),
                    )
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self.fail(doing, exc) from None
            except BaseException:
                self._rollback()
                raise
            self.heads.update(txn.heads)
            self.contexts.update(txn.contexts)
            for committed in self._on_commit:
                committed(txn)

    def _rollback(self) -> None:
        # After SQLITE_FULL SQLite may already have rolled back; make sure of it either way.
        self.heads.clear()
        with contextlib.suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Read-only query, under the lock, errors translated."""
        with self.lock:
            try:
                return list(self.conn.execute(sql, tuple(params)).fetchall())
            except sqlite3.Error as exc:
                raise self.fail("reading", exc) from None

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                with contextlib.suppress(sqlite3.Error):
                    self.conn.close()


def connect(
    path: str | Path | None = None, *, readonly: bool = False
) -> tuple[sqlite3.Connection, Path]:
    """Open (and create and migrate) the shot log at `path`, by default `laserctl.db` in the
    user data directory; returns the connection and the file. readonly: for reports and
    verification; the file must exist."""
    target = Path(path) if path is not None else default_path()
    try:
        if readonly:
            if not target.exists():
                raise RecordError(f"shot log {target}: no such file")
            conn = sqlite3.connect(
                target.resolve().as_uri() + "?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(target), isolation_level=None, check_same_thread=False, timeout=5.0
            )
    except OSError as exc:
        raise RecordError(f"shot log {target}: cannot open: {exc.strerror or exc}") from None
    except sqlite3.Error as exc:
        raise translate(target, "opening", exc) from None
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        if readonly:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version != SCHEMA_VERSION:
                hint = ": open it once for writing to migrate" if version < SCHEMA_VERSION else ""
                raise RecordError(
                    f"shot log {target}: schema version {version}, this laserctl reads "
                    f"{SCHEMA_VERSION}{hint}"
                )
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RecordError(f"shot log {target}: cannot use WAL (journal mode {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            migrate(conn)
            _probe_writable(conn)
    except SchemaTooNew as exc:
        conn.close()
        raise RecordError(f"shot log {target}: {exc}") from None
    except sqlite3.Error as exc:
        conn.close()
        raise translate(target, "opening", exc) from None
    except RecordError:
        conn.close()
        raise
    return conn, target


def _probe_writable(conn: sqlite3.Connection) -> None:
    """SQLite opens a file it may not write read-only without saying so; find out now, not at
    the first shot. The probe row is rolled back and never reaches the disk."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO chain_heads (tbl, count, last_id, hash) VALUES (?, 0, 0, x'')",
            (f"probe-{os.getpid()}",),
        )
    finally:
        conn.execute("ROLLBACK")
