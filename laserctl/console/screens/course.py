"""A patient's treatment courses (SR-18): every course, the sessions per area with their
dates, shots and dose, and when the next session on each area may start, as `laserctl course
show` prints them. A service engineer opens the next course here, with a written reason
(a service action, logged with who and why: SR-19)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from ..host import OnConsole
from ..widgets import ConsoleHeader

if TYPE_CHECKING:
    from laserctl.auth import Identity

    from ..clinic import CourseCheck


class CourseScreen(OnConsole, Screen[None]):
    DEFAULT_CSS = """
    CourseScreen #body { padding: 0 2; }
    CourseScreen #courses { height: auto; border: round $secondary; padding: 0 1; }
    CourseScreen #buttons { height: 3; margin: 1 0 0 0; }
    CourseScreen #buttons Button { margin: 0 2 0 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "open_course", "Open a new course (service)"),
        Binding("b", "back", "Back"),
    ]
    AUTO_FOCUS = "#back"  # Enter goes back; opening a course is a deliberate o

    def __init__(self, patient: str) -> None:
        super().__init__()
        self.patient = patient
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield ConsoleHeader(f"Course of {self.patient}")
        with VerticalScroll(id="body"):
            yield Static("reading the shot log ...", id="courses", markup=False)
            yield Static("", id="course-note", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Back (b)", id="back", variant="primary")
                yield Button("Open a new course (o, service)", id="open-course")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_courses()

    def refresh_courses(self) -> None:
        clinic, patient = self.console.clinic, self.patient
        self.console.run_io(lambda: clinic.course_lines(patient), self._shown, self._failed)

    def _shown(self, lines: list[str]) -> None:
        self.lines = lines
        self.query_one("#courses", Static).update("\n".join(lines))

    def _failed(self, error: Exception) -> None:
        self.lines = []
        self.query_one("#courses", Static).update(Text(str(error), style="bold red"))

    @on(Button.Pressed, "#open-course")
    def action_open_course(self) -> None:
        from .service import ServiceLoginDialog

        self.app.push_screen(ServiceLoginDialog("open a new course"), self._logged_in)

    def _logged_in(self, identity: Identity | None) -> None:
        from .dialogs import ReasonDialog

        if identity is None:
            return
        name = identity.name
        self.app.push_screen(
            ReasonDialog(
                f"{name}: why does {self.patient} start a new course? (logged)", "Open the course"
            ),
            lambda reason: self._open(name, reason) if reason else None,
        )

    def _open(self, who: str, reason: str) -> None:
        clinic, patient = self.console.clinic, self.patient
        note = self.query_one("#course-note", Static)
        note.update("opening the course ...")

        def opened(number: int) -> None:
            note.update(Text(f"course {number} opened by {who}", style="bold green"))
            self.refresh_courses()

        self.console.run_io(
            lambda: clinic.open_course(patient, who, reason),
            opened,
            lambda error: note.update(Text(f"not opened: {error}", style="bold red")),
        )

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.dismiss()


def check_text(check: CourseCheck) -> Text:
    """The course rules for a session now, as the patient screen shows them (SR-18): this
    course's sessions on the area and their dose, an interrupted session, what the central
    store answered (--fleet), and whether a session may start."""
    text = Text()
    text.append(f"Course {check.course}, {check.area}: ", style="bold")
    text.append(f"{check.sessions_on_area} of {check.max_sessions} sessions so far")
    if check.last_session:
        text.append(f", last on {check.last_session}")
    text.append(
        f"; {check.course_pulses} pulses, {check.course_fluence_j_cm2:.1f} J/cm2 on this area"
    )
    if check.interrupted:
        text.append(
            f"\nsession {check.interrupted} was interrupted today (a crash or power loss): "
            "F7 resumes it, and the shots the handpiece kept are re-read",
            style="bold yellow",
        )
    if check.central and check.reachable:
        text.append(
            f"\ncentral store {check.central}: {check.from_other_consoles} session(s) of "
            "this patient on other consoles"
            + (f" ({', '.join(check.consoles)})" if check.consoles else "")
            + ", counted"
        )
    elif check.central:
        text.append(
            f"\ncentral store {check.central} unreachable ({check.central_error}): "
            "a session needs a service override",
            style="bold yellow",
        )
    if check.ok:
        text.append("\nthe course rules allow a session today", style="bold green")
    else:
        text.append("\nthe course rules refuse a session today:", style="bold yellow")
        for reason in check.reasons:
            text.append(f"\n- {reason}")
    return text
