"""Verifying the shot log (SR-12): every chain, the chain heads, the schema, and anchors kept
from earlier reports. What each problem means: docs/shot-log.md."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import chain
from .db import Database
from .schema import TABLE_NAMES, schema_differences


@dataclass(frozen=True, slots=True)
class VerifyReport:
    path: str
    ok: bool
    problems: list[chain.Problem]
    records: dict[str, int]
    anchors: list[str]  # "table:row:sha256" of each table's last record: keep, check later
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "records": self.records,
            "anchors": self.anchors,
            "seconds": round(self.seconds, 3),
            "problems": [
                {"table": p.table, "row": p.row_id, "what": p.what} for p in self.problems
            ],
        }


def verify(db: Database, anchors: Sequence[str] = ()) -> VerifyReport:
    """Check every chain, the chain heads and the schema, and that each anchor
    ("table:row:sha256", from an earlier verify or report) still holds."""
    started = time.perf_counter()
    with db.lock:
        conn = db.conn
        try:
            problems: list[chain.Problem] = [
                chain.Problem(kind, None, f"schema: {name} {what}")
                for kind, name, what in schema_differences(conn)
            ]
            heads = {
                str(t): chain.Head(int(c), int(i), bytes(h))
                for t, c, i, h in conn.execute("SELECT tbl, count, last_id, hash FROM chain_heads")
            }
            results = []
            for table in TABLE_NAMES:
                result = chain.verify_table(conn, table, heads.get(table))
                results.append(result)
                problems += result.problems
            for anchor in anchors:
                problem = _check_anchor(conn, anchor)
                if problem is not None:
                    problems.append(problem)
            current = [
                f"{t}:{row[0]}:{bytes(row[1]).hex()}"
                for t in TABLE_NAMES
                for row in conn.execute(f"SELECT id, hash FROM {t} ORDER BY id DESC LIMIT 1")
            ]
        except sqlite3.Error as exc:
            raise db.fail("verifying", exc) from None
    return VerifyReport(
        str(db.path),
        not problems,
        problems,
        {r.table: r.records for r in results},
        current,
        time.perf_counter() - started,
    )


def _check_anchor(conn: sqlite3.Connection, anchor: str) -> chain.Problem | None:
    try:
        table, row, digest = anchor.split(":")
        row_id = int(row)
        expected = bytes.fromhex(digest)
    except ValueError:
        return chain.Problem("anchor", None, f"{anchor!r} is not table:row:sha256")
    if table not in TABLE_NAMES:
        return chain.Problem("anchor", None, f"{anchor!r}: no table {table!r}")
    found = conn.execute(f"SELECT hash FROM {table} WHERE id = ?", (row_id,)).fetchone()
    if found is None:
        return chain.Problem(table, row_id, f"anchor {anchor}: the row is gone (deleted)")
    if bytes(found[0]) != expected:
        return chain.Problem(
            table,
            row_id,
            f"anchor {anchor}: the row's hash differs: the chain up to it was rewritten",
        )
    return None
