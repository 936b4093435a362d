"""Small dialogs. Each shows the header with the E-STOP button; none uses Esc (the e-stop).
Each names its initial focus: the answer that is safe to give with Enter, or the first field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ..host import OnConsole
from ..widgets import UNITS, ConsoleHeader

R = TypeVar("R")

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > #dialog {{ width: 84; height: auto; max-height: 90%; border: thick $primary;
    background: $panel; padding: 1 2; }}
{name} #buttons {{ height: auto; margin: 1 0 0 0; }}
{name} #buttons Button {{ margin: 0 2 0 0; }}
{name} .error {{ color: $error; text-style: bold; }}
"""


class ConsoleDialog(OnConsole, ModalScreen[R]):
    """A modal dialog of the console."""


class EStopNotice(ConsoleDialog[None]):
    """The e-stop pressed while no controller runs (connect, patient and service screens)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="EStopNotice") + (
        "EStopNotice > #dialog { border: thick red; }"
    )
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "acknowledge", "Acknowledge")]
    # Nothing focused: acknowledging is r (or Tab to the button, or a click), never the Enter
    # that was meant for the field or dialog the e-stop interrupted.
    AUTO_FOCUS = None

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("E-STOP")
        with Vertical(id="dialog"):
            yield Label("[b red]EMERGENCY STOP[/]")
            yield Static(self.what, id="estop-what", markup=False)
            yield Static(
                "Make the patient and the room safe. Release the e-stop button if one was "
                "pressed, then acknowledge with r."
            )
            with Horizontal(id="buttons"):
                yield Button("Acknowledge (r)", id="ack", variant="warning")

    @on(Button.Pressed, "#ack")
    def action_acknowledge(self) -> None:
        self.console.acknowledge_console_estop()
        self.dismiss(None)


class ConfirmDialog(ConsoleDialog[bool]):
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
    ]
    AUTO_FOCUS = "#yes"

    def __init__(self, question: str, yes: str = "Yes (y)", no: str = "No (n)") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("Confirm")
        with Vertical(id="dialog"):
            yield Static(self.question, id="question", markup=False)
            with Horizontal(id="buttons"):
                yield Button(self.yes, id="yes", variant="primary")
                yield Button(self.no, id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id in ("yes", "no"):
            event.stop()
            self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class EyewearDialog(ConfirmDialog):
    """SR-01: protective eyewear, confirmed by the operator for this session."""

    DEFAULT_CSS = DIALOG_CSS.format(name="EyewearDialog")

    def __init__(self, wavelength_nm: int) -> None:
        rated = f"rated for {wavelength_nm} nm" if wavelength_nm else "rated for this laser"
        super().__init__(
            f"Is everyone in the treatment room, the patient included, wearing protective "
            f"eyewear {rated}?\n\nConfirm only what you have checked. The confirmation holds "
            "for this session and is cleared by any fault or e-stop.",
            yes="Confirmed: everyone wears eyewear (y)",
            no="Not yet (n)",
        )


class CourseRefusedDialog(ConsoleDialog[str]):
    """SR-18: the course rules refuse the session; an override needs a service login."""

    DEFAULT_CSS = DIALOG_CSS.format(name="CourseRefusedDialog")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("n", "cancel", "Back")]
    AUTO_FOCUS = "#back"  # the override needs its own deliberate choice

    def __init__(self, reasons: Sequence[str], *, offline: bool = False) -> None:
        super().__init__()
        self.reasons = list(reasons)
        self.offline = offline  # the central store could not be asked

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("Course rules")
        with Vertical(id="dialog"):
            if self.offline:
                yield Label("[b yellow]The central store cannot be reached (SR-18)[/]")
            else:
                yield Label("[b yellow]The course rules refuse this session (SR-18)[/]")
            yield Static("\n".join(f"- {r}" for r in self.reasons), id="reasons", markup=False)
            if self.offline:
                yield Static(
                    "Without it the sessions of this patient on the other consoles of the "
                    "chain are unknown. Only a service engineer may start the session anyway, "
                    "with a written reason; the override is logged as made offline and reaches "
                    "the central store with the next push.",
                    id="explain",
                )
            else:
                yield Static(
                    "At most 5 sessions per course and area, at least 21 days apart. Only a "
                    "service engineer may override this, with a written reason that is logged.",
                    id="explain",
                )
            with Horizontal(id="buttons"):
                yield Button("Back (n)", id="back", variant="primary")
                yield Button("Override (service login)", id="override", variant="warning")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss("override" if event.button.id == "override" else "")

    def action_cancel(self) -> None:
        self.dismiss("")


class ReasonDialog(ConsoleDialog[str]):
    """A written reason (an override of the course rules, a new course), logged with it."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ReasonDialog")
    AUTO_FOCUS = "#reason"

    def __init__(self, prompt: str, ok: str = "Override and start") -> None:
        super().__init__()
        self.prompt = prompt
        self.ok = ok

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("Written reason")
        with Vertical(id="dialog"):
            yield Static(self.prompt, markup=False)
            yield Input(placeholder="reason (at least 10 characters)", id="reason")
            yield Static("", id="reason-error", classes="error", markup=False)
            with Horizontal(id="buttons"):
                yield Button(self.ok, id="ok", variant="warning")
                yield Button("Cancel", id="cancel")

    def _submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if len(reason) < 10:
            self.query_one("#reason-error", Static).update(
                "write a reason of 10 characters or more"
            )
            return
        self.dismiss(reason)

    @on(Input.Submitted, "#reason")
    def _submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss("")


class ParametersDialog(ConsoleDialog[dict[str, float]]):
    """New values inside the plan's windows; the controller checks them again (SR-07)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ParametersDialog") + (
        "ParametersDialog .param-row { height: 3; }"
        "ParametersDialog .param-row Label { width: 40; padding: 1 0 0 0; }"
        "ParametersDialog .param-row Input { width: 16; }"
    )
    AUTO_FOCUS = "Input"  # the first value; Enter in any of them sends them all

    def __init__(self, rows: Sequence[tuple[str, float, float, float]]) -> None:
        """rows: (parameter, current value, window min, window max)."""
        super().__init__()
        self.rows = list(rows)

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("Parameters")
        with Vertical(id="dialog"):
            yield Label("Adjust inside the profile's window (applied in STANDBY only)")
            for name, value, low, high in self.rows:
                unit = UNITS.get(name, "")
                with Horizontal(classes="param-row"):
                    yield Label(f"{name}  window {low:g}..{high:g} {unit}")
                    yield Input(f"{value:g}", id=f"param-{name}", type="number")
            yield Static("", id="param-error", classes="error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Send to the handpiece", id="apply", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss({})

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._apply()

    def _apply(self) -> None:
        values: dict[str, float] = {}
        for name, _value, _low, _high in self.rows:
            text = self.query_one(f"#param-{name}", Input).value
            try:
                values[name] = float(text)
            except ValueError:
                self.query_one("#param-error", Static).update(f"{name}: {text!r} is not a number")
                return
        self.dismiss(values)
