"""Shots into the shot log: exactly once, durable when the commit returns (SR-11).

A shot is staged on the controller's thread (its context read then) and written later, many
to a transaction, with the events staged alongside (writer.py does that). A shot re-read after
a crash goes to the session that fired it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .context import ShotContext
from .db import Database
from .errors import RecordError
from .events import StagedEvent
from .sessions import SessionInfo, Sessions
from .txn import Txn

if TYPE_CHECKING:
    from laserctl.shotrecord import ShotRecord


@dataclass(frozen=True, slots=True)
class StagedShot:
    """A shot with what the store adds: its context and the host time it was handed over."""

    record: ShotRecord
    context: ShotContext
    host_time: float


@dataclass(frozen=True, slots=True)
class Written:
    shots: int  # new shots stored (duplicates are not)
    events: list[int]  # ids of the events stored


class ShotLog:
    def __init__(self, db: Database, sessions: Sessions, clock: Callable[[], float]) -> None:
        self._db = db
        self._sessions = sessions
        self._clock = clock

    def stage(self, shot: ShotRecord) -> StagedShot:
        source = self._sessions.sources.get(shot.session)
        if source is None:
            raise RecordError(
                f"shot log {self._db.path}: shot {shot.shot_no} for session {shot.session}, "
                "which has no context attached (begin_session(context=...) or attach())"
            )
        try:
            context = source()
        except Exception as exc:
            raise RecordError(
                f"shot log {self._db.path}: shot {shot.shot_no}: no shot context ({exc})"
            ) from exc
        return StagedShot(shot, context, self._clock())

    def write(self, shots: Sequence[StagedShot], events: Sequence[StagedEvent]) -> Written:
        """Shots and events in one transaction: all durable, or none stored; shots already
        stored are skipped (RecordStore.write)."""
        if not shots and not events:
            return Written(0, [])
        first = shots[0].record.shot_no if shots else None
        doing = f"storing shots {first}..{shots[-1].record.shot_no}" if shots else "storing events"
        with self._db.lock, self._db.transaction(doing) as txn:
            seen: set[tuple[str, int, int]] = set()
            for staged in shots:
                self._write_shot(txn, staged, seen)
            txn.flush_shots()
            ids = [self._sessions.append_event(txn, e) for e in events]
        return Written(txn.new_shots, ids)

    def _write_shot(self, txn: Txn, staged: StagedShot, seen: set[tuple[str, int, int]]) -> None:
        shot, ctx = staged.record, staged.context
        key = (ctx.serial, shot.boot_id, shot.shot_no)
        if key in seen:
            return
        conn = self._db.conn
        if shot.replayed or not shot.counted:
            txn.flush_shots()  # the queries below see this transaction's shots
            if conn.execute(
                "SELECT 1 FROM shots WHERE serial = ? AND boot_id = ? AND shot_no = ?", key
            ).fetchone():
                return  # (a live shot already stored is caught by the unique index on flush)
        if (
            shot.replayed
            and conn.execute(
                "SELECT 1 FROM shots WHERE serial = ? AND shot_no = ? AND device_us = ?",
                (ctx.serial, shot.shot_no, shot.device_time_us),
            ).fetchone()
        ):
            return  # replayed after a reboot that kept the counter: stored under the old boot
        seen.add(key)
        sessions = self._sessions
        info = sessions.session(shot.session)
        if shot.area.strip().lower() != info.area:
            raise RecordError(
                f"shot log {self._db.path}: shot {shot.shot_no} is for area {shot.area!r}, "
                f"session {info.session_id} for {info.area!r}: not stored"
            )
        if sessions.bound_to(info.ref, txn) != (ctx.serial, ctx.firmware):
            sessions.bind(txn, info, ctx)
        owner = info
        if not shot.counted and info.session_id not in sessions.resumed:
            owner = self._owner_of_recovered(info, ctx.serial, shot.shot_no) or info
        set_value, measured = shot.set_value, shot.measured_value
        deviation = (measured / set_value - 1.0) * 100.0 if set_value > 0 else None
        refs = txn.shot_refs.get((shot.params, ctx))
        if refs is None:  # a burst shares these: worked out once a transaction
            refs = txn.shot_refs[shot.params, ctx] = {
                "params": txn.context(
                    "params", shot.params, lambda: {p.field_name: v for p, v in shot.params}
                ),
                "profile": txn.context(
                    "profile",
                    (ctx.profile_id, ctx.profile_hash),
                    lambda: {"id": ctx.profile_id, "hash": ctx.profile_hash},
                ),
                "handpiece": txn.context(
                    "handpiece",
                    (ctx.serial, ctx.handpiece, ctx.firmware),
                    lambda: {"serial": ctx.serial, "type": ctx.handpiece, "firmware": ctx.firmware},
                ),
                "interlocks": txn.context(
                    "interlocks", ctx.interlocks, lambda: dict(ctx.interlocks)
                ),
            }
        txn.defer_shot(
            {
                "session": owner.ref,
                "area": owner.area_ref,
                "serial": ctx.serial,
                "boot": shot.boot_id,
                "shot": shot.shot_no,
                "device_us": shot.device_time_us,
                "host_time": round(staged.host_time, 6),
                "dose": shot.dose_param.field_name,
                "set": set_value,
                "drive": set_value if shot.drive_value is None else shot.drive_value,
                "calibration": shot.calibration,
                "measured": measured,
                "deviation_pct": None if deviation is None else round(deviation, 3),
                "pulse_us": shot.pulse_us,
                **refs,
                "replayed": shot.replayed,
                "counted": shot.counted,
                "recovered": not shot.counted,
                "recovered_by": None if shot.counted else info.ref,
                "fluence": shot.fluence_j_cm2,
            },
        )

    def _owner_of_recovered(
        self, current: SessionInfo, serial: str, shot_no: int
    ) -> SessionInfo | None:
        """The session a shot recovered from before `current` began belongs to: the latest
        earlier session on this handpiece that never ended and stored nothing beyond it (the
        one whose controller crashed). None: no such session in this log."""
        rows = self._db.conn.execute(
            "SELECT s.session FROM sessions s"
            " WHERE s.id != ? AND s.started <= ?"
            " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.kind = 'session_end'"
            "                 AND e.session_ref = s.id)"
            " AND EXISTS (SELECT 1 FROM events e WHERE e.kind = 'handpiece'"
            "             AND e.session_ref = s.id AND json_extract(e.body, '$.data.serial') = ?)"
            " AND NOT EXISTS (SELECT 1 FROM shots t WHERE t.session_ref = s.id"
            "                 AND t.serial = ? AND t.shot_no > ?)"
            " ORDER BY s.started DESC, s.id DESC LIMIT 1",
            (current.ref, current.started, serial, serial, shot_no),
        ).fetchall()
        return self._sessions.session(str(rows[0][0])) if rows else None
