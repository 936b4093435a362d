"""Everything the console uses from the shot log, the profiles, the service accounts and the
calibration (issues 5 and 6), and the central store (issue 14), in one place: if one of their
APIs changes, this file changes. That is why it runs a little past 400 lines: it is one seam,
a few short methods per API, and splitting it would scatter the seam again.

Every method may read or write files (SQLite, profile files, Argon2 hashing): the console calls
them on its I/O worker thread, never on the interface's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.protocol import Param

if TYPE_CHECKING:
    import datetime as dt

    from drivers.protocol import DeviceInfo
    from laserctl.auth import AccountBook, Identity
    from laserctl.auth.console_key import ConsoleKey
    from laserctl.calibration.daily import DailyVerification
    from laserctl.calibration.procedure import Outcome
    from laserctl.calibration.record import Calibration, CalibrationLookup
    from laserctl.plan import TreatmentPlan
    from laserctl.profiles import Catalog, Window
    from laserctl.records import RecordStore
    from laserctl.records.course_check import CourseAuthority

SERVICE_ACTION = "use the service screen"


class ClinicError(Exception):
    """Something the operator must fix (an ID, a value, a missing set-up); says what."""


@dataclass(frozen=True, slots=True)
class CourseCheck:
    """The course rules (SR-18) for a new session of this patient on this area, now."""

    patient: str
    area: str
    course: int
    sessions_on_area: int  # treated sessions on the area in this course
    max_sessions: int
    last_session: str  # date of the last treated session on the area, "" if none
    next_allowed: str  # "any day", a date, or "" when the course has none left
    reasons: tuple[str, ...]  # why a session now breaks the rules; empty: it may start
    course_pulses: int  # on this area in this course, before this session
    course_fluence_j_cm2: float
    interrupted: str = ""  # today's session on the area that never ended (a crash), or ""
    central: str = ""  # the central store asked (--fleet), "" when none is configured
    reachable: bool = True  # it answered
    central_error: str = ""  # why it did not
    from_other_consoles: int = 0  # sessions of the patient only the central store knows
    consoles: tuple[str, ...] = ()  # the other consoles that treated the patient

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One file of the profile directory, as the service screen's validation lists it."""

    name: str
    profile_id: str
    version: int | None
    ok: bool
    issues: tuple[str, ...]


class Clinic:
    def __init__(
        self,
        db_path: Path | None = None,
        *,
        profile_dir: Path | None = None,
        accounts_dir: Path | None = None,
        reports_dir: Path | None = None,
        hasher: Any = None,  # argon2.PasswordHasher; None: production cost
        clock: Callable[[], float] = time.time,
        tz: dt.tzinfo | None = None,
        training: bool = False,
        fleet_url: str | None = None,
        authority: CourseAuthority | None = None,
        console_key: Callable[[], ConsoleKey] | None = None,
    ) -> None:
        """training: simulated handpieces only, uncalibrated, and a throwaway shot log (in a
        temporary directory, removed by close()) instead of the clinic's. fleet_url: the
        clinic chain's central store, asked by the course rules before every session
        (laserctl.fleet.courses; `authority` instead, for tests), and where the console's
        background pusher ships the log (laserctl.fleet.background). console_key: the key that
        signs the log's checkpoints and names the console to the central store (default: the
        console key in the config directory)."""
        self.training = training
        self.fleet_url = None if training else fleet_url
        self.console_key = console_key
        if authority is None and self.fleet_url:
            from laserctl.fleet.courses import CentralCourses

            authority = CentralCourses(self.fleet_url)
        self.authority = authority  # asked at every session start
        self._shown: CourseAuthority | None = None  # the same, remembered for the displays
        if authority is not None:
            from laserctl.fleet.courses import Remembered

            self._shown = Remembered(authority)
        self._scratch: Path | None = None
        if training and db_path is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="laserctl-training-"))
            db_path = self._scratch / "training.db"
        self.db_path = db_path
        self.profile_dir = profile_dir
        self.accounts_dir = accounts_dir
        self._reports_dir = reports_dir
        self.hasher = hasher
        self.clock = clock
        self.tz = tz
        self._store: RecordStore | None = None

    # ---- the shot log (issue 6) ---------------------------------------------------------------
    @property
    def store(self) -> RecordStore:
        if self._store is None:
            from laserctl.records import RecordError, open_store

            try:
                self._store = open_store(
                    self.db_path, clock=self.clock, tz=self.tz, console_key=self.console_key
                )
            except RecordError as exc:
                raise ClinicError(str(exc)) from None
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def check_patient(self, patient: str) -> str:
        from laserctl.records import RecordError
        from laserctl.records.store import check_patient_id

        try:
            return check_patient_id(patient.strip())
        except RecordError as exc:
            raise ClinicError(str(exc)) from None

    def course_lines(self, patient: str) -> list[str]:
        """The patient's courses as `laserctl course show` prints them (SR-18); with a
        central store, across every console, and a last line saying what it added."""
        from laserctl.fleet.courses import course_summary
        from laserctl.records import RecordError
        from laserctl.records.courses import summary_lines

        patient = self.check_patient(patient)
        try:
            summary, note = course_summary(self.store, patient, self._shown)
        except RecordError as exc:
            raise ClinicError(str(exc)) from None
        return summary_lines(summary) + ([note] if note else [])

    def open_course(self, patient: str, who: str, reason: str) -> int:
        """Start the patient's next course: a service action, logged with who and why
        (SR-18, SR-19). Returns its number."""
        from laserctl.records import RecordError

        patient = self.check_patient(patient)
        try:
            return self.store.open_course(patient, who=who, reason=reason)
        except RecordError as exc:
            raise ClinicError(str(exc)) from None

    def course_check(self, patient: str, area: str) -> CourseCheck:
        """The course rules for a session now, as the session start will judge them (across
        consoles with a central store; its answer remembered a few seconds here)."""
        from laserctl.records import courses
        from laserctl.records.course_check import judge

        patient = self.check_patient(patient)
        store = self.store
        numbers = store.course_numbers(patient)
        decision = judge(
            patient,
            area,
            store.history(patient),
            max(numbers) if numbers else None,
            self.clock(),
            self.tz,
            self._shown,
        )
        history, course = list(decision.history), decision.course
        treated = [s for s in courses.treated(history, area) if s.course == course]
        on_area = courses.treated(history, area)
        allowed = courses.next_allowed(history, course, area, self.tz)
        next_allowed = "" if allowed is None else allowed.isoformat()
        if allowed is not None and allowed.toordinal() == 1:  # date.min: no earlier session
            next_allowed = "any day"
        return CourseCheck(
            patient=patient,
            area=area,
            course=course,
            sessions_on_area=len(treated),
            max_sessions=courses.MAX_SESSIONS_PER_COURSE,
            last_session=courses.local_day(on_area[-1].started, self.tz).isoformat()
            if on_area
            else "",
            next_allowed=next_allowed,
            reasons=decision.reasons,
            course_pulses=sum(s.shots for s in treated),
            course_fluence_j_cm2=sum(s.fluence_j_cm2 for s in treated),
            interrupted=store.interrupted_session(patient, area) or "",
            central=decision.asked,
            reachable=decision.reachable,
            central_error=decision.error,
            from_other_consoles=len(decision.elsewhere),
            consoles=decision.consoles,
        )

    @property
    def reports_dir(self) -> Path:
        return self._reports_dir or self.store.path.parent / "reports"

    def write_report(self, session_id: str) -> Path:
        """The session's self-contained HTML report (laserctl.records.report)."""
        from laserctl.records.report import render_report

        text = render_report(self.store, session_id)
        path = self.reports_dir / f"{session_id}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def verify_log(self) -> tuple[bool, str]:
        report = self.store.verify()
        if report.ok:
            return True, f"hash chains intact ({sum(report.records.values())} records)"
        return False, "; ".join(f"{p.table} {p.row_id}: {p.what}" for p in report.problems[:3])

    # ---- profiles (issue 5) -------------------------------------------------------------------
    def catalog(self, device: DeviceInfo | None) -> Catalog:
        from laserctl.profiles import load_catalog

        return load_catalog(self.profile_dir, device=device)

    def windows(
        self, catalog: Catalog, handpiece: str, area: str, variant: str, dark_skin: bool
    ) -> dict[Param, Window]:
        from laserctl.profiles import ProfileError

        try:
            profile = catalog.get(f"{handpiece}-{area}")
        except ProfileError as exc:
            raise ClinicError(str(exc)) from None
        if variant not in profile.variants:
            raise ClinicError(f"profile {profile.id} has no variant {variant!r}")
        return profile.variants[variant].windows_for(dark_skin)

    def plan(
        self,
        catalog: Catalog,
        *,
        handpiece: str,
        area: str,
        variant: str,
        dark_skin: bool,
        values: Mapping[Param, float],
    ) -> TreatmentPlan:
        """The plan for the selection with the operator's values, inside the windows (SR-07)."""
        from laserctl.profiles import ProfileError, Selection, build_plan

        selection = Selection(f"{handpiece}-{area}", variant, dark_skin)
        try:
            return build_plan(catalog.get(selection.profile_id), selection, values)
        except ProfileError as exc:
            raise ClinicError(str(exc)) from None

    def validate_profiles(self, device: DeviceInfo | None) -> list[ProfileRow]:
        catalog = self.catalog(device)
        rows = []
        for name in sorted(catalog.files):
            pid = catalog.files[name]
            issues = tuple(
                i.reason if Path(i.file).name == name else str(i) for i in catalog.issues_of(pid)
            )
            profile = catalog.profiles.get(pid)
            version = profile.version if profile else None
            rows.append(ProfileRow(name, pid, version, pid in catalog.profiles, issues))
        if not catalog.files:
            rows.append(
                ProfileRow(
                    str(catalog.directory),
                    "",
                    None,
                    False,
                    tuple(str(i) for i in catalog.issues) or ("no profiles",),
                )
            )
        return rows

    # ---- service accounts (issue 5, SR-19) ----------------------------------------------------
    def accounts(self) -> AccountBook:
        from laserctl.auth import AccountBook

        return AccountBook(self.accounts_dir, hasher=self.hasher, log=self.store, clock=self.clock)

    def login_service(self, name: str, password: str, action: str = SERVICE_ACTION) -> Identity:
        """The service engineer behind these credentials (the attempt is logged either way by
        the account book); ClinicError says why not, never with the password, its cause the
        account book's error (a LockedOut says until when)."""
        from laserctl.auth import AuthError

        book = self.accounts()
        try:
            if not book.is_set_up():
                raise ClinicError(
                    "no service account on this device yet: run `laserctl service setup`"
                )
            return book.login_service(name.strip(), password, action)
        except AuthError as exc:
            raise ClinicError(str(exc)) from exc

    # ---- calibration (issue 5, SR-14) ---------------------------------------------------------
    def calibration_source(self) -> CalibrationLookup:
        """For ControllerRunner(calibration=...): the connected handpiece's newest calibration
        from the shot log, or why there is none (as `laserctl session` uses it); the
        controller judges it on its own clock (the runner's wall_clock=self.clock)."""
        from laserctl.calibration import calibration_lookup

        return calibration_lookup(self.store)

    def calibration_status(self, device: DeviceInfo) -> str:
        from laserctl.calibration.record import CalibrationInvalid, current_calibration, iso

        try:
            calibration = current_calibration(self.store, device, now=self.clock())
        except CalibrationInvalid as exc:
            return str(exc)
        return (
            f"valid: calibrated {iso(calibration.created_at)} by {calibration.who}, "
            f"expires {iso(calibration.expires_at)}"
        )

    def calibrate(
        self,
        port: Any,  # laserctl.calibration.procedure.Port (a HandpieceConnection)
        device: DeviceInfo,
        who: str,
        progress: Callable[[int], None],
    ) -> Outcome:
        from laserctl.calibration.procedure import CalibrationFailed, calibrate

        try:
            return calibrate(port, device, who, now=self.clock, progress=progress)
        except CalibrationFailed as exc:
            raise ClinicError(str(exc)) from None

    def verification_due(self, device: DeviceInfo) -> str:
        """Why the daily verification of this handpiece should run now ("" when it need not:
        verified or calibrated today, or no valid calibration to verify; SR-14). Training
        needs none: no calibration is used."""
        from laserctl.calibration.daily import verification_due
        from laserctl.calibration.record import CalibrationInvalid, current_calibration

        if self.training:
            return ""
        try:
            calibration = current_calibration(self.store, device, now=self.clock())
        except CalibrationInvalid:
            return ""  # arming is refused anyway, with the reason; a service engineer calibrates
        return verification_due(self.store, device, calibration, now=self.clock(), tz=self.tz)

    def verify(
        self,
        port: Any,  # laserctl.calibration.procedure.Port (a HandpieceConnection)
        device: DeviceInfo,
        who: str,
        progress: Callable[[int], None],
    ) -> DailyVerification:
        """The daily verification (laserctl calibrate --verify): logged; a failure revokes
        the calibration."""
        from laserctl.calibration import CalibrationFailed, CalibrationInvalid
        from laserctl.calibration.daily import run_daily_verification

        try:
            return run_daily_verification(
                self.store, port, device, who, progress=progress, clock=self.clock
            )
        except (CalibrationFailed, CalibrationInvalid) as exc:
            raise ClinicError(str(exc)) from None

    def calibration_pulses(self) -> int:
        from laserctl.calibration.procedure import calibrate

        defaults = calibrate.__kwdefaults__ or {}
        return int(defaults.get("points", 6)) * int(defaults.get("repeats", 4))

    def save_calibration(self, calibration: Calibration) -> int:
        return self.store.add_calibration(
            calibration.serial, calibration.handpiece, calibration.who, calibration.to_record()
        )
