"""The course rules across consoles (SR-18, issue 14): who is asked before a session starts,
and what the console decided.

A console alone knows only the sessions in its own shot log; a patient treated on the abdomen
at another console of the clinic chain last week is, to it, a new patient. With a central
store configured (`--fleet URL`), the console asks a CourseAuthority for the patient's
sessions on every console before it begins a session, and judges the rules (courses.py) on
the union of its own log and that answer. Patients are the same person across consoles by
their pseudonymous patient ID.

- Reachable: the rules are judged on the union; a break is refused unless a service user
  overrides it with a written reason (SR-18, SR-19), as for one console.
- Unreachable (offline, a timeout, an error): the console cannot know what other consoles
  did, so the session is refused unless a service user overrides it with a written reason;
  the override says it was made offline.
- Either way the decision is logged as a `course_decision` event (kind, the central store's
  answer, the rules, who and why), which `laserctl fleet push` ships like any other record:
  what the console decided is visible centrally (`laserctl fleet decisions`).

This module is pure: the authority is a Protocol (laserctl.fleet.courses implements it over
PostgreSQL); sessions.py asks it and writes what judge() decides.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import courses
from .courses import CourseOverride, PastSession

DECISION_EVENT = "course_decision"


class CentralUnreachable(Exception):
    """The central store did not answer (offline, a timeout, an error); says which and why.
    Never carries a password: `where` is the URL without it."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"the central store {where} is unreachable: {why}")
        self.where = where
        self.why = why


@dataclass(frozen=True, slots=True)
class OpenedCourse:
    """A course of the patient opened on some console (the first by its first session, the
    next ones by a service user with a reason)."""

    number: int
    console: str
    by: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CentralCourse:
    """What the central store knows of a patient: the sessions from every console that has
    pushed (this one's too, as far as pushed; PastSession.console names the console), and
    the courses opened for the patient on any of them."""

    patient: str
    sessions: tuple[PastSession, ...]
    courses: tuple[OpenedCourse, ...] = ()


class CourseAuthority(Protocol):
    """Who knows a patient's sessions across consoles. `where` names it for messages and the
    log (no credentials); course_of raises CentralUnreachable within a bounded time."""

    @property
    def where(self) -> str: ...

    def course_of(self, patient: str) -> CentralCourse: ...


def merged(local: Sequence[PastSession], central: CentralCourse) -> list[PastSession]:
    """This console's sessions and those only the central store knows, oldest first. A
    session in both is taken from the local log: it has the shots not pushed yet."""
    mine = {s.session_id for s in local}
    both = [*local, *(s for s in central.sessions if s.session_id not in mine)]
    return sorted(both, key=lambda s: (s.started, s.session_id))


@dataclass(frozen=True, slots=True)
class CourseDecision:
    """The course rules for a new session, judged with (or without) the central store."""

    patient: str
    area: str
    course: int  # the course the session belongs to
    reasons: tuple[str, ...]  # why it breaks the rules, the central store's silence included
    history: tuple[PastSession, ...]  # what the rules were judged on
    asked: str  # the central store asked ("" when none is configured)
    reachable: bool
    error: str = ""  # why the central store did not answer
    elsewhere: tuple[PastSession, ...] = ()  # sessions only the central store knows
    adopt: OpenedCourse | None = None  # a later course opened on another console, not here yet
    consoles: tuple[str, ...] = field(default=())  # the other consoles that treated the patient

    @property
    def offline(self) -> bool:
        return bool(self.asked) and not self.reachable

    def treated_in_course(self) -> int:
        return sum(1 for s in courses.treated(self.history, self.area) if s.course == self.course)

    def outcome(self, override: CourseOverride | None) -> str:
        if not self.reasons:
            return "allowed"
        return "refused" if override is None else "overridden"

    def event_data(
        self, override: CourseOverride | None, session_id: str | None
    ) -> dict[str, object]:
        """The `course_decision` event's data: what `laserctl fleet decisions` shows."""
        outcome = self.outcome(override)
        return {
            "patient": self.patient,
            "area": self.area,
            "course": self.course,
            "decision": outcome,
            "central": self.asked,
            "reachable": self.reachable,
            "error": self.error or None,
            "offline": self.offline,
            "sessions_in_course": self.treated_in_course(),
            "from_other_consoles": len(self.elsewhere),
            "consoles": list(self.consoles),
            "rules": list(self.reasons),
            "who": override.who if override is not None and self.reasons else None,
            "reason": override.reason if override is not None and self.reasons else None,
            "session": session_id,
        }

    def message(self, override: CourseOverride | None) -> str:
        outcome = self.outcome(override)
        if self.reachable:
            known = (
                f"{self.treated_in_course()} treated session(s) on {self.area} in course "
                f"{self.course}, {len(self.elsewhere)} of them from other consoles"
            )
        else:
            known = f"central store unreachable ({self.error})"
        text = f"course check for {self.patient} on {self.area}: {known}: {outcome}"
        if outcome == "overridden" and override is not None:
            how = " offline" if self.offline else ""
            text += f"{how} by {override.who}: {override.reason}"
        elif outcome == "refused":
            text += ": " + "; ".join(self.reasons)
        return text


def judge(
    patient: str,
    area: str,
    local: Sequence[PastSession],
    local_course: int | None,
    now: float,
    tz: dt.tzinfo | None,
    authority: CourseAuthority | None,
) -> CourseDecision:
    """The course rules for a new session of `patient` on `area` at `now`: this console's
    history and latest course number (None: the patient is new here), and what `authority`
    (None: not configured, the rules are this console's alone) answers."""
    if authority is None:
        number = local_course or 1
        reasons = courses.rule_breaks(local, number, area, now, tz)
        return CourseDecision(patient, area, number, tuple(reasons), tuple(local), "", True)
    try:
        central = authority.course_of(patient)
    except CentralUnreachable as exc:
        number = local_course or 1
        reasons = [
            f"the central store {exc.where} cannot be reached ({exc.why}): the sessions of "
            f"{patient} on other consoles are unknown"
        ]
        reasons += courses.rule_breaks(local, number, area, now, tz)
        return CourseDecision(
            patient, area, number, tuple(reasons), tuple(local), exc.where, False, exc.why
        )
    history = merged(local, central)
    mine = {s.session_id for s in local}
    elsewhere = tuple(s for s in central.sessions if s.session_id not in mine)
    latest = max(central.courses, key=lambda c: c.number, default=None)
    number = max(local_course or 1, latest.number if latest else 1)
    # A course opened on another console (a service user's, with a reason) is this one's too.
    adopt = latest if latest is not None and latest.number > (local_course or 1) else None
    reasons = courses.rule_breaks(history, number, area, now, tz)
    consoles = tuple(sorted({s.console for s in elsewhere if s.console}))
    return CourseDecision(
        patient,
        area,
        number,
        tuple(reasons),
        tuple(history),
        authority.where,
        True,
        elsewhere=elsewhere,
        adopt=adopt,
        consoles=consoles,
    )


def decision_line(decision: Mapping[str, object]) -> str:
    """One decision's data (event_data) in a line, for `fleet decisions` and the console."""
    outcome = str(decision.get("decision"))
    where = "offline" if decision.get("offline") else "central"
    line = (
        f"{decision.get('patient')} {decision.get('area')} course {decision.get('course')}: "
        f"{outcome} ({where}; {decision.get('sessions_in_course')} session(s) in the course, "
        f"{decision.get('from_other_consoles')} from other consoles)"
    )
    if decision.get("who"):
        line += f" by {decision.get('who')}: {decision.get('reason')}"
    return line
