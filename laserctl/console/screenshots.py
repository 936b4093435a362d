"""The README's screenshots: SVGs of the main screens exported by Textual, headless.

    python -m laserctl.console.screenshots            # write docs/screenshots/*.svg
    python -m laserctl.console.screenshots --check    # exit 1 if any is not current

Screenshots must not change from one run to the next, so the screens show fixed scenes: the
real screens and widgets, fed fixed views (a Snapshot like the controller publishes, set
against measured values, a calibration fit) instead of a live simulator whose timing and
temperatures differ at every run. The connect, patient and service screens read the real
profile files; the shot log is an empty temporary one. tests/test_console_screenshots.py
fails when a file is not current.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from drivers.protocol import HANDPIECES, DeviceInfo, HandpieceType, Param
from laserctl.controller.snapshot import Snapshot
from laserctl.controller.table import State

from .app import ConsoleApp
from .clinic import Clinic
from .discovery import DeviceChoice, simulators
from .host import ConsoleConfig
from .view import CauseView, ConsoleView, RefusalView, ShotPoint

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .treatment import ConsoleSession, SessionSummary

SIZE = (120, 40)
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

FRACTIONAL = HANDPIECES[HandpieceType.FRACTIONAL_1550]
DEVICE = DeviceInfo(
    handpiece=FRACTIONAL.type,
    serial="FX-00001",
    firmware="sim-1.0.0",
    protocol=1,
    boot_id=1,
    simulated=True,
    wavelength_nm=FRACTIONAL.wavelength_nm,
    interlocks=FRACTIONAL.interlocks,
    capabilities=dict(FRACTIONAL.capabilities),
)
FOUND = [
    *simulators(),
    DeviceChoice("/dev/ttyUSB0", "serial port: CP2102 USB to UART Bridge Controller"),
    DeviceChoice("usb:1209:4c31:FX-20417", "USB handpiece: laserctl fractional 1550"),
]
INTERLOCKS = (
    "key",
    "door",
    "estop",
    "footswitch",
    "handpiece",
    "calibration",
    "link",
    "cooling",
    "temperature",
    "shutter",
    "skin_contact",
    "eyewear",
)
PARAMS = (
    ("energy_mj", 14.0),
    ("density_pct", 8.0),
    ("depth_um", 600.0),
    ("passes", 2.0),
    ("rep_rate_hz", 5.0),
)
# measured / set - 1, in %: a source with about 1.5 % scatter (docs/simulator.md)
SCATTER = (0.4, -1.1, 1.6, -0.3, 0.9, -2.2, 1.2, 0.1, -0.8, 2.0, -1.4, 0.6, -0.2, 1.1, -1.7)


def snapshot(state: State, **changes: Any) -> Snapshot:
    base: dict[str, Any] = {
        "seq": 1,
        "at": 100.0,
        "state": state,
        "state_since": 88.0,
        "plan_id": "fractional-1550-abdomen/rubra",
        "handpiece": "fractional-1550",
        "serial": "FX-00001",
        "simulated": True,
        "connected": True,
        "link_alive": True,
        "device_state": "EMITTING" if state is State.EMITTING else "IDLE",
        "interlocks": tuple((name, "closed") for name in INTERLOCKS),
        "not_closed": (),
        "eyewear": True,
        "footswitch": state is State.EMITTING,
        "emission": state is State.EMITTING,
        "temperature_c": 27.4,
        "params": PARAMS,
        "params_confirmed": True,
        "grant": 300,
        "shots_in_grant": 42,
        "ready_in_s": None,
        "pulses_used": 42,
        "pulses_max": 300,
        "fluence_used_j_cm2": 306.2,
        "fluence_max_j_cm2": 2620.0,
        "shots_seen": 42,
        "shots_recovered": 0,
        "device_shots_fired": 42,
        "causes": (),
        "faults": 0,
        "refusals": 0,
        "warnings": 0,
        "last_message": "",
        "commands_in_flight": 0,
        "awaiting": (),
    }
    base.update(changes)
    return Snapshot(**base)


def shots(count: int = 42) -> tuple[ShotPoint, ...]:
    return tuple(
        ShotPoint(n, "energy_mj", 14.0, round(14.0 * (1 + SCATTER[n % len(SCATTER)] / 100), 3))
        for n in range(1, count + 1)
    )[-60:]


LOG = (
    "[transition] SELF_TEST -> STANDBY (self_test_passed)",
    "[info] protective eyewear confirmed by the operator",
    "[info] ARM sent: grant 300 pulses (max_pulses 300, 0 used)",
    "[transition] STANDBY -> READY (arm_acked)",
    "[emission] emission indication on",
    "[transition] READY -> EMITTING (emission_started)",
)

EMITTING = ConsoleView(snapshot(State.EMITTING), shots=shots(), log=LOG)
DOOR_CAUSE = "interlock opened while EMITTING: door open"
FAULT = ConsoleView(
    snapshot(
        State.FAULT,
        device_state="IDLE",
        interlocks=tuple((n, "open" if n in ("door", "eyewear") else "closed") for n in INTERLOCKS),
        not_closed=("door", "eyewear"),
        eyewear=False,
        grant=300,
        causes=(DOOR_CAUSE,),
        faults=1,
        refusals=1,
        last_message="RESET refused: cause still present: door still open",
    ),
    causes=(CauseView("interlock", DOOR_CAUSE, "door"),),
    refusals=(RefusalView("RESET", "cause still present: door still open"),),
    shots=shots(),
    log=(
        *LOG[2:],
        "[emission] emission stopped",
        f"[fault] {DOOR_CAUSE}",
        "[transition] EMITTING -> FAULT (fault)",
        "[refusal] RESET refused: cause still present: door still open",
    ),
)


class SceneBridge:
    def __init__(self, view: ConsoleView) -> None:
        self.view = view

    def take(self) -> ConsoleView:
        return self.view

    def submit(self, _event: object) -> None:
        pass

    def estop(self) -> None:
        pass

    def disarm(self) -> None:
        pass


class SceneRunner:
    device_info = DEVICE


class SceneSession:
    """What the treatment screen reads of a ConsoleSession, holding a fixed view."""

    def __init__(self, view: ConsoleView) -> None:
        from laserctl.plan import FRACTIONAL_CONSERVATIVE

        self.session_id = "S-20261123-1a2b3c4d"
        self.course = 1
        self.patient = "P-0042"
        self.area = "abdomen"
        self.url = "sim:fractional-1550"
        self.plan = FRACTIONAL_CONSERVATIVE
        self.bridge = SceneBridge(view)
        self.runner = SceneRunner()
        self.finished = None
        self.closed = False

    def close(self) -> None:
        self.closed = True


def report_summary() -> SessionSummary:
    from .treatment import SessionSummary

    return SessionSummary(
        session_id="S-20261123-1a2b3c4d",
        patient="P-0042",
        area="abdomen",
        course=1,
        report={
            "final_state": "STANDBY",
            "plan_id": "fractional-1550-abdomen/rubra",
            "handpiece": {"handpiece": "fractional-1550", "serial": "FX-00001", "simulated": True},
            "shots_fired": 186,
            "shots_seen": 186,
            "pulses_used": 186,
            "fluence_used_j_cm2": 1355.9,
            "faults": [
                {"state": "EMITTING", "cause": DOOR_CAUSE},
            ],
            "refusals": [{"command": "RESET", "reason": "cause still present: door still open"}],
            "warnings": [],
        },
        shots_logged=186,
        report_path="/var/lib/laserctl/reports/S-20261123-1a2b3c4d.html",
        report_problem="",
        log_ok=True,
        log_note="hash chains intact (412 records)",
    )


# ---- scenes -------------------------------------------------------------------------------------
async def _until(pilot: Pilot[None], done: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the scene did not settle")
        await pilot.pause(0.02)


async def _connect(pilot: Pilot[None], app: ConsoleApp) -> None:
    from textual.widgets import OptionList

    await _until(pilot, lambda: app.screen.query(OptionList) and _options(app) == len(FOUND))


def _options(app: ConsoleApp) -> int:
    from textual.widgets import OptionList

    return app.screen.query_one(OptionList).option_count


async def _setup(pilot: Pilot[None], app: ConsoleApp) -> None:
    from textual.widgets import Input

    from .screens.setup import SetupScreen

    app.device = DEVICE
    app.simulation = True
    screen = SetupScreen()
    await app.push_screen(screen)
    await _until(pilot, lambda: screen.inputs)
    screen.query_one("#patient", Input).value = "P-0042"
    await _until(pilot, lambda: screen.course is not None)
    screen.query_one("#patient", Input).blur()


async def _treatment(pilot: Pilot[None], app: ConsoleApp, view: ConsoleView) -> None:
    from .screens.treatment import TreatmentScreen

    session = cast("ConsoleSession", SceneSession(view))  # a scene: only what is shown
    app.session = session
    screen = TreatmentScreen(session, (0, 0.0))
    app.treatment_screen = screen
    await app.push_screen(screen)
    app.wake()
    await _until(pilot, lambda: screen.ready and screen.view is view)


async def _emitting(pilot: Pilot[None], app: ConsoleApp) -> None:
    await _treatment(pilot, app, EMITTING)


async def _fault(pilot: Pilot[None], app: ConsoleApp) -> None:
    await _treatment(pilot, app, FAULT)


async def _service(pilot: Pilot[None], app: ConsoleApp) -> None:
    from laserctl.auth import Identity, Role
    from laserctl.calibration.fit import Point, fit_points
    from laserctl.calibration.procedure import Outcome, set_points
    from laserctl.calibration.record import Calibration

    from .screens.service import ServiceScreen

    app.device = DEVICE
    screen = ServiceScreen(Identity("svc.anna", Role.SERVICE))
    await app.push_screen(screen)
    await _until(pilot, lambda: "usable" in _text(screen, "#profiles"))
    await _until(pilot, lambda: "calibration" in _text(screen, "#cal-status"))
    values = [v for v in set_points(*DEVICE.capabilities[Param.ENERGY_MJ], 6) for _ in range(4)]
    points = tuple(
        Point(v, round(v * 0.97 * (1 + SCATTER[i % len(SCATTER)] / 100), 3))
        for i, v in enumerate(values)
    )
    fit = fit_points(points)
    created = 1_795_000_000.0
    calibration = Calibration(
        "FX-00001", "fractional-1550", "sim-1.0.0", Param.ENERGY_MJ, created,
        created + 30 * 86400, "svc.anna", points, fit,
    )  # fmt: skip
    screen._calibrated(Outcome(list(points), fit, [], calibration))
    screen.query_one("#cal-progress").update(progress=len(points))  # type: ignore[attr-defined]
    await pilot.pause()


SCENE_NOW = 1_796_000_000.0  # the course scene's "now": its dates stay the same every run


async def _course(pilot: Pilot[None], app: ConsoleApp) -> None:
    import datetime as dt

    from laserctl.records import ShotContext
    from laserctl.shotrecord import ShotRecord

    from .screens.course import CourseScreen

    now = [SCENE_NOW - 70 * 86400]
    clinic = app.clinic
    clinic.clock, clinic.tz = (lambda: now[0]), dt.UTC  # before the shot log opens
    store = clinic.store
    context = ShotContext("FX-00001", "fractional-1550", "sim-1.0.0", "p", "0" * 64, ())
    sessions = ((0, "abdomen", 120), (23, "abdomen", 140), (23, "thighs", 90))
    for i, (days, area, shots) in enumerate(sessions):
        now[0] = SCENE_NOW - 70 * 86400 + days * 86400
        day = dt.datetime.fromtimestamp(now[0], dt.UTC)
        sid = f"S-{day:%Y%m%d}-{0xC0FFEE00 + i:08x}"  # fixed: the scene is the same every run
        store.begin_session("P-0042", area, session_id=sid, context=lambda: context)
        for n in range(shots):
            store.record(
                ShotRecord(
                    sid, "p", area, 1, n + 1 + i * 1000, 0, Param.ENERGY_MJ, 14.0, 14.0,
                    1000, (), False, True, 2.5, 0.0,
                )
            )  # fmt: skip
        store.end_session(sid)
    now[0] = SCENE_NOW
    screen = CourseScreen("P-0042")
    await app.push_screen(screen)
    await _until(pilot, lambda: screen.lines)


async def _verification(pilot: Pilot[None], app: ConsoleApp) -> None:
    from .screens.verification import VerificationDialog

    app.device = DEVICE
    dialog = VerificationDialog("no daily verification of FX-00001 has passed today")
    await app.push_screen(dialog)
    await pilot.pause()


async def _report(pilot: Pilot[None], app: ConsoleApp) -> None:
    from .screens.report import ReportScreen

    await app.push_screen(ReportScreen(report_summary()))
    await pilot.pause()


def _text(screen: Any, selector: str) -> str:
    import io

    from rich.console import Console

    found = list(screen.query(selector))
    if not found:
        return ""
    out = Console(width=200, file=io.StringIO(), color_system=None, record=True)
    out.print(found[0].content)
    return out.export_text()


SCENES: dict[str, Callable[[Pilot[None], ConsoleApp], Awaitable[None]]] = {
    "connect": _connect,
    "patient-and-profile": _setup,
    "treatment-emitting": _emitting,
    "treatment-fault": _fault,
    "service": _service,
    "report": _report,
    "course": _course,
    "daily-verification": _verification,
}


async def capture(name: str, workdir: Path) -> str:
    clinic = Clinic(workdir / f"{name}.db", accounts_dir=workdir / "config")
    app = ConsoleApp(clinic, ConsoleConfig(discover=lambda: (FOUND, ""), cursor_blink=False))
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: len(app.screen_stack) > 1)
        await SCENES[name](pilot, app)
        await pilot.pause()
        svg = app.export_screenshot(title=f"laserctl console: {name}")
        app.session = None  # a scene holds no link to close
    return svg


def render_all() -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="laserctl-screens-") as tmp:
        return {name: asyncio.run(capture(name, Path(tmp))) for name in SCENES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m laserctl.console.screenshots")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not current")
    parser.add_argument("--out", type=Path, default=OUT, help=f"directory (default {OUT})")
    args = parser.parse_args(argv)
    stale = []
    for name, svg in render_all().items():
        path = args.out / f"{name}.svg"
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == svg:
            continue
        stale.append(str(path))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(svg, encoding="utf-8")
    verb = "stale" if args.check else "written"
    for path_text in stale:
        print(f"{verb}: {path_text}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
