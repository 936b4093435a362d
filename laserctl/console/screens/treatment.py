"""The treatment screen: state, indicators, interlocks, dose, energies, faults; the operator's
keys; in simulation, the training keys. It shows views and sends commands, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

from drivers.protocol import Param
from laserctl.controller.events import (
    ConfirmEyewear,
    Connect,
    RequestArm,
    RequestReset,
    SetParameters,
)
from laserctl.controller.table import State

from ..host import OnConsole
from ..widgets import (
    ConsoleHeader,
    DosePanel,
    EnergyPanel,
    EventLog,
    InterlockPanel,
    MessagePanel,
    StatePanel,
)

if TYPE_CHECKING:
    from ..treatment import ConsoleSession
    from ..view import ConsoleView

SIM_ACTIONS = frozenset(
    {
        "sim_footswitch",
        "sim_door",
        "sim_heat",
        "sim_cable",
        "sim_drift",
        "sim_contact",
        "sim_button",
    }
)
DRIFT_PCT = 25  # beyond the +-20 % of SR-06: the energy monitor stops emission

SIM_HELP = (
    "SIMULATION (training) keys: f footswitch  1 door  2 overheat  3 cable  4 drift +25 %  "
    "5 lift handpiece  6 e-stop button  (each key again undoes it)"
)


class TreatmentScreen(OnConsole, Screen[None]):
    DEFAULT_CSS = """
    TreatmentScreen #sim-banner { display: none; background: magenta; color: white;
        text-style: bold; padding: 0 1; height: auto; }
    TreatmentScreen #sim-banner.-on { display: block; }
    TreatmentScreen #top { height: auto; }
    TreatmentScreen #left { width: 2fr; height: auto; }
    TreatmentScreen InterlockPanel { width: 30; }
    TreatmentScreen #right { width: 2fr; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "eyewear", "Eyewear"),
        Binding("a", "arm", "ARM"),
        Binding("d", "disarm", "DISARM"),
        Binding("space", "disarm", "DISARM", show=False),
        Binding("r", "reset", "Reset"),
        Binding("c", "connect", "Connect", show=False),
        Binding("p", "parameters", "Params"),
        Binding("x", "end", "End"),
        Binding("f", "sim_footswitch", "sim foot", show=False),
        Binding("1", "sim_door", "sim door", show=False),
        Binding("2", "sim_heat", "sim heat", show=False),
        Binding("3", "sim_cable", "sim cable", show=False),
        Binding("4", "sim_drift", "sim drift", show=False),
        Binding("5", "sim_contact", "sim contact", show=False),
        Binding("6", "sim_button", "sim e-stop", show=False),
    ]
    AUTO_FOCUS = None  # nothing to focus: every command is a key of the screen's own

    def __init__(self, session: ConsoleSession, course_dose: tuple[int, float]) -> None:
        super().__init__()
        self.session = session
        self.course_dose = course_dose
        self.view: ConsoleView | None = None
        self.simulated = False
        self.injected: dict[str, bool] = {}  # simulator toggles, as last injected
        self.last_sim = ""
        self.ready = False  # every panel composed: views may be shown

    def compose(self) -> ComposeResult:
        s = self.session
        yield ConsoleHeader(f"Treatment  {s.session_id}  course {s.course}")
        yield Static(SIM_HELP, id="sim-banner")
        with Horizontal(id="top"):
            with Vertical(id="left"):
                yield StatePanel()
            yield InterlockPanel()
            with Vertical(id="right"):
                yield DosePanel(
                    course_pulses=self.course_dose[0], course_fluence=self.course_dose[1]
                )
                yield EnergyPanel()
        yield MessagePanel()
        yield EventLog()
        yield Footer()

    def on_mount(self) -> None:
        # The panels compose their own children after this screen mounts: show views only
        # once everything is on screen.
        self.call_after_refresh(self._first_view)

    def _first_view(self) -> None:
        self.ready = True
        view = self.view or self.console.view
        if view is not None:
            self.show(view)

    def show(self, view: ConsoleView) -> None:
        self.view = view
        if not self.ready:
            return
        try:
            self.query_one(StatePanel).show(view)
            self.query_one(InterlockPanel).show(view)
            self.query_one(DosePanel).show(view)
            self.query_one(EnergyPanel).show(view)
            self.query_one(MessagePanel).show(view)
            self.query_one(EventLog).show(view.log)
        except NoMatches:  # the screen is being taken down (leaving, quitting)
            return
        if view.snapshot.simulated != self.simulated:
            self.simulated = view.snapshot.simulated
            self.query_one("#sim-banner", Static).set_class(self.simulated, "-on")
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SIM_ACTIONS:
            return self.simulated  # hidden and inactive on a real handpiece
        return True

    # ---- operator -----------------------------------------------------------------------------
    def action_eyewear(self) -> None:
        from .dialogs import EyewearDialog

        info = self.session.runner.device_info
        self.app.push_screen(EyewearDialog(info.wavelength_nm if info else 0), self._eyewear_answer)

    def _eyewear_answer(self, confirmed: bool | None) -> None:
        if confirmed:
            self.session.bridge.submit(ConfirmEyewear())

    def action_arm(self) -> None:
        self.session.bridge.submit(RequestArm())

    def action_disarm(self) -> None:
        self.session.bridge.disarm()

    def action_reset(self) -> None:
        self.session.bridge.submit(RequestReset())

    def action_connect(self) -> None:
        self.session.bridge.submit(Connect())

    def action_parameters(self) -> None:
        from .dialogs import ParametersDialog

        view = self.view
        if view is None:
            return
        current = dict(view.snapshot.params)
        rows = [
            (p.field_name, current.get(p.field_name, w.default), w.min, w.max)
            for p, w in self.session.plan.windows.items()
            if w.min != w.max
        ]
        self.app.push_screen(ParametersDialog(rows), self._parameters_answer)

    def _parameters_answer(self, values: dict[str, float] | None) -> None:
        if values:
            pairs = tuple((Param[name.upper()], value) for name, value in values.items())
            self.session.bridge.submit(SetParameters(pairs))

    def action_end(self) -> None:
        from .dialogs import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.console.end_session()

        self.app.push_screen(
            ConfirmDialog(
                "End the session? The handpiece is disarmed, the session's end is logged and "
                "the report is written."
            ),
            answered,
        )

    # ---- simulation (training) ----------------------------------------------------------------
    # Each key toggles what the trainer injected last (not what the panel shows: a reading can
    # lag the fault it caused by a status message). (on, off) commands per key:
    SIM_TOGGLES: ClassVar[dict[str, tuple[str, str]]] = {
        "footswitch": ("press", "release"),
        "door": ("open door", "close door"),
        "heat": ("overheat", "cool"),
        "cable": ("pull cable", "replug"),
        "drift": (f"drift {DRIFT_PCT}", "drift 0"),
        "skin": ("open skin", "close skin"),
        "aiming": ("open aiming", "close aiming"),
        "button": ("estop", "release estop"),
    }

    def _toggle(self, name: str) -> None:
        on = not self.injected.get(name, False)
        self.injected[name] = on
        text = self.SIM_TOGGLES[name][0 if on else 1]
        self.last_sim = text
        session = self.session

        def failed(error: Exception) -> None:
            self.injected[name] = not on  # it did not happen
            self.notify(f"simulator: {text}: {error}", severity="error", markup=False)

        self.console.run_io(lambda: session.sim(text), lambda _answer: None, failed)

    def action_sim_footswitch(self) -> None:
        self._toggle("footswitch")

    def action_sim_door(self) -> None:
        self._toggle("door")

    def action_sim_heat(self) -> None:
        self._toggle("heat")

    def action_sim_cable(self) -> None:
        self._toggle("cable")

    def action_sim_drift(self) -> None:
        self._toggle("drift")

    def action_sim_contact(self) -> None:
        info = self.session.runner.device_info
        fractional = info is None or info.handpiece.slug.startswith("fractional")
        self._toggle("skin" if fractional else "aiming")

    def action_sim_button(self) -> None:
        self._toggle("button")

    @property
    def state(self) -> State | None:
        return self.view.snapshot.state if self.view else None
