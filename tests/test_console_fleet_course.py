"""The console with a central store (`laserctl console --fleet URL`, issue 14): the patient
screen and the course screen (F6) count the patient's sessions on the other consoles; a
session they rule out is refused; while the central store cannot be reached the refusal says
so, and only a service login with a written reason starts the session, logged as an offline
override that reaches the central store with the next push (SR-18, SR-19). By keyboard."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from laserctl.auth import console_key
from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.screens.course import CourseScreen
from laserctl.console.screens.dialogs import CourseRefusedDialog, ReasonDialog
from laserctl.console.screens.service import ServiceLoginDialog
from laserctl.console.screens.setup import SetupScreen
from laserctl.console.screens.treatment import TreatmentScreen
from laserctl.fleet.courses import CentralCourses
from laserctl.fleet.push import push
from laserctl.records.course_check import DECISION_EVENT

from .test_console import (
    FAST_HASHER,
    SERVICE_PASSWORD,
    SERVICE_USER,
    _treated_before,
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
from .test_course_rules import events
from .test_fleet_courses import migrate

PATIENT = "P-0077"


def clinic_at(tmp_path: Path, name: str, fleet_url: str) -> Clinic:
    return Clinic(
        tmp_path / f"{name}.db",
        accounts_dir=tmp_path / "config",
        reports_dir=tmp_path / f"reports-{name}",
        hasher=FAST_HASHER,
        fleet_url=fleet_url,
        console_key=lambda: console_key.load_or_create(tmp_path / f"{name}.pem"),
    )


def focused(app: ConsoleApp) -> str | None:
    return app.focused.id if app.focused is not None else None


def pushed(clinic: Clinic, url: str) -> str:
    """`laserctl fleet push` of the clinic's log, with the key that signs its checkpoints;
    returns the console's id."""
    assert clinic.console_key is not None
    key = clinic.console_key()
    push(clinic.store.path, url, key=key)
    return key.console_id


@pytest.mark.req("SR-18")
def test_the_console_counts_the_sessions_of_the_other_consoles(
    tmp_path: Path, pg_url: str
) -> None:
    migrate(pg_url)
    a = clinic_at(tmp_path, "a", pg_url)
    _treated_before(a, PATIENT, "abdomen")  # today, on console A
    a_id = pushed(a, pg_url)
    a.close()
    b = clinic_at(tmp_path, "b", pg_url)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await to_setup(pilot, app)
        await type_into(pilot, "#patient", PATIENT)
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        await until(pilot, lambda: setup.course and setup.course.patient == PATIENT, "check")
        text = shown(setup, "#course")
        assert f"1 session(s) of this patient on other consoles ({a_id}), counted" in text
        assert "only 0 days since session" in text
        await keys(pilot, "f6")
        await until(pilot, lambda: on(app, CourseScreen), "the course screen")
        course = app.screen
        assert isinstance(course, CourseScreen)
        await until(pilot, lambda: course.lines, "the courses")
        assert any(f"(console {a_id})" in line for line in course.lines)
        assert course.lines[-1].endswith(f"1 session(s) from other consoles ({a_id})")
        await keys(pilot, "b")
        await until(pilot, lambda: on(app, SetupScreen), "the patient screen")
        await keys(pilot, "f5")
        await until(pilot, lambda: on(app, CourseRefusedDialog), "the refusal")
        dialog = app.screen
        assert isinstance(dialog, CourseRefusedDialog) and not dialog.offline
        await until(pilot, lambda: shown(dialog, "#reasons"), "the reasons")  # composed
        assert "at least 21 days" in shown(dialog, "#reasons")
        await keys(pilot, "n")
        await until(pilot, lambda: on(app, SetupScreen), "back")
        assert app.session is None  # nothing was connected

    drive(console(b), scenario)
    (decision,) = events(b.store, DECISION_EVENT)
    assert decision["data"]["decision"] == "refused"  # type: ignore[index]
    assert decision["data"]["consoles"] == [a_id]  # type: ignore[index]


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_offline_the_console_refuses_and_a_service_override_is_logged_and_shipped_later(
    tmp_path: Path, pg_url: str
) -> None:
    migrate(pg_url)
    clinic = clinic_at(tmp_path, "c", f"postgresql://postgres@/fleet?host={tmp_path}/gone&port=1")
    service_account(clinic)
    reason = "central store down; patient's card shows no session in 6 weeks"

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await to_setup(pilot, app)
        await type_into(pilot, "#patient", PATIENT)
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        await until(pilot, lambda: setup.course and setup.course.patient == PATIENT, "check")
        assert "unreachable" in shown(setup, "#course")
        assert "a session needs a service override" in shown(setup, "#course")
        await keys(pilot, "f5")
        await until(pilot, lambda: on(app, CourseRefusedDialog), "the refusal")
        dialog = app.screen
        assert isinstance(dialog, CourseRefusedDialog) and dialog.offline
        await until(
            pilot, lambda: shown(dialog, "#reasons") and shown(dialog, "#explain"), "composed"
        )
        assert "cannot be reached" in shown(dialog, "#reasons")
        assert "logged as made offline" in shown(dialog, "#explain")
        await until(pilot, lambda: focused(app) == "back", "Back focused")  # safe on arrival
        await keys(pilot, "tab")
        await until(pilot, lambda: focused(app) == "override", "Override one Tab away")
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, ServiceLoginDialog), "the service login")
        await type_into(pilot, "#user", SERVICE_USER)
        await type_into(pilot, "#password", SERVICE_PASSWORD)
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, ReasonDialog), "the reason")
        asked = app.screen
        assert isinstance(asked, ReasonDialog) and "without the central store" in asked.prompt
        await type_into(pilot, "#reason", reason)
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, TreatmentScreen), "the treatment screen")

    drive(console(clinic), scenario)
    (override,) = events(clinic.store, "override")
    assert override["who"] == SERVICE_USER and override["data"]["offline"] is True  # type: ignore[index]
    central = CentralCourses(pg_url)
    assert central.decisions(PATIENT) == []  # decided offline: not there yet
    c_id = pushed(clinic, pg_url)
    refused, overridden = central.decisions(PATIENT)
    assert refused.console == c_id and refused.data["offline"] is True
    assert overridden.data["decision"] == "overridden" and overridden.data["offline"] is True
    assert overridden.who == SERVICE_USER and overridden.data["reason"] == reason


def test_training_asks_no_central_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """--training with --fleet is a usage error; $LASERCTL_FLEET_URL set for the clinic is
    simply not used by a training console (nothing of it is recorded or asked)."""
    from click.testing import CliRunner

    from laserctl.cli import main

    given = CliRunner().invoke(main, ["console", "--training", "--fleet", "postgresql:///x"])
    assert given.exit_code == 2 and "no --fleet" in given.output
    seen: list[object] = []
    monkeypatch.setattr(ConsoleApp, "run", lambda app: seen.append(app.clinic.authority))
    monkeypatch.setenv("LASERCTL_FLEET_URL", "postgresql:///x")
    from_env = CliRunner().invoke(main, ["console", "--training"])
    assert from_env.exit_code == 0, from_env.output
    assert seen == [None]
