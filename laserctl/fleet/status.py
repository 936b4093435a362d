"""`laserctl fleet status`: per console, what the central store holds (shipped), what a local
log still has to send (pending), and what was verified (the last checkpoint, re-checked now
against the stored rows and the pinned key; the refusals recorded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from laserctl.records import checkpoints

from . import checkpoint_ship
from .central import Central, CentralError
from .outbox import Outbox


def status(
    store: Central, *, db: str | Path | None = None, console_id: str | None = None
) -> dict[str, Any]:
    """What `fleet status --json` prints. With `db` (and the console id of that log), the
    rows it holds that the store does not are counted as pending."""
    found = store.conn.execute("SELECT to_regclass('fleet_rows') IS NOT NULL").fetchone()
    if not found or not found[0]:
        raise CentralError(
            f"central store {store.where}: no laserctl fleet schema (nothing pushed yet)"
        )
    consoles = []
    for cid, public_key, first_seen, last_push in store.conn.execute(
        "SELECT console_id, public_key, first_seen, last_push FROM consoles ORDER BY console_id"
    ).fetchall():
        consoles.append(_console(store, str(cid), str(public_key), first_seen, last_push))
    result: dict[str, Any] = {
        "central": store.where,
        "store": store.store_id(),
        "consoles": consoles,
    }
    if db is not None and console_id is not None:
        result["local"] = _pending(store, db, console_id)
    return result


def _console(
    store: Central, cid: str, public_key: str, first_seen: Any, last_push: Any
) -> dict[str, Any]:
    shipped = {
        str(t): {"rows": int(n), "last_row": int(m)}
        for t, n, m in store.conn.execute(
            "SELECT tbl, count(*), max(row_id) FROM fleet_rows WHERE console_id = %s"
            " GROUP BY tbl ORDER BY tbl",
            (cid,),
        )
    }
    texts = store.checkpoint_texts(cid)
    verified: dict[str, Any] = {
        "checkpoints": len(texts),
        "last": None,
        "ok": None,
        "problem": None,
    }
    if texts:
        try:
            cp = checkpoints.parse(texts[-1], f"central checkpoint of console {cid}")
            checkpoints.check_signature(cp, public_key)
            problem = checkpoint_ship.check_against_store(store, cp, cid)
            verified.update(
                last=cp.made_at,
                ok=problem is None,
                problem=None if problem is None else f"{problem[0]} row {problem[1]}: {problem[2]}",
            )
        except checkpoints.CheckpointProblem as exc:
            verified.update(ok=False, problem=str(exc))
    refused = store.conn.execute(
        "SELECT count(*), max(id) FROM fleet_refusals WHERE console_id = %s", (cid,)
    ).fetchone()
    last_refusal = None
    if refused is not None and refused[1] is not None:
        row = store.conn.execute(
            "SELECT at, tbl, row_id, what FROM fleet_refusals WHERE id = %s", (refused[1],)
        ).fetchone()
        if row is not None:
            last_refusal = {
                "at": row[0].isoformat(),
                "table": row[1],
                "row": row[2],
                "what": row[3],
            }
    return {
        "console": cid,
        "public_key": public_key,
        "first_seen": first_seen.isoformat() if first_seen else None,
        "last_push": last_push.isoformat() if last_push else None,
        "shipped": shipped,
        "verified": verified,
        "refusals": {"count": int(refused[0]) if refused else 0, "last": last_refusal},
    }


def _pending(store: Central, db: str | Path, console_id: str) -> dict[str, Any]:
    outbox = Outbox.open(db, store.store_id(), console_id)
    try:
        pending: dict[str, int] = {}
        for table in outbox.shipped_tables():
            head = store.head(console_id, table)
            row = outbox.conn.execute(
                f"SELECT count(*) FROM {table} WHERE id > ?", (head.row_id,)
            ).fetchone()
            pending[table] = int(row[0]) if row else 0
        acked = outbox.acked(checkpoint_ship.CHECKPOINTS)
        pending[checkpoint_ship.CHECKPOINTS] = len(checkpoint_ship.local_checkpoints(outbox, acked))
        return {"db": str(outbox.path), "console": console_id, "pending": pending}
    finally:
        outbox.close()


def text_lines(report: dict[str, Any]) -> list[str]:
    """The human-readable form."""
    lines = [f"central store {report['central']} (store {report['store']})"]
    if not report["consoles"]:
        lines.append("  no console has pushed yet")
    for c in report["consoles"]:
        rows = sum(t["rows"] for t in c["shipped"].values())
        lines.append(
            f"console {c['console']}: {rows} rows shipped, last push {c['last_push'] or 'never'}"
        )
        for table, t in c["shipped"].items():
            lines.append(f"  {table}: {t['rows']} rows (up to row {t['last_row']})")
        v = c["verified"]
        if v["last"] is None and v["ok"] is None:
            lines.append(f"  verified: {v['checkpoints']} checkpoints")
        elif v["ok"]:
            lines.append(f"  verified: {v['checkpoints']} checkpoints, last {v['last']}: holds")
        else:
            lines.append(f"  verified: NOT: {v['problem']}")
        r = c["refusals"]
        if r["count"]:
            last = r["last"]
            lines.append(f"  refused {r['count']} time(s), last {last['at']}: {last['what']}")
    local = report.get("local")
    if local is not None:
        waiting = {t: n for t, n in local["pending"].items() if n}
        summary = ", ".join(f"{n} {t}" for t, n in waiting.items()) or "nothing"
        lines.append(f"pending in {local['db']} (console {local['console']}): {summary}")
    return lines
