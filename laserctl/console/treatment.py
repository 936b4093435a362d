"""A treatment session as the console runs it: the construction of `laserctl session
--patient --area` (laserctl/cli/session.py, _open_log): Controller(plan, calibration=the shot
log's calibration lookup), begin_session with the controller's context (the course rules are
checked there), the group-commit writer between the runner and the shot log (SHOT_ACK only
after the shot is on disk, SR-11), EventStream for the notes; end_session at the end.

Training (`laserctl console --training`, simulated handpieces only): no calibration needed
(laserctl.controller.core.stand_in_calibration), and the shot log is a throwaway one.

Construction and finish() do I/O (SQLite, the link): the console calls them on its I/O worker
thread. While the session runs the console touches it only through the bridge.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from laserctl.controller.table import ARMED, State
from laserctl.records.writer import GroupCommitWriter

from .bridge import ControllerBridge
from .clinic import Clinic

if TYPE_CHECKING:
    from drivers.protocol import DeviceInfo
    from laserctl.controller.runner import ControllerRunner
    from laserctl.controller.shots import ShotRecord
    from laserctl.logging import EventStream
    from laserctl.plan import TreatmentPlan
    from laserctl.records import RecordStore

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


class TappedWriter(GroupCommitWriter):
    """The group-commit writer, passing each shot's set and measured values on to the
    console as the controller hands it over (for the sparkline; durability is the writer's)."""

    def __init__(self, store: RecordStore, on_shot: Callable[[ShotRecord], None]) -> None:
        super().__init__(store)
        self.on_shot = on_shot

    def submit_shot(self, shot: ShotRecord) -> int:
        ticket = super().submit_shot(shot)
        self.on_shot(shot)
        return ticket


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


class TreatmentSession:
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
    ) -> None:
        """Begin the session in the shot log (the course rules are checked there: a refusal
        raises CourseRuleBroken and nothing is connected), then start the controller and
        connect. `wake` must not block (see bridge.py)."""
        from laserctl.controller.core import Controller, stand_in_calibration
        from laserctl.controller.events import Connect
        from laserctl.controller.runner import ControllerRunner
        from laserctl.logging import EventStream
        from laserctl.records import CourseOverride, controller_context

        self.clinic = clinic
        self.url = url
        self.plan = plan
        self.patient = patient
        self.area = area
        store = clinic.store
        controller = Controller(
            plan,
            # SR-14: arming needs the handpiece's valid calibration from the shot log, which
            # also maps the dose to the handpiece's set points; training: simulated only.
            calibration=stand_in_calibration if clinic.training else clinic.calibration_source(),
            session_id=f"console-{uuid.uuid4().hex[:8]}",
        )
        context = controller_context(controller)
        self.session_id = store.begin_session(
            patient,
            area,
            operator=operator,
            override=CourseOverride(*override) if override else None,
            context=context,
        )
        controller.session_id = self.session_id
        if plan.extra:  # which profile, which version, which values (as laserctl session)
            extra = dict(plan.extra)
            store.log_event(
                "info",
                f"profile {plan.plan_id} version {extra.get('profile_version', '?')} SHA-256 "
                f"{extra.get('profile_sha256', '?')}; operator values "
                f"{extra.get('operator_values') or 'none (the defaults)'}",
                session_id=self.session_id,
                data={**extra, "plan_id": plan.plan_id},
            )
        self.course = store.session(self.session_id).course
        self.writer = TappedWriter(store, lambda _shot: None)
        self.runner: ControllerRunner = ControllerRunner(
            url, controller, store=store, writer=self.writer
        )
        self.bridge = ControllerBridge(self.runner, wake)
        self.writer.on_shot = self.bridge.on_shot
        self.stream: EventStream | None = EventStream(
            store,
            self.session_id,
            sink=self.writer.submit_event,
            context=context,
            echo=self.bridge.on_note,
        )
        self.runner.on_note = self.stream.on_note
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

        runner = self.runner
        runner.disarm()
        runner.wait_for(lambda s: s.state not in ARMED, SETTLE_S)
        if runner.snapshot.connected:
            runner.submit(RefreshStatus())
            runner.sync()
            runner.wait_for(lambda s: s.commands_in_flight == 0, 1.0)
        report = runner.report()
        runner.on_note = self.bridge.on_note  # the session has ended: nothing more is its own
        self.stream = None
        try:
            self.writer.flush()  # every shot and event on disk before the end is logged
        finally:
            self.writer.close()
        store = self.clinic.store
        logged = store.end_session(
            self.session_id,
            {
                "final_state": report["final_state"],
                "shots_fired": report["shots_fired"],
                "shots_seen": report["shots_seen"],
                "faults": len(report["faults"]),
                "refusals": len(report["refusals"]),
            },
        )
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
        self.runner.close()
        if self.finished is None:  # closed without finish(): what was submitted is kept
            self.writer.close()

    @property
    def state(self) -> State:
        return self.runner.snapshot.state
