"""The console's background push (`laserctl console --fleet URL`, issue 14): at start and after
each session end the shot log goes to the central store from a thread of its own; the header
says how the last push went; a central store that cannot be reached never blocks or disturbs a
treatment. By keyboard, with Textual's Pilot, against a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
from textual.pilot import Pilot

from laserctl.auth import console_key
from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.discovery import simulators
from laserctl.console.host import ConsoleConfig
from laserctl.console.screens.dialogs import ConfirmDialog
from laserctl.console.screens.report import ReportScreen
from laserctl.controller.table import State
from laserctl.fleet.background import FleetPusher, PushOutcome
from laserctl.fleet.push import push
from laserctl.records.course_check import CentralCourse

from .test_console import (
    FAST_HASHER,
    FRACTIONAL,
    arm,
    calibrate,
    drive,
    keys,
    on,
    settled,
    shown,
    straight_to_treatment,
    until,
)
from .test_fleet_push import local_rows, stored_rows


class NobodyElse:
    """A course authority that knows of no other console's sessions (the course rules across
    consoles are tested in test_console_fleet_course.py; here only the push matters)."""

    where = "test"

    def course_of(self, patient: str) -> CentralCourse:
        return CentralCourse(patient, ())


def clinic_for(tmp_path: Path, url: str) -> tuple[Clinic, console_key.ConsoleKey]:
    key = console_key.load_or_create(tmp_path / "console.pem")
    clinic = Clinic(
        tmp_path / "log.db",
        accounts_dir=tmp_path / "config",
        reports_dir=tmp_path / "reports",
        hasher=FAST_HASHER,
        fleet_url=url,
        authority=NobodyElse(),
        console_key=lambda: key,
    )
    calibrate(clinic, FRACTIONAL)
    return clinic, key


def app_for(clinic: Clinic, every_s: float) -> ConsoleApp:
    config = ConsoleConfig(
        device=FRACTIONAL,
        discover=lambda: (simulators(), ""),
        cursor_blink=False,
        fleet_every_s=every_s,
    )
    return ConsoleApp(clinic, config)


def header(app: ConsoleApp) -> str:
    return str(app.fleet_status)


def session_ends(url: str, console: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM fleet_rows WHERE console_id = %s AND tbl = 'events'"
            " AND body::jsonb ->> 'kind' = 'session_end'",
            (console,),
        ).fetchone()
    return int(row[0]) if row else 0


async def fire_and_end(pilot: Pilot[None], app: ConsoleApp) -> None:
    await arm(pilot, app)
    await keys(pilot, "f")
    await until(pilot, lambda: app.view and app.view.snapshot.shots_seen >= 3, "3 shots")
    await keys(pilot, "f", "d")
    await until(pilot, lambda: settled(app, State.STANDBY), "STANDBY after DISARM")
    await keys(pilot, "x")
    await until(pilot, lambda: on(app, ConfirmDialog), "the end-session question")
    await keys(pilot, "y")
    await until(pilot, lambda: on(app, ReportScreen), "the report", timeout=10.0)


def test_the_console_pushes_at_start_and_after_each_session_end(
    tmp_path: Path, pg_url: str
) -> None:
    clinic, key = clinic_for(tmp_path, pg_url)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        fleet = app.fleet
        assert fleet is not None
        # at start: what the log held (the calibration) goes out; no timer push (an hour)
        await until(pilot, lambda: "fleet: shipped" in header(app), "the first push")
        assert stored_rows(pg_url, key.console_id)["calibrations"] != []
        await straight_to_treatment(pilot, app, ready_delay_s=0.05)
        await fire_and_end(pilot, app)
        await until(pilot, lambda: session_ends(pg_url, key.console_id) == 1, "the push at the end")
        await until(pilot, lambda: fleet.pushes == 2, "the header told")
        assert "fleet: shipped" in header(app) or "fleet: up to date" in header(app)

    drive(app_for(clinic, every_s=3600), scenario)
    clinic.close()
    # everything the session left, its checkpoint included, is in the central store
    assert stored_rows(pg_url, key.console_id) == local_rows(tmp_path / "log.db")
    with psycopg.connect(pg_url) as conn:
        (checkpoints,) = conn.execute("SELECT count(*) FROM fleet_checkpoints").fetchone()  # type: ignore[misc]
    assert checkpoints == 1


def test_an_unreachable_central_store_is_shown_and_never_disturbs_the_treatment(
    tmp_path: Path, pg_url: str
) -> None:
    gone = f"postgresql://postgres@/chain?host={tmp_path}/no-server&port=1"
    clinic, key = clinic_for(tmp_path, gone)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        fleet = app.fleet
        assert fleet is not None
        await until(pilot, lambda: "not shipped" in header(app), "the failed push")
        assert "will retry" in header(app) and "cannot connect" in header(app)
        assert "fleet: not shipped" in shown(app.screen, "#where")  # the header's line
        await straight_to_treatment(pilot, app, ready_delay_s=0.05)
        await fire_and_end(pilot, app)  # while the pusher fails every 0.1 s
        assert fleet.pushes >= 2
        assert "not shipped" in header(app)

    drive(app_for(clinic, every_s=0.1), scenario)
    assert clinic.store.verify().ok
    logged = clinic.store.query("SELECT count(*) FROM shots")[0][0]
    assert logged >= 3
    clinic.close()
    # and when the store is back, a push ships everything the treatment left
    pushed = push(tmp_path / "log.db", pg_url, key=key)
    assert pushed.shipped["shots"] == logged
    assert stored_rows(pg_url, key.console_id) == local_rows(tmp_path / "log.db")


def test_the_pusher_runs_off_the_callers_thread_and_reports_every_outcome(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    outcomes: list[PushOutcome] = []
    release = threading.Event()

    def slow_push(db: Path, url: str, **_: object) -> object:
        calls.append(threading.current_thread().name)
        release.wait(5)  # a central store that takes its time
        raise RuntimeError("boom")

    pusher = FleetPusher(
        tmp_path / "log.db", "postgresql://x", outcomes.append, every_s=3600, push_fn=slow_push
    )
    pusher.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    pusher.kick()  # returns while the push hangs on its own thread
    assert calls == ["fleet-push"] and not outcomes
    release.set()
    deadline = time.monotonic() + 5
    while len(outcomes) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    pusher.stop()
    assert calls and set(calls) == {"fleet-push"}
    assert len(outcomes) == 2  # the first push, then the kick: each reported
    assert not outcomes[0].ok and "RuntimeError: boom" in outcomes[0].error
    assert "will retry" in outcomes[0].line()
