"""`laserctl session`: run a scripted session non-interactively (demos, CI, benchmarks)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import EXIT_DEVICE, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .session_course import CourseSettings, course_decision
from .steps import run_step, settle
from .summary import print_summary

if TYPE_CHECKING:
    from laserctl.controller.core import CalibrationSource
    from laserctl.plan import TreatmentPlan
    from laserctl.records import RecordStore

CONNECT_TIMEOUT_S = 5.0


@click.command(
    epilog="Examples:\n\n"
    "  laserctl session --device /dev/ttyUSB0 --profile fractional-1550-abdomen/alba "
    "--set energy_mj=22 --patient P-0042 --area abdomen --script s.txt\n\n"
    "  laserctl session --device sim:fractional-1550 --training --script demo.txt\n\n"
    "  laserctl session --device /dev/pts/3 --plan plan.toml --db log.db --script s.txt --json\n\n"
    "Arming needs a valid calibration of the connected handpiece in the shot log (--db, else "
    "the default one; laserctl calibrate), simulated handpieces included, except with "
    "--training (simulated handpieces only, no patient, uncalibrated).\n\n"
    "Exit codes: 0 the script ran to its end (faults and refusals are in the summary); "
    "1 the shot log could not be opened, or the course rules refuse the session (with --fleet: "
    "also while the central store cannot be reached), or the override's service login fails; "
    "2 unreadable script, plan or profile, a value beyond the profile's window, a simulator "
    "step or --training against real hardware; 3 the device could not be reached."
)
@click.option("--device", "url", required=True, help="Device URL (see laserctl --help).")
@click.option("--plan", "plan_path", default=None, help="Treatment plan file (TOML or JSON).")
@click.option(
    "--profile",
    "selector",
    default=None,
    help="Signed treatment profile: <id>/<rubra|alba>[/iv-vi], e.g. fractional-1550-abdomen/alba.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="With --profile: a value for this patient, inside the profile's window (repeatable).",
)
@click.option(
    "--profile-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Profile directory (else $LASERCTL_PROFILE_DIR, else the shipped profiles/).",
)
@click.option("--script", "script_path", required=True, help="Session script, one step a line.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@click.option("--verbose", "-v", is_flag=True, help="Print the controller's log as it runs.")
@click.option("--patient", default=None, help="Pseudonymous patient ID: log the session.")
@click.option("--area", default=None, help="Treated area (with --patient).")
@click.option(
    "--db", default=None, help="Shot log and calibrations (default: user data directory)."
)
@click.option("--resume", is_flag=True, help="Resume today's interrupted session (a crash).")
@click.option("--events", "events_path", default=None, help="Append JSON-lines events here.")
@click.option(
    "--training",
    is_flag=True,
    help="TRAINING: a simulated handpiece without calibration, no patient, nothing logged. "
    "Refused on a real handpiece.",
)
@click.option(
    "--fleet",
    "fleet_url",
    envvar="LASERCTL_FLEET_URL",
    default=None,
    metavar="URL",
    help="The clinic chain's central store (postgresql://...; else $LASERCTL_FLEET_URL): the "
    "course rules count the patient's sessions on every console, and refuse while it cannot "
    "be reached (docs/fleet.md).",
)
@click.option(
    "--override-reason",
    default=None,
    metavar="TEXT",
    help="Service: run the session even if the course rules (or an unreachable --fleet) "
    "refuse it, for this written reason; needs a service login (--user, --password-file).",
)
@click.option("--user", default=None, help="With --override-reason: the service account.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --override-reason: the service password's file (else "
    "$LASERCTL_SERVICE_PASSWORD, else a prompt).",
)
def session(
    url: str,
    plan_path: str | None,
    selector: str | None,
    sets: tuple[str, ...],
    profile_dir: Path | None,
    script_path: str,
    as_json: bool,
    verbose: bool,
    patient: str | None,
    area: str | None,
    db: str | None,
    resume: bool,
    events_path: str | None,
    training: bool,
    fleet_url: str | None,
    override_reason: str | None,
    user: str | None,
    password_file: Path | None,
) -> None:
    """Run a session script against a handpiece and print a summary.

    The plan: --profile (a signed treatment profile, the operator's --set values inside its
    windows), --plan (a plan file), or without either the built-in conservative plan for the
    connected handpiece type.
    """
    from laserctl.controller.core import Controller, training_calibration
    from laserctl.controller.events import Connect, RefreshStatus
    from laserctl.controller.runner import ControllerRunner
    from laserctl.controller.table import State
    from laserctl.script import ScriptError, load_script

    try:
        steps = load_script(script_path)
    except (OSError, ScriptError) as exc:
        _fail(f"{script_path}: {exc}", EXIT_USAGE)
    plan = _load_plan(plan_path, selector, sets, profile_dir)

    if (patient is None) != (area is None):
        _fail("--patient and --area go together", EXIT_USAGE)
    if training and patient is not None:
        _fail("--training treats no patient: it cannot go with --patient", EXIT_USAGE)
    if resume and patient is None:
        _fail("--resume needs --patient and --area", EXIT_USAGE)
    if override_reason is not None and patient is None:
        _fail("--override-reason needs --patient and --area", EXIT_USAGE)
    echo = (
        (lambda note: click.echo(f"  [{note.kind}] {note.message}", err=True)) if verbose else None
    )
    log = None
    calibrations = None  # the shot log read for calibrations when no session is logged
    if patient is not None and area is not None:
        course = CourseSettings(fleet_url, override_reason, user, password_file)
        log = _open_log(plan, patient, area, db, resume, events_path, echo, url, course)
        controller, runner = log.controller, log.runner
    else:
        calibration: CalibrationSource = training_calibration
        if not training:
            calibrations = _open_calibrations(db)
            calibration = _calibration_source(calibrations)
        controller = Controller(plan, session_id=f"session-{uuid.uuid4().hex[:8]}")
        runner = ControllerRunner(url, controller, calibration=calibration)
        runner.on_note = echo
    runner.start()
    try:
        runner.submit(Connect())
        runner.sync(CONNECT_TIMEOUT_S)  # the connect was taken (open and HELLO run apart)
        settled = (State.STANDBY, State.FAULT, State.ESTOP, State.DISCONNECTED)
        snap = runner.wait_for(lambda s: s.state in settled, CONNECT_TIMEOUT_S)
        if snap is None or snap.state is State.DISCONNECTED:
            message = snap.last_message if snap else "no answer"
            _fail(f"{url}: {message}", EXIT_DEVICE)
        settle(runner)  # the parameters reach the device before the first step
        info = runner.device_info
        if training and info is not None and not info.simulated:
            _fail(
                f"--training against a real handpiece {info.handpiece.slug} {info.serial}: "
                "training is for simulated handpieces only; nothing was run",
                EXIT_USAGE,
            )
        sim_steps = [s for s in steps if s.needs_simulator]
        if sim_steps and info is not None and not info.simulated:
            lines = ", ".join(str(s.line) for s in sim_steps)
            _fail(
                f"{script_path}: simulator steps (lines {lines}) against a real handpiece "
                f"{info.serial}; nothing was run",
                EXIT_USAGE,
            )
        if patient is None and info is not None and not info.simulated:
            _fail(
                f"a session on a real handpiece {info.serial} must log every shot (SR-11): "
                "give --patient and --area; nothing was run",
                EXIT_USAGE,
            )
        results = [run_step(runner, step) for step in steps]
        runner.submit(RefreshStatus())
        runner.sync()
        runner.wait_for(lambda s: s.commands_in_flight == 0, 1.0)
        report = runner.report()
    finally:
        runner.close()
        if log is not None:
            log.close(report if "report" in locals() else None)
        if calibrations is not None:
            calibrations.close()
    if log is not None:
        report["session_id"] = log.session_id
        report["shots_logged"] = log.shots_logged
        if log.course_decision is not None:
            report["course_decision"] = log.course_decision
        if log.error:
            report["log_error"] = log.error
    report["training"] = training
    if plan is not None and plan.extra:
        report["profile"] = dict(plan.extra)
    report["steps"] = results
    report["refusals"] = [
        {"line": r["line"], "step": r["step"], **refusal}
        for r in results
        for refusal in r.pop("_refusals")
    ]
    report["errors"] = [
        {"line": r["line"], "step": r["step"], "error": r["error"]} for r in results if r["error"]
    ]
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        print_summary(report)
    if report.get("log_error"):
        click.echo(f"laserctl session: the shot log failed: {report['log_error']}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK)


def _load_plan(
    plan_path: str | None,
    selector: str | None,
    sets: tuple[str, ...],
    profile_dir: Path | None,
) -> TreatmentPlan | None:
    """The plan, before anything is sent: a usage error (exit 2) names file, field, value and
    reason (SR-07, SR-13)."""
    from laserctl.plan import PlanError, load_plan

    if plan_path is not None and selector is not None:
        _fail("--plan and --profile: choose one", EXIT_USAGE)
    if sets and selector is None:
        _fail("--set needs --profile (the values are checked against its windows)", EXIT_USAGE)
    if plan_path is not None:
        try:
            return load_plan(plan_path)
        except PlanError as exc:
            _fail(str(exc), EXIT_USAGE)
    if selector is None:
        return None
    from laserctl.profiles import ProfileError, plan_for_session

    try:
        return plan_for_session(selector, sets, directory=profile_dir)
    except ProfileError as exc:
        _fail(f"profile refused: {exc}", EXIT_USAGE)
    return None  # pragma: no cover - _fail exits


def _open_calibrations(db: str | None) -> RecordStore:
    """The shot log, for the calibrations only (a session without a patient logs nothing)."""
    from laserctl.records import RecordError, open_store

    try:
        return open_store(db)
    except RecordError as exc:
        _fail(f"{exc} (needed for the handpiece's calibration, SR-14)", EXIT_FAILED)
    raise AssertionError("unreachable")  # pragma: no cover - _fail exits


def _calibration_source(store: RecordStore) -> CalibrationSource:
    """SR-14: the connected handpiece's valid calibration from the shot log, or why none."""
    from laserctl.calibration import calibration_lookup

    return calibration_lookup(store)


def _fail(message: str, code: int) -> Any:
    click.echo(f"laserctl session: {message}", err=True)
    sys.exit(code)


class _Log:
    """The shot log behind a session: the store it opened, the TreatmentSession on it, the
    --events file."""

    def __init__(self, store: Any, session: Any, events_file: Any) -> None:
        self.store, self.session, self.events_file = store, session, events_file
        self.controller, self.runner = session.controller, session.runner
        self.session_id: str = session.session_id
        self.shots_logged = 0
        self.error = ""  # why the shot log failed (a full disk, a read-only file), or ""
        self.course_decision = course_decision(store, self.session_id)

    def close(self, report: dict[str, Any] | None) -> None:
        """End the session and close the log; a failed shot log is reported in the summary,
        never as a traceback (laserctl.session.TreatmentSession.end)."""
        summary = {"final_state": report["final_state"]} if report else {"final_state": "?"}
        try:
            ending = self.session.end(summary)
            self.shots_logged, self.error = ending.shots_logged, ending.error
        finally:
            self.store.close()
            if self.events_file is not None:
                self.events_file.close()


def _open_log(
    plan: Any,
    patient: str,
    area: str,
    db: str | None,
    resume: bool,
    events_path: str | None,
    echo: Any,
    url: str,
    course: CourseSettings,
) -> _Log:
    from laserctl.logging import json_lines
    from laserctl.records import CourseRuleBroken, RecordError, open_store
    from laserctl.session import NothingToResume, TreatmentSession

    if plan is not None and plan.area != area:
        _fail(f"the plan is for area {plan.area!r}, not {area!r}", EXIT_USAGE)
    try:
        store = open_store(db)
    except RecordError as exc:
        _fail(str(exc), EXIT_FAILED)
    try:
        override = course.override(store)
    except BaseException:
        store.close()
        raise
    events_file = open(events_path, "a", encoding="utf-8") if events_path else None  # noqa: SIM115
    try:
        session = TreatmentSession(
            store,
            url,
            plan,
            patient,
            area,
            calibration=_calibration_source(store),  # SR-14: no valid calibration, no arming
            resume=resume,
            override=override,
            authority=course.authority(),
            events_log=json_lines(events_file, patient=patient, area=area) if events_file else None,
            echo=echo,
        )
    except (NothingToResume, CourseRuleBroken, RecordError) as exc:
        store.close()
        if events_file is not None:
            events_file.close()
        _fail(str(exc), EXIT_USAGE if isinstance(exc, NothingToResume) else EXIT_FAILED)
    return _Log(store, session, events_file)
