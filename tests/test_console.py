"""The operator console, headless through Textual's Pilot, against in-process simulated
handpieces (sim: URLs) and a shot log in a temporary directory.

Keys are posted the way the terminal driver posts them, without Pilot.press's wait for the
process to go idle: with a live controller and simulator the process never idles, and that
wait would cost up to two seconds a key. Each wait below is bounded and says what it waited
for when it gives up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from rich.console import Console
from textual import events
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Input, Static

from laserctl.auth import AccountBook
from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.discovery import simulators
from laserctl.console.guidance import advise
from laserctl.console.host import ConsoleConfig
from laserctl.console.screens.connect import ConnectScreen
from laserctl.console.screens.dialogs import (
    ConfirmDialog,
    CourseRefusedDialog,
    EStopNotice,
    EyewearDialog,
    ParametersDialog,
    ReasonDialog,
)
from laserctl.console.screens.report import ReportScreen
from laserctl.console.screens.service import ServiceLoginDialog, ServiceScreen
from laserctl.console.screens.setup import SetupScreen
from laserctl.console.screens.treatment import TreatmentScreen
from laserctl.console.treatment import identify
from laserctl.console.widgets import MessagePanel
from laserctl.controller.table import State

SIZE = (130, 44)
FRACTIONAL = "sim:fractional-1550"
NDYAG = "sim:ndyag-1064"
SERVICE_USER, SERVICE_PASSWORD = "svc.anna", "correct horse battery"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # tests only


# ---- helpers ------------------------------------------------------------------------------------
def calibrate(clinic: Clinic, url: str) -> None:
    """What a service engineer does once per handpiece (the service screen, or laserctl
    calibrate): arming needs a valid calibration (SR-14), simulated handpieces too."""
    from drivers.host import HandpieceConnection

    connection = HandpieceConnection(url, reconnect=False)
    try:
        info = connection.open()
        outcome = clinic.calibrate(connection, info, "svc.anna", lambda _n: None)
    finally:
        connection.close()
    assert outcome.calibration is not None, outcome.problems
    clinic.save_calibration(outcome.calibration)


@pytest.fixture
def uncalibrated(tmp_path: Path) -> Clinic:
    return clinic_in(tmp_path)


def clinic_in(tmp_path: Path, **changes: Any) -> Clinic:
    """A clinic whose shot log, accounts and reports are in tmp_path, with a fast hasher."""
    return Clinic(
        tmp_path / "log.db",
        accounts_dir=tmp_path / "config",
        reports_dir=tmp_path / "reports",
        hasher=FAST_HASHER,
        **changes,
    )


@pytest.fixture
def clinic(uncalibrated: Clinic) -> Clinic:
    """A shot log in which both simulated handpieces have a valid calibration."""
    for url in (FRACTIONAL, NDYAG):
        calibrate(uncalibrated, url)
    return uncalibrated


def service_account(clinic: Clinic) -> None:
    AccountBook(clinic.accounts_dir, hasher=FAST_HASHER).setup(SERVICE_USER, SERVICE_PASSWORD)


def console(clinic: Clinic, device: str = FRACTIONAL) -> ConsoleApp:
    return ConsoleApp(
        clinic,
        ConsoleConfig(device=device, discover=lambda: (simulators(), ""), cursor_blink=False),
    )


Scenario = Callable[[Pilot[None], ConsoleApp], Awaitable[None]]


def drive(app: ConsoleApp, scenario: Scenario) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot, app)

    asyncio.run(main())


async def until(
    pilot: Pilot[None], done: Callable[[], object], what: str, timeout: float = 5.0
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}; {_now(pilot)}")
        await asyncio.sleep(0.01)  # (Pilot.pause would also wait for every widget to idle)


def _now(pilot: Pilot[None]) -> str:
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    view = app.view
    where = f"screen {type(app.screen).__name__}"
    if view is None:
        return where
    s = view.snapshot
    refusals = [f"{r.command}: {r.reason}" for r in view.refusals]
    log = "\n  ".join(view.log)
    return (
        f"{where}, {s.state}, interlocks {dict(s.interlocks)}, last message "
        f"{s.last_message!r}, refusals {refusals}, log:\n  {log}"
    )


async def keys(pilot: Pilot[None], *names: str) -> None:
    """Each key as the driver delivers it; typed text as one character per key."""
    for name in names:
        char = {"space": " "}.get(name, name if len(name) == 1 else None)
        pilot.app.post_message(events.Key(name, char))
        await asyncio.sleep(0.01)


async def click(pilot: Pilot[None], selector: str) -> None:
    """Press a button as a click does, once it is on screen and enabled (a screen just
    pushed has not composed yet; Pilot.click would also wait for the process to idle)."""

    def clickable() -> Button | None:
        button = next(pilot.app.screen.query(selector).results(Button), None)
        ok = button is not None and button.region.area and not button.disabled
        return button if ok else None

    await until(pilot, clickable, f"{selector} on screen and enabled")
    button = clickable()
    assert button is not None
    button.press()
    await asyncio.sleep(0.01)


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    """Empty the field, focus it, type the text key by key (once it is on screen: a screen
    just pushed has not composed yet)."""
    await until(pilot, lambda: pilot.app.screen.query(selector), f"{selector} on screen")
    field = pilot.app.screen.query_one(selector, Input)
    field.value = ""
    field.focus()
    await pilot.pause(0.01)
    await keys(pilot, *text)


def text_of(widget: Widget) -> str:
    content: Any = widget.content if isinstance(widget, Static) else widget.render()
    if isinstance(content, str):
        return content
    out = Console(width=200, file=io.StringIO(), color_system=None, record=True)
    out.print(content)
    return out.export_text()


def shown(screen: Any, selector: str) -> str:
    """The text of a widget of `screen`, "" while it is not composed yet."""
    found = list(screen.query(selector))
    return text_of(found[0]) if found else ""


def state(app: ConsoleApp) -> State | None:
    return app.view.snapshot.state if app.view else None


def settled(app: ConsoleApp, want: State) -> bool:
    view = app.view
    return bool(
        view
        and view.snapshot.state is want
        and not view.snapshot.awaiting
        and (want is not State.STANDBY or view.snapshot.params_confirmed)
    )


def on(app: ConsoleApp, screen: type[object]) -> bool:
    return isinstance(app.screen, screen)


async def to_setup(pilot: Pilot[None], app: ConsoleApp) -> None:
    await until(pilot, lambda: on(app, ConnectScreen), "the connect screen")
    await click(pilot, "#connect")
    await until(pilot, lambda: on(app, SetupScreen), "the patient screen")
    setup = app.screen
    assert isinstance(setup, SetupScreen)
    await until(pilot, lambda: setup.inputs, "the profile's windows")


async def to_treatment(pilot: Pilot[None], app: ConsoleApp, patient: str = "P-0001") -> None:
    await to_setup(pilot, app)
    await type_into(pilot, "#patient", patient)
    setup = app.screen
    assert isinstance(setup, SetupScreen)
    await until(pilot, lambda: setup.course and setup.course.patient == patient, "course check")
    await keys(pilot, "f5")
    await until(pilot, lambda: on(app, TreatmentScreen), "the treatment screen")
    await until(pilot, lambda: settled(app, State.STANDBY), "STANDBY")


async def straight_to_treatment(
    pilot: Pilot[None], app: ConsoleApp, ready_delay_s: float | None = None
) -> None:
    """The treatment screen without the connect and patient screens (those are covered by
    the whole-session tests): the handpiece identified, the abdomen profile, P-0001; a
    shorter ready delay than SR-04's 1 s where a test is not about it."""
    clinic = app.clinic
    info = identify(app.url)
    app.device = info
    catalog = clinic.catalog(info)
    plan = clinic.plan(
        catalog,
        handpiece=info.handpiece.slug,
        area="abdomen",
        variant="rubra",
        dark_skin=False,
        values={},
    )
    if ready_delay_s is not None:
        plan = dataclasses.replace(plan, ready_delay_s=ready_delay_s)
    await until(pilot, lambda: on(app, ConnectScreen), "the connect screen")
    errors: list[Exception] = []
    app.start_session(
        plan, "P-0001", "abdomen", override=None, done=lambda _s: None, failed=errors.append
    )
    await until(pilot, lambda: errors or on(app, TreatmentScreen), "the treatment screen")
    assert not errors
    await until(pilot, lambda: settled(app, State.STANDBY), "STANDBY")


async def arm(pilot: Pilot[None], app: ConsoleApp) -> None:
    await keys(pilot, "e")
    await until(pilot, lambda: on(app, EyewearDialog), "the eyewear question")
    await keys(pilot, "y")
    await until(pilot, lambda: app.view and app.view.snapshot.eyewear, "eyewear confirmed")
    await until(pilot, lambda: on(app, TreatmentScreen), "the dialog closed")
    await keys(pilot, "a")
    await until(pilot, lambda: state(app) is State.READY, "READY")


def messages(app: ConsoleApp) -> str:
    screen = app.treatment_screen
    assert screen is not None
    return " ".join(text_of(screen.query_one(MessagePanel)).split())


# ---- a whole session ----------------------------------------------------------------------------
@pytest.mark.req("SR-11")
@pytest.mark.parametrize("device", [FRACTIONAL, NDYAG])
def test_a_session_from_connect_to_report(clinic: Clinic, device: str) -> None:
    """Connect, patient, profile, course check, eyewear, ARM, footswitch, DISARM, end, report:
    every shot the handpiece fired is in the shot log once, and the report is written."""

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await to_treatment(pilot, app, patient="P-0042")
        assert app.view is not None and app.view.snapshot.simulated
        screen = app.treatment_screen
        assert screen is not None
        await until(pilot, lambda: screen.query_one("#sim-banner").has_class("-on"), "SIMULATION")
        await keys(pilot, "a")  # eyewear not yet confirmed: refused, and said why
        await until(pilot, lambda: "refused ARM" in messages(app), "the ARM refusal")
        assert "eyewear not confirmed" in messages(app)
        assert "confirm protective eyewear (e)" in messages(app)
        await arm(pilot, app)
        await keys(pilot, "f")  # press the simulated footswitch
        await until(pilot, lambda: app.view and app.view.snapshot.shots_seen >= 2, "2 shots")
        assert state(app) is State.EMITTING
        await keys(pilot, "f", "d")
        await until(pilot, lambda: settled(app, State.STANDBY), "STANDBY after DISARM")
        energy = " ".join(shown(screen, "#energy-text").split())
        assert "measured" in energy and "set" in energy
        assert app.view is not None and len(app.view.shots) >= 2
        await keys(pilot, "x")
        await until(pilot, lambda: on(app, ConfirmDialog), "the end-session question")
        await keys(pilot, "y")
        await until(pilot, lambda: on(app, ReportScreen), "the report", timeout=10.0)
        report = app.screen
        assert isinstance(report, ReportScreen)
        summary = report.summary
        fired = summary.report["shots_fired"]
        assert fired >= 2
        assert summary.shots_logged == summary.report["shots_seen"] == fired
        assert summary.log_ok and summary.report_path
        html = Path(summary.report_path).read_text(encoding="utf-8")
        assert summary.session_id in html and "P-0042" in html
        await until(pilot, lambda: shown(report, "#summary"), "the summary")
        text = shown(report, "#summary")
        assert f"{fired} in the shot log" in text and summary.report_path in text
        await keys(pilot, "n")
        await until(pilot, lambda: on(app, SetupScreen), "the patient screen again")
        assert app.session is None

    drive(console(clinic, device), scenario)
    assert clinic.store.verify().ok


# ---- the course rules ---------------------------------------------------------------------------
def _treated_before(clinic: Clinic, patient: str, area: str) -> None:
    """A session with one shot on the area today, as an earlier console session leaves it."""
    from drivers.protocol import Param
    from laserctl.records import ShotContext
    from laserctl.shotrecord import ShotRecord

    context = ShotContext("FX-00001", "fractional-1550", "sim-1.0.0", "p", "0" * 64, ())
    store = clinic.store
    sid = store.begin_session(patient, area, context=lambda: context)
    store.record(
        ShotRecord(
            sid, "p", area, 1, 1, 0, Param.ENERGY_MJ, 14.0, 14.1, 1000, (), False, True, 7.0, 0.0
        )
    )
    store.end_session(sid)


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_the_course_rules_refuse_and_only_a_service_login_with_a_reason_overrides(
    clinic: Clinic,
) -> None:
    service_account(clinic)
    _treated_before(clinic, "P-0007", "abdomen")

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await to_setup(pilot, app)
        await type_into(pilot, "#patient", "P-0007")
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        await until(pilot, lambda: setup.course and setup.course.patient == "P-0007", "check")
        assert setup.course is not None and not setup.course.ok
        assert "only 0 days since session" in shown(setup, "#course")
        await keys(pilot, "f5")
        await until(pilot, lambda: on(app, CourseRefusedDialog), "the refusal")
        await until(pilot, lambda: "at least 21 days" in shown(app.screen, "#reasons"), "why")
        assert app.session is None  # nothing was connected
        await click(pilot, "#override")
        await until(pilot, lambda: on(app, ServiceLoginDialog), "the service login")
        await type_into(pilot, "#user", SERVICE_USER)
        await type_into(pilot, "#password", "wrong password!")
        await keys(pilot, "enter")
        login = app.screen
        await until(pilot, lambda: "refused" in shown(login, "#login-error"), "no")
        await type_into(pilot, "#password", SERVICE_PASSWORD)
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, ReasonDialog), "the reason")
        await type_into(pilot, "#reason", "short")
        await keys(pilot, "enter")
        assert on(app, ReasonDialog)  # a reason of 10 characters or more
        await type_into(pilot, "#reason", " follow-up of a spot missed in S-1")
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, TreatmentScreen), "the treatment screen")
        await until(pilot, lambda: settled(app, State.STANDBY), "STANDBY")

    drive(console(clinic), scenario)
    rows = clinic.store.query("SELECT body FROM events WHERE kind IN ('refusal', 'override')")
    bodies = [r[0] for r in rows]
    assert any('"kind":"refusal"' in b and "P-0007" in b for b in bodies)
    assert any(
        '"kind":"override"' in b and SERVICE_USER in b and "spot missed" in b for b in bodies
    )


# ---- every fault, with its cause and what to do -------------------------------------------------
# (what, armed first, keys that cause it, the interlock it opens, text of the cause, latched
# state, keys that clear it)
FAULTS = [
    ("door opened", True, ["1"], "door", "door open", State.FAULT, ["1"]),
    ("overheat", False, ["2"], "temperature", "over-temperature", State.FAULT, ["2"]),
    ("cable pulled", False, ["3"], "link", "device silent for", State.FAULT, ["3"]),
    ("energy drift", True, ["4", "f"], None, "+-20 %", State.FAULT, ["f", "4"]),
    ("device e-stop button", True, ["6"], "estop", "e-stop pressed", State.ESTOP, ["6"]),
]


@pytest.mark.parametrize("device", [FRACTIONAL, NDYAG])
def test_every_fault_is_shown_with_its_cause_what_to_do_and_how_to_reset(
    clinic: Clinic, device: str
) -> None:
    """A training run through every simulated fault: each is shown with its cause, what to
    do and how to reset; the operator clears it, resets, and the next one follows."""

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await straight_to_treatment(pilot, app, ready_delay_s=0.1)
        for name, armed, inject, interlock, cause, latched, clear in FAULTS:
            if armed:
                await arm(pilot, app)
            await keys(pilot, *inject)
            await until(pilot, lambda: state(app) is latched, f"{latched} after {name}")  # noqa: B023
            await until(pilot, lambda: cause in messages(app), f"{cause!r} on screen")  # noqa: B023
            assert app.view is not None
            text = messages(app)
            for shown_cause in app.view.causes:
                advice = advise(shown_cause)
                assert shown_cause.message in text, name
                assert advice.title in text and advice.todo in text and advice.reset in text
            assert not app.view.snapshot.eyewear, f"eyewear still confirmed after {name}"
            if interlock is not None:  # the interlock panel shows it open
                await until(pilot, lambda: reading(app, interlock) == "open", f"{interlock} open")  # noqa: B023
            for key in clear:
                await keys(pilot, key)
                await asyncio.sleep(0.05)
            if interlock is not None:
                await until(pilot, lambda: reading(app, interlock) == "closed", f"{name} cleared")  # noqa: B023
            await keys(pilot, "r")
            await until(pilot, lambda: settled(app, State.STANDBY), f"STANDBY after {name}")
        # lifting the handpiece (skin contact, or the aiming beam) is routine: STANDBY, no fault
        interlock = "skin_contact" if device == FRACTIONAL else "aiming_beam"
        await arm(pilot, app)
        await keys(pilot, "5")
        await until(pilot, lambda: state(app) is State.STANDBY, "STANDBY after lifting")
        await until(pilot, lambda: f"{interlock} open" in messages(app), "why")
        assert app.view is not None and not app.view.causes
        # The panel must have shown it open before "closed" can mean the handpiece is back: the
        # device's FAULT (the transition) can be published a moment before its STATUS.
        await until(pilot, lambda: reading(app, interlock) == "open", f"{interlock} open")
        await keys(pilot, "5")
        await until(pilot, lambda: reading(app, interlock) == "closed", f"{interlock} closed")
        await keys(pilot, "a")
        await until(pilot, lambda: state(app) is State.READY, "READY again without a reset")

    drive(console(clinic, device), scenario)


def reading(app: ConsoleApp, interlock: str) -> str:
    return dict(app.view.snapshot.interlocks).get(interlock, "") if app.view else ""


@pytest.mark.req("SR-14")
def test_without_a_calibration_arm_is_refused_and_the_console_says_who_fixes_it(
    uncalibrated: Clinic,
) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await straight_to_treatment(pilot, app)
        assert reading(app, "calibration") == "open"
        await arm_refused(pilot, app)
        assert "no calibration for fractional-1550 FX-00001" in messages(app)
        assert "a service engineer calibrates the handpiece" in messages(app)

    drive(console(uncalibrated), scenario)


async def arm_refused(pilot: Pilot[None], app: ConsoleApp) -> None:
    await keys(pilot, "e")
    await until(pilot, lambda: on(app, EyewearDialog), "the eyewear question")
    await keys(pilot, "y")
    await until(pilot, lambda: on(app, TreatmentScreen), "the dialog closed")
    await keys(pilot, "a")
    await until(pilot, lambda: "refused ARM" in messages(app), "the refusal")
    assert state(app) is State.STANDBY


def test_training_arms_a_simulated_handpiece_uncalibrated_and_keeps_nothing(tmp_path: Path) -> None:
    training = Clinic(accounts_dir=tmp_path / "config", training=True)
    log = training.db_path
    assert log is not None and log.parent.exists()

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await straight_to_treatment(pilot, app, ready_delay_s=0.1)
        await until(pilot, lambda: shown(app.screen, "#sim-badge") == "TRAINING", "badge")
        await arm(pilot, app)
        await keys(pilot, "f")
        await until(pilot, lambda: app.view and app.view.snapshot.shots_seen >= 1, "a shot")
        await keys(pilot, "f", "d")

    drive(console(training), scenario)
    assert not log.parent.exists()  # the throwaway shot log went with the console


def test_a_held_footswitch_refuses_arm_and_says_what_to_do(clinic: Clinic) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await straight_to_treatment(pilot, app)
        await keys(pilot, "e")
        await until(pilot, lambda: on(app, EyewearDialog), "the eyewear question")
        await keys(pilot, "y")
        await until(pilot, lambda: on(app, TreatmentScreen), "the dialog closed")
        await keys(pilot, "f")
        await until(pilot, lambda: app.view and app.view.snapshot.footswitch, "pressed")
        await keys(pilot, "a")
        await until(pilot, lambda: "footswitch is pressed" in messages(app), "the refusal")
        assert "take your foot off the footswitch" in messages(app)
        assert state(app) is State.STANDBY

    drive(console(clinic), scenario)


# ---- the emergency stop, on every screen and in every state ------------------------------------
async def estop_and_check(pilot: Pilot[None], app: ConsoleApp, key: str, where: str) -> None:
    session = app.session
    assert session is not None
    before = len(session.runner.report()["faults"])
    if key == "button":
        await until(pilot, lambda: app.screen.query("#estop"), "the E-STOP button")
        app.screen.query_one("#estop", Button).press()  # the header's E-STOP button
    else:
        await keys(pilot, key)
    await until(pilot, lambda: state(app) is State.ESTOP, f"ESTOP from {where}")
    assert not isinstance(app.screen, (EyewearDialog, ParametersDialog, ConfirmDialog))
    faults = session.runner.report()["faults"][before:]
    assert any(f["cause"] == "e-stop by the operator" for f in faults), faults
    await until(pilot, lambda: app.view and app.view.snapshot.device_state == "ESTOP", "device")
    assert app.view is not None and not app.view.snapshot.emission
    assert "EMERGENCY STOP" in messages(app)


@pytest.mark.req("SR-03")
def test_estop_acts_in_every_state_of_the_treatment_screen(clinic: Clinic) -> None:
    """STANDBY, READY, EMITTING, FAULT; Esc, F1 and the button; a reset after each."""

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await straight_to_treatment(pilot, app, ready_delay_s=0.1)

        async def reset() -> None:
            await keys(pilot, "r")
            await until(pilot, lambda: settled(app, State.STANDBY), "STANDBY after the reset")

        await estop_and_check(pilot, app, "escape", "STANDBY")
        await reset()
        await arm(pilot, app)
        await estop_and_check(pilot, app, "f1", "READY")
        await reset()
        await arm(pilot, app)
        await keys(pilot, "f")
        await until(pilot, lambda: state(app) is State.EMITTING, "EMITTING")
        await estop_and_check(pilot, app, "button", "EMITTING")
        await keys(pilot, "f")  # the footswitch released
        await reset()
        await keys(pilot, "2")
        await until(pilot, lambda: state(app) is State.FAULT, "FAULT")
        await estop_and_check(pilot, app, "escape", "FAULT")

    drive(console(clinic), scenario)


async def _eyewear(pilot: Pilot[None], app: ConsoleApp) -> None:
    await straight_to_treatment(pilot, app)
    await keys(pilot, "e")
    await until(pilot, lambda: on(app, EyewearDialog), "the eyewear question")


async def _parameters(pilot: Pilot[None], app: ConsoleApp) -> None:
    await straight_to_treatment(pilot, app)
    await keys(pilot, "p")
    await until(pilot, lambda: on(app, ParametersDialog), "the parameters")
    await until(pilot, lambda: app.screen.query(Input), "the fields")
    app.screen.query(Input).first().focus()  # focus in a text field must not swallow Esc


async def _end_question(pilot: Pilot[None], app: ConsoleApp) -> None:
    await straight_to_treatment(pilot, app)
    await keys(pilot, "x")
    await until(pilot, lambda: on(app, ConfirmDialog), "the end-session question")


async def _report(pilot: Pilot[None], app: ConsoleApp) -> None:
    await _end_question(pilot, app)
    await keys(pilot, "y")
    await until(pilot, lambda: on(app, ReportScreen), "the report", timeout=10.0)


WITH_CONTROLLER: dict[str, tuple[Scenario, str]] = {
    "eyewear dialog": (_eyewear, "button"),
    "parameters dialog": (_parameters, "escape"),
    "end-session dialog": (_end_question, "escape"),
    "report": (_report, "escape"),
}


@pytest.mark.req("SR-03")
@pytest.mark.parametrize("where", list(WITH_CONTROLLER))
def test_estop_acts_from_every_dialog_and_the_report(clinic: Clinic, where: str) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        reach, key = WITH_CONTROLLER[where]
        await reach(pilot, app)
        await estop_and_check(pilot, app, key, where)
        if where == "eyewear dialog":  # the question asked before the e-stop is gone
            assert app.view is not None and not app.view.snapshot.eyewear

    drive(console(clinic), scenario)


async def _connect(pilot: Pilot[None], app: ConsoleApp) -> None:
    await until(pilot, lambda: on(app, ConnectScreen), "the connect screen")


async def _setup(pilot: Pilot[None], app: ConsoleApp) -> None:
    await to_setup(pilot, app)
    await type_into(pilot, "#patient", "P-1")  # focus in a text field must not swallow Esc


async def _login(pilot: Pilot[None], app: ConsoleApp) -> None:
    await to_setup(pilot, app)
    await keys(pilot, "f2")
    await until(pilot, lambda: on(app, ServiceLoginDialog), "the service login")
    await until(pilot, lambda: app.screen.query("#user"), "the fields")
    await type_into(pilot, "#user", "svc")


async def _service(pilot: Pilot[None], app: ConsoleApp) -> None:
    service_account(app.clinic)
    await _login(pilot, app)
    await type_into(pilot, "#user", SERVICE_USER)
    await type_into(pilot, "#password", SERVICE_PASSWORD)
    await keys(pilot, "enter")
    await until(pilot, lambda: on(app, ServiceScreen), "the service screen")


WITHOUT_CONTROLLER: dict[str, Scenario] = {
    "connect": _connect,
    "patient and profile": _setup,
    "service login": _login,
    "service": _service,
}


@pytest.mark.parametrize("where", list(WITHOUT_CONTROLLER))
def test_estop_without_a_handpiece_is_shown_and_must_be_acknowledged(
    clinic: Clinic, where: str
) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await WITHOUT_CONTROLLER[where](pilot, app)
        below = app.screen
        await keys(pilot, "escape")
        await until(pilot, lambda: on(app, EStopNotice), "the e-stop notice")
        assert app.console_estop
        await until(pilot, lambda: "nothing was emitting" in shown(app.screen, "#estop-what"), "")
        await keys(pilot, "escape")  # pressed again: still one notice
        assert on(app, EStopNotice) and app.screen_stack.count(app.screen) == 1
        await keys(pilot, "r")
        await until(pilot, lambda: app.screen is below, "back where it was pressed")
        assert not app.console_estop

    drive(console(clinic), scenario)


# ---- service ------------------------------------------------------------------------------------
@pytest.mark.req("SR-19")
def test_the_service_screen_refuses_a_wrong_credential_and_logs_the_attempt(
    clinic: Clinic,
) -> None:
    service_account(clinic)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await _login(pilot, app)
        await type_into(pilot, "#user", SERVICE_USER)
        await type_into(pilot, "#password", "not the password")
        await keys(pilot, "enter")
        login = app.screen
        await until(pilot, lambda: "refused" in shown(login, "#login-error"), "no")
        assert on(app, ServiceLoginDialog) and not on(app, ServiceScreen)
        assert login.query_one("#password", Input).value == ""
        await type_into(pilot, "#user", "svc.annax")  # not an account at all
        await type_into(pilot, "#password", SERVICE_PASSWORD)
        await keys(pilot, "enter")
        await until(pilot, lambda: "svc.annax" in shown(login, "#login-error"), "no")
        assert not any(isinstance(s, ServiceScreen) for s in app.screen_stack)

    drive(console(clinic), scenario)
    rows = clinic.store.query("SELECT body FROM events WHERE kind = 'service'")
    failed = [r[0] for r in rows if "failed login" in r[0]]
    assert len(failed) == 2
    assert not any("not the password" in r[0] or SERVICE_PASSWORD in r[0] for r in rows)


def test_service_calibrates_with_progress_and_curve_and_validates_profiles(
    clinic: Clinic,
) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await _service(pilot, app)
        screen = app.screen
        assert isinstance(screen, ServiceScreen)
        await until(pilot, lambda: "usable" in shown(screen, "#profiles"), "check")
        usable = re.search(r"(\d+) of (\d+) usable", shown(screen, "#profiles"))
        assert usable and usable[1] == usable[2] != "0"  # the shipped profiles are all fine
        await click(pilot, "#calibrate")
        await until(pilot, lambda: screen.outcome is not None, "the calibration")
        assert screen.outcome is not None and screen.outcome.accepted
        bar = screen.query_one("#cal-progress")
        assert bar.progress == bar.total == len(screen.outcome.points)  # type: ignore[attr-defined]
        plot = shown(screen, "#cal-plot")
        assert "o measured" in plot and "measured = " in plot
        await click(pilot, "#save")
        await until(pilot, lambda: "stored as record" in shown(screen, "#cal-result"), "s")
        await until(pilot, lambda: "valid: calibrated" in shown(screen, "#cal-status"), "v")

    drive(console(clinic), scenario)
    assert clinic.store.calibrations("FX-00001")[0]["who"] == SERVICE_USER
