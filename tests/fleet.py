"""Shared pieces of the tamper, checkpoint and fleet tests: a console's shot log with records
in it, its key, and what an attacker does to it with sqlite3."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path

from drivers.protocol import Param
from laserctl.auth import console_key
from laserctl.records import ShotContext, chain, open_store
from laserctl.records.schema import TABLE_NAMES
from laserctl.shotrecord import ShotRecord

CONTEXT = ShotContext(
    "FR-00001", "fractional-1550", "1.4.0", "plan", "ef" * 32, (("key", "closed"),)
)


def shot(sid: str, n: int) -> ShotRecord:
    return ShotRecord(
        sid,
        "plan",
        "thigh",
        3,
        n,
        n * 1000,
        Param.ENERGY_MJ,
        12.0,
        12.0 + n / 100,
        1800,
        ((Param.ENERGY_MJ, 12.0),),
        False,
        True,
        0.6,
        0.0,
    )


def make_log(path: Path, shots: int = 20, patient: str = "P-0007", first: int = 1) -> str:
    """A session of `shots` shots (numbered from `first`) and a fault event, ended with its
    checkpoint signed by key_for(path); returns the session id."""
    signer = key_for(path)
    store = open_store(path, tz=dt.UTC, console_key=lambda: signer)
    try:
        sid = store.begin_session(patient, "thigh", context=lambda: CONTEXT)
        store.record_many(shot(sid, n) for n in range(first, first + shots))
        store.log_event("fault", "door opened", session_id=sid)
        store.end_session(sid)
        assert store.verify().ok
        return sid
    finally:
        store.close()


def key_for(db: Path) -> console_key.ConsoleKey:
    """The key of the console whose log is `db` (next to it, same name, .pem)."""
    return console_key.load_or_create(db.with_suffix(".pem"))


def pushed_log(tmp: Path, url: str, shots: int = 20) -> tuple[Path, console_key.ConsoleKey]:
    """A console's log of `shots` shots (tmp/a.db, see make_log), pushed to `url` once."""
    from laserctl.fleet.push import push

    db = tmp / "a.db"
    make_log(db, shots=shots)
    signer = key_for(db)
    push(db, url, key=signer)
    return db, signer


def key(tmp: Path, name: str) -> console_key.ConsoleKey:
    """Another key (an impostor's, an intruder's)."""
    return console_key.load_or_create(tmp / f"{name}-key.pem")


def tamper(path: Path, work: Callable[[sqlite3.Connection], None]) -> None:
    """What someone with the file and sqlite3 can do, in one transaction: drop the
    append-only triggers, `work` on the rows, set chain_heads to each table's new tail, and
    put the triggers back exactly as they were."""
    db = sqlite3.connect(path, isolation_level=None)
    triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    db.execute("BEGIN")
    for name, _ in triggers:
        db.execute(f"DROP TRIGGER {name}")
    work(db)
    for table in TABLE_NAMES:  # chain_heads says what the tables now end with
        last = db.execute(f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
        count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if last is not None:
            db.execute(
                "UPDATE chain_heads SET count = ?, last_id = ?, hash = ? WHERE tbl = ?",
                (count, last[0], last[1], table),
            )
    for _, sql in triggers:
        db.execute(sql)
    db.execute("COMMIT")
    db.close()


def _attack(path: Path, work: Callable[[sqlite3.Connection], None]) -> None:
    """tamper(), leaving no local trace: the local checkpoints deleted too, so `laserctl log
    verify` says intact."""

    def and_no_checkpoints(db: sqlite3.Connection) -> None:
        work(db)
        # the local checkpoints go, and the session ends no longer say they had one
        db.execute("DELETE FROM checkpoints")
        flagged = db.execute(
            "SELECT min(id) FROM events WHERE json_extract(body, '$.data.checkpoint') = 1"
        ).fetchone()[0]
        if flagged is not None:
            db.execute(
                "UPDATE events SET body = json_set(body, '$.data.checkpoint', json('false'))"
                " WHERE json_extract(body, '$.data.checkpoint') = 1"
            )
            rechain(db, "events", int(flagged))

    tamper(path, and_no_checkpoints)
    store = open_store(path, readonly=True)
    try:
        assert store.verify().ok, "the attack left a trace in the local log"
    finally:
        store.close()


def rechain(db: sqlite3.Connection, table: str, start: int) -> None:
    """Recompute the hashes of `table` from row `start` on, as a forger would."""
    prev_row = db.execute(
        f"SELECT hash FROM {table} WHERE id < ? ORDER BY id DESC LIMIT 1", (start,)
    ).fetchone()
    prev = bytes(prev_row[0]) if prev_row else chain.genesis(table)
    for row_id, body in db.execute(
        f"SELECT id, body FROM {table} WHERE id >= ? ORDER BY id", (start,)
    ).fetchall():
        digest = chain.link(prev, str(body))
        db.execute(f"UPDATE {table} SET prev = ?, hash = ? WHERE id = ?", (prev, digest, row_id))
        prev = digest


def forge(path: Path, table: str, row_id: int, key: str, value: object) -> None:
    """Change one value of a shipped record and recompute the chain after it."""

    def work(db: sqlite3.Connection) -> None:
        db.execute(
            f"UPDATE {table} SET body = json_set(body, '$.{key}', ?) WHERE id = ?",
            (value, row_id),
        )
        rechain(db, table, row_id)

    _attack(path, work)


def truncate(path: Path, table: str, keep: int) -> None:
    """Delete every record of `table` after the first `keep`."""
    _attack(path, lambda db: db.execute(f"DELETE FROM {table} WHERE id > ?", (keep,)))
