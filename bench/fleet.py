"""The clinic chain: rows/s that `laserctl fleet push` ships to PostgreSQL, against a plain
COPY and a plain executemany of the same rows into the same server, in the same run.

The server is a private PostgreSQL 15 (scripts/pgserver.py: fsync off, a unix socket), so the
figures are about the client and the store's checks, not the disk. `fleet push` reads the rows
from the SQLite log, sends them in batches (COPY into a staging table, INSERT ... ON CONFLICT
DO NOTHING with the fork check, the store's chain-verifying trigger, one transaction a batch)
and advances the outbox after each. The baselines insert the very same (console, table, row,
body, hash, prev) tuples into a table of the same shape with no trigger: one COPY of all of
them in one transaction, and executemany in transactions of the same batch size.

Full run: 100,000 shots; --quick: 5,000.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from laserctl.auth import console_key
from laserctl.fleet.push import push
from laserctl.records import open_store
from laserctl.records.schema import TABLE_NAMES
from scripts import pgserver

from .logverify import CONTEXT, _shot

PUSH_BATCH = 1000
PLAIN = (
    "CREATE TABLE {name} (console_id text NOT NULL, tbl text NOT NULL, row_id bigint NOT NULL,"
    " body text NOT NULL, hash bytea NOT NULL, prev bytea NOT NULL,"
    " received_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (console_id, tbl, row_id))"
)


def _log(path: Path, shots: int, key: console_key.ConsoleKey) -> None:
    store = open_store(path, console_key=lambda: key)
    sid = store.begin_session("P-0001", "abdomen", context=lambda: CONTEXT)
    for first in range(1, shots + 1, 10_000):
        store.record_many(_shot(sid, n) for n in range(first, min(first + 10_000, shots + 1)))
    store.end_session(sid)
    store.close()


def _rows(path: Path, console: str) -> list[tuple[str, str, int, str, bytes, bytes]]:
    db = sqlite3.connect(path)
    try:
        return [
            (console, table, int(i), str(body), bytes(h), bytes(p))
            for table in TABLE_NAMES
            for i, p, h, body in db.execute(f"SELECT id, prev, hash, body FROM {table} ORDER BY id")
        ]
    finally:
        db.close()


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    shots = 5_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp, pgserver.running() as server:
        key = console_key.load_or_create(Path(tmp) / "console.pem")
        db = Path(tmp) / "bench.db"
        _log(db, shots, key)
        rows = _rows(db, key.console_id)
        url = server.url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PLAIN.format(name="plain_copy"))
            conn.execute(PLAIN.format(name="plain_many"))

        start = time.perf_counter()
        report = push(db, url, key=key, batch=PUSH_BATCH)
        push_s = time.perf_counter() - start
        assert sum(report.shipped.values()) == len(rows), report.to_json()

        with psycopg.connect(url) as conn:
            start = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                columns = "console_id, tbl, row_id, body, hash, prev"
                with cur.copy(f"COPY plain_copy ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            copy_s = time.perf_counter() - start

            start = time.perf_counter()
            for first in range(0, len(rows), PUSH_BATCH):
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO plain_many (console_id, tbl, row_id, body, hash, prev)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        rows[first : first + PUSH_BATCH],
                    )
            many_s = time.perf_counter() - start
            counts = [
                conn.execute(f"SELECT count(*) FROM {t}").fetchone()
                for t in ("fleet_rows", "plain_copy", "plain_many")
            ]
        assert all(c is not None and c[0] == len(rows) for c in counts), counts

    n = len(rows)
    push_rate, copy_rate, many_rate = n / push_s, n / copy_s, n / many_s
    name = f"fleet push rows/s ({n} rows, {shots} shots, {PUSH_BATCH} a transaction)"
    return [
        {
            "name": f"{name} vs COPY",
            "value": push_rate,
            "unit": "rows/s",
            "baseline": copy_rate,
            "baseline_name": "one plain COPY of the same rows, no checks",
            "ratio": push_rate / copy_rate,
        },
        {
            "name": f"{name} vs executemany",
            "value": push_rate,
            "unit": "rows/s",
            "baseline": many_rate,
            "baseline_name": f"plain executemany, {PUSH_BATCH} a transaction, no checks",
            "ratio": push_rate / many_rate,
        },
    ]
