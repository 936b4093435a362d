"""Treatment course rules (SR-18) and the course view.

From the product's origin document: "no more than 5 procedures", "the interval between visits
is 3-4 weeks". Per patient and area:

- at most MAX_SESSIONS_PER_COURSE sessions in one course;
- at least MIN_DAYS_BETWEEN calendar days since the previous session on that area, in any
  course (the skin heals on its own schedule, whatever the bookkeeping says).

A session counts once it has delivered a shot: one begun and ended without a pulse treated
nothing. Days are calendar days in the clinic's time zone: a session on day 0 at 17:00 and the
next on day 21 at 09:00 are 21 days apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_SESSIONS_PER_COURSE = 5
MIN_DAYS_BETWEEN = 21


@dataclass(frozen=True, slots=True)
class PastSession:
    session_id: str
    course: int
    area: str
    started: float  # wall-clock seconds
    shots: int
    fluence_j_cm2: float  # summed over the session's shots
    ended: bool
    console: str = ""  # the console that ran it, when known from the central store (issue 14)


@dataclass(frozen=True, slots=True)
class CourseOverride:
    """A service user's decision to run a session the rules refuse (SR-18, SR-19). The caller
    has checked `who`'s service credentials; the store logs who and the written reason."""

    who: str
    reason: str

    def __post_init__(self) -> None:
        if not self.who.strip():
            raise ValueError("an override needs the service user's name")
        if len(self.reason.strip()) < 10:
            raise ValueError("an override needs a written reason (at least 10 characters)")


def local_day(at: float, tz: dt.tzinfo | None) -> dt.date:
    return dt.datetime.fromtimestamp(at, tz).date()


def treated(history: Sequence[PastSession], area: str) -> list[PastSession]:
    return sorted((s for s in history if s.area == area and s.shots > 0), key=lambda s: s.started)


def rule_breaks(
    history: Sequence[PastSession], course: int, area: str, now: float, tz: dt.tzinfo | None
) -> list[str]:
    """Why a new session on `area` in `course` at `now` breaks the rules; empty if it does not."""
    reasons = []
    on_area = treated(history, area)
    in_course = [s for s in on_area if s.course == course]
    if len(in_course) >= MAX_SESSIONS_PER_COURSE:
        reasons.append(
            f"course {course} already has {len(in_course)} sessions on {area} "
            f"(at most {MAX_SESSIONS_PER_COURSE} per course and area)"
        )
    if on_area:
        last = on_area[-1]
        last_day = local_day(last.started, tz)
        days = (local_day(now, tz) - last_day).days
        if days < MIN_DAYS_BETWEEN:
            allowed = last_day + dt.timedelta(days=MIN_DAYS_BETWEEN)
            reasons.append(
                f"only {days} days since session {last.session_id} on {area} ({last_day}); "
                f"at least {MIN_DAYS_BETWEEN} days are needed, so not before {allowed}"
            )
    return reasons


def next_allowed(
    history: Sequence[PastSession], course: int, area: str, tz: dt.tzinfo | None
) -> dt.date | None:
    """The first day a new session on `area` may start in `course`; None when the course has
    no session left for that area."""
    on_area = treated(history, area)
    if sum(1 for s in on_area if s.course == course) >= MAX_SESSIONS_PER_COURSE:
        return None
    if not on_area:
        return dt.date.min
    return local_day(on_area[-1].started, tz) + dt.timedelta(days=MIN_DAYS_BETWEEN)


def summary(
    patient: str,
    history: Sequence[PastSession],
    course_numbers: Sequence[int],
    tz: dt.tzinfo | None,
) -> dict[str, object]:
    """The course view `laserctl course show` prints: per course and area the sessions with
    dates, shots and dose, and when the next session on each area may start."""
    current = max(course_numbers, default=0)
    out_courses = []
    for number in sorted(set(course_numbers) | {s.course for s in history}):
        in_course = [s for s in history if s.course == number]
        areas = []
        for area in sorted({s.area for s in in_course}):
            sessions = [s for s in in_course if s.area == area]
            areas.append(
                {
                    "area": area,
                    "sessions": [
                        {
                            "session": s.session_id,
                            "date": local_day(s.started, tz).isoformat(),
                            "shots": s.shots,
                            "fluence_j_cm2": round(s.fluence_j_cm2, 3),
                            "ended": s.ended,
                            "counts": s.shots > 0,
                            **({"console": s.console} if s.console else {}),
                        }
                        for s in sessions
                    ],
                    "treated_sessions": sum(1 for s in sessions if s.shots > 0),
                    "shots": sum(s.shots for s in sessions),
                    "fluence_j_cm2": round(sum(s.fluence_j_cm2 for s in sessions), 3),
                }
            )
        out_courses.append({"course": number, "areas": areas})
    next_session: dict[str, str | None] = {}
    for area in sorted({s.area for s in history}):
        allowed = next_allowed(history, current, area, tz)
        if allowed is None:
            next_session[area] = None
        else:
            next_session[area] = "any day" if allowed == dt.date.min else allowed.isoformat()
    return {
        "patient": patient,
        "current_course": current,
        "courses": out_courses,
        "next_session": next_session,
        "rules": {
            "max_sessions_per_course_and_area": MAX_SESSIONS_PER_COURSE,
            "min_days_between_sessions_on_an_area": MIN_DAYS_BETWEEN,
        },
    }


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """summary() as the lines `laserctl course show` prints and the console's course screen
    shows."""
    rules = summary["rules"]
    out = [
        f"patient {summary['patient']}: course {summary['current_course']} is current "
        f"(at most {rules['max_sessions_per_course_and_area']} sessions per course and area, "
        f"{rules['min_days_between_sessions_on_an_area']} days apart)"
    ]
    for course_entry in summary["courses"]:
        out.append(f"course {course_entry['course']}")
        if not course_entry["areas"]:
            out.append("  no sessions yet")
        for area in course_entry["areas"]:
            out.append(
                f"  {area['area']}: {area['treated_sessions']} session(s), {area['shots']} shots, "
                f"{area['fluence_j_cm2']:.1f} J/cm2"
            )
            for s in area["sessions"]:
                note = "" if s["ended"] else "  (interrupted)"
                if not s["counts"]:
                    note += "  (no shots: does not count)"
                if s.get("console"):
                    note += f"  (console {s['console']})"
                out.append(
                    f"    {s['date']}  {s['session']}  {s['shots']:>6} shots  "
                    f"{s['fluence_j_cm2']:>10.1f} J/cm2{note}"
                )
    out.append("next session")
    for area, when in summary["next_session"].items():
        if when is None:
            out.append(f"  {area}: none left in course {summary['current_course']}")
        else:
            out.append(f"  {area}: from {when}")
    return out
