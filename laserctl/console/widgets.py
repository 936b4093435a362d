"""The console's panels. Each one only renders what it is given (a ConsoleView and a few
facts fixed for the session); none of them talks to the controller."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Sparkline, Static

from laserctl.controller.table import State
from laserctl.safety.interlocks import SPECS, InterlockId

from .guidance import advise, refusal_hint, warning_hint

if TYPE_CHECKING:
    from drivers.protocol import DeviceInfo

    from .view import ConsoleView

READING_STYLE = {"closed": "bold green", "open": "bold red", "unknown": "bold yellow"}
READING_MARK = {"closed": "OK ", "open": "OPEN", "unknown": "?  "}
STATE_STYLE = {
    State.DISCONNECTED: "bold white on grey30",
    State.CONNECTING: "bold black on yellow",
    State.SELF_TEST: "bold black on yellow",
    State.STANDBY: "bold white on dark_blue",
    State.READY: "bold black on green3",
    State.EMITTING: "bold white on red3",
    State.SERVICE: "bold black on cyan",
    State.FAULT: "bold white on red",
    State.ESTOP: "bold white on red",
}
UNITS = {
    "energy_mj": "mJ",
    "fluence_j_cm2": "J/cm2",
    "pulse_ms": "ms",
    "spot_mm": "mm",
    "density_pct": "%",
    "depth_um": "um",
    "passes": "",
    "rep_rate_hz": "Hz",
}


SHORT_TITLES = {
    "key": "key switch",
    "door": "door / remote",
    "estop": "e-stop input",
    "footswitch": "footswitch",
    "handpiece": "handpiece identity",
    "calibration": "calibration",
    "link": "link both ways",
    "cooling": "cooling",
    "temperature": "temperature",
    "shutter": "shutter",
    "skin_contact": "skin contact",
    "aiming_beam": "aiming beam",
    "eyewear": "eyewear confirmed",
}


def interlock_title(name: str) -> str:
    if name in SHORT_TITLES:
        return SHORT_TITLES[name]
    try:
        return SPECS[InterlockId(name)].title
    except ValueError:
        return name


class EStopButton(Button, can_focus=False):
    """The console's e-stop button: the mouse (or a touch screen) presses it, and Esc and F1
    do the same from the keyboard (the App's binding). It never takes the focus, so neither
    Tab nor a screen's initial focus can put it where a stray Enter or Space would press it:
    an operator answering a dialog with Enter must not latch an ESTOP (issue 12)."""


class ConsoleHeader(Horizontal):
    """On every screen: where we are, the handpiece and controller state, and the e-stop."""

    DEFAULT_CSS = """
    ConsoleHeader { dock: top; height: 3; background: $panel; }
    ConsoleHeader #where { width: 1fr; padding: 0 1; content-align: left middle; height: 3; }
    ConsoleHeader #sim-badge { width: auto; padding: 0 1; height: 3; content-align: center middle;
        background: magenta; color: white; text-style: bold; display: none; }
    ConsoleHeader #sim-badge.-on { display: block; }
    ConsoleHeader #estop { width: 22; height: 3; min-width: 22; text-style: bold; }
    """

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def compose(self) -> ComposeResult:
        from .host import ConsoleHost

        training = isinstance(self.app, ConsoleHost) and self.app.clinic.training
        yield Static(self.where, id="where", markup=False)
        yield Static("TRAINING" if training else "SIMULATION", id="sim-badge")
        yield EStopButton("E-STOP (Esc)", id="estop", variant="error")

    def on_mount(self) -> None:
        self.watch(self.app, "status_text", self._status)
        self.watch(self.app, "fleet_status", self._status)
        self.watch(self.app, "simulation", self._simulation)

    def _status(self, _changed: str) -> None:
        line = Text(self.where, style="bold")
        for text in (getattr(self.app, "status_text", ""), getattr(self.app, "fleet_status", "")):
            if text:
                line.append("   ")
                line.append(Text.from_markup(text))
        for where in self.query("#where").results(Static):  # none while being removed
            where.update(line)

    def _simulation(self, on: bool) -> None:
        for badge in self.query("#sim-badge"):
            badge.set_class(on, "-on")

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "estop":
            event.stop()
            await self.app.run_action("estop")


class Lamp(Static):
    """An indicator: off, waiting (amber) or on (its colour)."""

    DEFAULT_CSS = """
    Lamp { width: 1fr; height: 3; content-align: center middle; text-style: bold;
        border: round $secondary; color: $text-muted; }
    Lamp.-wait { background: $warning; color: black; border: round $warning; }
    Lamp.-ready { background: green; color: black; border: round green; }
    Lamp.-emission { background: red; color: white; border: round red; }
    """

    def set_lamp(self, text: str, mode: str) -> None:
        self.update(text)
        for name in ("-wait", "-ready", "-emission"):
            self.set_class(mode == name, name)


class CompositePanel(Vertical):
    """A panel with children of its own: a view that arrives before they are mounted is kept
    and shown once they are."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._pending: ConsoleView | None = None
        self._live = False

    def on_mount(self) -> None:
        self._live = True
        if self._pending is not None:
            self.show(self._pending)

    def show(self, view: ConsoleView) -> None:
        if not self._live:
            self._pending = view
            return
        self.render_view(view)

    def render_view(self, view: ConsoleView) -> None:
        raise NotImplementedError


class StatePanel(CompositePanel):
    DEFAULT_CSS = """
    StatePanel { height: auto; border: round $primary; padding: 0 1; }
    StatePanel #state { height: 3; content-align: center middle; }
    StatePanel #lamps { height: 3; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="state")
        with Horizontal(id="lamps"):
            yield Lamp("READY", id="ready-lamp")
            yield Lamp("EMISSION", id="emission-lamp")
        yield Static("", id="state-facts")

    def render_view(self, view: ConsoleView) -> None:
        s = view.snapshot
        since = max(0.0, s.at - s.state_since)
        state = Text(f"  {s.state}  ", style=STATE_STYLE.get(s.state, "bold"))
        state.append(f"  for {since:.0f} s", style="dim")
        self.query_one("#state", Static).update(state)
        ready = self.query_one("#ready-lamp", Lamp)
        if s.state in (State.READY, State.EMITTING) and s.ready_in_s:
            ready.set_lamp(f"READY in {s.ready_in_s:.1f} s", "-wait")
        elif s.state in (State.READY, State.EMITTING):
            ready.set_lamp("READY", "-ready")
        else:
            ready.set_lamp("not ready", "")
        emission = self.query_one("#emission-lamp", Lamp)
        if s.emission or s.state is State.EMITTING:
            emission.set_lamp("EMISSION", "-emission")
        else:
            emission.set_lamp("no emission", "")
        facts = Text()
        facts.append("eyewear ")
        facts.append(
            "confirmed" if s.eyewear else "NOT confirmed (e)",
            style="green" if s.eyewear else "bold yellow",
        )
        facts.append("   footswitch ")
        facts.append("PRESSED" if s.footswitch else "released", "bold" if s.footswitch else "")
        temp = "?" if s.temperature_c is None else f"{s.temperature_c:.1f} C"
        facts.append(f"\ndevice {s.device_state or '?'}   handpiece {temp}")
        facts.append(f"\nplan {s.plan_id}", style="dim")
        params = "  ".join(f"{k} {v:g}{UNITS.get(k, '')}" for k, v in s.params)
        facts.append(f"\n{params}")
        if not s.params_confirmed and s.connected:
            facts.append("  (not yet confirmed by the device)", style="yellow")
        self.query_one("#state-facts", Static).update(facts)


class InterlockPanel(Static):
    DEFAULT_CSS = "InterlockPanel { border: round $primary; padding: 0 1; height: auto; }"

    def show(self, view: ConsoleView) -> None:
        table = Table.grid(padding=(0, 1))
        table.add_column()
        table.add_column()
        for name, reading in view.snapshot.interlocks:
            if name == "footswitch" and reading != "unknown":
                # Not a safety circuit once armed: pressing it is how the operator fires; it
                # only has to read released when arming (SR-04).
                mark = Text("down" if reading == "open" else "up  ", style="bold")
            else:
                mark = Text(
                    READING_MARK.get(reading, reading), style=READING_STYLE.get(reading, "")
                )
            table.add_row(mark, Text(interlock_title(name)))
        if not view.snapshot.interlocks:
            table.add_row(Text("?", style="yellow"), Text("no handpiece yet"))
        self.border_title = "Interlocks"
        self.update(table)


class DosePanel(Static):
    DEFAULT_CSS = "DosePanel { border: round $primary; padding: 0 1; height: auto; }"

    def __init__(self, *, course_pulses: int = 0, course_fluence: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.course_pulses = course_pulses
        self.course_fluence = course_fluence

    def show(self, view: ConsoleView) -> None:
        s = view.snapshot
        armed = s.state in (State.READY, State.EMITTING)
        text = Text()
        text.append("shots  ", style="bold")
        text.append(f"{s.shots_seen}", style="bold")
        text.append(f" this session (device count {s.device_shots_fired})")
        if s.shots_recovered:
            text.append(f"\n  {s.shots_recovered} re-read from the handpiece", style="bold")
            text.append(" (fired before, not yet stored)")
        text.append("\ngrant  ", style="bold")
        if armed:
            text.append(f"{max(0, s.grant - s.shots_in_grant)} of {s.grant} pulses left")
        else:
            text.append("none (not armed)")
        text.append("\narea dose this session", style="bold")
        text.append(f"\n  {s.pulses_used} / {s.pulses_max} pulses")
        text.append(f"\n  {s.fluence_used_j_cm2:.1f} / {s.fluence_max_j_cm2:g} J/cm2")
        text.append("\narea dose this course", style="bold")
        text.append(
            f"\n  {self.course_pulses + s.pulses_used} pulses, "
            f"{self.course_fluence + s.fluence_used_j_cm2:.1f} J/cm2"
        )
        self.border_title = "Dose"
        self.update(text)


class EnergyPanel(CompositePanel):
    DEFAULT_CSS = """
    EnergyPanel { border: round $primary; padding: 0 1; height: auto; }
    EnergyPanel Sparkline { height: 3; margin: 1 0 0 0; }
    """

    def compose(self) -> ComposeResult:
        yield Static("no shots yet", id="energy-text")
        yield Sparkline([], id="energy-spark")

    def render_view(self, view: ConsoleView) -> None:
        self.border_title = "Measured against set"
        shots = view.shots
        spark = self.query_one("#energy-spark", Sparkline)
        text = Text()
        if not shots:
            text.append("no shots yet")
            spark.data = []
            self.query_one("#energy-text", Static).update(text)
            return
        last = shots[-1]
        unit = UNITS.get(last.dose_param, "")
        deviations = [p.deviation_pct for p in shots]
        worst = max(deviations, key=abs)
        text.append(f"shot {last.shot_no}: measured {last.measured_value:.2f} {unit}, ")
        text.append(f"set {last.set_value:g} {unit}, ")
        text.append(f"{last.deviation_pct:+.1f} %", style=_deviation_style(last.deviation_pct))
        text.append(f"\nlast {len(shots)} shots, measured as % of set: ")
        text.append(f"{min(deviations) + 100:.1f}..{max(deviations) + 100:.1f} %")
        text.append("  worst ")
        text.append(f"{worst:+.1f} %", style=_deviation_style(worst))
        text.append("\nwarning beyond +-10 %, stop beyond +-20 % (SR-06)", style="dim")
        self.query_one("#energy-text", Static).update(text)
        spark.data = [100.0 + d for d in deviations]


def _deviation_style(pct: float) -> str:
    if abs(pct) > 20:
        return "bold red"
    if abs(pct) > 10:
        return "bold yellow"
    return "green"


class MessagePanel(Static):
    """Faults with their cause, what to do and how to reset; refusals and warnings."""

    DEFAULT_CSS = "MessagePanel { border: round $error; padding: 0 1; height: auto; }"

    def show(self, view: ConsoleView) -> None:
        s = view.snapshot
        text = Text()
        if view.causes:
            heading = "EMERGENCY STOP" if s.state is State.ESTOP else "FAULT"
            text.append(f"{heading}: the handpiece is disarmed\n", style="bold red")
            for cause in view.causes:
                advice = advise(cause)
                text.append(f"- {advice.title}: ", style="bold")
                text.append(f"{cause.message}\n")
                text.append("  what to do: ", style="bold")
                text.append(f"{advice.todo}\n")
                text.append("  reset: ", style="bold")
                text.append(f"{advice.reset}\n")
        elif s.state in (State.FAULT, State.ESTOP):
            text.append(f"{s.state}: the latched causes were acknowledged; ", style="bold red")
            text.append("press r (RESET) to run the self test again\n")
        if s.last_message and not view.causes:
            text.append("last: ", style="bold")
            text.append(f"{s.last_message}\n")
        for refusal in view.refusals[-2:]:
            text.append(f"refused {refusal.command}: ", style="bold yellow")
            text.append(f"{refusal.reason}\n")
            text.append(f"  what to do: {refusal_hint(refusal.reason)}\n")
        for warning in view.warnings[-2:]:
            text.append("warning: ", style="bold yellow")
            text.append(f"{warning}\n  what to do: {warning_hint(warning)}\n")
        text.rstrip()
        if not text.plain:
            text.append("no faults, refusals or warnings", style="green")
        self.border_title = "Faults, refusals, warnings"
        self.update(text)


class EventLog(Static):
    DEFAULT_CSS = (
        "EventLog { border: round $secondary; padding: 0 1; height: auto; color: $text-muted; }"
    )

    def show(self, lines: Sequence[str]) -> None:
        self.border_title = "Controller log"
        self.update(Text("\n".join(lines[-4:]) or "(empty)"))


def describe_device(info: DeviceInfo) -> Text:
    text = Text()
    text.append(f"{info.handpiece.slug}", style="bold")
    text.append(f"  serial {info.serial}  firmware {info.firmware}  protocol {info.protocol}")
    text.append(f"  {info.wavelength_nm} nm")
    if info.simulated:
        text.append("  SIMULATED (training)", style="bold magenta")
    return text
