"""The operator console: a Textual App beside the controller.

Threads: Textual's event loop (this module and the screens) never waits for I/O. The
controller runs on its runner's owner thread and reaches us through the bridge (a wake-up
message, then the newest view). Everything else that touches a file or the link (identifying
a handpiece, starting and ending a session, the simulator's keys, logins, calibration) runs on
one I/O worker thread, in order, and comes back as a message. The e-stop never waits for that
worker: it goes straight to the wire on a thread of its own (bridge.py).

Keys: Esc (or F1) is the e-stop on every screen, bound at App level with priority so that no
focused field or dialog can swallow it; the header of every screen also has an E-STOP button,
for the mouse: it never takes the focus, so Enter and Tab never reach it (widgets.EStopButton).
Focus: each screen and dialog names the widget focused on arrival (its AUTO_FOCUS: the primary
control that is safe to press, or the first field), or none; nothing is focused by default.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rich.markup import escape
from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.timer import Timer

from laserctl.controller.table import State

from .host import ConsoleConfig, Deliver

if TYPE_CHECKING:
    from drivers.host import HandpieceConnection
    from drivers.protocol import DeviceInfo
    from laserctl.fleet.background import FleetPusher, PushOutcome
    from laserctl.plan import TreatmentPlan

    from .clinic import Clinic
    from .host import ConsoleHost
    from .screens.treatment import TreatmentScreen
    from .treatment import ConsoleSession, SessionSummary
    from .view import ConsoleView

T = TypeVar("T")
RENDER_EVERY_S = 0.1


class ViewChanged(Message):
    """The session's bridge has a newer view (posted from the controller's thread)."""


STATE_COLOUR = {
    State.READY: "green",
    State.EMITTING: "red",
    State.FAULT: "red",
    State.ESTOP: "red",
    State.STANDBY: "cyan",
}


class ConsoleApp(App[None]):
    TITLE = "laserctl console"
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = None  # not Textual's "first focusable widget": each screen chooses its own
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1", "estop", "E-STOP", priority=True, key_display="Esc"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]
    CSS = """
    Screen { background: $surface; }
    .title { text-style: bold; margin: 1 0 0 0; }
    .error { color: $error; text-style: bold; }
    .hint { color: $text-muted; }
    """

    status_text: reactive[str] = reactive("")
    fleet_status: reactive[str] = reactive("")  # the background push's last outcome (--fleet)
    simulation: reactive[bool] = reactive(False)

    def __init__(self, clinic: Clinic, config: ConsoleConfig | None = None) -> None:
        super().__init__()
        self.clinic = clinic
        self.config = config or ConsoleConfig()
        self.url = self.config.device
        self.device: DeviceInfo | None = None  # identified on the connect screen
        self.session: ConsoleSession | None = None
        self.treatment_screen: TreatmentScreen | None = None
        self.view: ConsoleView | None = None
        self.service_port: HandpieceConnection | None = None  # the calibration link
        self.calibration_abort = threading.Event()
        self.console_estop = False  # pressed with no controller running
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-io")
        self._render_timer: Timer | None = None
        self._rendered_at = 0.0
        self.fleet: FleetPusher | None = None  # with --fleet: ships the log in the background

    # ---- start and stop -----------------------------------------------------------------------
    def on_mount(self) -> None:
        from .screens.connect import ConnectScreen

        self.push_screen(ConnectScreen())
        self.call_after_refresh(self.freeze_heap)
        self._start_fleet()

    def _start_fleet(self) -> None:
        """With a central store: push the log on a thread of its own (fleet/background.py) now,
        after each session end and every config.fleet_every_s; the header shows how it went."""
        url = self.clinic.fleet_url
        if not url:
            return
        from laserctl.fleet.background import FleetPusher
        from laserctl.records.db import default_path

        self.fleet = FleetPusher(
            self.clinic.db_path or default_path(),
            url,
            lambda outcome: self.post_message(Deliver(lambda: self._show_fleet(outcome))),
            key=self.clinic.console_key,
            every_s=self.config.fleet_every_s,
        )
        self.fleet_status = "fleet: pushing"
        self.fleet.start()

    def _show_fleet(self, outcome: PushOutcome) -> None:
        self.fleet_status = outcome.line()

    @staticmethod
    def freeze_heap() -> None:
        """Move everything alive now out of the garbage collector's sight. A full collection
        stops every thread, the controller's too, while it scans the heap (about 100 ms with
        the interface's objects); with them frozen it scans only what is new (about 20 ms).
        No collect() first: that would be the very pause this avoids."""
        gc.freeze()

    def on_unmount(self) -> None:
        if self._render_timer is not None:
            self._render_timer.stop()
        self.close_all()

    def close_all(self) -> None:
        """Disarm and close whatever is open. Idempotent; the CLI calls it again on exit."""
        fleet, self.fleet = self.fleet, None
        if fleet is not None:
            fleet.stop()
        session, self.session = self.session, None
        if session is not None:
            session.close()
        port, self.service_port = self.service_port, None
        if port is not None:
            self.calibration_abort.set()
            port.close()
        self._io.shutdown(wait=False, cancel_futures=True)
        self.clinic.close()

    # ---- I/O off the interface's thread -------------------------------------------------------
    def run_io(
        self,
        job: Callable[[], T],
        done: Callable[[T], None],
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """job() on the I/O worker (in order); done(result) or failed(error) back here."""

        def finished(future: Future[T]) -> None:
            error = future.exception()

            def deliver() -> None:
                try:
                    if error is None:
                        done(future.result())
                    elif failed is not None and isinstance(error, Exception):
                        failed(error)
                    else:
                        message = f"{type(error).__name__}: {error}"
                        self.notify(message, severity="error", markup=False)
                except NoMatches:
                    pass  # the screen that asked has been left: nobody to tell

            self.post_message(Deliver(deliver))

        with contextlib.suppress(RuntimeError):  # shutting down
            self._io.submit(job).add_done_callback(finished)

    def on_deliver(self, message: Deliver) -> None:
        message.fn()

    def wake(self) -> None:
        """From the controller's thread: never blocks, never raises."""
        with contextlib.suppress(Exception):
            self.post_message(ViewChanged())

    def on_view_changed(self, _message: ViewChanged) -> None:
        """Show the newest view, at most every RENDER_EVERY_S: the operator cannot read
        faster, and each redraw costs CPU and garbage the controller's threads would feel."""
        if self._render_timer is not None:
            return  # a redraw is due: it takes the newest view then
        wait = self._rendered_at + RENDER_EVERY_S - time.monotonic()
        if wait > 0:
            self._render_timer = self.set_timer(wait, self._show_newest)
            return
        self._show_newest()

    def _show_newest(self) -> None:
        self._render_timer = None
        self._rendered_at = time.monotonic()
        session = self.session
        if session is None:
            return
        view = session.bridge.take()
        if view is None:
            return
        self.view = view
        s = view.snapshot
        colour = STATE_COLOUR.get(s.state, "yellow")
        who = escape(f"{s.handpiece} {s.serial}" if s.serial else session.url)
        self.status_text = (
            f"{who}  [b {colour}]{s.state}[/]  shots {s.shots_seen}  "
            f"patient {escape(session.patient)} {escape(session.area)}"
        )
        self.simulation = s.simulated
        if s.state in (State.FAULT, State.ESTOP):
            self._close_stale_dialogs()
        if self.treatment_screen is not None:
            self.treatment_screen.show(view)

    def _close_stale_dialogs(self) -> None:
        """A confirmation asked before a fault must not be answered after it (the eyewear is
        cleared on FAULT and ESTOP and must be confirmed again)."""
        from .screens.dialogs import EyewearDialog

        if isinstance(self.screen, EyewearDialog):
            self.screen.dismiss(False)

    # ---- the e-stop ---------------------------------------------------------------------------
    def action_estop(self) -> None:
        """Esc / F1 / the E-STOP button, on every screen and in every state (SR-03)."""
        from .screens.dialogs import EStopNotice

        session = self.session
        if session is not None and not session.closed:
            session.bridge.estop()
            self.status_text = "[b red]E-STOP sent to the handpiece[/]"
            self._pop_dialogs()
            return
        port = self.service_port
        if port is not None:
            self.calibration_abort.set()
            from drivers.protocol import EStop

            threading.Thread(target=port.send, args=(EStop(),), daemon=True).start()
            what = (
                "Calibration aborted: ESTOP was sent to the handpiece. It stays in ESTOP "
                "until it is reset (a session's RESET, after a new self test)."
            )
        else:
            what = "No handpiece is connected: nothing was emitting."
        self.console_estop = True
        self.status_text = "[b red]E-STOP pressed at the console[/]"
        if not isinstance(self.screen, EStopNotice):
            self.push_screen(EStopNotice(what))

    def acknowledge_console_estop(self) -> None:
        self.console_estop = False
        self.status_text = ""

    def _pop_dialogs(self) -> None:
        while isinstance(self.screen, ModalScreen) and len(self.screen_stack) > 1:
            self.pop_screen()

    # ---- sessions -----------------------------------------------------------------------------
    def start_session(
        self,
        plan: TreatmentPlan,
        patient: str,
        area: str,
        *,
        override: tuple[str, str] | None,
        done: Callable[[ConsoleSession], None],
        failed: Callable[[Exception], None],
        resume: bool = False,
    ) -> None:
        """Begin (or with `resume`, after a crash, resume today's interrupted session of this
        patient and area, as `laserctl session --resume`) on the I/O worker, then show it."""
        from .treatment import ConsoleSession

        if self.console_estop:
            failed(RuntimeError("acknowledge the e-stop first"))
            return
        url, clinic, wake, operator = self.url, self.clinic, self.wake, self.config.operator

        def begin() -> tuple[ConsoleSession, tuple[int, float]]:
            before = clinic.course_check(patient, area)  # this area's dose earlier in the course
            session = ConsoleSession(
                clinic,
                url,
                plan,
                patient,
                area,
                wake=wake,
                operator=operator,
                override=override,
                resume=resume,
            )
            carried = session.runner.controller.dose  # a resumed session's own, counted there
            return session, (
                before.course_pulses - carried.pulses,
                before.course_fluence_j_cm2 - carried.fluence_j_cm2,
            )

        def started(result: tuple[ConsoleSession, tuple[int, float]]) -> None:
            from .screens.treatment import TreatmentScreen

            session, course_dose = result
            self.session = session
            screen = TreatmentScreen(session, course_dose)
            self.treatment_screen = screen
            self.push_screen(screen)
            done(session)
            self.wake()
            self.call_after_refresh(self.freeze_heap)

        self.run_io(begin, started, failed)

    def end_session(self) -> None:
        from .screens.report import ReportScreen

        session = self.session
        if session is None or session.finished is not None:
            return

        def shown(summary: SessionSummary) -> None:
            self.push_screen(ReportScreen(summary))
            if self.fleet is not None:
                self.fleet.kick()  # the session's records and its checkpoint go out now

        def failed(error: Exception) -> None:
            self.notify(
                f"ending the session failed: {error}", severity="error", timeout=10, markup=False
            )

        self.run_io(session.finish, shown, failed)

    def leave_session(self, then: Callable[[], None] | None = None) -> None:
        """Close the finished session's link and go back to the patient screen."""
        from .screens.setup import SetupScreen

        session, self.session = self.session, None
        self.treatment_screen = None
        self.view = None
        self.status_text = ""
        self.simulation = False

        def back(_: object) -> None:
            while len(self.screen_stack) > 1 and not isinstance(self.screen, SetupScreen):
                self.pop_screen()
            if isinstance(self.screen, SetupScreen):
                self.screen.reset_for_next_patient()
            if then is not None:
                then()

        if session is None:
            back(None)
            return
        self.run_io(session.close, back, lambda error: back(None))

    async def action_quit(self) -> None:
        from .screens.dialogs import ConfirmDialog

        session = self.session
        if session is None or session.finished is not None:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return

            def quit_after(_: Any) -> None:
                self.exit()

            self.run_io(session.finish, quit_after, lambda _error: self.exit())

        self.push_screen(
            ConfirmDialog(
                "A session is running. End it (disarm, log its end, write the report) and quit?"
            ),
            answered,
        )


if TYPE_CHECKING:  # mypy checks that the console is what its screens take it for
    _HOST: type[ConsoleHost] = ConsoleApp
