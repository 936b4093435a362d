"""The README's screenshots: SVGs of the main screens exported by Textual, headless.

    python -m laserctl.console.screenshots            # write docs/screenshots/*.svg
    python -m laserctl.console.screenshots --check    # exit 1 if any is not current

Screenshots must not change from one run to the next, so the screens show fixed scenes: the
real screens and widgets, fed the fixed views of scenes.py (a Snapshot like the controller
publishes, set against measured values, a calibration fit) instead of a live simulator whose
timing and temperatures differ at every run. The connect, patient and service screens read the
real profile files; the shot log is an empty temporary one. tests/test_console_screenshots.py
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

from drivers.protocol import Param

from .app import ConsoleApp
from .clinic import Clinic
from .host import ConsoleConfig
from .scenes import DEVICE, EMITTING, FAULT, FOUND, SCATTER, SceneSession, report_summary
from .view import ConsoleView

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .treatment import ConsoleSession

SIZE = (120, 40)
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


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
