"""The shot log: one SQLite file, every record in a hash chain (SR-11, SR-12, SR-18).

Durability: WAL with synchronous=FULL, so a COMMIT returns only after the write-ahead log is on
disk. record() and record_many() return only after their COMMIT; the controller sends SHOT_ACK
only after that, so the device forgets no shot the log does not hold. A failed write rolls the
whole transaction back: what was stored before stays as it was, and the caller gets a
RecordError (StoreFull, StoreReadOnly, ...) naming the file and what happened.

One connection, one lock: the store may be called from the controller's owner thread and from
a group-commit writer thread (writer.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import chain, courses
from .context import ContextSource, ShotContext
from .courses import CourseOverride, PastSession
from .errors import (
    CourseRuleBroken,
    RecordError,
    StoreReadOnly,
    UnknownRecord,
    translate,
)
from .schema import SCHEMA_VERSION, TABLE_NAMES, SchemaTooNew, migrate, schema_differences
from .txn import Head, Txn

if TYPE_CHECKING:
    from laserctl.controller.shots import ShotRecord

DEFAULT_FILENAME = "laserctl.db"
PATIENT_ID = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AREA_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
Clock = Callable[[], float]


def default_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_path("laserctl", appauthor=False)) / DEFAULT_FILENAME


def check_patient_id(patient: str) -> str:
    """Opaque pseudonymous IDs only: letters, digits, `_ . -`, at least one digit, no spaces
    (a guard against a name typed into the ID field)."""
    if not PATIENT_ID.match(patient):
        raise RecordError(
            f"patient ID {patient!r} is not a pseudonymous ID: use 1-64 letters, digits, "
            "'_', '.' or '-' with at least one digit (never a name)"
        )
    return patient


def check_area(area: str) -> str:
    name = area.strip().lower()
    if not AREA_NAME.match(name):
        raise RecordError(f"area {area!r}: use a lower-case name such as abdomen or thigh")
    return name


# ---- values crossing the API -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StagedShot:
    """A shot with what the store adds: its context and the host time it was handed over."""

    record: ShotRecord
    context: ShotContext
    host_time: float


@dataclass(frozen=True, slots=True)
class StagedEvent:
    kind: str
    message: str
    at: float
    who: str | None = None
    session_id: str | None = None
    data: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True)
class Written:
    shots: int  # new shots stored (duplicates are not)
    events: list[int]  # ids of the events stored


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    ref: int
    patient: str
    patient_ref: int
    course: int
    course_ref: int
    area: str
    area_ref: int
    started: float
    operator: str | None


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


# ---- the store ---------------------------------------------------------------------------------
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
    ) -> None:
        self._db = db
        self.path = path
        self.readonly = readonly
        self._clock = clock
        self.tz = tz
        self._lock = threading.RLock()
        self._heads: dict[str, Head] = {}
        self._contexts: dict[tuple[str, Hashable], int] = {}
        self._sessions: dict[str, SessionInfo] = {}
        self._bound: dict[int, tuple[str, str]] = {}  # session ref -> (serial, firmware)
        self._sources: dict[str, ContextSource] = {}
        self._resumed: set[str] = set()
        self._closed = False

    # ---- plumbing -------------------------------------------------------------------------------
    def _fail(self, doing: str, exc: sqlite3.Error) -> RecordError:
        return translate(self.path, doing, exc)

    def _head(self, table: str) -> Head:
        head = self._heads.get(table)
        if head is None:
            # New records chain onto the last row there is, whatever the recorded head says;
            # a disagreement is for `log verify` to report, not a reason to stop treating.
            row = self._db.execute(
                f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                head = Head(0, 0, chain.genesis(table))
            else:
                recorded = self._db.execute(
                    "SELECT count, hash FROM chain_heads WHERE tbl = ?", (table,)
                ).fetchone()
                if recorded is not None and bytes(recorded[1]) == bytes(row[1]):
                    count = int(recorded[0])
                else:
                    count = int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                head = Head(count, int(row[0]), bytes(row[1]))
            self._heads[table] = head
        return head

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[Txn]:
        with self._lock:
            if self._closed:
                raise RecordError(f"shot log {self.path}: closed (while {doing})")
            if self.readonly:
                raise StoreReadOnly(f"shot log {self.path}: opened read-only (while {doing})")
            txn = Txn(self)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield txn
                for table, head in txn.heads.items():
                    self._db.execute(
                        "INSERT INTO chain_heads (tbl, count, last_id, hash) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (tbl) DO UPDATE SET count = excluded.count,"
                        " last_id = excluded.last_id, hash = excluded.hash",
                        (table, head.count, head.last_id, head.hash),
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._fail(doing, exc) from None
            except BaseException:
                self._rollback()
                raise
            self._heads.update(txn.heads)
            self._contexts.update(txn.contexts)
            self._bound.update(txn.bound)

    def _rollback(self) -> None:
        # After SQLITE_FULL SQLite may already have rolled back; make sure of it either way.
        self._heads.clear()
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Read-only query for the records modules (course view, export, report)."""
        with self._lock:
            try:
                return list(self._db.execute(sql, tuple(params)).fetchall())
            except sqlite3.Error as exc:
                raise self._fail("reading", exc) from None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- patients, courses, sessions ------------------------------------------------------------
    def _patient_ref(self, txn: Txn | None, patient: str, create: bool) -> int | None:
        row = self._db.execute("SELECT id FROM patients WHERE patient = ?", (patient,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create or txn is None:
            return None
        return txn.append("patients", {"patient": patient, "created": self._clock()})

    def _area_ref(self, txn: Txn, patient_ref: int, area: str) -> int:
        row = self._db.execute(
            "SELECT id FROM areas WHERE patient_ref = ? AND name = ?", (patient_ref, area)
        ).fetchone()
        if row is not None:
            return int(row[0])
        return txn.append("areas", {"patient": patient_ref, "area": area, "created": self._clock()})

    def _latest_course(self, patient_ref: int) -> tuple[int, int] | None:
        row = self._db.execute(
            "SELECT id, number FROM courses WHERE patient_ref = ? ORDER BY number DESC LIMIT 1",
            (patient_ref,),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def history(self, patient: str) -> list[PastSession]:
        """Every session of the patient, oldest first, with shots and dose."""
        rows = self.query(
            "SELECT s.session, c.number, a.name, s.started,"
            " (SELECT count(*) FROM shots WHERE session_ref = s.id),"
            " (SELECT coalesce(sum(fluence), 0.0) FROM shots WHERE session_ref = s.id),"
            " EXISTS (SELECT 1 FROM events WHERE kind = 'session_end' AND session_ref = s.id)"
            " FROM sessions s JOIN courses c ON c.id = s.course_ref"
            " JOIN areas a ON a.id = s.area_ref JOIN patients p ON p.id = s.patient_ref"
            " WHERE p.patient = ? ORDER BY s.started, s.id",
            (patient,),
        )
        return [
            PastSession(str(sid), int(n), str(a), float(t), int(k), float(f), bool(e))
            for sid, n, a, t, k, f, e in rows
        ]

    def course_numbers(self, patient: str) -> list[int]:
        rows = self.query(
            "SELECT c.number FROM courses c JOIN patients p ON p.id = c.patient_ref"
            " WHERE p.patient = ? ORDER BY c.number",
            (patient,),
        )
        return [int(r[0]) for r in rows]

    def course_summary(self, patient: str) -> dict[str, object]:
        """What `laserctl course show` prints (courses.summary)."""
        check_patient_id(patient)
        numbers = self.course_numbers(patient)
        if not numbers:
            raise UnknownRecord(f"shot log {self.path}: no patient {patient}")
        return courses.summary(patient, self.history(patient), numbers, self.tz)

    def open_course(self, patient: str, *, who: str, reason: str) -> int:
        """Start the patient's next course (a service action, logged with who and why).
        Returns its number. The first course opens by itself with the first session."""
        check_patient_id(patient)
        override = CourseOverride(who, reason)  # the same written-reason rule
        with self._transaction(f"opening a course for {patient}") as txn:
            patient_ref = self._patient_ref(txn, patient, create=True)
            assert patient_ref is not None
            latest = self._latest_course(patient_ref)
            number = latest[1] + 1 if latest else 1
            txn.append(
                "courses",
                {
                    "patient": patient_ref,
                    "number": number,
                    "opened": self._clock(),
                    "by": override.who,
                    "reason": override.reason,
                },
            )
            self._append_event(
                txn,
                StagedEvent(
                    "service",
                    f"course {number} opened for {patient}: {override.reason}",
                    self._clock(),
                    who=override.who,
                    data={"action": "open_course", "patient": patient, "course": number},
                ),
            )
        return number

    def new_session_id(self) -> str:
        """A new session's id: S-<local day>-<8 hex digits> (begin_session(session_id=...))."""
        day = dt.datetime.fromtimestamp(self._clock(), self.tz)
        return f"S-{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"

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
    ) -> str:
        """A new session (or `resume`: the same day's interrupted session of this patient and
        area, after a crash). Refused with CourseRuleBroken when it breaks the course rules,
        unless `override` (a service user and a written reason) is given; the refusal or the
        override is logged either way. Returns the session ID."""
        check_patient_id(patient)
        area = check_area(area)
        if resume is not None:
            return self._resume(patient, area, resume, context)
        now = self._clock()
        history = self.history(patient)
        with self._lock:
            refusal: CourseRuleBroken | None = None
            with self._transaction(f"starting a session for {patient}") as txn:
                patient_ref = self._patient_ref(txn, patient, create=True)
                assert patient_ref is not None
                course = self._latest_course(patient_ref)
                if course is None:
                    course_ref = txn.append(
                        "courses",
                        {
                            "patient": patient_ref,
                            "number": 1,
                            "opened": now,
                            "by": operator,
                            "reason": None,
                        },
                    )
                    course = (course_ref, 1)
                course_ref, number = course
                reasons = courses.rule_breaks(history, number, area, now, self.tz)
                override_ref = None
                if reasons and override is None:
                    message = f"session refused for {patient} on {area}: " + "; ".join(reasons)
                    self._append_event(
                        txn,
                        StagedEvent(
                            "refusal",
                            message,
                            now,
                            who=operator,
                            data={
                                "patient": patient,
                                "area": area,
                                "course": number,
                                "rules": reasons,
                            },
                        ),
                    )
                    refusal = CourseRuleBroken(message + " (SR-18)", reasons)
                else:
                    if reasons and override is not None:
                        override_ref = self._append_event(
                            txn,
                            StagedEvent(
                                "override",
                                f"course rules overridden for {patient} on {area}: "
                                f"{override.reason}",
                                now,
                                who=override.who,
                                data={
                                    "patient": patient,
                                    "area": area,
                                    "course": number,
                                    "rules": reasons,
                                    "reason": override.reason,
                                },
                            ),
                        )
                    area_ref = self._area_ref(txn, patient_ref, area)
                    sid = session_id or self.new_session_id()
                    if self._db.execute(
                        "SELECT 1 FROM sessions WHERE session = ?", (sid,)
                    ).fetchone():
                        raise RecordError(f"shot log {self.path}: session {sid} exists already")
                    ref = txn.append(
                        "sessions",
                        {
                            "session": sid,
                            "patient": patient_ref,
                            "course": course_ref,
                            "area": area_ref,
                            "started": now,
                            "operator": operator,
                            "override": override_ref,
                        },
                    )
                    self._append_event(
                        txn,
                        StagedEvent(
                            "session_start",
                            f"session {sid}: patient {patient}, course {number}, area {area}",
                            now,
                            who=operator,
                            session_id=None,
                            data={"session": sid},
                        ),
                        session_ref=ref,
                    )
            if refusal is not None:
                raise refusal
            if context is not None:
                self._sources[sid] = context
            return sid

    def _resume(
        self, patient: str, area: str, session_id: str, context: ContextSource | None
    ) -> str:
        info = self.session(session_id)
        if info.patient != patient or info.area != area:
            raise RecordError(
                f"session {session_id} is patient {info.patient} on {info.area}, "
                f"not {patient} on {area}: not resumed"
            )
        if self._ended(info.ref):
            raise RecordError(f"session {session_id} has ended: start a new one")
        now = self._clock()
        if courses.local_day(now, self.tz) != courses.local_day(info.started, self.tz):
            raise RecordError(
                f"session {session_id} began on {courses.local_day(info.started, self.tz)}: "
                "only a session begun today can be resumed"
            )
        self.log_event("resume", f"session {session_id} resumed", session_id=session_id)
        self._resumed.add(session_id)
        if context is not None:
            self._sources[session_id] = context
        return session_id

    def interrupted_session(self, patient: str, area: str) -> str | None:
        """Today's session of this patient and area that never ended (a crash), if any."""
        area = check_area(area)
        today = courses.local_day(self._clock(), self.tz)
        for past in reversed(self.history(patient)):
            if (
                past.area == area
                and not past.ended
                and courses.local_day(past.started, self.tz) == today
            ):
                return past.session_id
        return None

    def attach(self, session_id: str, context: ContextSource) -> None:
        """Where record() finds the handpiece, profile and interlock view of this session's
        shots (laserctl.records.context.controller_context(controller))."""
        self.session(session_id)
        self._sources[session_id] = context

    def session(self, session_id: str) -> SessionInfo:
        found = self._sessions.get(session_id)
        if found is not None:
            return found
        rows = self.query(
            "SELECT s.id, p.patient, p.id, c.number, c.id, a.name, a.id, s.started,"
            " json_extract(s.body, '$.operator')"
            " FROM sessions s JOIN patients p ON p.id = s.patient_ref"
            " JOIN courses c ON c.id = s.course_ref JOIN areas a ON a.id = s.area_ref"
            " WHERE s.session = ?",
            (session_id,),
        )
        if not rows:
            raise UnknownRecord(f"shot log {self.path}: no session {session_id}")
        ref, patient, pref, number, cref, area, aref, started, operator = rows[0]
        info = SessionInfo(
            session_id,
            int(ref),
            str(patient),
            int(pref),
            int(number),
            int(cref),
            str(area),
            int(aref),
            float(started),
            operator,
        )
        self._sessions[session_id] = info
        return info

    def _ended(self, session_ref: int) -> bool:
        return bool(
            self.query(
                "SELECT 1 FROM events WHERE kind = 'session_end' AND session_ref = ?",
                (session_ref,),
            )
        )

    def shots_logged(self, session_id: str) -> int:
        info = self.session(session_id)
        rows = self.query("SELECT count(*) FROM shots WHERE session_ref = ?", (info.ref,))
        return int(rows[0][0])

    def session_dose(self, session_id: str) -> tuple[int, float]:
        """(pulses, summed fluence J/cm2) stored for the session: a resumed session's
        controller starts its budget from here (SR-08)."""
        info = self.session(session_id)
        rows = self.query(
            "SELECT count(*), coalesce(sum(fluence), 0.0) FROM shots WHERE session_ref = ?",
            (info.ref,),
        )
        return int(rows[0][0]), float(rows[0][1])

    def end_session(self, session_id: str, summary: Mapping[str, object] | None = None) -> int:
        """Log the session's end with its summary; returns the shots logged for it."""
        info = self.session(session_id)
        count = self.shots_logged(session_id)
        self.log_event(
            "session_end",
            f"session {session_id} ended: {count} shots logged",
            session_id=session_id,
            data={"shots_logged": count, **(summary or {})},
        )
        self._sources.pop(session_id, None)
        self._bound.pop(info.ref, None)
        return count

    # ---- events ---------------------------------------------------------------------------------
    def _append_event(self, txn: Txn, event: StagedEvent, *, session_ref: int | None = None) -> int:
        if session_ref is None and event.session_id is not None:
            session_ref = self.session(event.session_id).ref
        return txn.append(
            "events",
            {
                "at": event.at,
                "kind": event.kind,
                "message": event.message,
                "who": event.who,
                "session": session_ref,
                "data": dict(event.data or {}),
            },
        )

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
        event = StagedEvent(kind, message, self._clock(), who, session_id, data)
        return self.write((), (event,)).events[0]

    def stage_event(
        self,
        kind: str,
        message: str,
        *,
        who: str | None = None,
        session_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> StagedEvent:
        return StagedEvent(kind, message, self._clock(), who, session_id, data)

    def bind_handpiece(self, session_id: str, context: ShotContext) -> None:
        """Log which handpiece the session uses (again when it changes); done by record()
        too, and by the event stream as soon as the handpiece is identified, so a session
        that crashes before its first stored shot is still known to have used it."""
        info = self.session(session_id)
        if self._bound_to(info.ref) == (context.serial, context.firmware):
            return
        with self._transaction(f"binding a handpiece to session {session_id}") as txn:
            self._bind(txn, info, context)

    def _bound_to(self, session_ref: int, txn: Txn | None = None) -> tuple[str, str] | None:
        if txn is not None and session_ref in txn.bound:
            return txn.bound[session_ref]
        if session_ref not in self._bound:
            rows = self._db.execute(
                "SELECT json_extract(body, '$.data.serial'), json_extract(body, '$.data.firmware')"
                " FROM events WHERE session_ref = ? AND kind = 'handpiece' ORDER BY id DESC"
                " LIMIT 1",
                (session_ref,),
            ).fetchall()
            if rows:
                self._bound[session_ref] = (str(rows[0][0]), str(rows[0][1]))
        return self._bound.get(session_ref)

    def _bind(self, txn: Txn, info: SessionInfo, context: ShotContext) -> None:
        self._append_event(
            txn,
            StagedEvent(
                "handpiece",
                f"handpiece {context.handpiece} {context.serial} firmware {context.firmware}",
                self._clock(),
                data={
                    "serial": context.serial,
                    "handpiece": context.handpiece,
                    "firmware": context.firmware,
                    "profile_id": context.profile_id,
                    "profile_hash": context.profile_hash,
                },
            ),
            session_ref=info.ref,
        )
        txn.bound[info.ref] = (context.serial, context.firmware)

    # ---- shots ----------------------------------------------------------------------------------
    def stage(self, shot: ShotRecord) -> StagedShot:
        """Capture the shot's context now (call on the controller's thread, as the shot is
        processed); write it later with write() (the group-commit writer does)."""
        source = self._sources.get(shot.session)
        if source is None:
            raise RecordError(
                f"shot log {self.path}: shot {shot.shot_no} for session {shot.session}, "
                "which has no context attached (begin_session(context=...) or attach())"
            )
        try:
            context = source()
        except Exception as exc:
            raise RecordError(
                f"shot log {self.path}: shot {shot.shot_no}: no shot context ({exc})"
            ) from exc
        return StagedShot(shot, context, self._clock())

    def record(self, shot: ShotRecord) -> None:
        """Store one shot; durable when this returns (the controller's ShotStore)."""
        self.write((self.stage(shot),), ())

    def record_many(self, shots: Iterable[ShotRecord]) -> int:
        """Store a burst in one commit (durable on return); returns how many were new."""
        return self.write([self.stage(s) for s in shots], ()).shots

    def write(self, shots: Sequence[StagedShot], events: Sequence[StagedEvent]) -> Written:
        """Staged shots and events in one transaction: all durable, or none stored. Shots
        already stored (same handpiece serial, boot and shot number, or a replay of a stored
        shot) are skipped: exactly once."""
        if not shots and not events:
            return Written(0, [])
        first = shots[0].record.shot_no if shots else None
        doing = f"storing shots {first}..{shots[-1].record.shot_no}" if shots else "storing events"
        with self._lock, self._transaction(doing) as txn:
            seen: set[tuple[str, int, int]] = set()
            for staged in shots:
                self._write_shot(txn, staged, seen)
            txn.flush_shots()
            ids = [self._append_event(txn, e) for e in events]
        return Written(txn.new_shots, ids)

    def _write_shot(self, txn: Txn, staged: StagedShot, seen: set[tuple[str, int, int]]) -> None:
        shot, ctx = staged.record, staged.context
        key = (ctx.serial, shot.boot_id, shot.shot_no)
        if key in seen:
            return
        if shot.replayed or not shot.counted:
            txn.flush_shots()  # the queries below see this transaction's shots
            if self._db.execute(
                "SELECT 1 FROM shots WHERE serial = ? AND boot_id = ? AND shot_no = ?", key
            ).fetchone():
                return  # (a live shot already stored is caught by the unique index on flush)
        if (
            shot.replayed
            and self._db.execute(
                "SELECT 1 FROM shots WHERE serial = ? AND shot_no = ? AND device_us = ?",
                (ctx.serial, shot.shot_no, shot.device_time_us),
            ).fetchone()
        ):
            return  # replayed after a reboot that kept the counter: stored under the old boot
        seen.add(key)
        info = self.session(shot.session)
        if shot.area.strip().lower() != info.area:
            raise RecordError(
                f"shot log {self.path}: shot {shot.shot_no} is for area {shot.area!r}, "
                f"session {info.session_id} for {info.area!r}: not stored"
            )
        if self._bound_to(info.ref, txn) != (ctx.serial, ctx.firmware):
            self._bind(txn, info, ctx)
        owner = info
        if not shot.counted and info.session_id not in self._resumed:
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
        rows = self._db.execute(
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
        return self.session(str(rows[0][0])) if rows else None

    # ---- calibrations ---------------------------------------------------------------------------
    def add_calibration(
        self, serial: str, handpiece: str, who: str, record: dict[str, object]
    ) -> int:
        """Store a calibration (SR-14) in the chain; returns its id."""
        now = self._clock()
        with self._transaction(f"storing a calibration of {serial}") as txn:
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
            self._append_event(
                txn,
                StagedEvent(
                    "service",
                    f"calibration {ref} of {handpiece} {serial} stored",
                    now,
                    who=who,
                    data={"action": "calibration", "calibration": ref, "serial": serial},
                ),
            )
        return ref

    def calibrations(self, serial: str) -> list[dict[str, object]]:
        """The handpiece's calibrations, newest first: the record plus id, who, stored_at."""
        rows = self.query(
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

    # ---- verification ---------------------------------------------------------------------------
    def verify(self, anchors: Sequence[str] = ()) -> VerifyReport:
        """Check every chain, the chain heads and the schema (SR-12), and that each anchor
        ("table:row:sha256", from an earlier verify or report) still holds."""
        started = time.perf_counter()
        with self._lock:
            try:
                problems: list[chain.Problem] = [
                    chain.Problem(kind, None, f"schema: {name} {what}")
                    for kind, name, what in schema_differences(self._db)
                ]
                heads = {
                    str(t): chain.Head(int(c), int(i), bytes(h))
                    for t, c, i, h in self._db.execute(
                        "SELECT tbl, count, last_id, hash FROM chain_heads"
                    )
                }
                results = []
                for table in TABLE_NAMES:
                    result = chain.verify_table(self._db, table, heads.get(table))
                    results.append(result)
                    problems += result.problems
                for anchor in anchors:
                    problem = self._check_anchor(anchor)
                    if problem is not None:
                        problems.append(problem)
                current = [
                    f"{t}:{row[0]}:{bytes(row[1]).hex()}"
                    for t in TABLE_NAMES
                    for row in self._db.execute(
                        f"SELECT id, hash FROM {t} ORDER BY id DESC LIMIT 1"
                    )
                ]
            except sqlite3.Error as exc:
                raise self._fail("verifying", exc) from None
        return VerifyReport(
            str(self.path),
            not problems,
            problems,
            {r.table: r.records for r in results},
            current,
            time.perf_counter() - started,
        )

    def _check_anchor(self, anchor: str) -> chain.Problem | None:
        try:
            table, row, digest = anchor.split(":")
            row_id = int(row)
            expected = bytes.fromhex(digest)
        except ValueError:
            return chain.Problem("anchor", None, f"{anchor!r} is not table:row:sha256")
        if table not in TABLE_NAMES:
            return chain.Problem("anchor", None, f"{anchor!r}: no table {table!r}")
        found = self._db.execute(f"SELECT hash FROM {table} WHERE id = ?", (row_id,)).fetchone()
        if found is None:
            return chain.Problem(table, row_id, f"anchor {anchor}: the row is gone (deleted)")
        if bytes(found[0]) != expected:
            return chain.Problem(
                table,
                row_id,
                f"anchor {anchor}: the row's hash differs: the chain up to it was rewritten",
            )
        return None


# ---- opening -----------------------------------------------------------------------------------
def open_store(
    path: str | Path | None = None,
    *,
    readonly: bool = False,
    clock: Clock = time.time,
    tz: dt.tzinfo | None = None,
) -> RecordStore:
    """Open (and create and migrate) the shot log at `path`, by default `laserctl.db` in the
    user data directory. readonly: for reports and verification; the file must exist."""
    target = Path(path) if path is not None else default_path()
    try:
        if readonly:
            if not target.exists():
                raise RecordError(f"shot log {target}: no such file")
            db = sqlite3.connect(
                target.resolve().as_uri() + "?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                str(target), isolation_level=None, check_same_thread=False, timeout=5.0
            )
    except OSError as exc:
        raise RecordError(f"shot log {target}: cannot open: {exc.strerror or exc}") from None
    except sqlite3.Error as exc:
        raise translate(target, "opening", exc) from None
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        if readonly:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version != SCHEMA_VERSION:
                hint = ": open it once for writing to migrate" if version < SCHEMA_VERSION else ""
                raise RecordError(
                    f"shot log {target}: schema version {version}, this laserctl reads "
                    f"{SCHEMA_VERSION}{hint}"
                )
        else:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RecordError(f"shot log {target}: cannot use WAL (journal mode {mode})")
            db.execute("PRAGMA synchronous = FULL")
            migrate(db)
            _probe_writable(db)
    except SchemaTooNew as exc:
        db.close()
        raise RecordError(f"shot log {target}: {exc}") from None
    except sqlite3.Error as exc:
        db.close()
        raise translate(target, "opening", exc) from None
    except RecordError:
        db.close()
        raise
    return RecordStore(db, target, readonly=readonly, clock=clock, tz=tz)


def _probe_writable(db: sqlite3.Connection) -> None:
    """SQLite opens a file it may not write read-only without saying so; find out now, not at
    the first shot. The probe row is rolled back and never reaches the disk."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "INSERT INTO chain_heads (tbl, count, last_id, hash) VALUES (?, 0, 0, x'')",
            (f"probe-{os.getpid()}",),
        )
    finally:
        db.execute("ROLLBACK")
