"""The daily user verification from the console (issue 15, SR-14): offered after connecting
when the handpiece has not been verified (or calibrated) today, or the handpiece changed; run
with a progress bar; logged; a failure revokes the calibration and says what to do."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import ProgressBar

from drivers.host import HandpieceConnection
from laserctl.calibration import CalibrationInvalid, current_calibration
from laserctl.calibration.daily import VERIFY_PULSES, verification_due
from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.screens.setup import SetupScreen
from laserctl.console.screens.verification import VerificationDialog

from .simcal import calibrate_simulator
from .test_console import (
    FRACTIONAL,
    click,
    clinic_in,
    console,
    drive,
    keys,
    on,
    shown,
    until,
)

DAY = 86400.0


def clinic_days_later(tmp_path: Path, days: float) -> Clinic:
    """The shot log `days` after its calibration (made now, valid 30 days)."""
    return clinic_in(tmp_path, clock=lambda: time.time() + days * DAY)


def identified() -> object:
    connection = HandpieceConnection(FRACTIONAL, reconnect=False)
    try:
        return connection.open()
    finally:
        connection.close()


async def to_verification(pilot: Pilot[None], app: ConsoleApp) -> VerificationDialog:
    await click(pilot, "#connect")
    await until(pilot, lambda: on(app, VerificationDialog), "the daily verification")
    dialog = app.screen
    assert isinstance(dialog, VerificationDialog)
    return dialog


async def on_patient_screen(pilot: Pilot[None], app: ConsoleApp) -> None:
    await until(pilot, lambda: on(app, SetupScreen), "the patient screen")
    setup = app.screen
    assert isinstance(setup, SetupScreen)
    await until(pilot, lambda: setup.inputs, "the profile's windows")  # drawn in full


@pytest.mark.req("SR-14")
def test_offered_after_connecting_run_with_progress_and_logged(tmp_path: Path) -> None:
    calibrate_simulator(FRACTIONAL, tmp_path / "log.db")
    clinic = clinic_days_later(tmp_path, 2)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        dialog = await to_verification(pilot, app)
        assert "no daily verification" in dialog.why
        await keys(pilot, "enter")  # Enter is "Not now": it never starts the test pulses
        await on_patient_screen(pilot, app)

    drive(console(clinic), scenario)
    assert not clinic.store.query("SELECT id FROM events WHERE kind = 'verification'")

    async def verified(pilot: Pilot[None], app: ConsoleApp) -> None:
        dialog = await to_verification(pilot, app)
        await keys(pilot, "v")
        await until(pilot, lambda: dialog.outcome is not None, "the verification", 15.0)
        assert dialog.outcome is not None and dialog.outcome.passed
        bar = dialog.query_one("#verify-progress", ProgressBar)
        await until(pilot, lambda: bar.progress == VERIFY_PULSES, "the progress bar full")
        assert "passed" in shown(dialog, "#verify-result")
        await keys(pilot, "enter")  # Continue has the focus once it ran
        await on_patient_screen(pilot, app)

    drive(console(clinic), verified)
    rows = clinic.store.query("SELECT body FROM events WHERE kind = 'verification'")
    assert len(rows) == 1 and '"passed":true' in rows[0][0]
    # Verified today: not offered again for this handpiece.
    info = identified()
    calibration = current_calibration(clinic.store, info, now=clinic.clock())  # type: ignore[arg-type]
    assert verification_due(clinic.store, info, calibration, now=clinic.clock()) == ""  # type: ignore[arg-type]
    clinic.close()


@pytest.mark.req("SR-14")
def test_a_failed_verification_revokes_the_calibration_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    calibrate_simulator(FRACTIONAL, tmp_path / "log.db", inject=["drift 15"])  # now it reads low
    clinic = clinic_days_later(tmp_path, 1)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        dialog = await to_verification(pilot, app)
        await keys(pilot, "v")
        await until(pilot, lambda: dialog.outcome is not None, "the verification", 15.0)
        assert dialog.outcome is not None and not dialog.outcome.passed
        text = shown(dialog, "#verify-result")
        assert "FAILED" in text and "calibration is revoked" in text
        assert "service engineer" in text
        await keys(pilot, "enter")
        await on_patient_screen(pilot, app)

    drive(console(clinic), scenario)
    with pytest.raises(CalibrationInvalid, match="revoked"):
        current_calibration(clinic.store, identified(), now=clinic.clock())  # type: ignore[arg-type]
    clinic.close()


def test_not_offered_the_day_of_the_calibration(tmp_path: Path) -> None:
    calibrate_simulator(FRACTIONAL, tmp_path / "log.db")
    clinic = clinic_days_later(tmp_path, 0)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await click(pilot, "#connect")
        await on_patient_screen(pilot, app)

    drive(console(clinic), scenario)
    clinic.close()


@pytest.mark.req("SR-14")
def test_laserctl_calibrate_verify_runs_the_same_procedure(tmp_path: Path) -> None:
    import subprocess
    import sys

    from laserctl.records import open_store

    db = tmp_path / "log.db"
    calibrate_simulator(FRACTIONAL, db, inject=["drift 15"])
    laserctl = str(Path(sys.executable).with_name("laserctl"))
    done = subprocess.run(
        [laserctl, "calibrate", "--device", FRACTIONAL, "--db", str(db), "--verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "FAILED" in done.stdout and "calibration is revoked" in done.stdout
    store = open_store(db)
    try:
        assert len(store.query("SELECT id FROM events WHERE kind = 'verification'")) == 1
        with pytest.raises(CalibrationInvalid, match="revoked"):
            current_calibration(store, identified(), now=time.time())  # type: ignore[arg-type]
    finally:
        store.close()
