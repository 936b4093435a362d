"""Patient and profile: the pseudonymous patient ID, the area, the profile's variant with its
windows for strength and depth, and the course rules checked before the session starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from drivers.protocol import Param

from ..clinic import ClinicError, CourseCheck
from ..host import OnConsole
from ..widgets import UNITS, ConsoleHeader, describe_device
from .course import check_text

if TYPE_CHECKING:
    from laserctl.plan import TreatmentPlan
    from laserctl.profiles import Catalog

    from ..treatment import ConsoleSession

AREAS = ("chest", "abdomen", "thighs", "buttocks")  # laserctl.profiles.AREAS
VARIANTS = (("rubra: early, red striae", "rubra"), ("alba: old, white striae", "alba"))
ROLES = {
    Param.ENERGY_MJ: "strength",
    Param.FLUENCE_J_CM2: "strength",
    Param.DEPTH_UM: "depth",
    Param.DENSITY_PCT: "density",
}


class SetupScreen(OnConsole, Screen[None]):
    DEFAULT_CSS = """
    SetupScreen #body { padding: 0 2; }
    SetupScreen .row { height: 3; }
    SetupScreen .row Label { padding: 1 1 0 0; }
    SetupScreen #patient { width: 28; }
    SetupScreen #area { width: 22; }
    SetupScreen #variant { width: 32; }
    SetupScreen #params { height: auto; border: round $primary; padding: 0 1; }
    SetupScreen .param-row { height: 3; }
    SetupScreen .param-row Label { width: 46; padding: 1 0 0 0; }
    SetupScreen .param-row Input { width: 14; }
    SetupScreen #course { height: auto; border: round $secondary; padding: 0 1; }
    SetupScreen #buttons { height: 3; margin: 1 0 0 0; }
    SetupScreen #buttons Button { margin: 0 2 0 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "start", "Start session"),
        Binding("f6", "course", "Course"),
        Binding("f7", "resume", "Resume interrupted"),
        Binding("f2", "service", "Service login"),
    ]
    AUTO_FOCUS = "#patient"

    def __init__(self) -> None:
        super().__init__()
        self.catalog: Catalog | None = None
        self.course: CourseCheck | None = None
        self._check_no = 0
        self._refused_offline = False  # the last refusal: the central store was silent
        self._windows: dict[Param, tuple[float, float, float]] = {}
        self.inputs: dict[Param, Input] = {}  # the value of each parameter

    @property
    def plan_file(self) -> TreatmentPlan | None:
        return self.console.config.plan

    def compose(self) -> ComposeResult:
        device = self.console.device
        yield ConsoleHeader("Patient and profile")
        with VerticalScroll(id="body"):
            yield Static(describe_device(device) if device else "no handpiece", id="handpiece")
            with Horizontal(classes="row"):
                yield Label("Patient ID")
                yield Input(placeholder="pseudonymous, e.g. P-0042", id="patient")
                yield Label("Area")
                yield Select([(a, a) for a in AREAS], id="area", allow_blank=False, value="abdomen")
            with Horizontal(classes="row"):
                yield Label("Striae")
                yield Select(VARIANTS, id="variant", allow_blank=False, value="rubra")
                yield Checkbox("Fitzpatrick IV-VI (lower windows)", id="dark-skin")
            yield Static("loading profiles ...", id="profile", markup=False)
            yield Vertical(id="params")
            yield Static(
                "enter the patient ID to check the course rules", id="course", markup=False
            )
            yield Static("", id="setup-error", classes="error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Start session (F5)", id="start", variant="success")
                yield Button("Resume (F7)", id="resume", variant="warning", disabled=True)
                yield Button("Course (F6)", id="course-button")
                yield Button("Service login (F2)", id="service")
                yield Button("Back", id="back")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#patient", Input).cursor_blink = self.console.config.cursor_blink
        plan = self.plan_file
        if plan is not None:
            self.query_one("#area", Select).value = plan.area
            for widget in ("#area", "#variant", "#dark-skin"):
                self.query_one(widget).disabled = True
            self._show_windows({p: (w.min, w.max, w.default) for p, w in plan.windows.items()})
            self.query_one("#profile", Static).update(
                f"plan file: {plan.plan_id} ({plan.area}); source: {plan.source or '-'}"
            )
            return
        self._preselect()
        device = self.console.device
        self.console.run_io(
            lambda: self.console.clinic.catalog(device), self._catalog_loaded, self._catalog_failed
        )

    def _preselect(self) -> None:
        selector = self.console.config.profile
        device = self.console.device
        if not selector or device is None:
            return
        profile_id, _, rest = selector.partition("/")
        variant, _, skin = rest.partition("/")
        area = profile_id.removeprefix(device.handpiece.slug + "-")
        if area in AREAS:
            self.query_one("#area", Select).value = area
        if variant in ("rubra", "alba"):
            self.query_one("#variant", Select).value = variant
        self.query_one("#dark-skin", Checkbox).value = skin == "iv-vi"

    def _catalog_loaded(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._refresh_profile()

    def _catalog_failed(self, error: Exception) -> None:
        self.query_one("#profile", Static).update(Text(f"profiles not available: {error}", "red"))

    # ---- the selection ------------------------------------------------------------------------
    def _selection(self) -> tuple[str, str, bool]:
        area = self.query_one("#area", Select).value
        variant = self.query_one("#variant", Select).value
        dark = self.query_one("#dark-skin", Checkbox).value
        return str(area), str(variant), bool(dark)

    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _selection_changed(self) -> None:
        if self.plan_file is None:
            self._refresh_profile()
        self._check_course()

    def _refresh_profile(self) -> None:
        device, catalog = self.console.device, self.catalog
        if device is None or catalog is None:
            return
        area, variant, dark = self._selection()
        info = self.query_one("#profile", Static)
        try:
            windows = self.console.clinic.windows(
                catalog, device.handpiece.slug, area, variant, dark
            )
        except ClinicError as exc:
            info.update(Text(str(exc), style="bold red"))
            self._show_windows({})
            return
        profile = catalog.profiles[f"{device.handpiece.slug}-{area}"]
        info.update(
            f"profile {profile.id} version {profile.version} ({profile.title}), variant {variant}"
            + (", Fitzpatrick IV-VI" if dark else "")
            + f"; signed, SHA-256 {profile.sha256[:12]}..."
        )
        self._show_windows({p: (w.min, w.max, w.default) for p, w in windows.items()})

    def _show_windows(self, windows: dict[Param, tuple[float, float, float]]) -> None:
        self._windows = windows
        box = self.query_one("#params", Vertical)
        box.remove_children()
        box.border_title = "Parameters: adjust inside the window"
        rows = []
        self.inputs = {}
        for param, (low, high, default) in windows.items():
            role = ROLES.get(param)
            unit = UNITS.get(param.field_name, "")
            label = f"{param.field_name}" + (f" ({role})" if role else "")
            label += f"  window {low:g}..{high:g} {unit}"
            field = Input(f"{default:g}", name=param.field_name, type="number")
            self.inputs[param] = field
            rows.append(Horizontal(Label(label), field, classes="param-row"))
        if rows:
            box.mount_all(rows)

    def values(self) -> dict[Param, float]:
        out: dict[Param, float] = {}
        for param, field in self.inputs.items():
            text = field.value.strip()
            try:
                out[param] = float(text)
            except ValueError:
                raise ClinicError(f"{param.field_name}: {text!r} is not a number") from None
        return out

    # ---- the course rules (SR-18) -------------------------------------------------------------
    @on(Input.Changed, "#patient")
    def _patient_changed(self) -> None:
        self._check_course()

    def _check_course(self) -> None:
        patient = self.query_one("#patient", Input).value.strip()
        area, _, _ = self._selection()
        self._check_no += 1
        number = self._check_no
        if not patient:
            self.course = None
            self.query_one("#resume", Button).disabled = True
            self.query_one("#course", Static).update("enter the patient ID to check the course")
            return
        clinic = self.console.clinic
        self.console.run_io(
            lambda: clinic.course_check(patient, area),
            lambda check: self._course_checked(number, check),
            lambda error: self._course_failed(number, error),
        )

    def _course_checked(self, number: int, check: CourseCheck) -> None:
        if number != self._check_no:
            return  # an older check answered late
        self.course = check
        self.query_one("#resume", Button).disabled = not check.interrupted
        self.query_one("#course", Static).update(check_text(check))

    def _course_failed(self, number: int, error: Exception) -> None:
        if number == self._check_no:
            self.course = None
            self.query_one("#course", Static).update(Text(str(error), style="bold red"))

    # ---- starting -----------------------------------------------------------------------------
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        self._start(None)

    @on(Button.Pressed, "#course-button")
    def action_course(self) -> None:
        from .course import CourseScreen

        patient = self.query_one("#patient", Input).value.strip()
        try:
            patient = self.console.clinic.check_patient(patient)
        except ClinicError as exc:
            self.query_one("#setup-error", Static).update(str(exc))
            return
        self.app.push_screen(CourseScreen(patient), lambda _: self._check_course())

    @on(Button.Pressed, "#resume")
    def action_resume(self) -> None:
        if self.course is None or not self.course.interrupted:
            self.query_one("#setup-error", Static).update(
                "no interrupted session today for this patient and area"
            )
            return
        self._start(None, resume=True)

    def _start(self, override: tuple[str, str] | None, *, resume: bool = False) -> None:
        error = self.query_one("#setup-error", Static)
        error.update("")
        patient = self.query_one("#patient", Input).value.strip()
        area, variant, dark = self._selection()
        clinic, device = self.console.clinic, self.console.device
        try:
            patient = clinic.check_patient(patient)
            values = self.values()
            if self.plan_file is not None:
                plan = plan_with_values(self.plan_file, values)
            elif self.catalog is None or device is None:
                raise ClinicError("the profiles are not loaded")
            else:
                plan = clinic.plan(
                    self.catalog,
                    handpiece=device.handpiece.slug,
                    area=area,
                    variant=variant,
                    dark_skin=dark,
                    values=values,
                )
        except ClinicError as exc:
            error.update(str(exc))
            return
        error.update(Text("starting the session ...", style="bold"))
        self.console.start_session(
            plan,
            patient,
            plan.area,
            override=override,
            done=self._started,
            failed=lambda exc: self._start_failed(exc, plan.area),
            resume=resume,
        )

    def _started(self, _session: ConsoleSession) -> None:
        self.query_one("#setup-error", Static).update("")

    def _start_failed(self, error: Exception, area: str) -> None:
        from laserctl.records import CourseRuleBroken

        from .dialogs import CourseRefusedDialog

        if isinstance(error, CourseRuleBroken):
            self._refused_offline = error.offline
            self.query_one("#setup-error", Static).update(str(error))
            self.app.push_screen(
                CourseRefusedDialog(error.reasons, offline=error.offline), self._refused_answer
            )
            return
        self.query_one("#setup-error", Static).update(f"not started: {error}")

    def _refused_answer(self, answer: str | None) -> None:
        from .service import ServiceLoginDialog

        if answer == "override":
            self.app.push_screen(
                ServiceLoginDialog("override the course rules"), self._override_login
            )

    def _override_login(self, identity: object) -> None:
        from .dialogs import ReasonDialog

        name = getattr(identity, "name", None)
        if not name:
            return
        why = (
            "start without the central store (the other consoles' sessions unknown)"
            if self._refused_offline
            else "break the course rules"
        )
        self.app.push_screen(
            ReasonDialog(f"{name}: why may this session {why}? (logged)"),
            lambda reason: self._start((name, reason)) if reason else None,
        )

    @on(Button.Pressed, "#service")
    def action_service(self) -> None:
        from .service import open_service

        open_service(self.app)

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.app.pop_screen()

    def reset_for_next_patient(self) -> None:
        self.query_one("#patient", Input).value = ""
        self.query_one("#setup-error", Static).update("")
        self.course = None
        self.query_one("#course", Static).update("enter the patient ID to check the course rules")
        self.query_one("#resume", Button).disabled = True
        if self.plan_file is None:
            self._refresh_profile()


def plan_with_values(plan: TreatmentPlan, values: dict[Param, float]) -> TreatmentPlan:
    """A plan file's plan with the operator's values as its defaults, inside its windows."""
    import dataclasses

    from laserctl.plan import ParamWindow

    windows = dict(plan.windows)
    for param, value in values.items():
        window = windows[param]
        if not window.min <= value <= window.max:
            unit = UNITS.get(param.field_name, "")
            raise ClinicError(
                f"{param.field_name} = {value:g} {unit} is outside the plan's window "
                f"{window.min:g}..{window.max:g} {unit}"
            )
        windows[param] = ParamWindow(window.min, window.max, value)
    return dataclasses.replace(plan, windows=windows)
