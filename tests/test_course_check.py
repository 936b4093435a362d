"""The course rules judged across consoles (issue 14, SR-18), with a stand-in authority: what
the central store answers is merged with this console's log, its silence refuses unless a
service override, and every decision is logged. tests/test_fleet_courses.py does the same
against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from laserctl.records import (
    CourseOverride,
    CourseRuleBroken,
    RecordStore,
    UnknownRecord,
    open_store,
)
from laserctl.records.course_check import (
    DECISION_EVENT,
    CentralCourse,
    CentralUnreachable,
    OpenedCourse,
    judge,
    merged,
)
from laserctl.records.courses import PastSession

from .test_course_rules import CONTEXT, DAY, START, Clock, deliver_and_end, events, treat

OVERRIDE = CourseOverride("svc-anna", "dermatologist agreed a shorter interval in writing")


class Authority:
    """What a central store would answer: the sessions given, or silence."""

    where = "postgresql://central.example/fleet"

    def __init__(
        self, sessions: list[PastSession] | None = None, opened: list[OpenedCourse] | None = None
    ) -> None:
        self.sessions = sessions or []
        self.opened = opened or []
        self.down = ""
        self.asked: list[str] = []

    def course_of(self, patient: str) -> CentralCourse:
        self.asked.append(patient)
        if self.down:
            raise CentralUnreachable(self.where, self.down)
        return CentralCourse(patient, tuple(self.sessions), tuple(self.opened))


def elsewhere(k: int, at: float, area: str = "abdomen", course: int = 1) -> PastSession:
    return PastSession(f"S-B-{k}", course, area, at, 40, 28.0, True, "console-b")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> RecordStore:
    return open_store(tmp_path / "log.db", clock=clock, tz=dt.UTC)


def begin(store: RecordStore, authority: Authority, override: CourseOverride | None = None) -> str:
    return store.begin_session(
        "P-0042", "abdomen", context=lambda: CONTEXT, authority=authority, override=override
    )


@pytest.mark.req("SR-18")
def test_a_session_on_another_console_within_21_days_refuses_here(
    store: RecordStore, clock: Clock
) -> None:
    authority = Authority([elsewhere(1, START)])
    clock.now = START + 20 * DAY
    with pytest.raises(CourseRuleBroken, match="only 20 days since session S-B-1"):
        begin(store, authority)
    assert authority.asked == ["P-0042"]
    (decision,) = events(store, DECISION_EVENT)
    data = decision["data"]
    assert isinstance(data, dict)
    assert data["decision"] == "refused" and data["reachable"] is True
    assert data["from_other_consoles"] == 1 and data["consoles"] == ["console-b"]
    assert data["session"] is None
    (refusal,) = events(store, "refusal")
    assert refusal["data"]["central"] == authority.where  # type: ignore[index]
    clock.now = START + 21 * DAY
    sid = begin(store, authority)
    allowed = events(store, DECISION_EVENT)[-1]["data"]
    assert allowed["decision"] == "allowed" and allowed["session"] == sid  # type: ignore[index]
    assert allowed["sessions_in_course"] == 1  # type: ignore[index]


@pytest.mark.req("SR-18")
def test_the_sixth_session_of_a_course_spread_over_two_consoles_is_refused(
    store: RecordStore, clock: Clock
) -> None:
    authority = Authority([elsewhere(k, START + k * 21 * DAY) for k in range(3)])
    for k in (3, 4):
        clock.now = START + k * 21 * DAY
        sid = begin(store, authority)
        deliver_and_end(store, sid)
    clock.now = START + 5 * 21 * DAY
    with pytest.raises(CourseRuleBroken, match="course 1 already has 5 sessions on abdomen"):
        begin(store, authority)
    sid = begin(store, authority, OVERRIDE)
    (override,) = events(store, "override")
    assert override["who"] == "svc-anna" and override["data"]["offline"] is False  # type: ignore[index]
    last = events(store, DECISION_EVENT)[-1]
    assert last["data"]["decision"] == "overridden" and last["who"] == "svc-anna"  # type: ignore[index]
    assert last["data"]["reason"] == OVERRIDE.reason and last["data"]["session"] == sid  # type: ignore[index]


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_offline_the_session_is_refused_unless_a_service_override_says_why(
    store: RecordStore, clock: Clock
) -> None:
    authority = Authority()
    authority.down = "connection timed out after 3 s"
    with pytest.raises(CourseRuleBroken) as excinfo:
        begin(store, authority)
    text = str(excinfo.value)
    assert "central.example/fleet cannot be reached (connection timed out after 3 s)" in text
    assert "other consoles are unknown" in text
    assert store.history("P-0042") == []  # nothing began
    sid = begin(store, authority, OVERRIDE)
    (override,) = events(store, "override")
    assert "overridden offline" in str(override["message"])
    assert override["data"]["offline"] is True  # type: ignore[index]
    refused, overridden = (e["data"] for e in events(store, DECISION_EVENT))
    assert refused["decision"] == "refused" and refused["offline"] is True  # type: ignore[index]
    assert overridden["decision"] == "overridden" and overridden["offline"] is True  # type: ignore[index]
    assert overridden["error"] == "connection timed out after 3 s"  # type: ignore[index]
    assert overridden["who"] == "svc-anna" and overridden["session"] == sid  # type: ignore[index]


@pytest.mark.req("SR-18")
def test_without_a_central_store_nothing_changes(store: RecordStore, clock: Clock) -> None:
    treat(store)
    clock.now += 20 * DAY
    with pytest.raises(CourseRuleBroken):
        treat(store)
    assert events(store, DECISION_EVENT) == []
    (refusal,) = events(store, "refusal")
    assert set(refusal["data"]) == {"patient", "area", "course", "rules"}  # type: ignore[arg-type]


def test_a_session_both_here_and_central_counts_once(store: RecordStore, clock: Clock) -> None:
    first = treat(store)
    (mine,) = store.history("P-0042")
    pushed = PastSession(first, 1, "abdomen", mine.started, 1, 0.7, True, "console-a")
    history = merged(store.history("P-0042"), CentralCourse("P-0042", (pushed,)))
    assert history == [mine]  # the local record wins: it has the shots not pushed yet
    decision = judge("P-0042", "abdomen", [mine], 1, clock.now + 21 * DAY, dt.UTC, None)
    assert decision.reasons == () and decision.asked == ""


def test_a_course_opened_on_another_console_is_taken_over(store: RecordStore, clock: Clock) -> None:
    sessions = [elsewhere(k, START + k * 21 * DAY) for k in range(5)]
    opened = [
        OpenedCourse(1, "console-b"),
        OpenedCourse(2, "console-b", "svc-bo", "maintenance course agreed with the patient"),
    ]
    authority = Authority(sessions, opened)
    clock.now = START + 5 * 21 * DAY
    begin(store, authority)  # course 2: the five of course 1 do not count against it
    assert store.course_numbers("P-0042") == [2]
    (body,) = store.query("SELECT body FROM courses")
    course = json.loads(body[0])
    assert course["by"] == "svc-bo" and "opened on console console-b" in course["reason"]


def test_the_displays_remember_the_answer_and_the_silence_for_a_while() -> None:
    """The patient screen checks at every key typed: an unreachable store is not waited for
    again within 10 s, nor a patient asked twice; a session start asks the authority itself."""
    from laserctl.fleet.courses import Remembered

    now = [0.0]
    authority = Authority([elsewhere(1, START)])
    shown = Remembered(authority, seconds=10, clock=lambda: now[0])
    assert shown.course_of("P-0042").sessions == (elsewhere(1, START),)
    now[0] = 9.0
    shown.course_of("P-0042")
    assert authority.asked == ["P-0042"]
    now[0] = 10.0
    authority.down = "connection refused"
    with pytest.raises(CentralUnreachable):
        shown.course_of("P-0042")
    now[0] = 19.0
    with pytest.raises(CentralUnreachable):
        shown.course_of("P-0043")  # the silence is remembered, whoever is asked
    assert authority.asked == ["P-0042", "P-0042"]
    authority.down = ""
    now[0] = 20.0
    assert shown.course_of("P-0043").patient == "P-0043"
    assert shown.where == authority.where


def test_the_course_view_says_when_it_holds_this_consoles_sessions_only(
    store: RecordStore, clock: Clock
) -> None:
    from laserctl.fleet.courses import course_summary

    treat(store)
    authority = Authority([elsewhere(1, START - 30 * DAY)])
    summary, note = course_summary(store, "P-0042", authority)
    assert note.endswith("1 session(s) from other consoles (console-b)")
    (area,) = summary["courses"][0]["areas"]  # type: ignore[index]
    assert [s.get("console") for s in area["sessions"]] == ["console-b", None]
    authority.down = "connection refused"
    summary, note = course_summary(store, "P-0042", authority)
    assert "unreachable: connection refused: the sessions of this console only" in note
    assert summary == store.course_summary("P-0042")
    with pytest.raises(UnknownRecord, match="no patient P-0404"):
        course_summary(store, "P-0404", Authority())
