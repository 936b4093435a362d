"""A treatment session as the console runs it: laserctl.session.TreatmentSession (the one
`laserctl session --patient --area` runs: the course rules, the controller with its session
settings, the group-commit writer, the event stream) behind the console's bridge, and at the
end the summary, the HTML report and the shot log's verification.

Training (`laserctl console --training`, simulated handpieces only): no calibration needed
(laserctl.controller.core.stand_in_calibration), and the shot log is a throwaway one.

Construction and finish() do I/O (SQLite, the link): the console calls them on its I/O worker
thread. While the session runs the console touches it only through the bridge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from laserctl.controller.table import ARMED, State

from .bridge import ControllerBridge
from .clinic import Clinic

if TYPE_CHECKING:
    from drivers.protocol import DeviceInfo
    from laserctl.controller.events import Note
    from laserctl.controller.runner import ControllerRunner
    from laserctl.plan import TreatmentPlan
    from laserctl.shotrecord import ShotRecord

IDENTIFY_TIMEOUT_S = 5.0
SETTLE_S = 2.0


def identify(url: str) -> DeviceInfo:
    """Open the device URL, read who the handpiece is (HELLO), close. CommandError if not."""
    from drivers.host import HandpieceConnection

    connection = HandpieceConnection(url, reconnect=False)
    try:
        return connection.open()
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    patient: str
    area: str
    course: int
    report: dict[str, Any]  # ControllerRunner.report()
    shots_logged: int
    report_path: str  # the HTML report, "" if it could not be written
    report_problem: str
    log_ok: bool
    log_note: str


class ConsoleSession:
    """A TreatmentSession (laserctl.session, the one `laserctl session` runs) with the
    console's bridge in front of its runner."""

    def __init__(
        self,
        clinic: Clinic,
        url: str,
        plan: TreatmentPlan,
        patient: str,
        area: str,
        *,
        wake: Callable[[], None],
        operator: str | None = None,
        override: tuple[str, str] | None = None,  # (service user, written reason), SR-18
        resume: bool = False,  # the same day's interrupted session, after a crash
    ) -> None:
        """Begin the session in the shot log (the course rules are checked there: a refusal
        raises CourseRuleBroken and nothing is connected), then start the controller and
        connect. `wake` must not block (see bridge.py)."""
        from laserctl.controller.core import stand_in_calibration
        from laserctl.controller.events import Connect
        from laserctl.records import CourseOverride
        from laserctl.session import TreatmentSession

        def note(note: Note) -> None:  # the bridge comes with the runner, made in there
            self.bridge.on_note(note)

        def shot(shot: ShotRecord) -> None:
            self.bridge.on_shot(shot)

        self.clinic = clinic
        self.treatment = TreatmentSession(
            clinic.store,
            url,
            plan,
            patient,
            area,
            # SR-14: arming needs the handpiece's valid calibration from the shot log, which
            # also maps the dose to the handpiece's set points; training: simulated only.
            calibration=stand_in_calibration if clinic.training else clinic.calibration_source(),
            wall_clock=clinic.clock,  # the calibration's expiry is judged on the clinic's time
            operator=operator,
            override=CourseOverride(*override) if override else None,
            authority=clinic.authority,  # the central store, asked afresh (--fleet)
            resume=resume,
            echo=note,
            on_shot=shot,
        )
        self.url, self.plan, self.patient, self.area = url, plan, patient, area
        self.session_id = self.treatment.session_id
        self.course = self.treatment.course
        self.runner: ControllerRunner = self.treatment.runner
        self.bridge = ControllerBridge(self.runner, wake)
        self.bridge.attach()
        self.runner.start()
        self.runner.submit(Connect())
        self.finished: SessionSummary | None = None
        self.closed = False

    def sim(self, text: str) -> str:
        """A fault-injection command to a simulated handpiece; returns the device's answer."""
        return type(self.runner.sim_control(text)).__name__

    def finish(self) -> SessionSummary:
        """Disarm, collect the controller's report, end the session in the shot log and write
        the HTML report. The link stays open (disarmed) until close(), so the e-stop still
        reaches the handpiece while the report is on screen."""
        from laserctl.controller.events import RefreshStatus
        from laserctl.records import RecordError

        runner = self.runner
        runner.disarm()
        runner.wait_for(lambda s: s.state not in ARMED, SETTLE_S)
        if runner.snapshot.connected:
            runner.submit(RefreshStatus())
            runner.sync()
            runner.wait_for(lambda s: s.commands_in_flight == 0, 1.0)
        report = runner.report()
        runner.on_note = self.bridge.on_note  # the session has ended: nothing more is its own
        ending = self.treatment.end(
            {
                "final_state": report["final_state"],
                "shots_fired": report["shots_fired"],
                "shots_seen": report["shots_seen"],
                "faults": len(report["faults"]),
                "refusals": len(report["refusals"]),
            }
        )
        if ending.error:
            raise RecordError(ending.error)
        logged = ending.shots_logged
        path, problem = "", ""
        try:
            path = str(self.clinic.write_report(self.session_id))
        except Exception as exc:  # the report is a convenience; the log holds the record
            problem = f"{type(exc).__name__}: {exc}"
        log_ok, log_note = self.clinic.verify_log()
        self.finished = SessionSummary(
            self.session_id,
            self.patient,
            self.area,
            self.course,
            report,
            logged,
            path,
            problem,
            log_ok,
            log_note,
        )
        return self.finished

    def close(self) -> None:
        """Disarm, stop the controller, close the link (runner.close)."""
        if self.closed:
            return
        self.closed = True
        self.bridge.detach()
        self.treatment.close()  # closed without finish(): what was submitted is kept

    @property
    def state(self) -> State:
        return self.runner.snapshot.state
