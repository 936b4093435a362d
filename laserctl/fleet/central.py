"""The chain's central store: PostgreSQL (psycopg 3), one copy of every console's shot log.

Every chained SQLite table is mirrored generically in `fleet_rows` (console, table, row id,
body exactly as stored, hash, prev), so the chain re-verifies centrally:
hash = SHA-256(prev || body), prev of row 1 = chain.genesis(table), prev of row n = hash of row
n-1. The store checks that itself, on arrival: an AFTER INSERT statement trigger refuses any
insert whose rows do not chain onto what is stored, whoever sends it (SQLSTATE LF001, the
message names console, table and row). Stored rows cannot be updated or deleted (triggers; the
database owner can drop them, see docs/fleet.md). Checkpoints (signed by the console) are
checked by the pushing laserctl against the pinned key and the stored rows (push.py), since
PostgreSQL has no Ed25519; their text is stored, so anyone can re-check them.

Migrations are an ordered list; `fleet_schema_version` holds how many have run. Other modules
(laserctl/fleet/courses.py) add theirs by appending to MIGRATIONS, never by editing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from .course_index import COURSE_INDEXES

REFUSED = "LF001"  # SQLSTATE of a refusal raised by the store's own checks

_V1 = (
    "CREATE TABLE fleet_meta (store_id text NOT NULL, created timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO fleet_meta (store_id) VALUES (gen_random_uuid()::text)",
    "CREATE TABLE consoles (console_id text PRIMARY KEY, public_key text NOT NULL,"
    " first_seen timestamptz NOT NULL, last_push timestamptz)",
    "CREATE TABLE fleet_rows (console_id text NOT NULL REFERENCES consoles,"
    " tbl text NOT NULL, row_id bigint NOT NULL, body text NOT NULL, hash bytea NOT NULL,"
    " prev bytea NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (console_id, tbl, row_id))",
    "CREATE TABLE fleet_checkpoints (console_id text NOT NULL REFERENCES consoles,"
    " made_at text NOT NULL, text text NOT NULL,"
    " received_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (console_id, made_at))",
    "CREATE TABLE fleet_refusals (id bigserial PRIMARY KEY, console_id text NOT NULL,"
    " tbl text, row_id bigint, what text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
    "CREATE FUNCTION fleet_genesis(tbl text) RETURNS bytea LANGUAGE sql IMMUTABLE AS"
    " $$ SELECT sha256(convert_to('laserctl shot log v1 ' || tbl, 'UTF8')) $$",
    # Verification on arrival: every inserted row hashes to its hash, and chains onto the row
    # before it (stored earlier or in the same statement); row ids run 1, 2, 3, ... per table.
    """CREATE FUNCTION fleet_rows_arrived() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad record;
BEGIN
    SELECT a.console_id, a.tbl, a.row_id,
           CASE WHEN a.row_id < 1 THEN 'row ids start at 1'
                WHEN a.hash <> sha256(a.prev || convert_to(a.body, 'UTF8'))
                    THEN 'its hash does not match its content'
                WHEN a.row_id = 1 THEN 'row 1 is not chained to the start of the chain'
                WHEN p.row_id IS NULL THEN format('row %s before it was never shipped',
                                                  a.row_id - 1)
                ELSE format('it does not chain onto row %s as stored centrally (a fork)',
                            a.row_id - 1)
           END AS what
      INTO bad
      FROM arrived a
      LEFT JOIN fleet_rows p
        ON p.console_id = a.console_id AND p.tbl = a.tbl AND p.row_id = a.row_id - 1
     WHERE a.row_id < 1
        OR a.hash <> sha256(a.prev || convert_to(a.body, 'UTF8'))
        OR (a.row_id = 1 AND a.prev <> fleet_genesis(a.tbl))
        OR (a.row_id > 1 AND (p.row_id IS NULL OR p.hash <> a.prev))
     ORDER BY a.console_id, a.tbl, a.row_id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'LF001',
            MESSAGE = format('refused: console %s table %s row %s: %s',
                             bad.console_id, bad.tbl, bad.row_id, bad.what),
            DETAIL = format('%s %s %s', bad.tbl, bad.row_id, bad.what);
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER fleet_rows_verify AFTER INSERT ON fleet_rows"
    " REFERENCING NEW TABLE AS arrived FOR EACH STATEMENT EXECUTE FUNCTION fleet_rows_arrived()",
    """CREATE FUNCTION fleet_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'LF001',
        MESSAGE = format('refused: %s is append-only', TG_TABLE_NAME);
END $$""",
    "CREATE TRIGGER fleet_rows_no_change BEFORE UPDATE OR DELETE ON fleet_rows"
    " FOR EACH ROW EXECUTE FUNCTION fleet_append_only()",
    "CREATE TRIGGER fleet_rows_no_truncate BEFORE TRUNCATE ON fleet_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION fleet_append_only()",
    "CREATE TRIGGER fleet_checkpoints_no_change BEFORE UPDATE OR DELETE ON fleet_checkpoints"
    " FOR EACH ROW EXECUTE FUNCTION fleet_append_only()",
)

# Append only; each entry is one migration's statements, run in one transaction.
MIGRATIONS: list[tuple[str, ...]] = [_V1, COURSE_INDEXES]  # 2: course_index.py


class CentralError(Exception):
    """The central store cannot be reached or used; the message names it and what failed."""


class FleetRefused(CentralError):
    """The central store refused what a console sent: a fork, a forged or truncated log, a
    different key. Recorded in fleet_refusals."""

    def __init__(self, console_id: str, table: str | None, row_id: int | None, what: str):
        where = f"console {console_id}"
        if table is not None:
            where += f" table {table}"
        if row_id is not None:
            where += f" row {row_id}"
        super().__init__(f"refused: {where}: {what}")
        self.console_id = console_id
        self.table = table
        self.row_id = row_id
        self.what = what


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparsable PostgreSQL URL>"
    host = info.get("host") or "localhost"
    return f"postgresql://{info.get('user') or ''}@{host}:{info.get('port') or 5432}/" + str(
        info.get("dbname") or ""
    )


@dataclass(frozen=True)
class StoredHead:
    row_id: int  # 0: nothing stored
    hash: bytes | None


@dataclass(frozen=True)
class Staged:
    inserted: int  # rows new to the store
    fork_at: int | None  # the first row that differs from the stored copy (nothing stored)


class Central:
    """One open connection to the central store (autocommit; multi-statement work in
    `conn.transaction()` blocks). Not shared between threads."""

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self.conn = conn
        self.url = url
        self.where = redact(url)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Central:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- schema ---------------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema up to date (idempotent, safe with concurrent callers); returns how
        many migrations ran."""
        with self.conn.transaction():
            encoding = self.conn.execute("SHOW server_encoding").fetchone()
            if encoding is None or str(encoding[0]).upper() not in ("UTF8", "UTF-8"):
                raise CentralError(
                    f"central store {self.where}: database encoding {encoding} is not UTF8 "
                    "(the chains hash UTF-8 text): create it with ENCODING 'UTF8'"
                )
            self.conn.execute("SELECT pg_advisory_xact_lock(7514001)")  # one migrator at a time
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS fleet_schema_version (version int NOT NULL)"
            )
            row = self.conn.execute("SELECT max(version) FROM fleet_schema_version").fetchone()
            found = int(row[0]) if row is not None and row[0] is not None else 0
            if found > len(MIGRATIONS):
                raise CentralError(
                    f"central store {self.where}: schema version {found} is newer than this "
                    f"laserctl knows ({len(MIGRATIONS)}): use a newer laserctl"
                )
            for version in range(found, len(MIGRATIONS)):
                for statement in MIGRATIONS[version]:
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO fleet_schema_version (version) VALUES (%s)", (version + 1,)
                )
        return len(MIGRATIONS) - found

    def store_id(self) -> str:
        row = self.conn.execute("SELECT store_id FROM fleet_meta").fetchone()
        if row is None:
            raise CentralError(f"central store {self.where}: no fleet_meta row")
        return str(row[0])

    # ---- consoles -------------------------------------------------------------------------
    def pin_console(self, console_id: str, public_key: str) -> None:
        """Pin the console's key on its first push; a different key later is refused."""
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO consoles (console_id, public_key, first_seen) VALUES (%s, %s, now())"
                " ON CONFLICT (console_id) DO NOTHING",
                (console_id, public_key),
            )
            row = self.conn.execute(
                "SELECT public_key FROM consoles WHERE console_id = %s", (console_id,)
            ).fetchone()
        if row is None or row[0] != public_key:
            raise self.refuse(
                FleetRefused(
                    console_id,
                    None,
                    None,
                    f"its public key {public_key} differs from the one pinned at its first "
                    f"push ({row[0] if row else None})",
                )
            )

    def pinned_key(self, console_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT public_key FROM consoles WHERE console_id = %s", (console_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def refuse(self, refusal: FleetRefused) -> FleetRefused:
        """Record the refusal centrally (own transaction) and return it, to be raised."""
        try:
            with self.conn.transaction():
                self.conn.execute(
                    "INSERT INTO fleet_refusals (console_id, tbl, row_id, what)"
                    " VALUES (%s, %s, %s, %s)",
                    (refusal.console_id, refusal.table, refusal.row_id, refusal.what),
                )
        except psycopg.Error:
            pass  # the refusal stands even if it cannot be written down
        return refusal

    # ---- rows -----------------------------------------------------------------------------
    def head(self, console_id: str, table: str) -> StoredHead:
        row = self.conn.execute(
            "SELECT row_id, hash FROM fleet_rows WHERE console_id = %s AND tbl = %s"
            " ORDER BY row_id DESC LIMIT 1",
            (console_id, table),
        ).fetchone()
        if row is None:
            return StoredHead(0, None)
        return StoredHead(int(row[0]), bytes(row[1]))

    def hash_at(self, console_id: str, table: str, row_id: int) -> bytes | None:
        row = self.conn.execute(
            "SELECT hash FROM fleet_rows WHERE console_id = %s AND tbl = %s AND row_id = %s",
            (console_id, table, row_id),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def stage_rows(
        self, console_id: str, table: str, rows: Sequence[tuple[int, bytes, bytes, str]]
    ) -> Staged:
        """Inside an open transaction: store (row_id, prev, hash, body) rows idempotently:
        rows already stored with the same hash are skipped; a row that differs from the stored
        copy is a fork (nothing is stored; the caller rolls back). The store's trigger raises
        on rows that do not chain (a psycopg error with sqlstate LF001)."""
        conn = self.conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS fleet_incoming (row_id bigint PRIMARY KEY,"
            " prev bytea NOT NULL, hash bytea NOT NULL, body text NOT NULL)"
            " ON COMMIT DELETE ROWS"
        )
        with conn.cursor() as cur:
            with cur.copy("COPY fleet_incoming (row_id, prev, hash, body) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            differs = cur.execute(
                "SELECT i.row_id FROM fleet_incoming i JOIN fleet_rows f"
                " ON f.console_id = %s AND f.tbl = %s AND f.row_id = i.row_id"
                " WHERE f.hash <> i.hash ORDER BY i.row_id LIMIT 1",
                (console_id, table),
            ).fetchone()
            if differs is not None:
                return Staged(0, int(differs[0]))
            cur.execute(
                "INSERT INTO fleet_rows (console_id, tbl, row_id, body, hash, prev)"
                " SELECT %s, %s, row_id, body, hash, prev FROM fleet_incoming ORDER BY row_id"
                " ON CONFLICT DO NOTHING",
                (console_id, table),
            )
            inserted = cur.rowcount
            cur.execute(
                "UPDATE consoles SET last_push = now() WHERE console_id = %s", (console_id,)
            )
        return Staged(max(inserted, 0), None)

    def lock_console(self, console_id: str) -> None:
        """Inside a transaction: one push per console at a time (the CLI and the console's
        background worker may both push)."""
        self.conn.execute("SELECT 1 FROM consoles WHERE console_id = %s FOR UPDATE", (console_id,))

    # ---- checkpoints ----------------------------------------------------------------------
    def checkpoint_texts(self, console_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT text FROM fleet_checkpoints WHERE console_id = %s ORDER BY made_at",
            (console_id,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def store_checkpoint(self, console_id: str, made_at: str, text: str) -> bool:
        """Inside a transaction: store a checkpoint; False if a different one with the same
        made_at is already there (a forgery or a second key)."""
        self.conn.execute(
            "INSERT INTO fleet_checkpoints (console_id, made_at, text) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (console_id, made_at, text),
        )
        row = self.conn.execute(
            "SELECT text FROM fleet_checkpoints WHERE console_id = %s AND made_at = %s",
            (console_id, made_at),
        ).fetchone()
        return row is not None and row[0] == text


def connect(url: str, *, timeout: float = 10.0, statement_timeout_s: float = 120.0) -> Central:
    """Open the central store at `url` (postgresql://... or a libpq conninfo string); no
    connect and no statement waits longer than its timeout."""
    try:
        conn = psycopg.connect(
            url,
            connect_timeout=max(1, int(timeout)),
            autocommit=True,
            options=f"-c statement_timeout={int(statement_timeout_s * 1000)}",
        )
    except psycopg.Error as exc:
        raise CentralError(
            f"central store {redact(url)}: cannot connect: {_first_line(exc)}"
        ) from None
    return Central(conn, url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
