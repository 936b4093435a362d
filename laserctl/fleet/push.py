"""`laserctl fleet push`: ship a console's shot log to the central store.

Per chained table, in id order, from the outbox's last acknowledged row on, in batches; each
batch is one PostgreSQL transaction, and the outbox advances only after it committed:

1. pin the console's public key (first push) or refuse a different one;
2. before sending a table, compare the store's copy with the log: the store's last row must
   still be in the log with the same hash, otherwise rows were deleted (truncation) or
   rewritten after shipping; the first differing row is found by bisection and named;
3. send each batch (COPY into a staging table, INSERT ... ON CONFLICT DO NOTHING, a row that
   is already stored with a different hash is a fork); the store's trigger refuses rows that
   do not chain onto what it holds;
4. ship the signed checkpoints whose rows the store now holds (checkpoint_ship.py).

Every refusal is recorded in the store's fleet_refusals and raised as FleetRefused naming
console, table and row. A lost connection raises CentralError; run push again to resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from laserctl.auth import console_key
from laserctl.records.schema import TABLE_NAMES

from . import central as central_mod
from .central import Central, CentralError, FleetRefused
from .outbox import LocalRow, Outbox

DEFAULT_BATCH = 1000

Hook = Callable[[str, list[LocalRow]], None]


@dataclass
class Hooks:
    """Test seams: called inside the batch's transaction before its COMMIT, and after the
    COMMIT before the outbox advances (where a crash or a cut connection hurts most)."""

    before_commit: Hook | None = None
    after_commit: Hook | None = None


@dataclass
class PushReport:
    console_id: str
    store_id: str
    central: str
    shipped: dict[str, int] = field(default_factory=dict)  # rows new to the store
    resent: dict[str, int] = field(default_factory=dict)  # rows it already held
    batches: int = 0
    checkpoints: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "console": self.console_id,
            "store": self.store_id,
            "central": self.central,
            "shipped": self.shipped,
            "resent": self.resent,
            "batches": self.batches,
            "checkpoints": self.checkpoints,
        }


def push(
    db: str | Path | None,
    url: str,
    *,
    key: console_key.ConsoleKey | None = None,
    batch: int = DEFAULT_BATCH,
    hooks: Hooks | None = None,
) -> PushReport:
    """Ship everything the store has not acknowledged; returns what was shipped."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    key = key if key is not None else console_key.load_or_create()
    hooks = hooks or Hooks()
    with central_mod.connect(url) as store:
        try:
            store.migrate()
            store_id = store.store_id()
            store.pin_console(key.console_id, key.public_text())
            outbox = Outbox.open(db, store_id, key.console_id)
            try:
                report = PushReport(key.console_id, store_id, store.where)
                for table in TABLE_NAMES:
                    _push_table(store, outbox, table, batch, hooks, report)
                from . import checkpoint_ship

                report.checkpoints = checkpoint_ship.ship(store, outbox, key)
                return report
            finally:
                outbox.close()
        except psycopg.OperationalError as exc:
            raise CentralError(
                f"central store {store.where}: connection lost during push "
                f"({_first_line(exc)}); nothing unacknowledged is lost: push again to resume"
            ) from None
        except psycopg.Error as exc:
            raise CentralError(f"central store {store.where}: {_first_line(exc)}") from None


def _push_table(
    store: Central, outbox: Outbox, table: str, batch: int, hooks: Hooks, report: PushReport
) -> None:
    console = outbox.console_id
    check_shipped(store, outbox, table)
    cursor = outbox.acked(table)
    while True:
        rows = outbox.rows_after(table, cursor, batch)
        if not rows:
            break
        try:
            with store.conn.transaction():
                store.lock_console(console)
                staged = store.stage_rows(
                    console, table, [(r.row_id, r.prev, r.hash, r.body) for r in rows]
                )
                if staged.fork_at is not None:
                    raise _Fork(staged.fork_at)
                if hooks.before_commit is not None:
                    hooks.before_commit(table, rows)
        except _Fork as fork:
            raise store.refuse(
                FleetRefused(
                    console,
                    table,
                    fork.row_id,
                    "the log's row differs from the copy the central store already holds "
                    "(rewritten after it was shipped: a fork)",
                )
            ) from None
        except psycopg.Error as exc:
            if exc.sqlstate == central_mod.REFUSED:
                raise store.refuse(_refusal_from(console, table, exc)) from None
            raise
        if hooks.after_commit is not None:
            hooks.after_commit(table, rows)
        last = rows[-1]
        outbox.advance(table, last.row_id, last.hash)
        cursor = last.row_id
        report.batches += 1
        if staged.inserted:
            report.shipped[table] = report.shipped.get(table, 0) + staged.inserted
        resent = len(rows) - staged.inserted
        if resent:
            report.resent[table] = report.resent.get(table, 0) + resent


class _Fork(Exception):
    def __init__(self, row_id: int) -> None:
        super().__init__(row_id)
        self.row_id = row_id


def _refusal_from(console: str, table: str, exc: psycopg.Error) -> FleetRefused:
    detail = (exc.diag.message_detail or "").split(" ", 2)
    if len(detail) == 3 and detail[1].isdigit():
        return FleetRefused(console, detail[0], int(detail[1]), detail[2])
    return FleetRefused(console, table, None, exc.diag.message_primary or str(exc))


def check_shipped(store: Central, outbox: Outbox, table: str) -> None:
    """The rows the store holds must still be in the log, unchanged: refuse truncation and
    rewrites of shipped rows, naming the first row affected."""
    console = outbox.console_id
    head = store.head(console, table)
    if head.row_id == 0:
        return
    local = outbox.row(table, head.row_id)
    if local is not None and local.hash == head.hash:
        return
    last_local = outbox.last_id(table)
    first_bad = _first_divergence(store, outbox, table, min(head.row_id, last_local))
    if first_bad is None:  # every row both hold agrees: rows at the end were removed
        what = (
            f"the log ends at row {last_local} but the central store holds rows up to "
            f"{head.row_id}: rows were deleted after they were shipped (truncated)"
        )
        raise store.refuse(FleetRefused(console, table, last_local + 1, what))
    what = (
        "the log's row differs from the copy the central store holds: rows were "
        "rewritten, or deleted and replaced, after they were shipped (a fork)"
    )
    raise store.refuse(FleetRefused(console, table, first_bad, what))


def _first_divergence(store: Central, outbox: Outbox, table: str, upto: int) -> int | None:
    """The first row id <= upto whose hash differs between the log and the store (bisection:
    once a row differs every later one does, the hashes chain). None if all agree."""

    def same(row_id: int) -> bool:
        local = outbox.row(table, row_id)
        return local is not None and local.hash == store.hash_at(outbox.console_id, table, row_id)

    if upto < 1 or same(upto):
        return None
    lo, hi = 1, upto  # the answer is in [lo, hi]; hi differs
    while lo < hi:
        mid = (lo + hi) // 2
        if same(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
