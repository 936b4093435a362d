"""The course rules' authority across consoles: the central store (PostgreSQL), read for a
patient's sessions on every console, and the course decisions the consoles shipped there
(SR-18, issue 14; laserctl.records.course_check is the policy).

The central store mirrors every console's chained SQLite tables in `fleet_rows` (console_id,
tbl, row_id, body: the record's JSON exactly as the console wrote it). A console's records
refer to each other by that console's row ids (a session's `patient`, `course` and `area`, a
shot's `session`), so every join below stays within one console_id; across consoles a patient
is the same person by the pseudonymous ID in its `patients` record.

Every call opens its own connection with a bounded connect and statement time (TIMEOUT_S
each): a console that cannot reach the store within that time refuses the session (unless an
override), it never hangs in front of the patient.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from laserctl.records.course_check import (
    DECISION_EVENT,
    CentralCourse,
    CentralUnreachable,
    CourseAuthority,
    OpenedCourse,
)
from laserctl.records.courses import PastSession
from laserctl.records.patients import check_patient_id

from .central import redact

if TYPE_CHECKING:
    from laserctl.records import RecordStore

TIMEOUT_S = 3.0
ENV_FLEET_URL = "LASERCTL_FLEET_URL"

# The patient's rows on each console, then that console's sessions of them with course number,
# area name, shots, dose and whether they ended: what records.patients.history reads locally.
# The fleet_ref/fleet_text expressions and the strpos filters are those of the indexes in
# course_index.py, so each step reads only the patient's rows.
SESSIONS_SQL = """
WITH pat AS (
    SELECT console_id, row_id FROM fleet_rows
    WHERE tbl = 'patients' AND fleet_text(body, 'patient') = %(patient)s
), ses AS (
    SELECT s.console_id, s.row_id, fleet_json(s.body) AS b
    FROM pat JOIN fleet_rows s ON s.console_id = pat.console_id AND s.tbl = 'sessions'
                              AND fleet_ref(s.body, 'patient') = pat.row_id
)
SELECT ses.console_id, ses.b ->> 'session', (fleet_json(c.body) ->> 'number')::int,
       fleet_json(a.body) ->> 'area', (ses.b ->> 'started')::float8, shot.n, shot.fluence,
       EXISTS (SELECT 1 FROM fleet_rows e
               WHERE e.console_id = ses.console_id AND e.tbl = 'events'
                 AND strpos(e.body, '"kind":"session_end"') > 0
                 AND fleet_ref(e.body, 'session') = ses.row_id
                 AND fleet_json(e.body) ->> 'kind' = 'session_end')
FROM ses
JOIN fleet_rows c ON c.console_id = ses.console_id AND c.tbl = 'courses'
                 AND c.row_id = (ses.b ->> 'course')::bigint
JOIN fleet_rows a ON a.console_id = ses.console_id AND a.tbl = 'areas'
                 AND a.row_id = (ses.b ->> 'area')::bigint
CROSS JOIN LATERAL (
    SELECT count(*) AS n,
           coalesce(sum((fleet_json(t.body) ->> 'fluence')::float8), 0) AS fluence
    FROM fleet_rows t
    WHERE t.console_id = ses.console_id AND t.tbl = 'shots'
      AND fleet_ref(t.body, 'session') = ses.row_id
) shot
ORDER BY 5, 2
"""

COURSES_SQL = """
WITH pat AS (
    SELECT console_id, row_id FROM fleet_rows
    WHERE tbl = 'patients' AND fleet_text(body, 'patient') = %(patient)s
)
SELECT c.console_id, (fleet_json(c.body) ->> 'number')::int, fleet_json(c.body) ->> 'by',
       fleet_json(c.body) ->> 'reason'
FROM pat JOIN fleet_rows c ON c.console_id = pat.console_id AND c.tbl = 'courses'
                          AND fleet_ref(c.body, 'patient') = pat.row_id
ORDER BY 2, 1
"""

# Rows the index expressions could not read (not JSON at all): on a console that treated the
# patient (or any patients row), a session there could be missed, so the question fails.
UNREADABLE_SQL = """
WITH pat AS (
    SELECT console_id FROM fleet_rows
    WHERE tbl = 'patients' AND fleet_text(body, 'patient') = %(patient)s
)
SELECT 'patients', count(*) FROM fleet_rows
WHERE tbl = 'patients' AND fleet_text(body, 'patient') IS NULL
UNION ALL
SELECT 'sessions', count(*) FROM fleet_rows
WHERE tbl = 'sessions' AND console_id IN (SELECT console_id FROM pat)
  AND fleet_ref(body, 'patient') IS NULL
UNION ALL
SELECT 'shots', count(*) FROM fleet_rows
WHERE tbl = 'shots' AND console_id IN (SELECT console_id FROM pat)
  AND fleet_ref(body, 'session') IS NULL
"""

DECISIONS_SQL = """
SELECT console_id, row_id, body FROM fleet_rows
WHERE tbl = 'events' AND strpos(body, '"kind":"course_decision"') > 0
  AND fleet_json(body) ->> 'kind' = %(kind)s
  AND (%(patient)s::text IS NULL OR fleet_json(body) -> 'data' ->> 'patient' = %(patient)s)
ORDER BY (fleet_json(body) ->> 'at')::float8, console_id, row_id
"""


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class CentralCourses:
    """CourseAuthority over the central store at `url` (a libpq URL, postgresql://...)."""

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._where = redact(url)

    @property
    def where(self) -> str:
        return self._where

    def _query(self, *asked: tuple[str, dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
        """Each (sql, params)'s rows, over one connection opened for them."""
        import psycopg

        try:
            with psycopg.connect(
                self.url,
                # libpq counts whole seconds, and at least 2
                connect_timeout=max(2, math.ceil(self.timeout_s)),
                options=f"-c statement_timeout={int(self.timeout_s * 1000)}",
            ) as conn:
                return [list(conn.execute(sql, params).fetchall()) for sql, params in asked]
        except (psycopg.Error, OSError) as exc:
            raise CentralUnreachable(self._where, _short(exc)) from exc

    def course_of(self, patient: str) -> CentralCourse:
        """Every session of `patient` the central store holds, from every console."""
        asked = {"patient": patient}
        rows, unreadable, courses = self._query(
            (SESSIONS_SQL, asked), (UNREADABLE_SQL, asked), (COURSES_SQL, asked)
        )
        bad = [f"{n} {table}" for table, n in unreadable if n]
        if bad:
            raise CentralUnreachable(
                self._where,
                f"it holds records the course rules cannot read ({', '.join(bad)}, not JSON): "
                "a session of the patient could be among them",
            )
        sessions = tuple(
            PastSession(
                str(sid), int(number), str(area), float(started), int(n), float(f), bool(e), cid
            )
            for cid, sid, number, area, started, n, f, e in rows
        )
        opened = tuple(
            OpenedCourse(int(number), str(cid), by, reason) for cid, number, by, reason in courses
        )
        return CentralCourse(patient, sessions, opened)

    def decisions(self, patient: str | None = None) -> list[Decision]:
        """The course decisions every console has shipped, oldest first."""
        import json

        (rows,) = self._query((DECISIONS_SQL, {"kind": DECISION_EVENT, "patient": patient}))
        out = []
        for cid, row_id, body in rows:
            record = json.loads(body)
            out.append(
                Decision(
                    str(cid),
                    int(row_id),
                    float(record.get("at") or 0.0),
                    record.get("who"),
                    str(record.get("message", "")),
                    dict(record.get("data") or {}),
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """A console's course decision as the central store holds it (a course_decision event)."""

    console: str
    row_id: int
    at: float
    who: str | None
    message: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The event's data, with where and when; `who` is who decided: the operator, or
        the service user who overrode the rules."""
        return {
            **self.data,
            "console": self.console,
            "row_id": self.row_id,
            "at": self.at,
            "who": self.who,
            "message": self.message,
        }


class Remembered:
    """An authority whose answers are remembered for `seconds`, for what is only shown (the
    patient screen checks the rules at every key typed into the patient ID): an unreachable
    store is not waited for again at every key. Never for the decision: a session start
    asks the authority itself."""

    def __init__(
        self,
        authority: CourseAuthority,
        seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.authority = authority
        self.seconds = seconds
        self._clock = clock
        self._answers: dict[str, tuple[float, CentralCourse]] = {}
        self._silent: tuple[float, CentralUnreachable] | None = None

    @property
    def where(self) -> str:
        return self.authority.where

    def course_of(self, patient: str) -> CentralCourse:
        now = self._clock()
        if self._silent is not None and now - self._silent[0] < self.seconds:
            raise self._silent[1]
        known = self._answers.get(patient)
        if known is not None and now - known[0] < self.seconds:
            return known[1]
        try:
            answer = self.authority.course_of(patient)
        except CentralUnreachable as exc:
            self._silent = (now, exc)
            raise
        self._silent = None
        self._answers[patient] = (now, answer)
        return answer


def course_summary(
    store: RecordStore, patient: str, authority: CourseAuthority | None
) -> tuple[dict[str, object], str]:
    """What `laserctl course show` prints, across consoles when `authority` is given, and a
    note saying what the central store added (or why it could not: this console's sessions
    only). UnknownRecord when no console knows the patient."""
    from laserctl.records import UnknownRecord
    from laserctl.records import courses as rules
    from laserctl.records.course_check import merged

    if authority is None:
        return store.course_summary(patient), ""
    check_patient_id(patient)
    history = store.history(patient)
    numbers = set(store.course_numbers(patient))
    try:
        central = authority.course_of(patient)
    except CentralUnreachable as exc:
        note = f"{exc}: the sessions of this console only"
    else:
        mine = {s.session_id for s in history}
        others = sorted({s.console for s in central.sessions if s.session_id not in mine})
        history = merged(history, central)
        numbers |= {c.number for c in central.courses}
        count = sum(1 for s in central.sessions if s.session_id not in mine)
        note = f"central store {authority.where}: {count} session(s) from other consoles" + (
            f" ({', '.join(others)})" if others else ""
        )
    if not numbers:
        raise UnknownRecord(f"shot log {store.path} and {authority.where}: no patient {patient}")
    return rules.summary(patient, history, sorted(numbers), store.tz), note
