"""Shipping the console's signed checkpoints (records/checkpoints.py) and checking them on
arrival: signed by the key pinned for the console, and agreeing with the rows the central
store holds (table t's row number sizes[t] has hash heads[t]).

A checkpoint whose rows the store does not hold yet is left for a later push (the outbox does
not advance past it). One that fails is refused, recorded and raised, naming the checkpoint
and, where the rows disagree, the table and row.
"""

from __future__ import annotations

from laserctl.auth.console_key import ConsoleKey
from laserctl.records import chain, checkpoints

from .central import Central, FleetRefused
from .outbox import CHECKPOINTS, Outbox

__all__ = ["CHECKPOINTS", "check_against_store", "local_checkpoints", "ship"]


def local_checkpoints(outbox: Outbox, after: int) -> list[tuple[int, str, str]]:
    """(id, made_at, text) of the log's checkpoints with id > after; none if the log has no
    checkpoints table."""
    if CHECKPOINTS not in outbox.tables():
        return []
    rows = outbox.conn.execute(
        "SELECT id, made_at, text FROM checkpoints WHERE id > ? ORDER BY id", (after,)
    ).fetchall()
    return [(int(i), str(m), str(t)) for i, m, t in rows]


def ship(store: Central, outbox: Outbox, key: ConsoleKey) -> int:
    """Ship the checkpoints not yet acknowledged; returns how many the store took."""
    console = outbox.console_id
    pinned = store.pinned_key(console) or key.public_text()
    shipped = 0
    for cp_id, made_at, text in local_checkpoints(outbox, outbox.acked(CHECKPOINTS)):
        where = f"checkpoint {cp_id} ({made_at})"
        try:
            cp = checkpoints.parse(text, f"{outbox.path} {where}")
            checkpoints.check_signature(cp, pinned)
        except checkpoints.CheckpointProblem as exc:
            raise store.refuse(FleetRefused(console, CHECKPOINTS, cp_id, str(exc))) from None
        if cp.console_id != console:
            raise store.refuse(
                FleetRefused(console, CHECKPOINTS, cp_id, f"{where} is console {cp.console_id}'s")
            )
        if not _rows_stored(store, cp, console):
            break  # its rows are not all shipped yet: next push
        problem = check_against_store(store, cp, console)
        if problem is not None:
            table, row_id, what = problem
            raise store.refuse(FleetRefused(console, table, row_id, f"{where}: {what}"))
        with store.conn.transaction():
            store.lock_console(console)
            same = store.store_checkpoint(console, cp.made_at, text)
        if not same:
            raise store.refuse(
                FleetRefused(
                    console,
                    CHECKPOINTS,
                    cp_id,
                    f"{where}: a different checkpoint made at {cp.made_at} is stored centrally",
                )
            )
        outbox.advance(CHECKPOINTS, cp_id, None)
        shipped += 1
    return shipped


def _rows_stored(store: Central, cp: checkpoints.Checkpoint, console: str) -> bool:
    return all(
        size == 0 or store.head(console, table).row_id >= size for table, size in cp.sizes.items()
    )


def check_against_store(
    store: Central, cp: checkpoints.Checkpoint, console: str
) -> tuple[str, int | None, str] | None:
    """(table, row, what) of the first disagreement between `cp` and the stored rows."""
    for table, size in cp.sizes.items():
        want = cp.heads[table]
        if size == 0:
            if want != chain.genesis(table):
                return table, None, "an empty table's head is not the start of its chain"
            continue
        have = store.hash_at(console, table, size)
        if have is None:
            return table, size, f"the checkpoint names {size} records; row {size} is not stored"
        if have != want:
            return (
                table,
                size,
                f"the checkpoint's head for {size} records differs from the stored row {size}",
            )
    return None
