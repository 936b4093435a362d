"""Patients, their treated areas and their courses, as the shot log holds them (SR-18).

A patient is an opaque pseudonymous ID, never a name. The course rules themselves are
courses.py (pure); this module reads and writes the rows they are judged on.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from . import courses
from .course_check import CourseDecision
from .courses import CourseOverride, PastSession
from .db import Database
from .errors import RecordError, UnknownRecord
from .events import StagedEvent, append_event
from .txn import Txn

PATIENT_ID = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AREA_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


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


class Patients:
    def __init__(self, db: Database, clock: Callable[[], float], tz: dt.tzinfo | None) -> None:
        self._db = db
        self._clock = clock
        self.tz = tz

    def ref(self, txn: Txn | None, patient: str, create: bool) -> int | None:
        """The patient's row id; added in `txn` if `create` and new, else None if new."""
        row = self._db.conn.execute(
            "SELECT id FROM patients WHERE patient = ?", (patient,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create or txn is None:
            return None
        return txn.append("patients", {"patient": patient, "created": self._clock()})

    def area_ref(self, txn: Txn, patient_ref: int, area: str) -> int:
        row = self._db.conn.execute(
            "SELECT id FROM areas WHERE patient_ref = ? AND name = ?", (patient_ref, area)
        ).fetchone()
        if row is not None:
            return int(row[0])
        return txn.append("areas", {"patient": patient_ref, "area": area, "created": self._clock()})

    def latest_course(self, patient_ref: int) -> tuple[int, int] | None:
        """(row id, number) of the patient's latest course."""
        row = self._db.conn.execute(
            "SELECT id, number FROM courses WHERE patient_ref = ? ORDER BY number DESC LIMIT 1",
            (patient_ref,),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def course_for(
        self,
        txn: Txn,
        patient_ref: int,
        decision: CourseDecision,
        now: float,
        operator: str | None,
    ) -> int:
        """The row id of the course the session belongs to: the first opens with the first
        session; a later one opened on another console is taken over here (the central
        store's answer), with who opened it and where."""
        course = self.latest_course(patient_ref)
        adopt = decision.adopt
        if course is None or (adopt is not None and adopt.number > course[1]):
            number = adopt.number if adopt is not None else 1
            by = adopt.by if adopt is not None else operator
            reason = None
            if adopt is not None:
                reason = f"opened on console {adopt.console or '?'}"
                reason += f": {adopt.reason}" if adopt.reason else ""
            ref = txn.append(
                "courses",
                {
                    "patient": patient_ref,
                    "number": number,
                    "opened": now,
                    "by": by,
                    "reason": reason,
                },
            )
            course = (ref, number)
        if course[1] != decision.course:
            raise RecordError(
                f"shot log {self._db.path}: the course of the patient changed while the rules "
                f"were checked (course {course[1]}, checked {decision.course}): try again"
            )
        return course[0]

    def history(self, patient: str) -> list[PastSession]:
        """Every session of the patient, oldest first, with shots and dose."""
        rows = self._db.query(
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
        rows = self._db.query(
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
            raise UnknownRecord(f"shot log {self._db.path}: no patient {patient}")
        return courses.summary(patient, self.history(patient), numbers, self.tz)

    def open_course(self, patient: str, *, who: str, reason: str) -> int:
        """Start the patient's next course (a service action, logged with who and why).
        Returns its number. The first course opens by itself with the first session."""
        check_patient_id(patient)
        override = CourseOverride(who, reason)  # the same written-reason rule
        with self._db.transaction(f"opening a course for {patient}") as txn:
            patient_ref = self.ref(txn, patient, create=True)
            assert patient_ref is not None
            latest = self.latest_course(patient_ref)
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
            append_event(
                txn,
                StagedEvent(
                    "service",
                    f"course {number} opened for {patient}: {override.reason}",
                    self._clock(),
                    who=override.who,
                    data={"action": "open_course", "patient": patient, "course": number},
                ),
                None,
            )
        return number
