"""Verifying the shot log (SR-12): every chain, the chain heads, the schema, anchors kept
from earlier reports, and signed checkpoints (those stored in the log and any given: shipped
off the console, from the central store). What each problem means: docs/shot-log.md."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import chain, checkpoints
from .checkpoints import Checkpoint, CheckpointProblem
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
    checkpoints: int = 0  # signed checkpoints the log was held to (local and given)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "records": self.records,
            "anchors": self.anchors,
            "seconds": round(self.seconds, 3),
            "checkpoints": self.checkpoints,
            "problems": [
                {"table": p.table, "row": p.row_id, "what": p.what} for p in self.problems
            ],
        }


def verify(
    db: Database,
    anchors: Sequence[str] = (),
    checkpoints: Sequence[Checkpoint] = (),
    *,
    console_public: str | None = None,
) -> VerifyReport:
    """Check every chain, the chain heads and the schema, that each anchor
    ("table:row:sha256", from an earlier verify or report) still holds, and that the log
    still holds what each checkpoint signed: every one stored in the log and `checkpoints`
    (given: from files, the central store). A checkpoint not signed by `console_public`
    (default: the key of the first checkpoint) is itself a problem."""
    started = time.perf_counter()
    with db.lock:
        conn = db.conn
        try:
            differences = schema_differences(conn)
            problems: list[chain.Problem] = [
                chain.Problem(kind, None, f"schema: {name} {what}")
                for kind, name, what in differences
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
            has_table = ("table", "checkpoints", "missing") not in differences
            held, found = _check_checkpoints(conn, has_table, checkpoints, console_public)
            problems += found
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
        held,
    )


def _check_checkpoints(
    conn: sqlite3.Connection,
    has_table: bool,
    given: Sequence[Checkpoint],
    console_public: str | None,
) -> tuple[int, list[chain.Problem]]:
    """(how many checkpoints held the log, the problems): unreadable or untrusted checkpoints,
    then per table what the checkpoints say is gone or rewritten, then a session end whose
    checkpoint is gone."""
    problems: list[chain.Problem] = []
    candidates: list[tuple[int | None, Checkpoint]] = []  # (row in the log or None, it)
    for stored_id, _, cp in checkpoints.stored(conn) if has_table else []:
        if isinstance(cp, CheckpointProblem):
            problems.append(chain.Problem("checkpoints", stored_id, f"unreadable: {cp.what}"))
        else:
            candidates.append((stored_id, cp))
    known = {cp.text() for _, cp in candidates}
    for cp in given:
        if cp.text() not in known:  # a copy of one stored in the log counts once
            known.add(cp.text())
            candidates.append((None, cp))
    trusted = console_public or (candidates[0][1].public_key if candidates else None)
    valid: list[Checkpoint] = []
    for row_id, cp in candidates:
        try:
            checkpoints.check_signature(cp, trusted)
        except CheckpointProblem as exc:
            where = cp.label() if row_id is not None else f"given {cp.label()}"
            problems.append(chain.Problem("checkpoints", row_id, f"{where}: {exc.what}"))
        else:
            valid.append(cp)
    problems += _held_to(conn, valid)
    problems += _session_ends_covered(conn, valid)
    return len(valid), problems


def _held_to(conn: sqlite3.Connection, valid: Sequence[Checkpoint]) -> list[chain.Problem]:
    """Each table's disagreement with the checkpoints, said once: for rows gone, by the
    checkpoint naming the most; for a rewrite, by the earliest one it breaks, with the rows
    it lies in (after the last checkpoint that still holds)."""
    failing: dict[tuple[str, str], list[tuple[int, chain.Problem]]] = {}
    holding: dict[str, list[int]] = {}
    for cp in valid:
        found_here = checkpoints.check_log(conn, cp)
        broken = {p.table for p in found_here}
        for problem in found_here:
            kind = problem.what.split(":")[0]
            failing.setdefault((problem.table, kind), []).append((cp.sizes[problem.table], problem))
        for table, size in cp.sizes.items():
            if table not in broken:
                holding.setdefault(table, []).append(size)
    out: list[chain.Problem] = []
    for (table, kind), found in failing.items():
        found.sort(key=lambda f: f[0])
        size, problem = found[-1] if kind == "deleted" else found[0]
        what = problem.what
        if kind == "rewritten":
            below = max((s for s in holding.get(table, []) if s < size), default=0)
            what += f"; the change lies in rows {below + 1}..{size}"
        if len(found) > 1:
            what += f" ({len(found) - 1} more checkpoint(s) say so too)"
        out.append(chain.Problem(table, problem.row_id, what))
    return out


def _session_ends_covered(
    conn: sqlite3.Connection, valid: Sequence[Checkpoint]
) -> list[chain.Problem]:
    """The last session end stored with a checkpoint (checkpointer.py) must be covered by a
    checkpoint still known: if none is, the log's checkpoints were deleted."""
    row = conn.execute(
        "SELECT max(id) FROM events WHERE kind = 'session_end'"
        " AND json_extract(body, '$.data.checkpoint') = 1"
    ).fetchone()
    last = row[0] if row else None
    if last is None or any(cp.sizes.get("events", 0) >= last for cp in valid):
        return []
    return [
        chain.Problem(
            "events",
            int(last),
            "this session end was stored with a checkpoint, and no checkpoint covering it is "
            "left: the log's checkpoints were deleted",
        )
    ]


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
