"""Treatment course rules at their boundaries (SR-18): at most 5 sessions per course and area,
at least 21 days since the previous session on that area; refusals and overrides are logged."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.protocol import Param
from laserctl.cli import main
from laserctl.records import (
    CourseOverride,
    CourseRuleBroken,
    RecordStore,
    ShotContext,
    open_store,
)
from laserctl.shotrecord import ShotRecord

CONTEXT = ShotContext(
    "FR-00001", "fractional-1550", "1.4.0", "plan", "cd" * 32, (("key", "closed"),)
)
DAY = 86_400.0
START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> RecordStore:
    return open_store(tmp_path / "log.db", clock=clock, tz=dt.UTC)


def treat(store: RecordStore, area: str = "abdomen", override: CourseOverride | None = None) -> str:
    """A session that delivers one shot and ends."""
    sid = store.begin_session("P-0042", area, context=lambda: CONTEXT, override=override)
    deliver_and_end(store, sid, area)
    return sid


def deliver_and_end(store: RecordStore, sid: str, area: str = "abdomen") -> None:
    """One shot in the session `sid` (on `area`), and its end."""
    count = store.query("SELECT count(*) FROM shots")[0][0]
    store.record(
        ShotRecord(
            sid,
            "plan",
            area,
            1,
            count + 1,
            0,
            Param.ENERGY_MJ,
            12.0,
            12.1,
            1800,
            ((Param.ENERGY_MJ, 12.0),),
            False,
            True,
            0.7,
            0.0,
        )
    )
    store.end_session(sid)


def events(store: RecordStore, kind: str) -> list[dict[str, object]]:
    return [
        json.loads(b)
        for (b,) in store.query("SELECT body FROM events WHERE kind = ? ORDER BY id", (kind,))
    ]


@pytest.mark.req("SR-18")
def test_day_20_is_refused_and_day_21_is_allowed(store: RecordStore, clock: Clock) -> None:
    first = treat(store)
    clock.now = START + 20 * DAY + 8 * 3600  # day 20, even if later in the day
    with pytest.raises(CourseRuleBroken) as excinfo:
        treat(store)
    assert f"only 20 days since session {first}" in str(excinfo.value)
    assert "not before 2026-03-23" in str(excinfo.value)
    refusals = events(store, "refusal")
    assert len(refusals) == 1 and refusals[0]["data"]["area"] == "abdomen"  # type: ignore[index]
    clock.now = START + 21 * DAY - 6 * 3600  # day 21 in the morning: 20.75 x 24 h, 21 days
    treat(store)
    assert len(store.history("P-0042")) == 2


@pytest.mark.req("SR-18")
def test_session_5_is_allowed_and_session_6_refused(store: RecordStore, clock: Clock) -> None:
    for k in range(5):
        clock.now = START + k * 21 * DAY
        treat(store)
    clock.now = START + 5 * 21 * DAY
    with pytest.raises(CourseRuleBroken, match="course 1 already has 5 sessions on abdomen"):
        treat(store)
    # other areas have their own count and interval
    treat(store, "thigh")
    summary = store.course_summary("P-0042")
    assert summary["next_session"] == {"abdomen": None, "thigh": "2026-07-06"}


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_a_service_override_with_a_written_reason_is_logged(
    store: RecordStore, clock: Clock
) -> None:
    treat(store)
    clock.now += 7 * DAY
    with pytest.raises(ValueError, match="written reason"):
        CourseOverride("svc-anna", "ok")
    override = CourseOverride("svc-anna", "dermatologist asked for a touch-up after 7 days")
    sid = treat(store, override=override)
    (logged,) = events(store, "override")
    assert logged["who"] == "svc-anna"
    assert logged["data"]["reason"] == override.reason  # type: ignore[index]
    assert "only 7 days" in logged["data"]["rules"][0]  # type: ignore[index]
    session_body = json.loads(
        store.query("SELECT body FROM sessions WHERE session = ?", (sid,))[0][0]
    )
    assert session_body["override"] is not None
    assert not events(store, "refusal")


@pytest.mark.req("SR-18")
def test_a_session_without_shots_does_not_count(store: RecordStore, clock: Clock) -> None:
    empty = store.begin_session("P-0042", "abdomen")
    store.end_session(empty)
    clock.now += 3600
    treat(store)  # same day: the first session treated nothing


@pytest.mark.req("SR-18")
def test_a_new_course_is_a_logged_service_action_and_keeps_the_interval(
    store: RecordStore, clock: Clock
) -> None:
    for k in range(5):
        clock.now = START + k * 21 * DAY
        treat(store)
    clock.now += 10 * DAY
    assert store.open_course("P-0042", who="svc-ben", reason="maintenance course agreed") == 2
    service = events(store, "service")
    assert service[-1]["who"] == "svc-ben" and service[-1]["data"]["course"] == 2  # type: ignore[index]
    with pytest.raises(CourseRuleBroken, match="only 10 days"):
        treat(store)  # the interval holds across courses
    clock.now += 11 * DAY
    sid = treat(store)
    assert store.session(sid).course == 2


def test_course_show_lists_sessions_dose_and_the_next_date(
    store: RecordStore, clock: Clock
) -> None:
    first = treat(store)
    clock.now = START + 21 * DAY
    treat(store)
    store.close()
    result = CliRunner().invoke(main, ["course", "show", "P-0042", "--db", str(store.path)])
    assert result.exit_code == 0, result.output
    assert "course 1" in result.output and first in result.output
    assert "abdomen: 2 session(s), 2 shots, 1.4 J/cm2" in result.output
    assert "abdomen: from 2026-04-13" in result.output
    as_json = CliRunner().invoke(
        main, ["course", "show", "P-0042", "--db", str(store.path), "--json"]
    )
    data = json.loads(as_json.output)
    assert data["courses"][0]["areas"][0]["treated_sessions"] == 2
    missing = CliRunner().invoke(main, ["course", "show", "P-9999", "--db", str(store.path)])
    assert missing.exit_code == 1 and "no patient P-9999" in missing.output
