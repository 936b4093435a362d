"""`laserctl log verify --central URL`: the checkpoints the central store holds of a console,
to hold its log to (records/verify.py does the holding). Together with the key the store
pinned for that console at its first push: those checkpoints must be signed with it."""

from __future__ import annotations

from dataclasses import dataclass

from laserctl.records import checkpoints
from laserctl.records.checkpoints import Checkpoint

from . import central
from .central import CentralError


@dataclass(frozen=True)
class CentralCheckpoints:
    where: str  # the store, without credentials
    console_id: str
    pinned_key: str
    checkpoints: list[Checkpoint]


def central_checkpoints(url: str, console_id: str) -> CentralCheckpoints:
    """Every checkpoint the store at `url` holds of `console_id`; raises CentralError when it
    cannot be read or has nothing of that console, CheckpointProblem for one that cannot be
    read (named)."""
    with central.connect(url) as store:
        found = store.conn.execute("SELECT to_regclass('fleet_checkpoints') IS NOT NULL").fetchone()
        if not found or not found[0]:
            raise CentralError(f"central store {store.where}: no laserctl fleet schema")
        pinned = store.pinned_key(console_id)
        if pinned is None:
            raise CentralError(
                f"central store {store.where}: console {console_id} never pushed there"
            )
        texts = store.checkpoint_texts(console_id)
        where = store.where
    parsed = [
        checkpoints.parse(text, f"central store {where}: checkpoint {n} of console {console_id}")
        for n, text in enumerate(texts, start=1)
    ]
    return CentralCheckpoints(where, console_id, pinned, parsed)
