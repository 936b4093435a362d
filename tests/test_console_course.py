"""A patient's course in the console (issue 15): F6 on the patient screen shows every course,
the sessions per area with their dose and when the next may start (what `laserctl course show`
prints), and a service engineer opens the next course there with a written reason, logged
with who and why (SR-18, SR-19)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.screens.course import CourseScreen
from laserctl.console.screens.dialogs import ReasonDialog
from laserctl.console.screens.service import ServiceLoginDialog
from laserctl.console.screens.setup import SetupScreen
from laserctl.records.courses import summary_lines

from .test_console import (
    SERVICE_PASSWORD,
    SERVICE_USER,
    _treated_before,
    clinic_in,
    console,
    drive,
    keys,
    on,
    service_account,
    shown,
    to_setup,
    type_into,
    until,
)


@pytest.fixture
def clinic(tmp_path: Path) -> Clinic:
    return clinic_in(tmp_path)


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_the_course_is_shown_and_only_a_service_login_with_a_reason_opens_the_next(
    clinic: Clinic,
) -> None:
    service_account(clinic)
    _treated_before(clinic, "P-0009", "thighs")
    expected = summary_lines(clinic.store.course_summary("P-0009"))

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await to_setup(pilot, app)
        await type_into(pilot, "#patient", "P-0009")
        await keys(pilot, "f6")
        await until(pilot, lambda: on(app, CourseScreen), "the course screen")
        course = app.screen
        assert isinstance(course, CourseScreen)
        await until(pilot, lambda: course.lines, "the courses")
        assert course.lines == expected  # what `laserctl course show` prints
        text = shown(course, "#courses")
        assert "thighs: 1 session(s), 1 shots" in text and "thighs: from " in text
        await keys(pilot, "o")
        await until(pilot, lambda: on(app, ServiceLoginDialog), "the service login")
        await type_into(pilot, "#user", SERVICE_USER)
        await type_into(pilot, "#password", "wrong password!")
        await keys(pilot, "enter")
        login = app.screen
        await until(pilot, lambda: "refused" in shown(login, "#login-error"), "refused")
        await type_into(pilot, "#password", SERVICE_PASSWORD)
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, ReasonDialog), "the reason")
        await type_into(pilot, "#reason", "too short")
        await keys(pilot, "enter")
        assert on(app, ReasonDialog)  # 10 characters or more
        await type_into(pilot, "#reason", " - maintenance course agreed with the patient")
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, CourseScreen), "back on the course screen")
        await until(pilot, lambda: "course 2 opened" in shown(course, "#course-note"), "opened")
        await until(pilot, lambda: "course 2 is current" in shown(course, "#courses"), "shown")
        await keys(pilot, "b")
        await until(pilot, lambda: on(app, SetupScreen), "the patient screen")

    drive(console(clinic), scenario)
    assert clinic.store.course_numbers("P-0009") == [1, 2]
    rows = clinic.store.query("SELECT body FROM events WHERE kind = 'service'")
    opened = [b for (b,) in rows if '"open_course"' in b]
    assert len(opened) == 1 and SERVICE_USER in opened[0] and "maintenance course" in opened[0]


def test_a_patient_without_sessions_is_named_on_the_course_screen(clinic: Clinic) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await to_setup(pilot, app)
        await type_into(pilot, "#patient", "P-0404")
        await keys(pilot, "f6")
        await until(pilot, lambda: on(app, CourseScreen), "the course screen")
        await until(pilot, lambda: "no patient P-0404" in shown(app.screen, "#courses"), "why")

    drive(console(clinic), scenario)
