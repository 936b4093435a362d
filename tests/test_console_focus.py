"""Focus on every screen and dialog of the console: Enter (and Tab, Enter) never reaches the
E-STOP button, each place starts on its primary control, and Esc / F1 still e-stop there.

Issue 12: the header's E-STOP button was the first focusable widget of every screen, so
Textual focused it by default; an operator who answered the eyewear question with Enter
latched an ESTOP (and had to reset and wait for a new self test). The E-STOP is for Esc, F1
and the mouse only.

PLACES lists every screen and dialog the console has; a test below checks that against the
Screen classes defined under laserctl/console, so a new one cannot be left out.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Select

import laserctl.console
from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.screens.connect import ConnectScreen
from laserctl.console.screens.course import CourseScreen
from laserctl.console.screens.dialogs import (
    ConfirmDialog,
    ConsoleDialog,
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
from laserctl.console.screens.verification import VerificationDialog
from laserctl.controller.events import RequestEStop, SetParameters
from laserctl.controller.table import State
from tests.test_console import (
    FRACTIONAL,
    SERVICE_PASSWORD,
    SERVICE_USER,
    _eyewear,
    _treated_before,
    calibrate,
    click,
    clinic_in,
    console,
    drive,
    keys,
    on,
    service_account,
    shown,
    state,
    straight_to_treatment,
    to_setup,
    to_treatment,
    until,
)


@pytest.fixture
def clinic(tmp_path: Path) -> Clinic:
    clinic = clinic_in(tmp_path)
    calibrate(clinic, FRACTIONAL)
    return clinic


class Watch:
    """Every e-stop the console asks for, and what reaches the session's controller.

    `actions` counts the App's e-stop action, which every path runs (the Esc and F1 binding,
    the header's button); `events` holds each event submitted to the controller (the runner's
    estop() submits RequestEStop after writing ESTOP to the wire). `validations` counts the
    profile checks the service screen runs."""

    def __init__(self, app: ConsoleApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.app = app
        self.monkeypatch = monkeypatch
        self.actions = 0
        self.events: list[object] = []
        self.validations = 0
        self.session: Any = None
        self._runner: object = None
        estop, validate = app.action_estop, app.clinic.validate_profiles

        def counted_estop() -> None:
            self.actions += 1
            estop()

        def counted_validate(*args: Any) -> Any:
            self.validations += 1
            return validate(*args)

        monkeypatch.setattr(app, "action_estop", counted_estop)
        monkeypatch.setattr(app.clinic, "validate_profiles", counted_validate)

    def follow_session(self) -> None:
        """Spy on the running session's controller (call once the place is reached)."""
        session = self.app.session
        if session is None or session.runner is self._runner:
            return
        self.session, self._runner = session, session.runner
        runner, submit = session.runner, session.runner.submit

        def recorded(event: Any) -> None:
            self.events.append(event)
            submit(event)

        self.monkeypatch.setattr(runner, "submit", recorded)

    def estop_requests(self) -> list[object]:
        return [e for e in self.events if isinstance(e, RequestEStop)]


Reach = Callable[[Pilot[None], ConsoleApp], Any]


@dataclass(frozen=True)
class Press:
    keys: tuple[str, ...]
    what: str  # what these keys do here
    done: Callable[[ConsoleApp, Watch], object]


@dataclass(frozen=True)
class Place:
    screen: type[Screen[Any]]
    reach: Reach
    focus: str | None  # the selector of the widget focused on arrival; None: nothing
    enter: Press
    tab_enter: Press
    controller: bool = False  # a session (and its controller) runs here


# ---- reaching each place, without moving the focus ---------------------------------------------
async def _connect(pilot: Pilot[None], app: ConsoleApp) -> None:
    await until(pilot, lambda: on(app, ConnectScreen), "the connect screen")


async def _login(pilot: Pilot[None], app: ConsoleApp) -> None:
    await to_setup(pilot, app)
    await keys(pilot, "f2")
    await until(pilot, lambda: on(app, ServiceLoginDialog), "the service login")


async def _log_in(pilot: Pilot[None], app: ConsoleApp) -> None:
    """Fill in the service login on screen (its fields, not keys: the focus stays) and log in."""
    await until(pilot, lambda: app.screen.query("#password"), "the login's fields")
    login = app.screen
    login.query_one("#user", Input).value = SERVICE_USER
    login.query_one("#password", Input).value = SERVICE_PASSWORD
    await click(pilot, "#login")


async def _service(pilot: Pilot[None], app: ConsoleApp) -> None:
    service_account(app.clinic)
    await _login(pilot, app)
    await _log_in(pilot, app)
    await until(pilot, lambda: on(app, ServiceScreen), "the service screen")


async def _course(pilot: Pilot[None], app: ConsoleApp) -> None:
    await to_setup(pilot, app)
    app.screen.query_one("#patient", Input).value = "P-0001"  # typed, without moving the focus
    await keys(pilot, "f6")
    await until(pilot, lambda: on(app, CourseScreen), "the course screen")


async def _verification(pilot: Pilot[None], app: ConsoleApp) -> None:
    app.clinic.verification_due = lambda _info: "no daily verification has passed today"  # type: ignore[method-assign]
    await _connect(pilot, app)
    await click(pilot, "#connect")
    await until(pilot, lambda: on(app, VerificationDialog), "the daily verification")


async def _estop_notice(pilot: Pilot[None], app: ConsoleApp) -> None:
    await _connect(pilot, app)
    await keys(pilot, "escape")
    await until(pilot, lambda: on(app, EStopNotice), "the e-stop notice")


async def _course_refused(pilot: Pilot[None], app: ConsoleApp) -> None:
    _treated_before(app.clinic, "P-0007", "abdomen")
    await to_setup(pilot, app)
    setup = app.screen
    assert isinstance(setup, SetupScreen)
    setup.query_one("#patient", Input).value = "P-0007"
    await until(pilot, lambda: setup.course and setup.course.patient == "P-0007", "the check")
    await keys(pilot, "f5")
    await until(pilot, lambda: on(app, CourseRefusedDialog), "the course rules' refusal")


async def _override_login(pilot: Pilot[None], app: ConsoleApp) -> None:
    await _course_refused(pilot, app)
    await click(pilot, "#override")
    await until(pilot, lambda: on(app, ServiceLoginDialog), "the service login")


async def _reason(pilot: Pilot[None], app: ConsoleApp) -> None:
    service_account(app.clinic)
    await _override_login(pilot, app)
    await _log_in(pilot, app)
    await until(pilot, lambda: on(app, ReasonDialog), "the written reason")


async def _treatment(pilot: Pilot[None], app: ConsoleApp) -> None:
    await straight_to_treatment(pilot, app)


async def _parameters(pilot: Pilot[None], app: ConsoleApp) -> None:
    await straight_to_treatment(pilot, app)
    await keys(pilot, "p")
    await until(pilot, lambda: on(app, ParametersDialog), "the parameters")


async def _end_question(pilot: Pilot[None], app: ConsoleApp) -> None:
    await straight_to_treatment(pilot, app)
    await keys(pilot, "x")
    await until(pilot, lambda: on(app, ConfirmDialog), "the end-session question")


async def _quit_question(pilot: Pilot[None], app: ConsoleApp) -> None:
    await straight_to_treatment(pilot, app)
    await keys(pilot, "ctrl+q")
    await until(pilot, lambda: on(app, ConfirmDialog), "the quit question")


async def _report(pilot: Pilot[None], app: ConsoleApp) -> None:
    """The whole way (connect, patient screen), for Next patient to go back to."""
    await to_treatment(pilot, app)
    await keys(pilot, "x")
    await until(pilot, lambda: on(app, ConfirmDialog), "the end-session question")
    await keys(pilot, "y")
    await until(pilot, lambda: on(app, ReportScreen), "the report", timeout=10.0)


# ---- what Enter, and Tab then Enter, do in each place -----------------------------------------
def _error_shown(selector: str, text: str) -> Callable[[ConsoleApp, Watch], object]:
    return lambda app, _w: text in shown(app.screen, selector)


def _focused(selector: str) -> Callable[[ConsoleApp, Watch], object]:
    def done(app: ConsoleApp, _w: Watch) -> bool:
        found = list(app.screen.query(selector))
        return bool(found) and app.screen.focused is found[0]

    return done


def composed(app: ConsoleApp, screen: type[Screen[Any]]) -> bool:
    """On that screen, and its header laid out (composed, its initial focus set). A test
    that ends while a screen is still mounting makes Textual raise from its widgets."""
    if not on(app, screen):
        return False
    found = list(app.screen.query("#estop"))
    return bool(found) and bool(found[0].region.area)


def _patient_screen(app: ConsoleApp, _w: Watch) -> bool:
    """On the patient screen, its profile windows shown."""
    return composed(app, SetupScreen) and bool(app.screen.inputs)  # type: ignore[attr-defined]


def _exited(app: ConsoleApp, _w: Watch) -> bool:
    return app.return_code is not None


def _back_in_treatment(app: ConsoleApp, w: Watch) -> bool:
    return on(app, TreatmentScreen) and w.session is not None and w.session.finished is None


LOGIN_REFUSED = Press(
    ("enter",), "tries the login (refused)", _error_shown("#login-error", "refused")
)
LOGIN_TAB = Press(
    ("tab", "enter"),
    "the password field, then tries the login (refused)",
    _error_shown("#login-error", "refused"),
)

PLACES: dict[str, Place] = {
    "connect": Place(
        ConnectScreen,
        _connect,
        "#url",
        Press(("enter",), "connects to the URL", _patient_screen),
        Press(("tab", "enter"), "Connect", _patient_screen),
    ),
    "patient and profile": Place(
        SetupScreen,
        to_setup,
        "#patient",
        Press(
            ("enter", "7"),
            "nothing (typing goes on in the patient field)",
            lambda app, _w: app.screen.query_one("#patient", Input).value == "7",
        ),
        Press(
            ("tab", "enter"),
            "opens the area list",
            lambda app, _w: app.screen.query_one("#area", Select).expanded,
        ),
    ),
    "service login": Place(ServiceLoginDialog, _login, "#user", LOGIN_REFUSED, LOGIN_TAB),
    "daily verification": Place(
        VerificationDialog,
        _verification,
        "#later",
        Press(("enter",), "not now: on to the patient screen", _patient_screen),
        Press(
            ("tab", "enter"),
            "starts the test pulses (a deliberate Tab to Verify now)",
            lambda app, _w: (
                on(app, VerificationDialog) and bool(app.screen.running or app.screen.outcome)
            ),  # type: ignore[attr-defined]
        ),
    ),
    "course": Place(
        CourseScreen,
        _course,
        "#back",
        Press(("enter",), "goes back", _patient_screen),
        Press(
            ("tab", "enter"),
            "asks for a service login to open a new course",
            lambda app, _w: on(app, ServiceLoginDialog),
        ),
    ),
    "service": Place(
        ServiceScreen,
        _service,
        "#validate",
        Press(("enter",), "validates the profiles again", lambda _a, w: w.validations >= 1),
        Press(("tab", "enter"), "logs out", _patient_screen),
    ),
    "e-stop notice": Place(
        EStopNotice,
        _estop_notice,
        None,
        Press(
            ("enter", "tab"),
            "nothing (the acknowledgement is r, or a deliberate Tab to its button)",
            lambda app, w: _focused("#ack")(app, w) and on(app, EStopNotice),
        ),
        Press(
            ("tab", "enter"),
            "acknowledges",
            lambda app, _w: not on(app, EStopNotice) and not app.console_estop,
        ),
    ),
    "course rules refusal": Place(
        CourseRefusedDialog,
        _course_refused,
        "#back",
        Press(("enter",), "goes back", _patient_screen),
        Press(
            ("tab", "enter"),
            "asks for the service login",
            lambda app, _w: composed(app, ServiceLoginDialog),
        ),
    ),
    "override login": Place(ServiceLoginDialog, _override_login, "#user", LOGIN_REFUSED, LOGIN_TAB),
    "written reason": Place(
        ReasonDialog,
        _reason,
        "#reason",
        Press(("enter",), "checks the reason", _error_shown("#reason-error", "10 characters")),
        Press(
            ("tab", "enter"),
            "Override and start: checks the reason",
            _error_shown("#reason-error", "10 characters"),
        ),
    ),
    "treatment": Place(
        TreatmentScreen,
        _treatment,
        None,
        Press(
            ("enter", "e"),
            "nothing (e then asks for eyewear)",
            lambda app, _w: composed(app, EyewearDialog),
        ),
        Press(
            ("tab", "enter", "e"),
            "nothing (e then asks for eyewear)",
            lambda app, _w: composed(app, EyewearDialog),
        ),
        controller=True,
    ),
    "eyewear question": Place(
        EyewearDialog,
        _eyewear,
        "#yes",
        Press(
            ("enter",),
            "confirms the eyewear",
            lambda app, _w: on(app, TreatmentScreen) and app.view and app.view.snapshot.eyewear,
        ),
        Press(
            ("tab", "enter"),
            "Not yet",
            lambda app, _w: on(app, TreatmentScreen) and app.view and not app.view.snapshot.eyewear,
        ),
        controller=True,
    ),
    "parameters": Place(
        ParametersDialog,
        _parameters,
        "Input",
        Press(
            ("enter",),
            "sends the values to the handpiece",
            lambda app, w: (
                on(app, TreatmentScreen) and any(isinstance(e, SetParameters) for e in w.events)
            ),
        ),
        Press(
            ("tab", "enter"),
            "sends the values to the handpiece",
            lambda app, w: (
                on(app, TreatmentScreen) and any(isinstance(e, SetParameters) for e in w.events)
            ),
        ),
        controller=True,
    ),
    "end-session question": Place(
        ConfirmDialog,
        _end_question,
        "#yes",
        Press(("enter",), "ends the session", lambda app, _w: composed(app, ReportScreen)),
        Press(("tab", "enter"), "No", _back_in_treatment),
        controller=True,
    ),
    "quit question": Place(
        ConfirmDialog,
        _quit_question,
        "#yes",
        Press(("enter",), "ends the session and quits", _exited),
        Press(("tab", "enter"), "No", _back_in_treatment),
        controller=True,
    ),
    "report": Place(
        ReportScreen,
        _report,
        "#next",
        Press(
            ("enter",),
            "goes to the next patient",
            lambda app, w: _patient_screen(app, w) and app.session is None,
        ),
        Press(("tab", "enter"), "quits", _exited),
        controller=True,
    ),
}


async def arrive(pilot: Pilot[None], app: ConsoleApp, place: Place, watch: Watch) -> Screen[Any]:
    """Reach the place and wait until it is composed (its header's button laid out: the
    initial focus is set by then)."""
    await place.reach(pilot, app)
    assert type(app.screen) is place.screen, f"reached {type(app.screen).__name__}"
    await until(pilot, lambda: composed(app, place.screen), f"{place.screen.__name__} composed")
    watch.follow_session()
    return app.screen


def estop_focusable(screen: Screen[Any]) -> list[str]:
    return [f"#{w.id}" for w in screen.focus_chain if w.id == "estop"]


def where_focus_is(screen: Screen[Any]) -> str:
    widget = screen.focused
    return "nothing" if widget is None else f"{type(widget).__name__} #{widget.id}"


# ---- the tests ----------------------------------------------------------------------------------
def test_places_cover_every_screen_and_dialog_of_the_console() -> None:
    """Every Screen class defined under laserctl/console is in PLACES (ConsoleDialog is only
    the dialogs' common base)."""
    defined: set[type[Screen[Any]]] = set()
    package = laserctl.console
    for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(module_info.name)
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, Screen):
                defined.add(cls)
    defined.discard(ConsoleDialog)
    covered = {place.screen for place in PLACES.values()}
    assert defined - covered == set(), "screens without a focus test"
    assert covered - defined == set()


@pytest.mark.req("SR-03")
@pytest.mark.parametrize("tab", [False, True], ids=["enter", "tab-enter"])
@pytest.mark.parametrize("name", list(PLACES))
def test_enter_never_estops_and_does_what_the_place_offers(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, name: str, tab: bool
) -> None:
    """On arrival the place's primary control (or its first field) has the focus, never the
    E-STOP button, which no Tab reaches either; Enter (or Tab, Enter) does what the focused
    control offers and requests no e-stop."""
    place = PLACES[name]
    press = place.tab_enter if tab else place.enter

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        watch = Watch(app, monkeypatch)
        screen = await arrive(pilot, app, place, watch)
        focus_on_arrival = where_focus_is(screen)
        expected = "nothing"
        if place.focus is not None:
            widget = screen.query(place.focus).first()
            expected = f"{type(widget).__name__} #{widget.id}"
        chain = estop_focusable(screen)
        before = watch.actions  # the e-stop notice is reached by Esc
        await keys(pilot, *press.keys)
        await until(
            pilot,
            lambda: press.done(app, watch) or watch.actions > before,
            f"{' '.join(press.keys)}: {press.what}",
            timeout=10.0,
        )
        assert watch.actions == before, (
            f"{' '.join(press.keys)} on the {name} screen e-stopped (focus was on "
            f"{focus_on_arrival})"
        )
        assert not watch.estop_requests()
        if place.controller and app.return_code is None:
            assert state(app) is not State.ESTOP
        assert chain == [], "the E-STOP button is in the focus chain"
        assert focus_on_arrival == expected

    drive(console(clinic), scenario)


@pytest.mark.req("SR-03")
@pytest.mark.parametrize("key", ["escape", "f1"])
@pytest.mark.parametrize("name", list(PLACES))
def test_esc_and_f1_estop_in_every_place(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    place = PLACES[name]

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        watch = Watch(app, monkeypatch)
        await arrive(pilot, app, place, watch)
        await keys(pilot, key)
        await until(pilot, lambda: watch.actions, f"{key}: the e-stop")
        if place.controller:
            await until(pilot, lambda: state(app) is State.ESTOP, f"{key}: ESTOP")
            assert watch.estop_requests()
            assert not isinstance(app.screen, ModalScreen), "a dialog outlived the e-stop"
        else:
            await until(pilot, lambda: on(app, EStopNotice), f"{key}: the e-stop notice")
            assert app.console_estop
            notices = [s for s in app.screen_stack if isinstance(s, EStopNotice)]
            assert len(notices) == 1

    drive(console(clinic), scenario)


@pytest.mark.req("SR-03")
@pytest.mark.parametrize("key", ["escape", "f1"])
def test_esc_and_f1_estop_with_a_list_open(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """An open drop-down list (the patient screen's area) does not take Esc for itself."""

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        watch = Watch(app, monkeypatch)
        await arrive(pilot, app, PLACES["patient and profile"], watch)
        area = app.screen.query_one("#area", Select)
        await keys(pilot, "tab", "enter")
        await until(pilot, lambda: area.expanded, "the area list open")
        await keys(pilot, key)
        await until(pilot, lambda: on(app, EStopNotice), f"{key}: the e-stop notice")
        assert watch.actions == 1 and app.console_estop

    drive(console(clinic), scenario)
