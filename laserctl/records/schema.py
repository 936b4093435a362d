"""The database layout and its versioned migrations.

Every record table holds the record itself in one column, `body` (a JSON object, written once
and never changed), and its place in that table's hash chain (`prev`, `hash`). The columns that
queries use are VIRTUAL generated columns read out of `body`, so nothing about a record exists
outside the bytes the chain covers: changing a record means changing `body`, and that breaks
the chain (see chain.py and docs/shot-log.md).

Migrations are numbered scripts; PRAGMA user_version holds how many have run: 1 the record
tables and chain_heads, 2 the signed checkpoints, 3 the fleet outbox (issue 14).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql_type: str
    key: str  # the body's JSON key


@dataclass(frozen=True, slots=True)
class RecordTable:
    name: str
    what: str
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, bool, tuple[str, ...]], ...]  # (name, unique, columns)


def _c(name: str, sql_type: str, key: str | None = None) -> Column:
    return Column(name, sql_type, key or name)


TABLES: tuple[RecordTable, ...] = (
    RecordTable(
        "patients",
        "a patient, by an opaque pseudonymous ID only",
        (_c("patient", "TEXT"), _c("created", "REAL")),
        (("patients_id", True, ("patient",)),),
    ),
    RecordTable(
        "courses",
        "a treatment course of a patient (SR-18)",
        (_c("patient_ref", "INTEGER", "patient"), _c("number", "INTEGER")),
        (("courses_patient", True, ("patient_ref", "number")),),
    ),
    RecordTable(
        "areas",
        "a treated area of a patient",
        (_c("patient_ref", "INTEGER", "patient"), _c("name", "TEXT", "area")),
        (("areas_patient", True, ("patient_ref", "name")),),
    ),
    RecordTable(
        "sessions",
        "a treatment session: patient, course, area",
        (
            _c("session", "TEXT"),
            _c("patient_ref", "INTEGER", "patient"),
            _c("course_ref", "INTEGER", "course"),
            _c("area_ref", "INTEGER", "area"),
            _c("started", "REAL"),
        ),
        (("sessions_id", True, ("session",)), ("sessions_patient", False, ("patient_ref",))),
    ),
    RecordTable(
        "contexts",
        "values many shots share, stored once: profile, parameter set, interlock snapshot",
        (_c("kind", "TEXT"),),
        (),
    ),
    RecordTable(
        "shots",
        "one pulse the device reported (SR-11)",
        (
            _c("session_ref", "INTEGER", "session"),
            _c("area_ref", "INTEGER", "area"),
            _c("serial", "TEXT"),
            _c("boot_id", "INTEGER", "boot"),
            _c("shot_no", "INTEGER", "shot"),
            _c("device_us", "INTEGER"),
            _c("set_value", "REAL", "set"),
            _c("measured", "REAL"),
            _c("fluence", "REAL"),
            _c("counted", "INTEGER"),
        ),
        (
            # exactly once per (handpiece, shot number, boot); also finds a shot number
            ("shots_once", True, ("serial", "shot_no", "boot_id")),
            ("shots_session", False, ("session_ref",)),
        ),
    ),
    RecordTable(
        "events",
        "state transitions, interlock changes, faults, refusals, overrides, service actions",
        (_c("at", "REAL"), _c("kind", "TEXT"), _c("session_ref", "INTEGER", "session")),
        (("events_session", False, ("session_ref",)), ("events_kind", False, ("kind",))),
    ),
    RecordTable(
        "calibrations",
        "a handpiece calibration (SR-14)",
        (_c("serial", "TEXT"), _c("stored_at", "REAL", "stored")),
        (("calibrations_serial", False, ("serial",)),),
    ),
)

TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)


def _table_sql(table: RecordTable) -> list[str]:
    generated = "".join(
        f",\n    {c.name} {c.sql_type}"
        f" GENERATED ALWAYS AS (json_extract(body, '$.{c.key}')) VIRTUAL"
        for c in table.columns
    )
    out = [
        f"CREATE TABLE {table.name} (\n"
        "    id INTEGER PRIMARY KEY,\n"
        "    prev BLOB NOT NULL,\n"
        "    hash BLOB NOT NULL,\n"
        f"    body TEXT NOT NULL{generated}\n)"
    ]
    for name, unique, cols in table.indexes:
        kind = "UNIQUE INDEX" if unique else "INDEX"
        out.append(f"CREATE {kind} {name} ON {table.name} ({', '.join(cols)})")
    return out + _append_only(table.name)


def _append_only(table: str) -> list[str]:
    # Append-only (SR-12): the software never changes a record; these stop it doing so by
    # mistake. Someone with the file can drop them, which `log verify` reports.
    return [
        f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}\n"
        f"BEGIN SELECT RAISE(ABORT, 'laserctl: {table} is append-only'); END"
        for op in ("UPDATE", "DELETE")
    ]


def _v1() -> list[str]:
    statements: list[str] = []
    for table in TABLES:
        statements += _table_sql(table)
    statements.append(
        "CREATE TABLE chain_heads (\n"
        "    tbl TEXT PRIMARY KEY,\n"
        "    count INTEGER NOT NULL,\n"
        "    last_id INTEGER NOT NULL,\n"
        "    hash BLOB NOT NULL\n)"
    )
    statements.append("CREATE UNIQUE INDEX contexts_body ON contexts (body)")
    return statements


def _v2() -> list[str]:
    """Signed checkpoints (checkpoints.py): the note's text as made, one row each, appended
    at every session end and by `laserctl log checkpoint`. Not a chain of its own: each
    checkpoint is signed, and what an attacker can do to this table (delete rows) is what
    shipping checkpoints off the console is for (docs/shot-log.md)."""
    return [
        "CREATE TABLE checkpoints (\n"
        "    id INTEGER PRIMARY KEY,\n"
        "    made_at TEXT NOT NULL,\n"
        "    text TEXT NOT NULL\n)",
        *_append_only("checkpoints"),
    ]


# The fleet outbox (laserctl/fleet, docs/fleet.md): per central store, console and table, the
# last row the central store acknowledged. Not a record and not chained: a bookkeeping row that
# only says where the next push starts; the central store re-checks whatever it is sent.
FLEET_OUTBOX = (
    "CREATE TABLE fleet_outbox (\n"
    "    store_id TEXT NOT NULL,\n"
    "    console_id TEXT NOT NULL,\n"
    "    tbl TEXT NOT NULL,\n"
    "    acked_id INTEGER NOT NULL,\n"
    "    acked_hash BLOB,\n"
    "    acked_at REAL NOT NULL,\n"
    "    PRIMARY KEY (store_id, console_id, tbl)\n)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (tuple(_v1()), tuple(_v2()), FLEET_OUTBOX)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(
            f"schema version {found} is newer than this laserctl knows ({SCHEMA_VERSION}): "
            "use a newer laserctl"
        )
        self.found = found


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION in one transaction; returns migrations run."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(found)
    if found == SCHEMA_VERSION:
        return 0
    db.execute("BEGIN IMMEDIATE")
    try:
        found = int(db.execute("PRAGMA user_version").fetchone()[0])  # another process won?
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION - found


def expected_schema() -> dict[tuple[str, str], str]:
    """(type, name) -> SQL of every table, index and trigger a current database has."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(db)
        return _schema_of(db)
    finally:
        db.close()


def _schema_of(db: sqlite3.Connection) -> dict[tuple[str, str], str]:
    rows = db.execute(
        "SELECT type, name, sql FROM sqlite_master"
        " WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
    )
    return {(str(t), str(n)): str(s) for t, n, s in rows}


def schema_differences(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(type, name, what) for every schema object that is missing, changed or unexpected."""
    want = expected_schema()
    have = _schema_of(db)
    out = []
    for key, sql in sorted(want.items()):
        if key not in have:
            out.append((key[0], key[1], "missing"))
        elif have[key] != sql:
            out.append((key[0], key[1], "definition changed"))
    for key in sorted(set(have) - set(want)):
        out.append((key[0], key[1], "not part of the laserctl schema"))
    return out
