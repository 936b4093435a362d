"""Service, behind the service login (SR-19): calibration with its progress and fitted curve
(SR-14), and profile validation (SR-13). Reached from the connect and patient screens, never
during a session: calibration opens its own link to the handpiece, and the e-stop goes to that
link while it is open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Label, ProgressBar, Static

from drivers.protocol import Param
from laserctl.auth import LockedOut
from laserctl.auth.lockout import describe

from ..clinic import SERVICE_ACTION, ClinicError, ProfileRow
from ..host import Deliver, OnConsole
from ..plot import CalibrationPlot
from ..widgets import ConsoleHeader, describe_device
from .dialogs import DIALOG_CSS, ConsoleDialog

if TYPE_CHECKING:
    from laserctl.auth import Identity
    from laserctl.calibration.procedure import Outcome



class CalibrationAborted(Exception):
    """The e-stop was pressed during calibration."""


def open_service(app: App[Any]) -> None:
    def logged_in(identity: Identity | None) -> None:
        if identity is not None:
            app.push_screen(ServiceScreen(identity))

    app.push_screen(ServiceLoginDialog(SERVICE_ACTION), logged_in)


class ServiceLoginDialog(ConsoleDialog["Identity | None"]):
    """A service engineer's name and password; checked (Argon2id) on the I/O thread, the
    attempt logged by the account book either way, the password never shown or kept. While
    the account book has the name locked out, "Log in" is disabled and a countdown shown."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ServiceLoginDialog")
    AUTO_FOCUS = "#user"

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.locked: LockedOut | None = None
        self._countdown: Timer | None = None

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("Service login")
        with Vertical(id="dialog"):
            yield Label(f"[b]Service login[/] to {self.action}")
            yield Input(placeholder="service user", id="user")
            yield Input(placeholder="password", password=True, id="password")
            yield Static("", id="login-error", classes="error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Log in", id="login", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        blink = self.console.config.cursor_blink
        for field in self.query(Input):
            field.cursor_blink = blink

    @on(Input.Submitted)
    @on(Button.Pressed, "#login")
    def _login(self) -> None:
        user = self.query_one("#user", Input).value
        if self._show_lockout():
            return  # the account book would refuse it too, unchecked
        password = self.query_one("#password", Input).value
        self.query_one("#login-error", Static).update("checking ...")
        clinic, action = self.console.clinic, self.action
        self.console.run_io(
            lambda: clinic.login_service(user, password, action), self._accepted, self._refused
        )

    def _accepted(self, identity: Identity) -> None:
        self.dismiss(identity)

    def _refused(self, error: Exception) -> None:
        self.query_one("#password", Input).value = ""
        self.query_one("#login-error", Static).update(f"refused: {error}")
        cause = error if isinstance(error, LockedOut) else error.__cause__
        if isinstance(cause, LockedOut):
            self.locked = cause
            self._show_lockout()
            if self._countdown is None:
                self._countdown = self.set_interval(1.0, self._show_lockout)

    @on(Input.Changed, "#user")
    def _user_changed(self) -> None:
        self._show_lockout()

    def _show_lockout(self) -> bool:
        """Whether the name in the user field is locked out: if so "Log in" is disabled and
        the countdown shown (a lockout is per name: another engineer may log in)."""
        locked = self.locked
        if locked is None:
            return False
        name = self.query_one("#user", Input).value.strip()
        now, button, error = (
            self.console.clinic.clock(),
            self.query_one("#login", Button),
            self.query_one("#login-error", Static),
        )
        if now >= locked.until:
            self.locked = None
            if self._countdown is not None:
                self._countdown.stop()
                self._countdown = None
            button.disabled = False
            error.update(f"the lockout of {locked.name!r} is over: log in again")
            return False
        button.disabled = name == locked.name
        error.update(f"refused: {locked.reason}\n{describe(locked.until, now)}")
        return button.disabled

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ServiceScreen(OnConsole, Screen[None]):
    DEFAULT_CSS = """
    ServiceScreen #body { padding: 0 2; }
    ServiceScreen #columns { height: auto; }
    ServiceScreen #calibration { width: 3fr; height: auto; }
    ServiceScreen #profiles-box { width: 2fr; height: auto; padding: 0 0 0 2; }
    ServiceScreen .buttons { height: 3; margin: 1 0 0 0; }
    ServiceScreen .buttons Button { margin: 0 2 0 0; }
    ServiceScreen #cal-progress { margin: 1 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("f3", "logout", "Log out")]
    AUTO_FOCUS = "#validate"  # read-only: Enter never starts the calibration's test pulses

    def __init__(self, identity: Identity) -> None:
        super().__init__()
        self.identity = identity
        self.outcome: Outcome | None = None

    def compose(self) -> ComposeResult:
        device = self.console.device
        yield ConsoleHeader(f"Service: {self.identity.name}")
        with VerticalScroll(id="body"):
            with Horizontal(id="columns"):
                with Vertical(id="calibration"):
                    yield Label("Calibration (SR-14)", classes="title")
                    yield Static(
                        describe_device(device)
                        if device
                        else "no handpiece: connect one on the connect screen first",
                        id="cal-device",
                    )
                    yield Static("", id="cal-status", markup=False)
                    yield ProgressBar(
                        total=self.console.clinic.calibration_pulses(), id="cal-progress"
                    )
                    yield CalibrationPlot(id="cal-plot")
                    yield Static("", id="cal-result", markup=False)
                    with Horizontal(classes="buttons"):
                        yield Button("Calibrate", id="calibrate", variant="warning")
                        yield Button("Save calibration", id="save", disabled=True)
                with Vertical(id="profiles-box"):
                    yield Label("Profiles (SR-13)", classes="title")
                    yield Static("", id="profiles")
                    with Horizontal(classes="buttons"):
                        yield Button("Validate profiles", id="validate")
            with Horizontal(classes="buttons"):
                yield Button("Log out (F3)", id="logout")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#calibrate", Button).disabled = self.console.device is None
        self.query_one(CalibrationPlot).show([], None, "")
        self._refresh_status()
        self.validate()

    def _refresh_status(self) -> None:
        device, clinic = self.console.device, self.console.clinic
        if device is None:
            return
        status = self.query_one("#cal-status", Static)
        self.console.run_io(
            lambda: clinic.calibration_status(device),
            lambda text: status.update(f"current calibration: {text}"),
            lambda error: status.update(f"calibration records not available: {error}"),
        )

    # ---- calibration --------------------------------------------------------------------------
    @on(Button.Pressed, "#calibrate")
    def calibrate(self) -> None:
        from drivers.host import HandpieceConnection

        app, device = self.console, self.console.device
        if device is None or app.service_port is not None:
            return
        if app.console_estop:
            self._result(Text("acknowledge the e-stop first", style="bold red"))
            return
        clinic, who, url = app.clinic, self.identity.name, app.url
        bar = self.query_one("#cal-progress", ProgressBar)
        bar.update(progress=0)
        self.outcome = None
        self.query_one("#save", Button).disabled = True
        self.query_one("#calibrate", Button).disabled = True
        self._result("calibrating: test pulses into the internal power meter ...")
        port = HandpieceConnection(url, reconnect=False)
        app.calibration_abort.clear()
        app.service_port = port
        abort = app.calibration_abort

        def progress(pulses: int) -> None:
            if abort.is_set():
                raise CalibrationAborted("calibration aborted by the e-stop")
            self.app.post_message(Deliver(lambda: bar.advance(pulses)))

        def job() -> Outcome:
            try:
                info = port.open()
                if not info.same_handpiece(device):
                    raise ClinicError(
                        f"a different handpiece answers at {url} ({info.serial}); connect again"
                    )
                return clinic.calibrate(port, info, who, progress)
            finally:
                port.close()

        app.run_io(job, self._calibrated, self._calibration_failed)

    def _calibration_done(self) -> None:
        self.console.service_port = None
        self.query_one("#calibrate", Button).disabled = False

    def _calibrated(self, outcome: Outcome) -> None:
        self._calibration_done()
        self.outcome = outcome
        device = self.console.device
        unit = "mJ" if device and Param.ENERGY_MJ in device.capabilities else "J/cm2"
        self.query_one(CalibrationPlot).show(outcome.points, outcome.fit, unit)
        if outcome.accepted:
            self._result(Text("fit within bounds: save it to use it", style="bold green"))
            self.query_one("#save", Button).disabled = False
        else:
            text = Text("fit REJECTED, the handpiece needs service:\n", style="bold red")
            text.append("\n".join(f"- {p}" for p in outcome.problems))
            self._result(text)

    def _calibration_failed(self, error: Exception) -> None:
        self._calibration_done()
        self._result(Text(f"calibration failed: {error}", style="bold red"))

    @on(Button.Pressed, "#save")
    def save(self) -> None:
        outcome = self.outcome
        if outcome is None or outcome.calibration is None:
            return
        calibration = outcome.calibration
        self.query_one("#save", Button).disabled = True
        clinic = self.console.clinic

        def saved(record: int) -> None:
            self._result(Text(f"calibration stored as record {record}", style="bold green"))
            self._refresh_status()

        self.console.run_io(
            lambda: clinic.save_calibration(calibration),
            saved,
            lambda error: self._result(Text(f"not stored: {error}", style="bold red")),
        )

    def _result(self, text: Any) -> None:
        self.query_one("#cal-result", Static).update(text)

    # ---- profiles -----------------------------------------------------------------------------
    @on(Button.Pressed, "#validate")
    def validate(self) -> None:
        device, clinic = self.console.device, self.console.clinic
        target = self.query_one("#profiles", Static)
        target.update("validating ...")
        self.console.run_io(
            lambda: clinic.validate_profiles(device),
            self._validated,
            lambda error: target.update(Text(f"profiles not available: {error}", "bold red")),
        )

    def _validated(self, rows: list[ProfileRow]) -> None:
        table = Table(box=None, padding=(0, 1), show_header=True)
        table.add_column("profile")
        table.add_column("v")
        table.add_column("check")
        for row in rows:
            verdict = Text("ok", "green") if row.ok else Text("REFUSED", "bold red")
            table.add_row(row.profile_id or row.name, str(row.version or "-"), verdict)
            for issue in row.issues:
                table.add_row("", "", Text(issue, "red"))
        ok = sum(1 for r in rows if r.ok)
        summary = Text(
            f"{ok} of {len(rows)} usable", "bold green" if ok == len(rows) else "bold red"
        )
        device = self.console.device
        where = f" (checked against {device.serial})" if device else " (nominal ranges)"
        summary.append(where, style="dim")
        box = Table.grid()
        box.add_row(table)
        box.add_row(summary)
        self.query_one("#profiles", Static).update(box)

    @on(Button.Pressed, "#logout")
    def action_logout(self) -> None:
        if self.console.service_port is None:
            self.app.pop_screen()
