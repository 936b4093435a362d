"""Resuming an interrupted session from the console (issue 15), as `laserctl session --resume`
does: `laserctl session` is killed with SIGKILL mid-burst against a simulator in its own
process; the console, on the same shot log and handpiece, offers the interrupted session on
the patient screen, F7 resumes it, the shots the handpiece kept are re-read and shown, and the
log ends with every shot the device fired exactly once, in that session (SR-11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Static

from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.discovery import simulators
from laserctl.console.host import ConsoleConfig
from laserctl.console.screens.report import ReportScreen
from laserctl.console.screens.setup import SetupScreen
from laserctl.console.screens.treatment import TreatmentScreen
from laserctl.console.widgets import DosePanel
from laserctl.plan import load_plan

from .test_console import FAST_HASHER, click, drive, keys, to_setup, type_into, until
from .test_crash_recovery import (
    PATIENT,
    check_log,
    device_shot_counter,
    session_killed_mid_burst,
    stored_shots,
)


@pytest.mark.slow
@pytest.mark.req("SR-11")
def test_the_console_resumes_an_interrupted_session_and_shows_the_reread_shots(
    pty_sim: str, tmp_path: Path
) -> None:
    db = tmp_path / "log.db"
    plan_file = session_killed_mid_burst(pty_sim, db, tmp_path)
    interrupted = {sid for _, sid in stored_shots(db)}
    assert len(interrupted) == 1
    clinic = Clinic(
        db, accounts_dir=tmp_path / "config", reports_dir=tmp_path / "reports", hasher=FAST_HASHER
    )
    config = ConsoleConfig(
        device=pty_sim,
        plan=load_plan(str(plan_file)),
        discover=lambda: (simulators(), ""),
        cursor_blink=False,
    )
    app = ConsoleApp(clinic, config)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await to_setup(pilot, app)
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        await type_into(pilot, "#patient", PATIENT)
        await until(pilot, lambda: setup.course and setup.course.interrupted, "the interrupted one")
        assert setup.course is not None and setup.course.interrupted in interrupted
        assert not setup.query_one("#resume", Button).disabled
        course_text = str(setup.query_one("#course", Static).render())
        assert "F7 resumes it" in course_text
        await keys(pilot, "f7")
        await until(pilot, lambda: isinstance(app.screen, TreatmentScreen), "the treatment screen")
        session = app.session
        assert session is not None and session.session_id in interrupted  # the same session
        await until(
            pilot,
            lambda: app.view is not None and app.view.snapshot.shots_recovered > 0,
            "the shots the handpiece kept, re-read",
            timeout=10.0,
        )
        await pilot.pause(0.3)
        dose = str(app.screen.query_one(DosePanel).render())
        assert "re-read from the handpiece" in dose
        await keys(pilot, "x")  # end the session
        await until(pilot, lambda: bool(app.screen.query("#yes")), "the end-session question")
        await click(pilot, "#yes")
        await until(pilot, lambda: isinstance(app.screen, ReportScreen), "the report", 15.0)

    try:
        drive(app, scenario)
    finally:
        app.close_all()
        clinic.close()
    [sid] = interrupted
    check_log(db, device_shot_counter(pty_sim), sid)
