"""One treatment session of a patient on an area, as `laserctl session --patient --area` and
the console both run it: the one place where the shot log, the controller and its runner are
put together.

In order: the session's id (new, or with `resume` the same day's interrupted session of this
patient and area, after a crash or power loss); the Controller with its session settings
(the id, the dose the resumed session's shots already delivered, and that shots re-read now
were fired in it); begin_session with the controller's context (the course rules are checked
there: a refusal raises CourseRuleBroken and nothing is connected); the profile event (which
profile, which version, the operator's values and the defaults sent first); the group-commit
writer between the runner and the shot log (SHOT_ACK only after the shot is on disk, SR-11);
the EventStream for the controller's notes. end() flushes and logs the end; close() stops.

Construction and end() do I/O (SQLite): callers run them off any interface thread.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from laserctl.records.writer import GroupCommitWriter

if TYPE_CHECKING:
    from laserctl.controller.core import CalibrationSource
    from laserctl.controller.events import Note
    from laserctl.controller.runner import ControllerRunner
    from laserctl.logging import EventStream
    from laserctl.plan import TreatmentPlan
    from laserctl.records import CourseOverride, RecordStore
    from laserctl.records.course_check import CourseAuthority
    from laserctl.shotrecord import ShotRecord


class NothingToResume(Exception):
    """`resume` asked for, and the patient has no interrupted session today on that area."""


class TappedWriter(GroupCommitWriter):
    """The group-commit writer, passing each shot's set and measured values on as the
    controller hands it over (the console's sparkline; durability is the writer's)."""

    def __init__(self, store: RecordStore, on_shot: Callable[[ShotRecord], None]) -> None:
        super().__init__(store)
        self.on_shot = on_shot

    def submit_shot(self, shot: ShotRecord) -> int:
        ticket = super().submit_shot(shot)
        self.on_shot(shot)
        return ticket


@dataclass(frozen=True, slots=True)
class Ending:
    shots_logged: int
    error: str  # why the shot log failed at the end (a full disk, a read-only file), or ""


def plan_defaults(plan: TreatmentPlan) -> dict[str, float]:
    """The values the controller sends first: the profile's defaults with the operator's
    values in place."""
    return {p.field_name: w.default for p, w in sorted(plan.windows.items())}


class TreatmentSession:
    def __init__(
        self,
        store: RecordStore,
        url: str,
        plan: TreatmentPlan | None,
        patient: str,
        area: str,
        *,
        calibration: CalibrationSource,
        wall_clock: Callable[[], float] = time.time,
        operator: str | None = None,
        override: CourseOverride | None = None,
        authority: CourseAuthority | None = None,
        resume: bool = False,
        events_log: Any = None,
        echo: Callable[[Note], None] | None = None,
        on_shot: Callable[[ShotRecord], None] | None = None,
    ) -> None:
        """`plan` None: the built-in conservative plan for the connected handpiece type, on
        this area. `events_log`: a structlog logger for the notes too (--events FILE); `echo`
        sees every note; `on_shot` every shot handed to the writer. Raises CourseRuleBroken,
        NothingToResume or RecordError; the store stays open either way (the caller's).
        `authority`: the central store the course rules ask first (`--fleet URL`; None: this
        console's shot log alone), laserctl.records.course_check.
        `calibration`: where the runner reads the handpiece's calibration (SR-14), stamped
        with `wall_clock`."""
        from laserctl.controller.core import Controller
        from laserctl.controller.runner import ControllerRunner
        from laserctl.logging import EventStream
        from laserctl.plan import builtin_plan
        from laserctl.records import controller_context
        from laserctl.safety.limits import DoseUsed

        self.store = store
        self.url = url
        self.plan = plan
        self.patient = patient
        self.area = area
        resumed = store.interrupted_session(patient, area) if resume else None
        if resume and resumed is None:
            raise NothingToResume(f"no interrupted session today for {patient} on {area}")
        session_id = resumed or store.new_session_id()
        dose = DoseUsed(*store.session_dose(resumed)) if resumed is not None else None
        self.controller = Controller(
            plan,
            plan_for=lambda hp: dataclasses.replace(builtin_plan(hp), area=area),
            session_id=session_id,
            dose=dose,
            count_recovered=resumed is not None,  # shots re-read now were fired in it
        )
        context = controller_context(self.controller)
        self.session_id = store.begin_session(
            patient,
            area,
            operator=operator,
            override=override,
            resume=resumed,
            session_id=None if resumed is not None else session_id,
            context=context,
            authority=authority,
        )
        assert self.session_id == session_id, (self.session_id, session_id)
        self.resumed = resumed is not None
        if plan is not None and plan.extra:
            extra = dict(plan.extra)
            store.log_event(
                "info",
                f"profile {plan.plan_id} version {extra.get('profile_version', '?')} SHA-256 "
                f"{extra.get('profile_sha256', '?')}; operator values "
                f"{extra.get('operator_values') or 'none (the defaults)'}",
                session_id=self.session_id,
                data={**extra, "plan_id": plan.plan_id, "defaults": plan_defaults(plan)},
            )
        self.course = store.session(self.session_id).course
        self.writer = TappedWriter(store, on_shot) if on_shot else GroupCommitWriter(store)
        self.runner: ControllerRunner = ControllerRunner(
            url,
            self.controller,
            store=store,
            writer=self.writer,
            calibration=calibration,  # SR-14: no valid calibration, no arming
            wall_clock=wall_clock,
        )
        self.stream: EventStream | None = EventStream(
            store,
            self.session_id,
            log=events_log,
            sink=self.writer.submit_event,
            context=context,
            echo=echo,
        )
        self.runner.on_note = self.stream.on_note
        self.ended: Ending | None = None

    def end(self, summary: dict[str, object]) -> Ending:
        """Every shot and event on disk, then the session's end logged with `summary`. A
        failing shot log is reported in the Ending, never raised: what was stored before the
        failure stays intact (the store commits whole batches)."""
        from laserctl.records import RecordError

        if self.ended is not None:
            return self.ended
        self.stream = None
        error = ""
        try:
            self.writer.flush()
        except RecordError as exc:
            error = str(exc)
        finally:
            self.writer.close()
        logged = 0
        try:
            logged = self.store.end_session(self.session_id, summary)
        except RecordError as exc:
            error = error or str(exc)
        self.ended = Ending(logged, error)
        return self.ended

    def close(self) -> None:
        """Disarm, stop the controller, close the link (runner.close); a session closed
        without end() keeps what was submitted."""
        self.runner.close()
        if self.ended is None:
            self.writer.close()
