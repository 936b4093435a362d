"""Sessions in the shot log: begun under the course rules (SR-18), resumed after a crash, ended
with a summary; their events, and which handpiece each used.

A session also knows where its shots' context comes from (a ContextSource, attached by the
caller: the controller's handpiece, profile and interlock view); shots.py reads it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import course_check, courses
from .checkpointer import Checkpointer
from .context import ContextSource, ShotContext
from .course_check import CourseAuthority
from .courses import CourseOverride
from .db import Database
from .errors import CourseRuleBroken, RecordError, UnknownRecord
from .events import StagedEvent, append_event
from .patients import Patients, check_area, check_patient_id
from .txn import Txn


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


class Sessions:
    def __init__(
        self,
        db: Database,
        patients: Patients,
        clock: Callable[[], float],
        tz: dt.tzinfo | None,
        checkpointer: Checkpointer,
    ) -> None:
        self._db = db
        self._checkpointer = checkpointer
        self._patients = patients
        self._clock = clock
        self.tz = tz
        self._sessions: dict[str, SessionInfo] = {}
        self._bound: dict[int, tuple[str, str]] = {}  # session ref -> (serial, firmware)
        self.sources: dict[str, ContextSource] = {}  # session ID -> its shots' context
        self.resumed: set[str] = set()  # session IDs resumed after a crash
        db.on_commit(self._committed)

    def _committed(self, txn: Txn) -> None:
        self._bound.update(txn.bound)

    # ---- begin, resume, end ---------------------------------------------------------------------
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
        authority: CourseAuthority | None = None,
    ) -> str:
        """A new session, or `resume` an interrupted one; refused (logged, CourseRuleBroken)
        when it breaks the course rules without an override. With `authority` (the central
        store) the rules are judged across consoles and the decision is logged
        (course_check.py). See RecordStore.begin_session."""
        check_patient_id(patient)
        area = check_area(area)
        if resume is not None:
            return self._resume(patient, area, resume, context)
        now = self._clock()
        history = self._patients.history(patient)
        known = self._patients.ref(None, patient, create=False)
        latest = self._patients.latest_course(known) if known is not None else None
        # The central store is asked before the lock is taken: it may take its timeout.
        decision = course_check.judge(
            patient, area, history, latest[1] if latest else None, now, self.tz, authority
        )
        reasons = list(decision.reasons)
        with self._db.lock:
            refusal: CourseRuleBroken | None = None
            with self._db.transaction(f"starting a session for {patient}") as txn:
                patient_ref = self._patients.ref(txn, patient, create=True)
                assert patient_ref is not None
                course_ref = self._patients.course_for(txn, patient_ref, decision, now, operator)
                number = decision.course
                central = {"central": decision.asked, "offline": decision.offline}
                if not decision.asked:
                    central = {}  # not configured: the records as one console writes them
                override_ref = sid = ref = None
                if reasons and override is None:
                    message = f"session refused for {patient} on {area}: " + "; ".join(reasons)
                    self.append_event(
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
                                **central,
                            },
                        ),
                    )
                    refusal = CourseRuleBroken(
                        message + " (SR-18)", reasons, offline=decision.offline
                    )
                else:
                    if reasons and override is not None:
                        offline = " offline" if decision.offline else ""
                        override_ref = self.append_event(
                            txn,
                            StagedEvent(
                                "override",
                                f"course rules overridden{offline} for {patient} on {area}: "
                                f"{override.reason}",
                                now,
                                who=override.who,
                                data={
                                    "patient": patient,
                                    "area": area,
                                    "course": number,
                                    "rules": reasons,
                                    "reason": override.reason,
                                    **central,
                                },
                            ),
                        )
                    area_ref = self._patients.area_ref(txn, patient_ref, area)
                    sid = session_id or self.new_session_id()
                    if self._db.conn.execute(
                        "SELECT 1 FROM sessions WHERE session = ?", (sid,)
                    ).fetchone():
                        raise RecordError(f"shot log {self._db.path}: session {sid} exists already")
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
                    self.append_event(
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
                if decision.asked:  # what the console decided, for the central store to see
                    self.append_event(
                        txn,
                        StagedEvent(
                            course_check.DECISION_EVENT,
                            decision.message(override),
                            now,
                            who=override.who if override is not None and reasons else operator,
                            data=decision.event_data(override, sid),
                        ),
                        session_ref=ref,
                    )
            if refusal is not None:
                raise refusal
            assert sid is not None
            if context is not None:
                self.sources[sid] = context
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
        self.resumed.add(session_id)
        if context is not None:
            self.sources[session_id] = context
        return session_id

    def interrupted_session(self, patient: str, area: str) -> str | None:
        """Today's session of this patient and area that never ended (a crash), if any."""
        area = check_area(area)
        today = courses.local_day(self._clock(), self.tz)
        for past in reversed(self._patients.history(patient)):
            if (
                past.area == area
                and not past.ended
                and courses.local_day(past.started, self.tz) == today
            ):
                return past.session_id
        return None

    def attach(self, session_id: str, context: ContextSource) -> None:
        self.session(session_id)
        self.sources[session_id] = context

    def end_session(self, session_id: str, summary: Mapping[str, object] | None = None) -> int:
        """Log the session's end with its summary and, in the same transaction, a signed
        checkpoint covering it (checkpointer.py); returns the shots logged for it."""
        info = self.session(session_id)
        count = self.shots_logged(session_id)
        data = {"shots_logged": count, **(summary or {})}

        def append(txn: Txn, extra: Mapping[str, object]) -> int:
            message = f"session {session_id} ended: {count} shots logged"
            event = self.stage_event(
                "session_end", message, session_id=session_id, data={**data, **extra}
            )
            return self.append_event(txn, event, session_ref=info.ref)

        with self._db.lock, self._db.transaction("logging the session end") as txn:
            self._checkpointer.with_checkpoint(txn, lambda extra: append(txn, extra))
        self.sources.pop(session_id, None)
        self._bound.pop(info.ref, None)
        return count

    # ---- looking up -----------------------------------------------------------------------------
    def session(self, session_id: str) -> SessionInfo:
        found = self._sessions.get(session_id)
        if found is not None:
            return found
        rows = self._db.query(
            "SELECT s.id, p.patient, p.id, c.number, c.id, a.name, a.id, s.started,"
            " json_extract(s.body, '$.operator')"
            " FROM sessions s JOIN patients p ON p.id = s.patient_ref"
            " JOIN courses c ON c.id = s.course_ref JOIN areas a ON a.id = s.area_ref"
            " WHERE s.session = ?",
            (session_id,),
        )
        if not rows:
            raise UnknownRecord(f"shot log {self._db.path}: no session {session_id}")
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
            self._db.query(
                "SELECT 1 FROM events WHERE kind = 'session_end' AND session_ref = ?",
                (session_ref,),
            )
        )

    def shots_logged(self, session_id: str) -> int:
        info = self.session(session_id)
        rows = self._db.query("SELECT count(*) FROM shots WHERE session_ref = ?", (info.ref,))
        return int(rows[0][0])

    def session_dose(self, session_id: str) -> tuple[int, float]:
        info = self.session(session_id)
        rows = self._db.query(
            "SELECT count(*), coalesce(sum(fluence), 0.0) FROM shots WHERE session_ref = ?",
            (info.ref,),
        )
        return int(rows[0][0]), float(rows[0][1])

    # ---- events ---------------------------------------------------------------------------------
    def append_event(self, txn: Txn, event: StagedEvent, *, session_ref: int | None = None) -> int:
        """Append the event in `txn`, for `session_ref` or else event.session_id's session."""
        if session_ref is None and event.session_id is not None:
            session_ref = self.session(event.session_id).ref
        return append_event(txn, event, session_ref)

    def log_event(
        self,
        kind: str,
        message: str,
        *,
        who: str | None = None,
        session_id: str | None = None,
        data: dict[str, object] | None = None,
    ) -> int:
        """Append one event in a transaction of its own; durable on return."""
        event = self.stage_event(kind, message, who=who, session_id=session_id, data=data)
        with self._db.lock, self._db.transaction("storing events") as txn:
            return self.append_event(txn, event)

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

    # ---- the handpiece a session uses -----------------------------------------------------------
    def bind_handpiece(self, session_id: str, context: ShotContext) -> None:
        info = self.session(session_id)
        if self.bound_to(info.ref) == (context.serial, context.firmware):
            return
        with self._db.transaction(f"binding a handpiece to session {session_id}") as txn:
            self.bind(txn, info, context)

    def bound_to(self, session_ref: int, txn: Txn | None = None) -> tuple[str, str] | None:
        """(serial, firmware) of the handpiece last logged for the session (in `txn` too)."""
        if txn is not None and session_ref in txn.bound:
            return txn.bound[session_ref]
        if session_ref not in self._bound:
            rows = self._db.conn.execute(
                "SELECT json_extract(body, '$.data.serial'), json_extract(body, '$.data.firmware')"
                " FROM events WHERE session_ref = ? AND kind = 'handpiece' ORDER BY id DESC"
                " LIMIT 1",
                (session_ref,),
            ).fetchall()
            if rows:
                self._bound[session_ref] = (str(rows[0][0]), str(rows[0][1]))
        return self._bound.get(session_ref)

    def bind(self, txn: Txn, info: SessionInfo, context: ShotContext) -> None:
        """Log in `txn` that the session uses this handpiece (a `handpiece` event)."""
        self.append_event(
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
