"""The daily user verification, offered after connecting (SR-14): at the first session of the
day with a handpiece and whenever the handpiece changes. A few test pulses into the internal
power meter with the calibrated set points, with a progress bar; a failure revokes the
calibration and says what to do. Enter never starts the test pulses (it is "Not now"): they
are a deliberate v."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, ProgressBar, Static

from ..clinic import ClinicError
from ..host import Deliver
from ..widgets import ConsoleHeader
from .dialogs import DIALOG_CSS, ConsoleDialog

if TYPE_CHECKING:
    from laserctl.calibration.daily import DailyVerification


class VerificationDialog(ConsoleDialog[bool]):
    """Dismissed with True when a verification ran (passed or failed), False when skipped."""

    DEFAULT_CSS = DIALOG_CSS.format(name="VerificationDialog")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("v", "verify", "Verify now")]
    AUTO_FOCUS = "#later"

    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why
        self.outcome: DailyVerification | None = None
        self.running = False

    def compose(self) -> ComposeResult:
        from laserctl.calibration.daily import VERIFY_PULSES

        device = self.console.device
        serial = device.serial if device else "?"
        yield ConsoleHeader("Daily verification")
        with Vertical(id="dialog"):
            title = (f"Daily verification of {serial}", "bold")
            yield Static(Text.assemble(title, f": {self.why}"))
            yield Static(
                f"Put the handpiece in its holder: {VERIFY_PULSES} test pulses go into the "
                "internal power meter and are compared with the calibrated values (SR-14).",
                markup=False,
            )
            yield ProgressBar(total=VERIFY_PULSES, id="verify-progress")
            yield Static("", id="verify-result", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Verify now (v)", id="verify", variant="warning")
                yield Button("Not now", id="later")
                yield Button("Continue", id="continue", variant="primary", disabled=True)

    @on(Button.Pressed, "#verify")
    def action_verify(self) -> None:
        from drivers.host import HandpieceConnection

        app, device = self.console, self.console.device
        if device is None or self.running or self.outcome is not None:
            return
        if app.console_estop:
            self._result(Text("acknowledge the e-stop first", style="bold red"))
            return
        self.running = True
        self.query_one("#verify", Button).disabled = True
        self.query_one("#later", Button).disabled = True
        self._result("verifying: test pulses into the internal power meter ...")
        clinic, url = app.clinic, app.url
        who = app.config.operator or "operator"
        bar = self.query_one("#verify-progress", ProgressBar)
        port = HandpieceConnection(url, reconnect=False)
        app.calibration_abort.clear()
        app.service_port = port  # the e-stop reaches this link (ConsoleApp.action_estop)
        abort = app.calibration_abort

        def progress(pulses: int) -> None:
            if abort.is_set():
                raise RuntimeError("verification aborted by the e-stop")
            self.app.post_message(Deliver(lambda: bar.advance(pulses)))

        def job() -> DailyVerification:
            try:
                info = port.open()
                if not info.same_handpiece(device):
                    raise ClinicError(
                        f"a different handpiece answers at {url} ({info.serial}); connect again"
                    )
                return clinic.verify(port, info, who, progress)
            finally:
                port.close()

        app.run_io(job, self._verified, self._failed)

    def _done(self) -> None:
        self.running = False
        self.console.service_port = None
        self.query_one("#continue", Button).disabled = False
        self.query_one("#continue", Button).focus()

    def _verified(self, outcome: DailyVerification) -> None:
        from laserctl.calibration.daily import WHAT_TO_DO

        self.outcome = outcome
        self._done()
        if outcome.passed:
            self._result(Text(outcome.message, style="bold green"))
        else:
            text = Text(outcome.message, style="bold red")
            text.append(f"\n{WHAT_TO_DO}", style="bold")
            self._result(text)

    def _failed(self, error: Exception) -> None:
        self._done()
        self.query_one("#verify", Button).disabled = False
        self.query_one("#later", Button).disabled = False
        self._result(Text(f"verification could not run: {error}", style="bold red"))

    def _result(self, text: str | Text) -> None:
        self.query_one("#verify-result", Static).update(text)

    @on(Button.Pressed, "#later")
    def _later(self) -> None:
        if not self.running:
            self.dismiss(False)

    @on(Button.Pressed, "#continue")
    def _continue(self) -> None:
        if not self.running:
            self.dismiss(self.outcome is not None)
