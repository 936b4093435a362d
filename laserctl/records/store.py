"""The shot log: one SQLite file, every record in a hash chain (SR-11, SR-12, SR-18).

RecordStore is the one face of it the rest of laserctl sees; the work is done in rooms of its
own, each over the same open file (db.Database: the connection, its lock, the transaction):

    patients.py      patients, their areas and courses
    sessions.py      sessions begun, resumed and ended; their events and handpieces
    shots.py         shots staged and written exactly once, with the events staged alongside
    calibrations.py  handpiece calibrations (SR-14)
    verify.py        the chains, heads, schema, anchors and checkpoints checked (SR-12)
    checkpoints.py   signed checkpoints: the note, its signature, the log held to it
    checkpointer.py  checkpoints made at every session end and on request

Durability: record() and record_many() return only after their COMMIT (WAL, synchronous=FULL);
the controller sends SHOT_ACK only after that, so the device forgets no shot the log does not
hold. A failed write rolls the whole transaction back and raises a RecordError (StoreFull,
StoreReadOnly, ...) naming the file and what happened.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .calibrations import Calibrations
from .checkpointer import Checkpointer, KeySource
from .checkpoints import Checkpoint
from .checkpoints import stored as stored_checkpoints
from .context import ContextSource, ShotContext
from .course_check import CourseAuthority
from .courses import CourseOverride, PastSession
from .db import Database, connect, default_path
from .events import StagedEvent
from .patients import Patients, check_patient_id
from .sessions import SessionInfo, Sessions
from .shots import ShotLog, StagedShot, Written
from .verify import VerifyReport, verify

if TYPE_CHECKING:
    from laserctl.shotrecord import ShotRecord

# The store, the values crossing its API, and what the CLI and console import from here.
__all__ = [
    "Checkpoint",
    "RecordStore",
    "SessionInfo",
    "StagedEvent",
    "StagedShot",
    "VerifyReport",
    "Written",
    "check_patient_id",
    "default_path",
    "open_store",
]

Clock = Callable[[], float]


class RecordStore:
    """The shot log. Open it with open_store()."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        readonly: bool,
        clock: Clock = time.time,
        tz: dt.tzinfo | None = None,
        console_key: KeySource | None = None,
    ) -> None:
        self._db = Database(db, path, readonly=readonly)
        self.path = path
        self.readonly = readonly
        self.tz = tz
        self._lock = self._db.lock  # every call below takes it (a test holds it, as a slow disk)
        self._patients = Patients(self._db, clock, tz)
        self._checkpointer = Checkpointer(console_key, clock)
        self._sessions = Sessions(self._db, self._patients, clock, tz, self._checkpointer)
        self._shots = ShotLog(self._db, self._sessions, clock)
        self._calibrations = Calibrations(self._db, clock)

    # ---- the file -------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Read-only query for the records modules (course view, export, report)."""
        return self._db.query(sql, params)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- patients, courses ----------------------------------------------------------------------
    def history(self, patient: str) -> list[PastSession]:
        """Every session of the patient, oldest first, with shots and dose."""
        return self._patients.history(patient)

    def course_numbers(self, patient: str) -> list[int]:
        return self._patients.course_numbers(patient)

    def course_summary(self, patient: str) -> dict[str, object]:
        """What `laserctl course show` prints (courses.summary)."""
        return self._patients.course_summary(patient)

    def open_course(self, patient: str, *, who: str, reason: str) -> int:
        """Start the patient's next course (a service action, logged with who and why).
        Returns its number. The first course opens by itself with the first session."""
        return self._patients.open_course(patient, who=who, reason=reason)

    # ---- sessions -------------------------------------------------------------------------------
    def new_session_id(self) -> str:
        """A new session's id: S-<local day>-<8 hex digits> (begin_session(session_id=...)),
        so the controller can be built with it before the session begins."""
        return self._sessions.new_session_id()

    def begin_session(
        self,
        patient: str,
        area: str,
        *,
        operator: str | None = None,
        override: CourseOverride | None = None,
        resume: str | None = None,
        session_id: str | None = None,
        context: ContextSource | None = None,
        authority: CourseAuthority | None = None,
    ) -> str:
        """A new session (or `resume`: the same day's interrupted session of this patient and
        area, after a crash). Refused with CourseRuleBroken when it breaks the course rules,
        unless `override` (a service user and a written reason) is given; the refusal or the
        override is logged either way. With `authority` (the central store, `--fleet URL`)
        the rules are judged on every console's sessions of the patient, the central store's
        silence refuses too, and the decision is logged (course_check.py). Returns the
        session ID."""
        return self._sessions.begin_session(
            patient,
            area,
            operator=operator,
            override=override,
            resume=resume,
            session_id=session_id,
            context=context,
            authority=authority,
        )

    def interrupted_session(self, patient: str, area: str) -> str | None:
        """Today's session of this patient and area that never ended (a crash), if any."""
        return self._sessions.interrupted_session(patient, area)

    def attach(self, session_id: str, context: ContextSource) -> None:
        """Where record() finds the handpiece, profile and interlock view of this session's
        shots (laserctl.records.context.controller_context(controller))."""
        self._sessions.attach(session_id, context)

    def session(self, session_id: str) -> SessionInfo:
        return self._sessions.session(session_id)

    def shots_logged(self, session_id: str) -> int:
        return self._sessions.shots_logged(session_id)

    def session_dose(self, session_id: str) -> tuple[int, float]:
        """(pulses, summed fluence J/cm2) stored for the session: a resumed session's
        controller starts its budget from here (SR-08)."""
        return self._sessions.session_dose(session_id)

    def end_session(self, session_id: str, summary: Mapping[str, object] | None = None) -> int:
        """Log the session's end with its summary; returns the shots logged for it."""
        return self._sessions.end_session(session_id, summary)

    # ---- events ---------------------------------------------------------------------------------
    def log_event(
        self,
        kind: str,
        message: str,
        *,
        who: str | None = None,
        session_id: str | None = None,
        data: dict[str, object] | None = None,
    ) -> int:
        """Append an event (transition, interlock, fault, refusal, override, service, ...);
        durable on return. Returns its row id."""
        return self._sessions.log_event(kind, message, who=who, session_id=session_id, data=data)

    def stage_event(
        self,
        kind: str,
        message: str,
        *,
        who: str | None = None,
        session_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> StagedEvent:
        return self._sessions.stage_event(kind, message, who=who, session_id=session_id, data=data)

    def bind_handpiece(self, session_id: str, context: ShotContext) -> None:
        """Log which handpiece the session uses (again when it changes); done by record()
        too, and by the event stream as soon as the handpiece is identified, so a session
        that crashes before its first stored shot is still known to have used it."""
        self._sessions.bind_handpiece(session_id, context)

    # ---- shots ----------------------------------------------------------------------------------
    def stage(self, shot: ShotRecord) -> StagedShot:
        """Capture the shot's context now (call on the controller's thread, as the shot is
        processed); write it later with write() (the group-commit writer does)."""
        return self._shots.stage(shot)

    def record(self, shot: ShotRecord) -> None:
        """Store one shot; durable when this returns (the controller's ShotStore)."""
        self._shots.write((self._shots.stage(shot),), ())

    def record_many(self, shots: Iterable[ShotRecord]) -> int:
        """Store a burst in one commit (durable on return); returns how many were new."""
        return self._shots.write([self._shots.stage(s) for s in shots], ()).shots

    def write(self, shots: Sequence[StagedShot], events: Sequence[StagedEvent]) -> Written:
        """Staged shots and events in one transaction: all durable, or none stored. Shots
        already stored (same handpiece serial, boot and shot number, or a replay of a stored
        shot) are skipped: exactly once."""
        return self._shots.write(shots, events)

    # ---- calibrations ---------------------------------------------------------------------------
    def add_calibration(
        self, serial: str, handpiece: str, who: str, record: dict[str, object]
    ) -> int:
        """Store a calibration (SR-14) in the chain; returns its id."""
        return self._calibrations.add(serial, handpiece, who, record)

    def calibrations(self, serial: str) -> list[dict[str, object]]:
        """The handpiece's calibrations, newest first: the record plus id, who, stored_at."""
        return self._calibrations.of(serial)

    # ---- verification ---------------------------------------------------------------------------
    def verify(
        self,
        anchors: Sequence[str] = (),
        checkpoints: Sequence[Checkpoint] = (),
        *,
        console_public: str | None = None,
    ) -> VerifyReport:
        """Check every chain, the chain heads and the schema (SR-12), that each anchor
        ("table:row:sha256", from an earlier verify or report) still holds, and that the log
        still holds what every checkpoint signed: those stored in it and `checkpoints` (from
        files, the central store). console_public: the key they must be signed with (else
        the key of the first one, and all must agree)."""
        return verify(self._db, anchors, checkpoints, console_public=console_public)

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """Make, sign and store a checkpoint of the log as it is now (`laserctl log
        checkpoint`); raises auth.keys.KeyProblem without the console key."""
        with self._lock, self._db.transaction("storing a checkpoint") as txn:
            return self._checkpointer.make(txn)

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints stored in the log, oldest first (one whose text cannot be read is
        left out here; `verify` reports it)."""
        with self._lock:
            try:
                found = stored_checkpoints(self._db.conn)
            except sqlite3.Error as exc:
                raise self._db.fail("reading checkpoints", exc) from None
        return [cp for _, _, cp in found if isinstance(cp, Checkpoint)]


def open_store(
    path: str | Path | None = None,
    *,
    readonly: bool = False,
    clock: Clock = time.time,
    tz: dt.tzinfo | None = None,
    console_key: KeySource | None = None,
) -> RecordStore:
    """Open (and create and migrate) the shot log at `path`, by default `laserctl.db` in the
    user data directory. readonly: for reports and verification; the file must exist.
    console_key: where the key signing checkpoints comes from (default: the console key in
    the config directory, auth.console_key.load_or_create, made on first use)."""
    conn, target = connect(path, readonly=readonly)
    return RecordStore(conn, target, readonly=readonly, clock=clock, tz=tz, console_key=console_key)
