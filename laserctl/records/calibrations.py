"""Handpiece calibrations in the shot log (SR-14): each one a record in its own chain, its
storing a `service` event. What a calibration holds and when it is valid: laserctl.calibration."""

from __future__ import annotations

import json
from collections.abc import Callable

from .db import Database
from .events import StagedEvent, append_event


class Calibrations:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock

    def add(self, serial: str, handpiece: str, who: str, record: dict[str, object]) -> int:
        """Store a calibration; returns its id."""
        now = self._clock()
        with self._db.transaction(f"storing a calibration of {serial}") as txn:
            ref = txn.append(
                "calibrations",
                {
                    "stored": now,
                    "serial": serial,
                    "handpiece": handpiece,
                    "who": who,
                    "record": record,
                },
            )
            append_event(
                txn,
                StagedEvent(
                    "service",
                    f"calibration {ref} of {handpiece} {serial} stored",
                    now,
                    who=who,
                    data={"action": "calibration", "calibration": ref, "serial": serial},
                ),
                None,
            )
        return ref

    def of(self, serial: str) -> list[dict[str, object]]:
        """The handpiece's calibrations, newest first: the record plus id, who, stored_at."""
        rows = self._db.query(
            "SELECT id, body FROM calibrations WHERE serial = ? ORDER BY id DESC", (serial,)
        )
        out: list[dict[str, object]] = []
        for ref, body in rows:
            data = json.loads(body)
            record = data.get("record") or {}
            out.append(
                {
                    **(record if isinstance(record, dict) else {"record": record}),
                    "id": int(ref),
                    "who": data.get("who"),
                    "stored_at": data.get("stored"),
                    "serial": data.get("serial"),
                    "handpiece": data.get("handpiece"),
                }
            )
        return out
