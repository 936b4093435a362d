"""A full course session on every area, on each handpiece type, through `laserctl session`: the
patient's chest, abdomen, thighs and buttocks, each fired to its session budget, each logged;
then the course rules hold the next session on every area (SR-18)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .rig import AREAS, PATIENT, Dut, check_log, events

PULSES = 12  # the fast plan's session budget per area
SESSION = "confirm eyewear\narm\npress {pulses}\nrelease\narm\n"


def shot_times(db: Path, session: str) -> list[float]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT json_extract(s.body, '$.host_time') FROM shots s"
            " JOIN sessions x ON x.id = s.session_ref WHERE x.session = ? ORDER BY s.id",
            (session,),
        ).fetchall()
    finally:
        conn.close()
    return [float(t) for (t,) in rows]


@pytest.mark.needs_persistent_device  # a simulator per process would reuse its boot id
@pytest.mark.req("SR-05")
@pytest.mark.req("SR-08")
@pytest.mark.req("SR-11")
@pytest.mark.req("SR-18")
def test_a_full_session_on_every_area_then_the_course_rules_hold(dut: Dut, tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    dut.calibrate(db)
    first = dut.counter()
    sessions = []
    for area in AREAS:
        result = dut.session(db, area, SESSION.format(pulses=PULSES), max_pulses=PULSES)
        assert result.returncode == 0, result.stderr
        data = result.data
        assert data["faults"] == [], result.faults
        assert data["final_state"] == "STANDBY"
        # SR-08: the device was granted the session budget and stopped at it; re-arming with
        # nothing left is refused, naming the limit.
        assert data["pulses_used"] == data["shots_seen"] == PULSES
        assert result.step("press")["pulses"] == PULSES
        [refusal] = data["refusals"]
        assert refusal["command"] == "ARM" and "budget" in refusal["reason"], refusal
        assert f"max_pulses {PULSES}" in refusal["reason"]
        assert data["shots_logged"] == PULSES
        sessions.append(data["session_id"])
        # SR-05: the emission indication was logged before the first shot, and its end after
        # the last, in this session.
        times = shot_times(db, data["session_id"])
        emission = events(db, "emission", session=data["session_id"])
        assert [e["message"] for e in emission] == ["emission indication on", "emission stopped"]
        assert emission[0]["at"] <= times[0] and emission[1]["at"] >= times[-1]
    counter = dut.counter()
    assert counter == first + len(AREAS) * PULSES
    check_log(db, dut, first=first, last=counter, sessions=sessions)

    # SR-18: every area had its session today; the next one on any area is refused, logged,
    # and nothing fires.
    shown = dut.laserctl("course", "show", PATIENT, "--db", str(db), "--json")
    assert shown.returncode == 0, shown.stderr
    course = json.loads(shown.stdout)
    [current] = course["courses"]
    assert sorted(a["area"] for a in current["areas"]) == sorted(AREAS)
    for area in current["areas"]:
        [one] = area["sessions"]
        assert (one["shots"], one["ended"], one["counts"]) == (PULSES, True, True)
    assert set(course["next_session"]) == set(AREAS)
    again = dut.session(db, "thighs", SESSION.format(pulses=3), max_pulses=PULSES)
    assert again.returncode == 1
    assert "at least 21 days" in again.stderr and "SR-18" in again.stderr
    refusals = [e for e in events(db, "refusal") if "21 days" in str(e.get("message"))]
    assert refusals, "the refused session is not in the log"
    assert dut.counter() == counter  # nothing fired
    check_log(db, dut, first=first, last=counter, sessions=sessions)
