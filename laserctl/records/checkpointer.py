"""Making the log's signed checkpoints (checkpoints.py) as it is written: at every session end,
in the session end's own transaction, and on request (`laserctl log checkpoint`).

A session end is never lost to its checkpoint: when the console key cannot be had or the
checkpoint cannot be stored, the session end is logged all the same, saying so in its data
(`"checkpoint": false`, `"checkpoint_problem": ...`). A session end that says `"checkpoint":
true` was stored together with a checkpoint covering it, which is what lets `log verify`
notice local checkpoints deleted afterwards.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from . import checkpoints
from .checkpoints import Checkpoint
from .txn import Txn

if TYPE_CHECKING:
    from laserctl.auth.console_key import ConsoleKey

KeySource = Callable[[], "ConsoleKey"]


def default_key() -> ConsoleKey:
    from laserctl.auth import console_key

    return console_key.load_or_create()


class Checkpointer:
    def __init__(self, key_source: KeySource | None, clock: Callable[[], float]) -> None:
        self._key_source = key_source or default_key
        self._clock = clock
        self._key: ConsoleKey | None = None

    def key(self) -> ConsoleKey:
        """The console key, loaded (or made) on first use; raises auth.keys.KeyProblem, and
        is tried again next time."""
        if self._key is None:
            self._key = self._key_source()
        return self._key

    def make(self, txn: Txn) -> Checkpoint:
        """A checkpoint of what `txn` has chained so far, stored in it."""
        checkpoint = checkpoints.make(txn, self.key(), self._clock())
        checkpoints.save(txn.db.conn, checkpoint)
        return checkpoint

    def with_checkpoint(
        self, txn: Txn, append: Callable[[Mapping[str, object]], int]
    ) -> Checkpoint | None:
        """append(extra data) a record (the session end) and a checkpoint covering it, in
        `txn`; if no checkpoint can be made, the record alone, saying why."""
        from laserctl.auth.keys import KeyProblem

        try:
            key = self.key()
        except KeyProblem as exc:
            append({"checkpoint": False, "checkpoint_problem": str(exc)})
            return None
        conn = txn.db.conn
        heads = dict(txn.heads)
        conn.execute("SAVEPOINT checkpoint")
        try:
            append({"checkpoint": True})
            checkpoint = checkpoints.make(txn, key, self._clock())
            checkpoints.save(conn, checkpoint)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO checkpoint")
                conn.execute("RELEASE checkpoint")
            txn.heads.clear()
            txn.heads.update(heads)
            append({"checkpoint": False, "checkpoint_problem": f"not stored: {exc}"})
            return None
        conn.execute("RELEASE checkpoint")
        return checkpoint
